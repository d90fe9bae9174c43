"""The bundled demo files meet the trainer's requirements and show the power-data lift."""

from __future__ import annotations

import pathlib
import time

import pandas as pd

from parties.labels.demo import build_demo_features, compare_auc, demo_tables


def test_demo_files_are_trainer_ready(tmp_path: pathlib.Path) -> None:
    start = time.perf_counter()
    grid_csv, bank_csv = build_demo_features(tmp_path / "data")
    assert time.perf_counter() - start < 10
    grid = pd.read_csv(grid_csv, dtype={"id": str})
    bank = pd.read_csv(bank_csv, dtype={"id": str})
    assert grid.columns[0] == "id" and list(bank.columns[:2]) == ["id", "y"]
    for table in (grid, bank):
        features = table.drop(columns=["id", "y"], errors="ignore")
        assert table["id"].is_unique and not table.isna().any().any()
        assert (features.nunique() > 1).all()
        assert all(pd.api.types.is_numeric_dtype(t) for t in features.dtypes)
    assert 15 <= grid.shape[1] - 1 <= 30 and 5 <= bank.shape[1] - 2 <= 15
    covered = bank["id"].isin(grid["id"]).mean()
    assert 0.85 <= covered <= 0.90, covered
    assert (~grid["id"].isin(bank["id"])).sum() > 100  # grid-only enterprises for the PSI
    assert set(bank["y"]) == {0, 1}


def test_same_seed_same_demo_files(tmp_path: pathlib.Path) -> None:
    first = build_demo_features(tmp_path / "a", enterprises=400, seed=3)
    second = build_demo_features(tmp_path / "b", enterprises=400, seed=3)
    for x, y in zip(first, second, strict=True):
        assert x.read_bytes() == y.read_bytes()


def test_grid_features_lift_the_bank_model() -> None:
    grid, bank = demo_tables(3000, 7)
    lifts = [compare_auc(grid, bank, seed)["lift"] for seed in range(3)]
    assert sum(lifts) / 3 >= 0.03, lifts
