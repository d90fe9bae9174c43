"""Monitoring: what crosses in one period's session (real indicators from synthetic data).

The bank must learn per borrower the rating and u_G (hence the score), never an indicator
value; the grid must receive only the period, blinded points and matched positions. The
session runs in process over the product classes; every envelope is searched for the 8
bytes of every grid indicator value (the search is checked to find a planted one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crypto.sigmoid import sigmoid
from federation.protocol.messages import Envelope, Role
from parties.evaluation.scorecard import Scorecard
from parties.labels.engine import build_grid_features
from parties.labels.schema import parse_month
from parties.labels.sources import open_source
from parties.model import PartyModel
from parties.monitoring_data import grid_period
from parties.monitoring_serving import MonitorGrid, PeriodBank
from tests.conftest import run_cli

MONTH = "2022-08"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("monitor-privacy") / "raw"
    result = run_cli("synth", "--enterprises", "150", "--months", "30", "--seed", "9",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def _secrets(raw: Path) -> set[bytes]:
    table = build_grid_features(open_source(raw, "grid"), parse_month(MONTH),
                                model_only=False).table
    values = table.drop(columns="id").to_numpy(np.float64).ravel()
    values = values[~np.isnan(values) & (np.abs(values) > 1e-6) & (values != 1.0)]
    return {np.float64(v).tobytes() for v in values}


def _session(raw: Path, plant: float | None = None) -> list[Envelope]:
    names = ["use_mean_12m", "late_count_12m", "ent_shell_score"]
    model = PartyModel(Role.GRID.value, "j", "shared", names, [0.0] * 3, [1.0] * 3,
                       [0.3, -0.2, 0.1])
    source = open_source(raw, "grid")

    def build(month: int):  # type: ignore[no-untyped-def]
        period = grid_period(source, month, model)
        if plant is not None:
            period.u[:] = plant
        return period

    grid = MonitorGrid(build)
    ids = grid_period(source, parse_month(MONTH), model).ids[:40] + ["not-a-grid-id"]
    bank = PeriodBank(parse_month(MONTH), ids, np.zeros(len(ids)), Scorecard(600, 50, 20),
                      probability=sigmoid)
    sent: list[Envelope] = []
    opened = bank.open_request()
    sent.append(opened)
    points = grid.open(opened)
    sent.append(points)
    bank.accept_points(points)
    plan, blinded = bank.blinded_request(ids)
    assert blinded is not None
    double = grid.step(blinded)
    rows = bank.rows_request(plan, double)
    assert rows is not None
    partial = grid.step(rows)
    sent += [blinded, double, rows, partial]
    bank.results(plan, partial)
    assert len(bank.ratings) == len(ids)
    return sent


def _found(messages: list[Envelope], secrets: set[bytes]) -> list[str]:
    hits = []
    for env in messages:
        for name, tensor in env.tensors.items():
            data = np.ascontiguousarray(tensor).tobytes()
            if tensor.dtype == np.float64:
                words = {data[i:i + 8] for i in range(0, len(data), 8)}
                hits += [f"{env.tag.step}/{name}" for _ in words & secrets]
    return hits


def test_no_indicator_value_reaches_the_bank(raw: Path) -> None:
    messages = _session(raw)
    to_bank = [e for e in messages if e.sender is Role.GRID]
    # "epoch": the 16 random bytes naming the grid's PSI key epoch (parties.serving).
    assert {n for e in to_bank for n in e.tensors} == {"points", "epoch", "u", "rating"}
    assert _found(to_bank, _secrets(raw)) == []
    to_grid = [e for e in messages if e.sender is Role.BANK]
    # "index", "keys": request positions and unblinding keys of the matches only (the grid
    # checks them itself, parties.serving step 6); the 41st ID, not the grid's, stays blinded.
    assert {n for e in to_grid for n in e.tensors} == {"period", "points", "index", "keys"}
    revealed = [e for e in to_grid if "keys" in e.tensors]
    assert [len(e.tensors["keys"]) for e in revealed] == [40]


def test_the_search_finds_a_planted_indicator_value(raw: Path) -> None:
    secrets = _secrets(raw)
    planted = np.frombuffer(sorted(secrets)[0], dtype=np.float64)[0]
    assert _found(_session(raw, plant=float(planted)), secrets)
