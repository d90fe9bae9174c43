"""Feature tables of both parties at an as-of month, as ``gridcredit features build`` writes.

What it does: validates nothing itself (see :mod:`parties.labels.schema`); pivots a party's
raw tables at the as-of month, evaluates its indicator registry and returns the table
(``id`` first; the bank's also carries the label ``y``) with its data dictionary.

What it assumes: values stay missing (NaN) where the source documents say "no statistic";
:func:`parties.labels.registry.impute_for_training` is the separate, explicit step that makes
a trainer-ready table. The bank's rows without any repayment due in the label window have no
label and are left out; their number is returned, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.bank_indicators import BANK_INDICATORS, build_bank_panel, overdue_labels
from parties.labels.grid_indicators import GRID_INDICATORS
from parties.labels.panel import GridPanel, build_grid_panel
from parties.labels.registry import Indicator, build_table, data_dictionary
from parties.labels.schema import BankRaw, GridRaw
from parties.labels.shell import ShellModel, load_shell_model, shell_indicator


@dataclass(frozen=True, slots=True)
class FeatureBuild:
    """A feature table, its data dictionary and how many enterprises were left out."""

    table: pd.DataFrame
    dictionary: pd.DataFrame
    indicators: tuple[Indicator[Any], ...]
    excluded: int = 0


def grid_registry(model: ShellModel | None = None) -> tuple[Indicator[GridPanel], ...]:
    """The grid indicators plus ENT_SHELL_SCORE under ``model`` (default: packaged model)."""
    return (*GRID_INDICATORS, shell_indicator(model or load_shell_model()))


def build_grid_features(raw: GridRaw, as_of: int, model: ShellModel | None = None,
                        model_only: bool = True) -> FeatureBuild:
    """One row per grid customer connected by ``as_of``, one column per indicator.

    Parameters
    ----------
    raw
        The grid's validated raw tables.
    as_of
        Month ordinal; nothing after it is read.
    model
        Shell-score model; the packaged one if None.
    model_only
        Leave out indicators that duplicate another exactly (kept for the warning rules).
    """
    registry = grid_registry(model)
    panel = build_grid_panel(raw, as_of)
    table = build_table(registry, panel, panel.ids, model_only=model_only)
    return FeatureBuild(table, data_dictionary(table, registry), registry)


def build_bank_features(raw: BankRaw, as_of: int, horizon: int = 6,
                        overdue_days: int = 30) -> FeatureBuild:
    """One row per borrower with a label: ``id``, ``y`` (0/1), then the bank indicators.

    Parameters
    ----------
    raw
        The bank's validated raw tables.
    as_of
        Month ordinal; features read nothing after it, the label reads the next months.
    horizon
        Label window in months after ``as_of``.
    overdue_days
        Days overdue that make a repayment count as overdue.
    """
    panel = build_bank_panel(raw, as_of)
    y = overdue_labels(raw, panel.ids, as_of, horizon, overdue_days)
    table = build_table(BANK_INDICATORS, panel, panel.ids)
    table.insert(1, "y", y)
    labelled = ~np.isnan(y)
    table = table[labelled].reset_index(drop=True)
    table["y"] = table["y"].astype(np.int64)
    return FeatureBuild(table, data_dictionary(table, BANK_INDICATORS), BANK_INDICATORS,
                        int((~labelled).sum()))
