"""The bank's indicator library (patent 001 claim 2: taxes, loans, amounts due) and label.

What it does: pivots the bank's raw tables at an as-of month into enterprise x month
matrices (:class:`BankPanel`), evaluates the registry :data:`BANK_INDICATORS` on them, and
derives the label: overdue (``days_overdue`` >= a threshold, 30 by default) on any repayment
due in the ``horizon`` months after the as-of month (6 by default).

What it assumes (point in time):
- The population is the bank's borrowers at the as-of month: enterprises with a loan that
  started on or before it. Only the label reads months after the as-of month.
- A repayment of month ``m`` falls due on the last day of ``m``; at the as-of month its days
  overdue are known only up to the as-of month's last day, and one still overdue then counts
  as unpaid.
- A tax window needs a tax row for every month in it (a missing month gives NaN, not 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.grid_indicators import pct_change, ratio
from parties.labels.panel import HISTORY, FloatMatrix, pivot
from parties.labels.registry import Indicator, Values, check_registry, from_function
from parties.labels.schema import BankRaw, month_end


@dataclass(frozen=True, slots=True)
class BankPanel:
    """The bank's data at an as-of month; matrices are ``(n, HISTORY)``, last column as-of."""

    as_of: int
    ids: npt.NDArray[np.object_]
    tax: FloatMatrix
    due: FloatMatrix  # sum over loans of the amount due per month
    paid: FloatMatrix  # amount repaid per month, as known at the as-of month
    overdue_days: FloatMatrix  # worst days overdue per month, as known at the as-of month
    loan_count: Values
    active_amount: Values
    months_since_loan: Values


def _positions(frame: pd.DataFrame, index: pd.Index, as_of: int) -> tuple[npt.NDArray[np.int64],
                                                                          npt.NDArray[np.int64],
                                                                          pd.Series]:
    keep = (frame["month"] > as_of - HISTORY) & (frame["month"] <= as_of)
    ent = index.get_indexer(frame["ent_id"])
    keep &= ent >= 0
    return ent[keep.to_numpy()], (frame["month"][keep] - as_of + HISTORY - 1).to_numpy(
        np.int64), keep


def _repayment_matrices(raw: BankRaw, index: pd.Index, as_of: int) -> dict[str, FloatMatrix]:
    rep = raw.repayments
    ent, col, keep = _positions(rep, index, as_of)
    rep = rep[keep]
    known = (month_end(np.array([as_of]))[0] - month_end(rep["month"].to_numpy())).astype(
        np.int64)
    days = np.minimum(rep["days_overdue"].to_numpy(np.int64), known).astype(np.float64)
    still_overdue = rep["days_overdue"].to_numpy(np.int64) > known
    paid = np.where(still_overdue, 0.0, rep["amount_paid"].to_numpy(np.float64))
    out = {}
    for name, values in (("due", rep["amount_due"].to_numpy(np.float64)), ("paid", paid)):
        m = np.zeros((len(index), HISTORY))
        np.add.at(m, (ent, col), values)
        out[name] = m
    worst = np.full((len(index), HISTORY), np.nan)
    np.fmax.at(worst, (ent, col), days)
    out["overdue_days"] = worst
    return out


def build_bank_panel(raw: BankRaw, as_of: int) -> BankPanel:
    """Pivot the bank's raw tables at ``as_of`` (month ordinal) for its borrowers then."""
    loans = raw.loans[raw.loans["start_month"] <= as_of]
    index = pd.Index(pd.unique(loans["ent_id"]))
    ent, col, keep = _positions(raw.taxes, index, as_of)
    tax = pivot(len(index), ent, col, raw.taxes["tax_amount"][keep].to_numpy(np.float64))
    rep = _repayment_matrices(raw, index, as_of)
    active = loans["start_month"] + loans["term_months"] > as_of
    by = loans.assign(active_amount=loans["amount"].where(active, 0.0)).groupby("ent_id")
    return BankPanel(
        as_of=as_of, ids=index.to_numpy(object), tax=tax, due=rep["due"], paid=rep["paid"],
        overdue_days=rep["overdue_days"],
        loan_count=by.size().reindex(index).to_numpy(np.float64),
        active_amount=by["active_amount"].sum().reindex(index).to_numpy(np.float64),
        months_since_loan=(as_of - by["start_month"].max()).reindex(index).to_numpy(np.float64),
    )


def overdue_labels(raw: BankRaw, ids: npt.NDArray[np.object_], as_of: int, horizon: int = 6,
                   overdue_days: int = 30) -> Values:
    """1.0 if any repayment due in ``(as_of, as_of + horizon]`` reached ``overdue_days``,
    0.0 if repayments fell due there and none did, NaN if none fell due (no label)."""
    rep = raw.repayments
    window = rep[(rep["month"] > as_of) & (rep["month"] <= as_of + horizon)]
    worst = window.groupby("ent_id")["days_overdue"].max().reindex(pd.Index(ids))
    return np.where(worst.isna(), np.nan, (worst >= overdue_days).astype(np.float64))


def _tax(p: BankPanel, months: int, offset: int = 0) -> FloatMatrix:
    return p.tax[:, HISTORY - offset - months:HISTORY - offset]


def _complete(values: Values, *rows: FloatMatrix) -> Values:
    ok = np.ones(len(values), dtype=bool)
    for r in rows:
        ok &= ~np.isnan(r).any(axis=1)
    return np.where(ok, values, np.nan)


def tax_mean_12m(p: BankPanel) -> Values:
    """Mean monthly tax amount over the last 12 months."""
    w = _tax(p, 12)
    return _complete(w.mean(axis=1), w)


def tax_yoy_12m_pct(p: BankPanel) -> Values:
    """Tax of the last 12 months vs the 12 months before, %."""
    new, old = _tax(p, 12), _tax(p, 12, 12)
    return _complete(pct_change(new.sum(axis=1), old.sum(axis=1)), new, old)


def tax_h2h_6m_pct(p: BankPanel) -> Values:
    """Tax of the last 6 months vs the 6 months before, %."""
    new, old = _tax(p, 6), _tax(p, 6, 6)
    return _complete(pct_change(new.sum(axis=1), old.sum(axis=1)), new, old)


def tax_last_3m_vs_mean_12m(p: BankPanel) -> Values:
    """Tax of the last 3 months / (3 x the 12-month monthly mean)."""
    last = _tax(p, 3)
    return _complete(ratio(last.sum(axis=1), 3.0 * tax_mean_12m(p)), last)


def loan_count(p: BankPanel) -> Values:
    """Number of loans started on or before the as-of month."""
    return p.loan_count.copy()


def loan_amount_active(p: BankPanel) -> Values:
    """Principal of the loans still running at the as-of month."""
    return p.active_amount.copy()


def amount_due_month(p: BankPanel) -> Values:
    """Amount due in the as-of month over all loans."""
    return p.due[:, -1].copy()


def months_since_last_loan(p: BankPanel) -> Values:
    """Months from the start of the latest loan to the as-of month."""
    return p.months_since_loan.copy()


def overdue_count_12m(p: BankPanel) -> Values:
    """Repayment months of the last 12 with any days overdue (as known at the as-of month)."""
    return np.asarray((np.nan_to_num(p.overdue_days[:, -12:]) > 0).sum(axis=1), np.float64)


def overdue_max_days_12m(p: BankPanel) -> Values:
    """Worst days overdue over the last 12 months (0 if none)."""
    return np.asarray(np.nan_to_num(p.overdue_days[:, -12:]).max(axis=1), np.float64)


def overdue_30_count_24m(p: BankPanel) -> Values:
    """Repayment months of the last 24 that reached 30 days overdue."""
    return np.asarray((np.nan_to_num(p.overdue_days) >= 30).sum(axis=1), np.float64)


def repaid_ratio_12m(p: BankPanel) -> Values:
    """Amount repaid / amount due over the last 12 months (NaN if nothing was due)."""
    return ratio(p.paid[:, -12:].sum(axis=1), p.due[:, -12:].sum(axis=1))


def _ind(name: str, fn: Callable[[BankPanel], Values], window: int,
         source: str) -> Indicator[BankPanel]:
    return from_function(name, fn, window, source)


BANK_INDICATORS: tuple[Indicator[BankPanel], ...] = (
    _ind("tax_mean_12m", tax_mean_12m, 12, "patent 001 claim 2: monthly tax amount"),
    _ind("tax_yoy_12m_pct", tax_yoy_12m_pct, 24, "patent 001 claim 2: tax trend"),
    _ind("tax_h2h_6m_pct", tax_h2h_6m_pct, 12, "patent 001 claim 2: tax trend"),
    _ind("tax_last_3m_vs_mean_12m", tax_last_3m_vs_mean_12m, 12, "patent 001: tax level"),
    _ind("loan_count", loan_count, 0, "patent 001 claim 2: loan records"),
    _ind("loan_amount_active", loan_amount_active, 0, "patent 001 claim 2: loan amounts"),
    _ind("amount_due_month", amount_due_month, 1, "patent 001 claim 2: amount due"),
    _ind("months_since_last_loan", months_since_last_loan, 0, "added: loan recency"),
    _ind("overdue_count_12m", overdue_count_12m, 12, "added: repayment history"),
    _ind("overdue_max_days_12m", overdue_max_days_12m, 12, "added: repayment history"),
    _ind("overdue_30_count_24m", overdue_30_count_24m, 24, "added: repayment history"),
    _ind("repaid_ratio_12m", repaid_ratio_12m, 12, "added: repayment history"),
)
BANK_BY_NAME = check_registry(BANK_INDICATORS)
