"""The year-on-year bucket index of paper Table 6 on crafted growth rates and series."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from parties.labels.grid_indicators import yoy_bucket_weight

BOUNDARIES = [
    (0.0, 0.0), (1e-9, 0.1), (10.0, 0.1), (10.000001, 0.2), (20.0, 0.2), (20.5, 0.5),
    (50.0, 0.5), (50.1, 0.8), (100.0, 0.8), (100.01, 2.0), (math.inf, 2.0),
    (-1e-9, -0.1), (-10.0, -0.1), (-10.5, -0.2), (-20.0, -0.2), (-20.1, -0.5), (-50.0, -0.5),
    (-50.1, -0.8), (-80.0, -0.8), (-80.1, -1.0), (-100.0, -1.0),
]


@pytest.mark.parametrize(("growth", "weight"), BOUNDARIES)
def test_each_bucket_holds_its_upper_bound(growth: float, weight: float) -> None:
    assert yoy_bucket_weight(np.array([growth]))[0] == weight


def test_missing_growth_stays_missing() -> None:
    assert math.isnan(yoy_bucket_weight(np.array([np.nan]))[0])


def test_index_on_crafted_series_from_exact_percentages() -> None:
    """Twelve months against a flat previous year of 100: every bucket once, sums exactly."""
    from parties.labels.grid_indicators import use_yoy_index_12m
    from parties.labels.panel import HISTORY

    current = [110, 120, 150, 200, 201, 95, 90, 50, 20, 19, 100, 0]
    weights = [0.1, 0.2, 0.5, 0.8, 2.0, -0.1, -0.1, -0.5, -0.8, -1.0, 0.0, -1.0]
    usage = np.array([[100.0] * 12 + current])
    panel = SimpleNamespace(usage=usage, connected=np.array([HISTORY]))  # all the index reads
    assert use_yoy_index_12m(panel)[0] == pytest.approx(sum(weights))  # type: ignore[arg-type]
    panel.connected = np.array([HISTORY - 1])  # one month short of two years
    assert math.isnan(use_yoy_index_12m(panel)[0])  # type: ignore[arg-type]
