"""The synthetic demo with every indicator: raw tables for screening, and trainer-ready
tables of a chosen subset (a screening's selection, or a stage's indicators).

What it does: :func:`full_tables` builds every model indicator of both parties at the
manifest's as-of month with missing values kept (what ``gridcredit screen`` bins);
:func:`trainer_tables` keeps the chosen columns and only then imputes them, so each kept
indicator brings its own ``<name>_missing`` flag.

What it assumes: the same ``enterprises`` and ``seed`` as the demo of ``simulate`` give the
same enterprises and labels, so a screening and the training on its selection see the
same rows.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.features import build_bank_features, build_grid_features
from parties.labels.output import write_csv
from parties.labels.registry import impute_for_training
from parties.labels.schema import BankRaw, GridRaw, parse_month
from parties.labels.synth import synthesize


def full_tables(enterprises: int = 3000, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(grid, bank)``: ``id`` (bank: ``id``, ``y``) and every indicator, NaN kept."""
    data = synthesize(enterprises, 36, seed)
    return tables_at(data.grid, data.bank, parse_month(str(data.manifest["as_of"])))


def trainer_tables(grid: pd.DataFrame, bank: pd.DataFrame, grid_columns: Sequence[str],
                   bank_columns: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The chosen indicators of each table, median-filled with their own missing flags."""
    return (impute_for_training(grid[["id", *grid_columns]]),
            impute_for_training(bank[["id", "y", *bank_columns]]))


def write_tables(out_dir: pathlib.Path, grid: pd.DataFrame, bank: pd.DataFrame,
                 stem: str = "features") -> tuple[pathlib.Path, pathlib.Path]:
    """``out_dir/grid_<stem>.csv`` and ``out_dir/bank_<stem>.csv`` (empty cell = missing)."""
    return (write_csv(out_dir / f"grid_{stem}.csv", grid),
            write_csv(out_dir / f"bank_{stem}.csv", bank))


def tables_at(grid_raw: GridRaw, bank_raw: BankRaw, as_of: int) -> tuple[pd.DataFrame,
                                                                         pd.DataFrame]:
    """Both parties' indicators at ``as_of`` with missing values kept (bank: with ``y``)."""
    return (build_grid_features(grid_raw, as_of).table,
            build_bank_features(bank_raw, as_of).table)
