"""What a monitoring grid node keeps across periods: its parsed, checked tables
(parties.monitoring_tables) and the blinded points of a key epoch
(parties.monitoring_serving.EpochPoints)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crypto.psi import oprf
from parties.labels.cli import main
from parties.labels.engine import build_grid_features
from parties.labels.features import grid_registry
from parties.labels.schema import InputError, parse_month
from parties.labels.shell import load_shell_model
from parties.labels.sources import open_source
from parties.monitoring_serving import EpochPoints
from parties.monitoring_tables import BankTables, GridTables


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    assert main(["synth", "--enterprises", "300", "--months", "30", "--seed", "5",
                 "--out", str(out)]) == 0
    return out


def test_grid_tables_give_the_indicators_of_features_build_every_month(raw: Path) -> None:
    source = open_source(raw / "grid", "grid")
    names = [i.name for i in grid_registry()]
    tables = GridTables()
    try:
        for month in ("2022-06", "2022-11", "2022-12"):
            got = tables.frame(source, parse_month(month), load_shell_model(), names)
            want = build_grid_features(source, parse_month(month), model_only=False).table
            pd.testing.assert_frame_equal(got.reset_index(drop=True),
                                          want.reset_index(drop=True))
        assert tables.loads == 1 and tables.checks == 1  # parsed and checked once
    finally:
        tables.close()


def test_grid_tables_reload_and_recheck_a_changed_file(raw: Path, tmp_path: Path) -> None:
    folder = tmp_path / "grid"
    folder.mkdir()
    for f in (raw / "grid").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    source = open_source(folder, "grid")
    names = [i.name for i in grid_registry()]
    tables = GridTables()
    try:
        tables.frame(source, parse_month("2022-12"), load_shell_model(), names)
        usage = folder / "monthly_usage.csv"
        lines = usage.read_text().splitlines()
        ent, month, _ = lines[1].split(",")
        usage.write_text("\n".join([*lines, f"{ent},{month},7.0"]) + "\n")  # a duplicate
        stat = usage.stat()
        os.utime(usage, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        with pytest.raises(InputError, match="monthly_usage"):
            tables.frame(source, parse_month("2022-12"), load_shell_model(), names)
        assert tables.loads == 2
    finally:
        tables.close()


def test_epoch_points_blind_each_id_once_per_epoch() -> None:
    now = [0.0]
    points = EpochPoints(rotate_seconds=100.0, clock=lambda: now[0])
    first = points.table(["a", "b", "c"])
    assert points.blinded == 3
    again = points.table(["c", "a", "b", "d"])  # same epoch: only "d" is new
    assert points.blinded == 4 and again.epoch == first.epoch and again.key == first.key
    by_id = {x: first.table[j] for j, x in zip(range(3), np.array(["a", "b", "c"])[first.perm],
                                                 strict=True)}
    for j, row in enumerate(again.perm):
        x = ["c", "a", "b", "d"][row]
        if x in by_id:
            assert bytes(again.table[j]) == bytes(by_id[x])
    assert oprf.first_not_ascending(again.table) is None
    now[0] = 100.0  # the epoch is over: new key, everything blinded again
    rotated = points.table(["a", "b"])
    assert points.blinded == 6 and rotated.epoch != first.epoch
    assert not set(map(bytes, rotated.table)) & set(map(bytes, first.table))


def test_bank_tables_give_the_indicators_of_features_build_every_month(raw: Path) -> None:
    from parties.labels.bank_indicators import BANK_INDICATORS
    from parties.labels.duck import DuckRunner
    from parties.labels.engine import bank_frame

    source = open_source(raw / "bank", "bank")
    names = [i.name for i in BANK_INDICATORS]
    tables = BankTables()
    try:
        for month in ("2022-06", "2022-12"):
            got, _ = tables.frame(source, parse_month(month), names, 6, 30)
            with DuckRunner() as run:
                want = bank_frame(run, source, parse_month(month), names, 6, 30)
            pd.testing.assert_frame_equal(got, want)
        assert tables.loads == 1 and tables.checks == 1
    finally:
        tables.close()
