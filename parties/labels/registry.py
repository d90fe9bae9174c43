"""A declarative indicator registry and the feature tables built from it.

What it does: an :class:`Indicator` is a name, a one-line definition, the window in months it
reads, the source it comes from and a vectorized function over a panel (a party's raw tables
pivoted at an as-of month). :func:`build_table` evaluates a registry into one row per
enterprise; :func:`data_dictionary` documents the columns with their missing rates;
:func:`impute_for_training` makes a trainer-ready copy (median fill plus ``<name>_missing``).

What it assumes: every function returns one float per enterprise of the panel, NaN where the
value is undefined (for instance a window longer than the account's connection), never 0 in
its place; names are unique snake_case identifiers usable as CSV column names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

P = TypeVar("P")
Values = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Indicator(Generic[P]):
    """One indicator of the label library.

    Attributes
    ----------
    name
        Column name in feature tables and rule files.
    definition
        One line saying what the value is.
    window
        Months of history it needs (0: master data, no window).
    source
        Where the definition comes from (paper table, patent, or "added").
    compute
        Panel -> one float per enterprise.
    model_feature
        False for indicators that duplicate another one exactly (kept for rules and docs).
    """

    name: str
    definition: str
    window: int
    source: str
    compute: Callable[[P], Values]
    model_feature: bool = True


def from_function(name: str, fn: Callable[[P], Values], window: int, source: str,
                  model_feature: bool = True) -> Indicator[P]:
    """An :class:`Indicator` whose definition is the first line of ``fn``'s docstring."""
    doc = (fn.__doc__ or "").strip().splitlines()[0]
    return Indicator(name, doc, window, source, fn, model_feature)


def check_registry(indicators: Sequence[Indicator[P]]) -> dict[str, Indicator[P]]:
    """Index a registry by name, refusing duplicate names."""
    by_name: dict[str, Indicator[P]] = {}
    for ind in indicators:
        if ind.name in by_name:
            raise ValueError(f"indicator {ind.name!r} registered twice")
        by_name[ind.name] = ind
    return by_name


def build_table(indicators: Sequence[Indicator[P]], panel: P,
                ids: npt.ArrayLike, *, model_only: bool = True) -> pd.DataFrame:
    """Evaluate ``indicators`` on ``panel``: column ``id`` then one column per indicator.

    Parameters
    ----------
    indicators
        The registry (or a subset of it).
    panel
        The party's pivoted data at the as-of month.
    ids
        The enterprise IDs in the panel's row order.
    model_only
        Skip indicators whose ``model_feature`` is False.
    """
    columns: dict[str, npt.ArrayLike] = {"id": ids}
    for ind in indicators:
        if model_only and not ind.model_feature:
            continue
        columns[ind.name] = np.asarray(ind.compute(panel), dtype=np.float64)
    return pd.DataFrame(columns)


def data_dictionary(table: pd.DataFrame, indicators: Sequence[Indicator[P]],
                    missing_rates: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Name, definition, window, source and missing rate of every feature column of ``table``.

    Columns that are not indicators (``y``, ``<name>_missing``) are described generically.
    ``missing_rates`` overrides a column's rate: for an imputed table, the share missing
    before the median filled it (the table itself has none left).
    """
    by_name = {ind.name: ind for ind in indicators}
    rows = []
    for column in table.columns:
        if column == "id":
            continue
        ind = by_name.get(column)
        if ind is not None:
            definition, window, source = ind.definition, ind.window, ind.source
        elif column == "y":
            definition, window, source = "label: overdue in the label horizon (1) or not", 0, ""
        elif column.endswith("_missing"):
            definition = f"1 where {column[:-8]} was missing and filled with its median"
            window, source = 0, "imputation"
        else:
            definition, window, source = "", 0, ""
        missing = float(table[column].isna().mean()) if len(table) else 0.0
        if missing_rates is not None and column in missing_rates:
            missing = float(missing_rates[column])
        rows.append({"name": column, "definition": definition, "window_months": window,
                     "source": source, "missing_rate": round(missing, 6)})
    return pd.DataFrame(rows, columns=["name", "definition", "window_months", "source",
                                       "missing_rate"])


def impute_for_training(table: pd.DataFrame, keep: Sequence[str] = ("id", "y")) -> pd.DataFrame:
    """A trainer-ready copy: no NaN, no constant column.

    Every feature column with missing values is filled with its median and followed by a 0/1
    ``<name>_missing`` column, unless an earlier ``_missing`` column has exactly the same
    pattern (indicators of one window go missing together; repeating the flag would only add
    collinear columns). A column entirely missing, or constant after filling, is dropped.
    Columns in ``keep`` pass through.
    """
    out: dict[str, pd.Series] = {}
    patterns: set[bytes] = set()
    for column in table.columns:
        values = table[column]
        if column in keep:
            out[column] = values
            continue
        missing = values.isna()
        if bool(missing.all()):
            continue
        filled = values.fillna(float(values.median())) if bool(missing.any()) else values
        if filled.nunique() > 1:
            out[column] = filled
        pattern = np.packbits(missing.to_numpy()).tobytes()
        if bool(missing.any()) and pattern not in patterns:
            patterns.add(pattern)
            out[f"{column}_missing"] = missing.astype(np.int64)
    return pd.DataFrame(out)
