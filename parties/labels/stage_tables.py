"""Feature tables of the paper's three stage models, each built at the month its stage implies.

What it does: for every borrower labelled at the as-of month (overdue in the ``horizon``
months after it), finds its current loan (the latest one started on or before the as-of
month) and builds both parties' indicators at three months of that loan's life:

- ``pre``: the month the loan starts (what is known when it is granted);
- ``in``: halfway between the start and the as-of month (during the loan);
- ``post``: the as-of month itself, just before the repayments of the label window fall
  due ("the closer to the time of default, the higher the prediction accuracy").

The label is the same in all three (overdue in the window after the as-of month), so the
three models differ only in how long before that window their indicators were observed.
Each stage keeps its indicators from ``stages.toml`` and is imputed on its own
(``impute_for_training``).

What it assumes: research use on data where one process holds both parties' raw records
(``gridcredit synth`` output); rows are the borrowers present in all three stage tables of
both parties, so the three models are compared on the same enterprises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.bank_indicators import BANK_INDICATORS, build_bank_panel, overdue_labels
from parties.labels.features import build_grid_features
from parties.labels.registry import build_table, impute_for_training
from parties.labels.schema import BankRaw, GridRaw, InputError, format_month
from parties.labels.stages import LoanStage, StageMap, load_stages, stage_indicators


@dataclass(frozen=True, slots=True)
class StageTables:
    """Trainer-ready grid and bank tables of one stage, and the months they were built at."""

    grid: pd.DataFrame
    bank: pd.DataFrame
    months: dict[str, int]  # enterprise ID -> month ordinal the stage's features are as of


def stage_months(raw: BankRaw, ids: np.ndarray, as_of: int) -> dict[LoanStage, pd.Series]:
    """Per borrower (index: ID), the month each stage's features are built at."""
    loans = raw.loans[raw.loans["start_month"] <= as_of]
    start = loans.groupby("ent_id")["start_month"].max().reindex(pd.Index(ids))
    start = start.astype(np.int64)
    return {LoanStage.PRE: start, LoanStage.IN: start + (as_of - start) // 2,
            LoanStage.POST: pd.Series(as_of, index=start.index, dtype=np.int64)}


def _at_months(months: pd.Series, build: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Each ID's row from the table built at its month (IDs absent there are dropped)."""
    parts = []
    for month, group in months.groupby(months):
        table = build[int(month)]
        parts.append(table[table["id"].isin(set(group.index))])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _grid_tables(raw: GridRaw, months: set[int]) -> dict[int, pd.DataFrame]:
    return {m: build_grid_features(raw, m).table for m in sorted(months)}


def _bank_tables(raw: BankRaw, months: set[int]) -> dict[int, pd.DataFrame]:
    out = {}
    for m in sorted(months):
        panel = build_bank_panel(raw, m)
        out[m] = build_table(BANK_INDICATORS, panel, panel.ids)
    return out


def build_stage_tables(grid_raw: GridRaw, bank_raw: BankRaw, as_of: int, horizon: int = 6,
                       overdue_days: int = 30, stages: StageMap | None = None,
                       ) -> dict[LoanStage, StageTables]:
    """The three stages' trainer-ready tables over the same labelled borrowers."""
    stage_map = stages if stages is not None else load_stages()
    panel = build_bank_panel(bank_raw, as_of)
    y = overdue_labels(bank_raw, panel.ids, as_of, horizon, overdue_days)
    labelled = panel.ids[~np.isnan(y)]
    if len(labelled) == 0:
        raise InputError(f"--as-of {format_month(as_of)}: no borrower has a repayment due in "
                         f"the {horizon} months after it, so none has a label")
    labels = pd.Series(y[~np.isnan(y)].astype(np.int64), index=pd.Index(labelled))
    months = stage_months(bank_raw, labelled, as_of)
    needed = {int(m) for s in months.values() for m in s.unique()}
    grid_built, bank_built = _grid_tables(grid_raw, needed), _bank_tables(bank_raw, needed)
    raw_tables = {s: (_at_months(months[s], grid_built), _at_months(months[s], bank_built))
                  for s in LoanStage}
    common = set(labels.index)
    for g, b in raw_tables.values():
        common &= set(g["id"]) & set(b["id"])
    order = sorted(common)
    if not order:
        raise InputError(f"--as-of {format_month(as_of)}: no labelled borrower has records of "
                         "both parties at every stage's month")
    out: dict[LoanStage, StageTables] = {}
    for stage, (g, b) in raw_tables.items():
        g = g.set_index("id").loc[order].reset_index()
        b = b.set_index("id").loc[order].reset_index()
        b.insert(1, "y", labels.loc[order].to_numpy())
        grid_cols = [c for c in stage_indicators("grid", stage, stage_map) if c in g.columns]
        bank_cols = [c for c in stage_indicators("bank", stage, stage_map) if c in b.columns]
        out[stage] = StageTables(impute_for_training(g[["id", *grid_cols]]),
                                 impute_for_training(b[["id", "y", *bank_cols]]),
                                 {i: int(months[stage].loc[i]) for i in order})
    return out
