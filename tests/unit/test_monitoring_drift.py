"""parties.monitoring_drift: the PSI of each model indicator against the training period."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from parties.monitoring import population_stability
from parties.monitoring_drift import (
    baseline_bins,
    drift_baseline,
    drift_table,
    stability,
    write_drift,
)


def test_psi_matches_a_hand_computation() -> None:
    base = baseline_bins([1.0, 2.0, 3.0, 4.0], bins=2)  # one edge at the median, 2.5
    assert base is not None
    np.testing.assert_array_equal(base.edges, [2.5])
    np.testing.assert_array_equal(base.shares, [0.5, 0.5])
    # 3 of 4 below the edge: (0.75 - 0.5) ln(0.75 / 0.5) + (0.25 - 0.5) ln(0.25 / 0.5)
    expected = 0.25 * math.log(1.5) + 0.25 * math.log(2.0)
    assert stability(base, [1.0, 1.0, 1.0, 4.0]) == pytest.approx(expected, abs=1e-12)
    assert stability(base, [1.0, 1.0, 1.0, 4.0]) == pytest.approx(0.274653, abs=1e-6)
    # an empty bin counts as a share of 1e-4, not 0 (else the index is infinite)
    empty = 0.5 * math.log(1.0 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert stability(base, [1.0, 1.0, 2.0, np.nan]) == pytest.approx(empty, abs=1e-12)
    assert stability(base, [3.0, 1.0, 4.0, 2.0]) == 0.0
    assert math.isnan(stability(base, [np.nan])) and math.isnan(stability(None, [1.0]))
    assert baseline_bins([np.nan]) is None


def test_psi_of_deciles_is_the_score_psi() -> None:
    rng = np.random.default_rng(3)
    e, a = rng.normal(0, 1, 4000), rng.normal(0.3, 1.2, 3000)
    assert stability(baseline_bins(e), a) == pytest.approx(population_stability(e, a))
    assert stability(baseline_bins(e), rng.normal(0, 1, 4000)) < 0.01


def test_drift_table_per_indicator(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    train = np.column_stack([rng.normal(0, 1, 2000), rng.integers(0, 2, 2000)])
    base = drift_baseline(24270, ["kwh_trend", "kwh_trend_missing"], train.astype(np.float64))
    same = np.column_stack([rng.normal(0, 1, 1000), rng.integers(0, 2, 1000)])
    moved = np.column_stack([rng.normal(1, 1, 1000), np.ones(1000)])
    quiet, shifted = drift_table(base, same), drift_table(base, moved)
    assert quiet["indicator"].tolist() == ["kwh_trend", "kwh_trend_missing"]
    assert (quiet["psi"] < 0.02).all() and (shifted["psi"] > 0.25).all()
    assert quiet["baseline_rows"].tolist() == [2000, 2000]
    assert quiet["period_rows"].tolist() == [1000, 1000]
    with pytest.raises(ValueError, match="columns"):
        drift_table(base, same[:, :1])
    write_drift(tmp_path / "d" / "drift.csv", shifted)
    back = pd.read_csv(tmp_path / "d" / "drift.csv")
    assert list(back.columns) == ["indicator", "psi", "baseline_rows", "period_rows"]
    np.testing.assert_allclose(back["psi"], shifted["psi"], atol=1e-6)
