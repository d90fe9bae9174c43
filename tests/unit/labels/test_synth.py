"""Synthetic data: deterministic per seed, shaped as the schema says, point-in-time builds."""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np
import pandas as pd
import pytest

from parties.labels.features import build_bank_features, build_grid_features
from parties.labels.schema import BankRaw, GridRaw, InputError, load_bank, load_grid, parse_month
from parties.labels.synth import synthesize, write_synth


def _digests(root: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: pathlib.Path) -> None:
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_synth(synthesize(150, 36, seed), tmp_path / name)
    a, b, c = (_digests(tmp_path / n) for n in "abc")
    assert a == b and len(a) == 9
    assert a["grid/monthly_usage.csv"] != c["grid/monthly_usage.csv"]


def test_written_files_load_and_match_the_in_memory_build(tmp_path: pathlib.Path) -> None:
    data = synthesize(300, 36, 5)
    write_synth(data, tmp_path)
    as_of = parse_month(str(data.manifest["as_of"]))
    assert data.manifest["as_of"] == "2023-06"
    from_files = build_grid_features(load_grid(tmp_path / "grid"), as_of).table
    in_memory = build_grid_features(data.grid, as_of).table
    pd.testing.assert_frame_equal(from_files, in_memory)
    bank = build_bank_features(load_bank(tmp_path / "bank"), as_of).table
    pd.testing.assert_frame_equal(bank, build_bank_features(data.bank, as_of).table)


def test_universe_shares_shells_and_labels() -> None:
    data = synthesize(4000, 36, 1)
    u = data.universe
    both = (u.in_grid & u.in_bank).mean()
    assert 0.77 < both < 0.83 and 0.87 < u.in_bank.mean() < 0.93
    assert 0.04 < u.shell.mean() < 0.06
    usage = data.grid.usage.merge(pd.DataFrame({"ent_id": u.ent_id, "shell": u.shell}))
    cv = usage.groupby("ent_id")["kwh"].agg(lambda k: k.std() / max(k.mean(), 1.0))
    shells = usage.groupby("ent_id")["shell"].first()
    assert cv[shells].median() < cv[~shells].median()
    y = build_bank_features(data.bank, u.as_of).table["y"]
    assert 0.08 < y.mean() < 0.25


@pytest.mark.parametrize(("args", "flag"), [((5, 36), "--enterprises"), ((50, 20), "--months")])
def test_bad_arguments(args: tuple[int, int], flag: str) -> None:
    with pytest.raises(InputError, match=flag):
        synthesize(*args)


def _scramble_after(raw: GridRaw, bank: BankRaw, as_of: int) -> tuple[GridRaw, BankRaw]:
    """Change every value of every row after ``as_of`` (and drop later events)."""
    late = raw.usage["month"] > as_of
    usage = raw.usage.assign(kwh=np.where(late, raw.usage["kwh"] * 7 + 1, raw.usage["kwh"]))
    bills = raw.bills.copy()
    later = bills["month"] > as_of
    bills.loc[later, ["amount_due", "late_days", "arrears_after"]] = [9e6, 999, 9e6]
    events = raw.events[raw.events["date"] <= pd.Timestamp("2023-06-30")]
    taxes = bank.taxes.assign(tax_amount=np.where(bank.taxes["month"] > as_of, 1e9,
                                                  bank.taxes["tax_amount"]))
    return (GridRaw(raw.enterprises, usage, bills, events),
            BankRaw(bank.loans, bank.repayments, taxes))


def test_nothing_after_the_as_of_month_changes_the_features() -> None:
    data = synthesize(300, 36, 9)
    as_of = data.universe.as_of
    grid, bank = _scramble_after(data.grid, data.bank, as_of)
    pd.testing.assert_frame_equal(build_grid_features(grid, as_of).table,
                                  build_grid_features(data.grid, as_of).table)
    pd.testing.assert_frame_equal(build_bank_features(bank, as_of).table,
                                  build_bank_features(data.bank, as_of).table)
