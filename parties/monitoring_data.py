"""Post-loan monitoring: one party's data at a month, from its raw tables (no gRPC).

Grid: every enterprise connected by the month, its indicators point-in-time (the DuckDB
engine; industry figures and ranks over every enterprise) and its Table 7 rating. Bank: the
active loan book (loans started by the month and not yet at term) and its borrowers' bank
indicators at that month. Nothing after the month is read, except that the bank's engine
computes (and this module drops) its training label.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.bank_indicators import BANK_INDICATORS
from parties.labels.duck import DuckRunner
from parties.labels.engine import bank_frame, build_grid_features
from parties.labels.features import grid_registry
from parties.labels.options import DEFAULT_RULES
from parties.labels.schema import BANK_TABLES
from parties.labels.shell import load_shell_model
from parties.labels.sources import RawSource, staged
from parties.labels.warning import load_rules, rate
from parties.model import PartyModel
from parties.monitoring import WIRE_RATINGS, model_matrix
from parties.monitoring_tables import BankTables, GridTables


@dataclass(frozen=True)
class GridPeriod:
    """The grid at one month: its enterprises, partial logits u_G and ratings (codes)."""

    ids: list[str]
    u: npt.NDArray[np.float64]
    rating: npt.NDArray[np.int8]  # parties.labels.warning.Rating values
    x: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)), repr=False)


def grid_period(source: RawSource, month: int, model: PartyModel,
                rules_path: pathlib.Path = DEFAULT_RULES,
                tables: GridTables | None = None) -> GridPeriod:
    """Indicators, u_G and Table 7 rating of every enterprise connected by ``month``
    (with ``tables``, from the tables it keeps parsed and checked across periods)."""
    registry = grid_registry()
    rules = load_rules({i.name for i in registry}, rules_path)
    if tables is None:
        table = build_grid_features(source, month, model_only=False).table
    else:
        table = tables.frame(source, month, load_shell_model(), [i.name for i in registry])
    ratings = rate(table, rules, unrated=True)["rating"]  # the same ratings as gridcredit warn
    codes = np.array([WIRE_RATINGS.index(r) for r in ratings], dtype=np.int8)
    x = model_matrix(table, model, f"grid indicators at month {month}")
    ids = table["id"].astype(str).tolist()
    return GridPeriod(ids, np.asarray(model.partial_logit(x), np.float64), codes, x)


@dataclass(frozen=True)
class BankPeriod:
    """The bank at one month: its active loan book, u_B and the model matrix (same order)."""

    ids: list[str]
    u: npt.NDArray[np.float64]
    x: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    month: int = -1


def bank_period(source: RawSource, month: int, model: PartyModel,
                tables: BankTables | None = None) -> BankPeriod:
    """The active loan book at ``month`` and each borrower's partial logit u_B (with
    ``tables``, from the tables it keeps parsed and checked across periods)."""
    names = [i.name for i in BANK_INDICATORS]
    query = (f"SELECT DISTINCT ent_id FROM t_loans WHERE start_month <= {month} "
             f"AND start_month + term_months > {month} ORDER BY ent_id")
    if tables is not None:
        table, book = tables.frame(source, month, names, 1, 30, query)
    else:
        with staged(source, list(BANK_TABLES)) as src, DuckRunner() as run:
            table = bank_frame(run, src, month, names, 1, 30)
            book = run.frame(query)
    table = table.assign(id=table["id"].astype(str)).set_index("id")
    wanted = book["ent_id"].astype(str)
    table = table.reindex(pd.Index(wanted, name="id")).reset_index()
    x = model_matrix(table, model, f"bank indicators at month {month}")
    return BankPeriod(table["id"].tolist(), np.asarray(model.partial_logit(x), np.float64), x,
                      month)


def bank_matrix(source: RawSource, month: int, model: PartyModel,
                tables: BankTables | None = None) -> npt.NDArray[np.float64]:
    """The model matrix of every enterprise the bank has indicators for at ``month`` (the
    rows of ``features build --as-of``: the training population when ``month`` is the
    training period)."""
    names = [i.name for i in BANK_INDICATORS]
    if tables is not None:
        table = tables.frame(source, month, names, 1, 30)[0]
    else:
        with staged(source, list(BANK_TABLES)) as src, DuckRunner() as run:
            table = bank_frame(run, src, month, names, 1, 30)
    return model_matrix(table, model, f"bank indicators at month {month}")
