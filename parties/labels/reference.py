"""The pandas reference engine (``--engine pandas``) on any source.

What it does: loads a party's raw tables into the typed pandas frames of
:mod:`parties.labels.schema` (CSV folders with :func:`schema.load_grid` /
:func:`schema.load_bank` as always; Parquet folders and PostgreSQL through DuckDB's checks,
which give the same messages) and evaluates the numpy indicator library of
:mod:`parties.labels.features`, which the SQL engines are tested against.

What it assumes: everything fits in memory (this engine is the reference, not the scale
path); ``ids`` selects rows after the indicators are computed over everyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels import features
from parties.labels.checks import TableCheck, check_known, check_table, typed_view
from parties.labels.duck import DuckRunner
from parties.labels.features import FeatureBuild
from parties.labels.registry import Indicator, build_table
from parties.labels.schema import (
    BANK_TABLES,
    GRID_TABLES,
    UNIQUE_KEYS,
    BankRaw,
    GridRaw,
    Kind,
    load_bank,
    load_grid,
)
from parties.labels.sources import Format, RawSource, staged


def _frames(source: RawSource, tables: dict[str, dict[str, Kind]],
            master: str, key: str) -> dict[str, pd.DataFrame]:
    """Typed frames of ``tables`` read and checked through DuckDB."""
    out = {}
    with staged(source, list(tables)) as src, DuckRunner() as runner:
        cats = runner.attach(src, tables)
        for table, spec in tables.items():
            runner.materialize(f"typed_{table}", typed_view(runner.dialect, f"raw_{table}",
                                                            spec, cats[table]))
            check_table(src, runner, TableCheck(table, spec, f"raw_{table}", cats[table],
                                                f"typed_{table}"), UNIQUE_KEYS.get(table))
        for table, spec in tables.items():
            if table != master and key in spec:
                check = TableCheck(table, spec, f"raw_{table}", cats[table], f"typed_{table}")
                check_known(src, runner, check, key,
                            f"SELECT 1 FROM typed_{table} AS t WHERE {key} NOT IN (SELECT "
                            f"{key} FROM typed_{master} AS m) LIMIT 1", f"typed_{master}")
            columns = ", ".join(spec)
            frame = runner.frame(f"SELECT {columns} FROM typed_{table}")
            out[table] = _pandas_types(frame, spec)
    return out


def _pandas_types(frame: pd.DataFrame, spec: dict[str, Kind]) -> pd.DataFrame:
    for column, kind in spec.items():
        if kind in (Kind.DATE, Kind.OPT_DATE):
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
        elif kind in (Kind.MONTH, Kind.COUNT, Kind.POSITIVE):
            frame[column] = frame[column].astype(np.int64)
        elif kind in (Kind.AMOUNT, Kind.OPT_AMOUNT):
            frame[column] = frame[column].astype(np.float64)
        else:
            frame[column] = frame[column].astype(object)
    return frame


def load_grid_raw(source: RawSource) -> GridRaw:
    """The grid's typed raw tables from any source."""
    if source.format is Format.CSV and source.root is not None:
        return load_grid(source.root)
    t = _frames(source, GRID_TABLES, "enterprises", "ent_id")
    return GridRaw(t["enterprises"], t["monthly_usage"], t["bills"], t["events"])


def load_bank_raw(source: RawSource) -> BankRaw:
    """The bank's typed raw tables from any source."""
    if source.format is Format.CSV and source.root is not None:
        return load_bank(source.root)
    t = _frames(source, BANK_TABLES, "loans", "loan_id")
    return BankRaw(t["loans"], t["repayments"], t["taxes"])


def reference_grid(source: RawSource, as_of: int, registry: Sequence[Indicator[Any]],
                   model_only: bool, ids: Sequence[str] | None) -> pd.DataFrame:
    """The grid feature table by the numpy library."""
    from parties.labels.panel import build_grid_panel

    panel = build_grid_panel(load_grid_raw(source), as_of)
    table = build_table(registry, panel, panel.ids, model_only=model_only)
    if ids is not None:
        table = table[table["id"].isin(pd.Index(list(ids)))].reset_index(drop=True)
    return table


def reference_bank(source: RawSource, as_of: int, horizon: int,
                   overdue_days: int) -> FeatureBuild:
    """The bank feature table by the numpy library."""
    return features.build_bank_features(load_bank_raw(source), as_of, horizon, overdue_days)
