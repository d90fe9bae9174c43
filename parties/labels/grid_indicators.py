"""The grid's indicator library (paper Tables 3-6, patent 002's warning indicators).

What it does: vectorized functions over a :class:`~parties.labels.panel.GridPanel` and the
registry :data:`GRID_INDICATORS` that names and documents them.

What it assumes:
- A window of ``k`` months is the ``k`` months ending at the as-of month. A window statistic is
  NaN when the account has been connected for fewer months than the window needs or a usage
  month inside it has no reading ("no statistics for less than N months", paper Table 6).
- Percentages are ``100 * (new - old) / old``, rounded to 9 decimals so that values a user
  types as boundaries (10 %, -20 %) compare exactly; ``old == 0`` gives NaN (0 when new is 0).
- Industry figures are taken over all enterprises of the same ``industry_code``; the rank
  is within the same province and industry (paper Table 6); 1 is the largest user.
- Standard deviations are population ones (``ddof=0``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.panel import HISTORY, FloatMatrix, GridPanel, IntVector
from parties.labels.registry import Indicator, Values, check_registry, from_function


def window(m: FloatMatrix, months: int, offset: int = 0) -> FloatMatrix:
    """Columns of the ``months`` months ending ``offset`` months before the as-of month."""
    end = HISTORY - offset
    return m[:, end - months:end]


def require(panel: GridPanel, values: Values, need: int, *rows: FloatMatrix) -> Values:
    """NaN where connected < ``need`` months or any cell of ``rows`` is missing."""
    ok = panel.connected >= need
    for r in rows:
        ok &= ~np.isnan(r).any(axis=1)
    return np.where(ok, values, np.nan)


def pct_change(new: Values, old: Values) -> Values:
    """``100 * (new - old) / old``; NaN if old is 0 and new is not, 0 if both are 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.round(100.0 * (new - old) / old, 9)
    return np.where((old == 0) & (new == 0), 0.0, np.where(old == 0, np.nan, pct))


def ratio(num: Values, den: Values) -> Values:
    """``num / den`` with NaN where ``den`` is 0 or missing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def group_mean(values: Values, groups: IntVector) -> Values:
    """Mean of the non-missing ``values`` of each group, broadcast back to every member."""
    ok = ~np.isnan(values)
    size = int(groups.max()) + 1 if len(groups) else 0
    sums = np.bincount(groups[ok], weights=values[ok], minlength=size)
    counts = np.bincount(groups[ok], minlength=size)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means[groups]


# --- usage level and dispersion (paper Table 3) -------------------------------------------


def _use12(p: GridPanel) -> FloatMatrix:
    return window(p.usage, 12)


def use_last_month(p: GridPanel) -> Values:
    """Use in the as-of month."""
    return window(p.usage, 1)[:, 0].copy()


def use_max_12m(p: GridPanel) -> Values:
    """Largest monthly use in the last 12 months."""
    w = _use12(p)
    return require(p, np.nanmax(np.where(np.isnan(w), -np.inf, w), axis=1), 12, w)


def use_min_12m(p: GridPanel) -> Values:
    """Smallest monthly use in the last 12 months."""
    w = _use12(p)
    return require(p, np.nanmin(np.where(np.isnan(w), np.inf, w), axis=1), 12, w)


def use_mean_12m(p: GridPanel) -> Values:
    """Mean monthly use in the last 12 months."""
    w = _use12(p)
    return require(p, w.mean(axis=1), 12, w)


def use_std_12m(p: GridPanel) -> Values:
    """Population standard deviation of monthly use in the last 12 months."""
    w = _use12(p)
    return require(p, w.std(axis=1), 12, w)


def use_industry_std_12m(p: GridPanel) -> Values:
    """Std over the last 12 months of the industry's mean monthly use (an industry value)."""
    w = _use12(p)
    size = int(p.industry.max()) + 1 if p.n else 0
    series = np.empty((size, 12))
    for j in range(12):
        ok = ~np.isnan(w[:, j])
        sums = np.bincount(p.industry[ok], weights=w[ok, j], minlength=size)
        counts = np.bincount(p.industry[ok], minlength=size)
        series[:, j] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return np.asarray(series.std(axis=1)[p.industry], dtype=np.float64)


def use_growth_avg_12m(p: GridPanel) -> Values:
    """Mean of the 11 month-on-month growth rates (%) inside the last 12 months (SCORE_INREA)."""
    w = _use12(p)
    rates = pct_change(w[:, 1:], w[:, :-1])
    return require(p, rates.mean(axis=1), 12, w, rates)


def use_last_vs_mean_12m(p: GridPanel) -> Values:
    """Use in the as-of month / mean monthly use of the last 12 months."""
    return require(p, ratio(use_last_month(p), use_mean_12m(p)), 12)


def use_utilization_12m(p: GridPanel) -> Values:
    """Mean monthly use of the last 12 months / (capacity_kva * 730 h): the load factor."""
    return ratio(use_mean_12m(p), p.capacity_kva * 730.0)


def use_rank_pct_12m(p: GridPanel) -> Values:
    """Rank of 12-month total use within province+industry (1 = largest) / group size * 100."""
    total = pd.Series(require(p, _use12(p).sum(axis=1), 12, _use12(p)))
    by = total.groupby(p.province_industry)
    rank = by.rank(ascending=False, method="min")
    return np.asarray((rank / by.transform("count") * 100.0).to_numpy(np.float64))


# --- usage trend (paper Tables 4, 6, 7) ---------------------------------------------------


def _sum_change(p: GridPanel, months: int, back: int) -> Values:
    new, old = window(p.usage, months), window(p.usage, months, offset=back)
    return require(p, pct_change(new.sum(axis=1), old.sum(axis=1)), months + back, new, old)


def use_yoy_3m_pct(p: GridPanel) -> Values:
    """Last 3 months' total use vs the same 3 months a year earlier, %."""
    return _sum_change(p, 3, 12)


def use_yoy_12m_pct(p: GridPanel) -> Values:
    """Last 12 months' total use vs the 12 months before, %."""
    return _sum_change(p, 12, 12)


def use_mom_3m_pct(p: GridPanel) -> Values:
    """Last 3 months' total use vs the previous 3 months, %."""
    return _sum_change(p, 3, 3)


# Growth buckets (lower bound exclusive, upper inclusive) and weights of paper Table 6.
YOY_GROWTH_EDGES = (0.0, 10.0, 20.0, 50.0, 100.0)
YOY_GROWTH_WEIGHTS = (0.1, 0.2, 0.5, 0.8, 2.0)
YOY_DROP_EDGES = (0.0, 10.0, 20.0, 50.0, 80.0)
YOY_DROP_WEIGHTS = (-0.1, -0.2, -0.5, -0.8, -1.0)


def yoy_bucket_weight(growth_pct: Values) -> Values:
    """Weight of each month's year-on-year growth (%) by the paper's buckets.

    Growth in (0, 10] scores +0.1, (10, 20] +0.2, (20, 50] +0.5, (50, 100] +0.8, above 100
    (including growth from zero) +2; a drop in (0, 10] scores -0.1, (10, 20] -0.2, (20, 50]
    -0.5, (50, 80] -0.8, (80, 100] -1; no change scores 0. Each bucket holds its upper bound.
    """
    g = np.asarray(growth_pct, dtype=np.float64)
    up = np.searchsorted(np.array(YOY_GROWTH_EDGES), g, side="left")  # 1..5 for g > 0
    down = np.searchsorted(np.array(YOY_DROP_EDGES), -g, side="left")  # 1..5 for g < 0
    score = np.zeros_like(g)
    growth_w, drop_w = np.array((0.0, *YOY_GROWTH_WEIGHTS)), np.array((0.0, *YOY_DROP_WEIGHTS))
    score = np.where(g > 0, growth_w[np.clip(up, 0, 5)], score)
    score = np.where(g < 0, drop_w[np.clip(down, 0, 5)], score)
    return np.where(np.isnan(g), np.nan, score)


def use_yoy_index_12m(p: GridPanel) -> Values:
    """Sum over the last 12 months of each month's year-on-year bucket weight (Table 6)."""
    new, old = window(p.usage, 12), window(p.usage, 12, offset=12)
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.round(100.0 * (new - old) / old, 9)
    growth = np.where((old == 0) & (new == 0), 0.0, growth)  # 0 -> 0: unchanged; x/0: +inf
    return require(p, yoy_bucket_weight(growth).sum(axis=1), 24, new, old)


# --- bills and payment behaviour (paper Tables 4, 7; patent 001 claim 2) -------------------


def _late12(p: GridPanel) -> npt.NDArray[np.bool_]:
    return np.nan_to_num(window(p.late_days, 12)) > 0


def late_count_12m(p: GridPanel) -> Values:
    """Number of bills of the last 12 months paid late (or still open past their due date)."""
    return require(p, _late12(p).sum(axis=1).astype(np.float64), 12)


def late_amount_12m(p: GridPanel) -> Values:
    """Principal (amount due) of the bills of the last 12 months that were paid late."""
    due = np.nan_to_num(window(p.due, 12))
    return require(p, np.where(_late12(p), due, 0.0).sum(axis=1), 12)


def late_days_12m(p: GridPanel) -> Values:
    """Late days summed over the bills of the last 12 months (120 + 90 = 210, Table 7)."""
    return require(p, np.nan_to_num(window(p.late_days, 12)).sum(axis=1), 12)


def late_fee_12m(p: GridPanel) -> Values:
    """Liquidated damages (late fees) charged on the bills of the last 12 months."""
    return require(p, np.nan_to_num(window(p.late_fee, 12)).sum(axis=1), 12)


def current_arrears(p: GridPanel) -> Values:
    """Accumulated arrears recorded at the end of the as-of month."""
    return window(p.arrears, 1)[:, 0].copy()


def last_default_days(p: GridPanel) -> Values:
    """Late days of the most recent late bill up to the as-of month (0 if never late)."""
    return p.last_default_days.copy()


def _bill_mean(p: GridPanel, m: FloatMatrix) -> Values:
    w = window(m, 12)
    return require(p, w.mean(axis=1), 12, w)


def bill_due_vs_industry_12m(p: GridPanel) -> Values:
    """Mean monthly amount due of the last 12 months / its industry mean (SCORE_LEVEL)."""
    own = _bill_mean(p, p.due)
    return ratio(own, group_mean(own, p.industry))


def bill_paid_vs_industry_12m(p: GridPanel) -> Values:
    """Mean monthly amount paid of the last 12 months / its industry mean."""
    own = _bill_mean(p, p.paid)
    return ratio(own, group_mean(own, p.industry))


def bill_fluct_12m(p: GridPanel) -> Values:
    """Coefficient of variation (std / mean) of the monthly amount due, last 12 months."""
    w = window(p.due, 12)
    return require(p, ratio(w.std(axis=1), w.mean(axis=1)), 12, w)


def cost_per_kwh_vs_industry_12m(p: GridPanel) -> Values:
    """12-month amount due per kWh / the industry mean of the same (tariff level)."""
    due, use = window(p.due, 12), window(p.usage, 12)
    own = require(p, ratio(due.sum(axis=1), use.sum(axis=1)), 12, due, use)
    return ratio(own, group_mean(own, p.industry))


# --- events (paper Tables 3, 4, 7; patent 002 inspection data) -----------------------------


def _events(kind: str, months: int, amount: bool) -> Indicator[GridPanel]:
    what = "amount" if amount else "count"

    def compute(p: GridPanel) -> Values:
        m = (p.event_amount if amount else p.event_count)[kind]
        return require(p, window(m, months).sum(axis=1), months)

    compute.__name__ = f"{kind}_{what}_{months}m"
    return Indicator(f"{kind}_{what}_{months}m",
                     f"{kind} events' {what} in the last {months} months", months,
                     "paper Tables 3-4, 7", compute)


# --- master data and pre-loan shell scores (paper Tables 5, 6) -----------------------------


def account_age_months(p: GridPanel) -> Values:
    """Months since the account opened, counting the as-of month."""
    return p.connected.astype(np.float64)


def capacity_kva(p: GridPanel) -> Values:
    """Contracted capacity (kVA) from the customer master data."""
    return p.capacity_kva.copy()


def score_diff(p: GridPanel) -> Values:
    """SCORE_DIFF: (max - min) / mean of monthly use, last 12 months."""
    return ratio(use_max_12m(p) - use_min_12m(p), use_mean_12m(p))


def score_vola(p: GridPanel) -> Values:
    """SCORE_VOLA: own 12-month use std / the industry's 12-month use std."""
    return ratio(use_std_12m(p), use_industry_std_12m(p))


def _ind(name: str, fn: Callable[[GridPanel], Values], window_months: int, source: str,
         model_feature: bool = True) -> Indicator[GridPanel]:
    return from_function(name, fn, window_months, source, model_feature)


GRID_INDICATORS: tuple[Indicator[GridPanel], ...] = (
    _ind("use_last_month", use_last_month, 1, "paper Table 4"),
    _ind("use_max_12m", use_max_12m, 12, "paper Table 3"),
    _ind("use_min_12m", use_min_12m, 12, "paper Table 3"),
    _ind("use_mean_12m", use_mean_12m, 12, "paper Table 3"),
    _ind("use_std_12m", use_std_12m, 12, "paper Table 3"),
    _ind("use_industry_std_12m", use_industry_std_12m, 12, "paper Table 3", False),
    _ind("use_growth_avg_12m", use_growth_avg_12m, 12, "paper Tables 3, 5 (SCORE_INREA)"),
    _ind("use_last_vs_mean_12m", use_last_vs_mean_12m, 12, "paper Table 4"),
    _ind("use_utilization_12m", use_utilization_12m, 12, "added: load factor"),
    _ind("use_rank_pct_12m", use_rank_pct_12m, 12, "paper Tables 4, 6, 7"),
    _ind("use_yoy_3m_pct", use_yoy_3m_pct, 15, "paper Tables 6, 7"),
    _ind("use_yoy_12m_pct", use_yoy_12m_pct, 24, "paper Tables 6, 7"),
    _ind("use_mom_3m_pct", use_mom_3m_pct, 6, "paper Tables 6, 7"),
    # The "12 months vs the previous 12 months" equals use_yoy_12m_pct on monthly
    # data, so it is kept for Table 7 but not duplicated in model tables.
    _ind("use_mom_12m_pct", use_yoy_12m_pct, 24, "paper Tables 6, 7", False),
    _ind("use_yoy_index_12m", use_yoy_index_12m, 24, "paper Tables 4, 6, 7"),
    _ind("late_count_12m", late_count_12m, 12, "paper Tables 4, 7"),
    _ind("late_amount_12m", late_amount_12m, 12, "paper Table 7"),
    _ind("late_days_12m", late_days_12m, 12, "paper Table 7"),
    _ind("late_fee_12m", late_fee_12m, 12, "paper Table 4"),
    _ind("current_arrears", current_arrears, 1, "paper Tables 6, 7"),
    _ind("last_default_days", last_default_days, 0, "paper Table 4"),
    _ind("bill_due_vs_industry_12m", bill_due_vs_industry_12m, 12,
         "paper Tables 3-5 (SCORE_LEVEL)"),
    _ind("bill_paid_vs_industry_12m", bill_paid_vs_industry_12m, 12, "paper Table 4"),
    _ind("bill_fluct_12m", bill_fluct_12m, 12, "paper Table 4"),
    _ind("cost_per_kwh_vs_industry_12m", cost_per_kwh_vs_industry_12m, 12, "paper Table 4"),
    *(_events(kind, months, amount) for kind in ("theft", "breach") for months in (6, 12)
      for amount in (False, True)),
    _events("outage", 12, False),
    _events("inspection", 12, False),
    _ind("account_age_months", account_age_months, 0, "paper Tables 4, 6"),
    _ind("capacity_kva", capacity_kva, 0, "patent 002: reserved customer information"),
    _ind("score_diff", score_diff, 12, "paper Table 5 (SCORE_DIFF)"),
    _ind("score_vola", score_vola, 12, "paper Table 5 (SORE_VOLA)"),
)
GRID_BY_NAME = check_registry(GRID_INDICATORS)
