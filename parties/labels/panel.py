"""The grid's raw tables pivoted to enterprise x month matrices at an as-of month.

What it does: keeps the 24 months ending at the as-of month (the longest window any
indicator needs: a 12-month year-on-year comparison) and pivots usage, bills and event
counts into ``(n_enterprises, 24)`` float matrices, column 23 being the as-of month.

What it assumes (point in time: nothing after the as-of month is used):
- Enterprises whose account opens after the as-of month do not exist yet and are left out.
- Usage, bill and event rows of months after the as-of month are dropped before anything
  else is computed.
- A bill is *settled* at the as-of month only if its ``paid_date`` is on or before the last
  day of that month; otherwise it is still open: nothing paid, no late fee charged yet, and
  late days counted from ``due_date`` to the as-of month's last day.
- ``arrears_after`` is the account's accumulated arrears recorded at the end of the bill's
  month, so it is already a point-in-time snapshot.
- A month without a usage row is missing (NaN), never zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.schema import EVENT_TYPES, GridRaw, month_end

HISTORY = 24
FloatMatrix = npt.NDArray[np.float64]
IntVector = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class GridPanel:
    """Everything the grid indicators read, aligned on one enterprise order.

    Matrices are ``(n, HISTORY)``; column ``HISTORY - 1`` is the as-of month.
    """

    as_of: int
    ids: npt.NDArray[np.object_]
    industry: IntVector  # factorized industry_code
    province_industry: IntVector  # factorized (province, industry_code)
    connected: IntVector  # months connected up to and including the as-of month
    capacity_kva: FloatMatrix  # (n,)
    usage: FloatMatrix
    due: FloatMatrix
    paid: FloatMatrix
    late_days: FloatMatrix
    late_fee: FloatMatrix
    arrears: FloatMatrix
    event_count: dict[str, FloatMatrix]
    event_amount: dict[str, FloatMatrix]
    last_default_days: FloatMatrix  # (n,)

    @property
    def n(self) -> int:
        """Number of enterprises."""
        return len(self.ids)


def _rows(frame: pd.DataFrame, index: pd.Index, first: int, last: int) -> tuple[IntVector,
                                                                                IntVector,
                                                                                pd.Series]:
    """Positions (enterprise, column) of the rows whose month is in ``[first, last]``."""
    keep = (frame["month"] >= first) & (frame["month"] <= last)
    ent = index.get_indexer(frame["ent_id"])
    keep &= ent >= 0
    return (ent[keep.to_numpy()].astype(np.int64),
            (frame["month"][keep] - first).to_numpy(np.int64), keep)


def pivot(n: int, ent: IntVector, col: IntVector, values: npt.ArrayLike) -> FloatMatrix:
    """An ``(n, HISTORY)`` matrix with ``values`` at ``(ent, col)`` and NaN elsewhere."""
    out = np.full((n, HISTORY), np.nan)
    out[ent, col] = values
    return out


def _bill_matrices(raw: GridRaw, index: pd.Index, as_of: int) -> dict[str, FloatMatrix]:
    bills = raw.bills[raw.bills["month"] <= as_of]
    end = np.datetime64(month_end(np.array([as_of]))[0], "ns")
    settled = (bills["paid_date"].notna() & (bills["paid_date"] <= end)).to_numpy()
    open_days = ((end - bills["due_date"].to_numpy("datetime64[ns]"))
                 // np.timedelta64(1, "D")).clip(min=0)
    late = np.where(settled, bills["late_days"].to_numpy(np.float64), open_days)
    pit = bills.assign(
        paid=np.where(settled, bills["amount_paid"].to_numpy(np.float64), 0.0),
        late=late,
        fee=np.where(settled, bills["late_fee"].to_numpy(np.float64), 0.0),
    )
    ent, col, keep = _rows(pit, index, as_of - HISTORY + 1, as_of)
    kept = pit[keep]
    out = {name: pivot(len(index), ent, col, kept[src].to_numpy(np.float64))
           for name, src in (("due", "amount_due"), ("paid", "paid"), ("late_days", "late"),
                             ("late_fee", "fee"), ("arrears", "arrears_after"))}
    defaults = pit[pit["late"] > 0].sort_values("month").groupby("ent_id")["late"].last()
    has_bill = index.isin(pd.unique(bills["ent_id"].to_numpy(object)))
    last = defaults.reindex(index).to_numpy(np.float64)
    out["last_default_days"] = np.where(has_bill & np.isnan(last), 0.0, last)
    return out


def _event_matrices(raw: GridRaw, index: pd.Index,
                    as_of: int) -> tuple[dict[str, FloatMatrix], dict[str, FloatMatrix]]:
    dates = raw.events["date"]
    events = raw.events.assign(month=(dates.dt.year * 12 + dates.dt.month - 1).astype(np.int64))
    ent, col, keep = _rows(events, index, as_of - HISTORY + 1, as_of)
    kinds = events["type"][keep].to_numpy()
    amounts = events["amount"][keep].to_numpy(np.float64)
    counts, sums = {}, {}
    for kind in EVENT_TYPES:
        sel = kinds == kind
        c = np.zeros((len(index), HISTORY))
        a = np.zeros((len(index), HISTORY))
        np.add.at(c, (ent[sel], col[sel]), 1.0)
        np.add.at(a, (ent[sel], col[sel]), amounts[sel])
        counts[kind], sums[kind] = c, a
    return counts, sums


def build_grid_panel(raw: GridRaw, as_of: int) -> GridPanel:
    """Pivot the grid's raw tables to the matrices the indicators read.

    Parameters
    ----------
    raw
        Validated raw tables (:func:`parties.labels.schema.load_grid`).
    as_of
        Month ordinal; rows after it are ignored.

    Returns
    -------
    GridPanel
        One row per enterprise whose account opened on or before the as-of month.
    """
    open_date = raw.enterprises["account_open_date"]
    open_month = (open_date.dt.year * 12 + open_date.dt.month - 1).to_numpy(np.int64)
    ents = raw.enterprises[open_month <= as_of]
    open_month = open_month[open_month <= as_of]
    index = pd.Index(ents["ent_id"])
    ent, col, keep = _rows(raw.usage, index, as_of - HISTORY + 1, as_of)
    usage = pivot(len(index), ent, col, raw.usage["kwh"][keep].to_numpy(np.float64))
    bills = _bill_matrices(raw, index, as_of)
    counts, sums = _event_matrices(raw, index, as_of)
    province_industry = ents["province"] + "|" + ents["industry_code"]
    return GridPanel(
        as_of=as_of,
        ids=ents["ent_id"].to_numpy(object),
        industry=pd.factorize(ents["industry_code"])[0].astype(np.int64),
        province_industry=pd.factorize(province_industry)[0].astype(np.int64),
        connected=(as_of - open_month + 1).astype(np.int64),
        capacity_kva=ents["capacity_kva"].to_numpy(np.float64),
        usage=usage, due=bills["due"], paid=bills["paid"], late_days=bills["late_days"],
        late_fee=bills["late_fee"], arrears=bills["arrears"], event_count=counts,
        event_amount=sums, last_default_days=bills["last_default_days"],
    )
