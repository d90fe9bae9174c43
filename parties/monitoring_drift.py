"""Post-loan monitoring: drift of each model indicator against the training period (no I/O
beyond writing a party's own drift table).

The population stability index of one variable, its values at the baseline (the training
period) being ``e`` and at a period being ``a``:

1. edges: the deciles of ``e`` (inner edges, duplicates merged, so a variable with few
   distinct values gets fewer bins);
2. p_e, p_a: each bin's share of ``e`` and of ``a`` (NaN ignored), floored at 1e-4 so an
   empty bin does not make the index infinite;
3. PSI = sum over bins of (p_a - p_e) ln(p_a / p_e); below 0.1 stable, above 0.25 shifted.

Each party runs this on its own model indicators, as the model sees them
(:func:`parties.monitoring.model_matrix`): the baseline keeps only edges and shares, and
nothing here leaves the party (README, "What each party learns").
"""

from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.model import atomic_write_text

PSI_BINS = 10
FLOOR = 1e-4
DRIFT_COLUMNS = ["indicator", "psi", "baseline_rows", "period_rows"]


@dataclass(frozen=True)
class Bins:
    """A baseline variable: inner bin edges, each bin's share (floored) and its row count."""

    edges: npt.NDArray[np.float64]
    shares: npt.NDArray[np.float64]
    rows: int


def _shares(edges: npt.NDArray[np.float64],
            values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    counts = np.bincount(np.searchsorted(edges, values, side="right"),
                         minlength=len(edges) + 1)
    return np.maximum(counts / len(values), FLOOR)


def baseline_bins(expected: npt.ArrayLike, bins: int = PSI_BINS) -> Bins | None:
    """Steps 1-2 for the baseline values (None if none is a number)."""
    e = np.asarray(expected, dtype=np.float64)
    e = e[~np.isnan(e)]
    if not len(e):
        return None
    edges = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1)[1:-1]))
    return Bins(edges, _shares(edges, e), len(e))


def stability(base: Bins | None, actual: npt.ArrayLike) -> float:
    """Step 3: the PSI of ``actual`` against ``base``; NaN if either has no number."""
    a = np.asarray(actual, dtype=np.float64)
    a = a[~np.isnan(a)]
    if base is None or not len(a):
        return math.nan
    pa = _shares(base.edges, a)
    return float(np.sum((pa - base.shares) * np.log(pa / base.shares)))


@dataclass(frozen=True)
class DriftBaseline:
    """A party's model indicators at the training period, binned (one :class:`Bins` each)."""

    month: int
    names: tuple[str, ...]
    bins: tuple[Bins | None, ...]


def drift_baseline(month: int, names: list[str],
                   x: npt.NDArray[np.float64]) -> DriftBaseline:
    """Bin each column of the model matrix ``x`` (columns named ``names``) at ``month``."""
    return DriftBaseline(month, tuple(names),
                         tuple(baseline_bins(x[:, j]) for j in range(len(names))))


def drift_table(base: DriftBaseline, x: npt.NDArray[np.float64]) -> pd.DataFrame:
    """PSI of each model indicator of a period's matrix ``x`` against ``base``."""
    if x.shape[1] != len(base.names):
        raise ValueError(f"drift: {x.shape[1]} columns, the baseline has {len(base.names)}")
    return pd.DataFrame({
        "indicator": list(base.names),
        "psi": [stability(b, x[:, j]) for j, b in enumerate(base.bins)],
        "baseline_rows": [0 if b is None else b.rows for b in base.bins],
        "period_rows": [int(np.sum(~np.isnan(x[:, j]))) for j in range(len(base.names))],
    }, columns=DRIFT_COLUMNS)


def write_drift(path: pathlib.Path, table: pd.DataFrame) -> None:
    """Write a drift table as CSV, atomically."""
    atomic_write_text(path, table.to_csv(index=False, float_format="%.6f"))
