"""Feature tables from any source on any engine: the API ``features build`` and the
monitoring service call.

What it does: :func:`build_grid_features` / :func:`build_bank_features` read a party's raw
tables from a :class:`~parties.labels.sources.RawSource` (CSV or Parquet folder, PostgreSQL)
and evaluate the indicator library at an as-of month on DuckDB (default), Spark or the pandas
reference, returning the same :class:`~parties.labels.features.FeatureBuild` as the reference
(same columns, order, names; values equal to 1e-9). ``ids`` keeps only some enterprises (a
loan book) without changing their values.

What it assumes: the SQL engines run the same definitions (:mod:`parties.labels.grid_sql`,
:mod:`parties.labels.bank_sql`) through a :class:`SqlRunner`; each table is scanned once for
its checks and its per-enterprise facts, and only those facts (one row per enterprise) are
joined, so memory follows the number of enterprises, not of records.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels import bank_sql, grid_sql
from parties.labels.bank_indicators import BANK_INDICATORS
from parties.labels.checks import (
    Category,
    Runner,
    TableCheck,
    check_known,
    check_table,
    typed_view,
)
from parties.labels.features import FeatureBuild, grid_registry
from parties.labels.registry import data_dictionary
from parties.labels.schema import BANK_TABLES, GRID_TABLES, UNIQUE_KEYS, Kind
from parties.labels.shell import ShellModel, load_shell_model
from parties.labels.sources import Format, RawSource, open_source, staged
from parties.labels.sqlkit import Engine

Tables = dict[str, dict[str, Kind]]


class SqlRunner(Runner, Protocol):
    """An engine that runs the shared SQL (DuckDB or Spark)."""

    order_expr: str  # a column expression increasing in storage order

    def attach(self, source: RawSource, tables: Tables) -> dict[str, dict[str, Category]]:
        """Register ``raw_<table>`` views; return each declared column's stored category."""
        ...

    def materialize(self, name: str, query: str) -> None:
        """Compute ``query`` once and keep it as relation ``name``."""
        ...

    def materialize_all(self, queries: dict[str, str]) -> None:
        """:meth:`materialize` several independent queries (at once where the engine can);
        an error is the first in the order of ``queries``."""
        ...

    def view(self, name: str, query: str) -> None:
        """Name ``query`` as relation ``name`` (evaluated where used)."""
        ...

    def register_ids(self, name: str, ids: Sequence[str]) -> None:
        """A relation ``name`` with one column ``id``."""
        ...

    def frame(self, query: str) -> pd.DataFrame:
        """``query`` as pandas (NULL as NaN in float columns)."""
        ...


def _typed(runner: SqlRunner, source: RawSource, tables: Tables,
           cats: dict[str, dict[str, Category]], master: str, in_memory: bool = False) -> None:
    d = runner.dialect
    # Months parsed once per distinct value where a second scan of the column is cheap
    # (Parquet; a CSV file or a staged database table would be parsed twice).
    lookups = d.name == "duckdb" and source.format is Format.PARQUET
    for table, spec in tables.items():
        if table == master:
            runner.materialize(f"t_{table}", typed_view(
                d, f"raw_{table}", spec, cats[table], [f"{runner.order_expr} AS _ord"]))
            continue
        query = typed_view(d, f"raw_{table}", spec, cats[table], lookups=lookups)
        if in_memory:
            runner.materialize(f"typed_{table}", query)
        else:
            runner.view(f"typed_{table}", query)


def _check(source: RawSource, runner: SqlRunner, table: str, spec: dict[str, Kind],
           cats: dict[str, Category], flags: str, duplicates: str | None) -> TableCheck:
    check = TableCheck(table, spec, f"raw_{table}", cats, flags, duplicates)
    check_table(source, runner, check, UNIQUE_KEYS.get(table))
    return check


def grid_frame(runner: SqlRunner, source: RawSource, as_of: int, model: ShellModel,
               names: Sequence[str], ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Check the grid's tables and evaluate the indicators ``names`` on ``runner``."""
    cats = load_grid(runner, source)
    grid_facts(runner, as_of)
    check_grid(runner, source, cats)
    return grid_indicators(runner, as_of, model, names, ids)


def load_grid(runner: SqlRunner, source: RawSource,
              in_memory: bool = False) -> dict[str, dict[str, Category]]:
    """Attach the grid's raw tables and define the typed ones (``in_memory``: parsed once
    into tables rather than views re-reading the files); each column's stored category."""
    cats = runner.attach(source, GRID_TABLES)
    _typed(runner, source, GRID_TABLES, cats, "enterprises", in_memory)
    return cats


def grid_facts(runner: SqlRunner, as_of: int) -> None:
    """The per-enterprise facts at ``as_of`` (and the flags of every row, any month)."""
    d = runner.dialect
    runner.materialize_all({
        "f_usage": grid_sql.usage_facts(d, "typed_monthly_usage", as_of),
        "f_bills": grid_sql.bill_facts(d, "typed_bills", as_of),
        "f_events": grid_sql.event_facts(d, "typed_events", as_of)})


def check_grid(runner: SqlRunner, source: RawSource,
               cats: dict[str, dict[str, Category]]) -> None:
    """The checks of the grid's tables, on the facts of :func:`grid_facts`.

    They read every row's flags and counts whatever the month (the facts aggregate the flags
    and row counts over all rows), so one check per version of the tables is enough.
    """
    facts = {"monthly_usage": "f_usage", "bills": "f_bills", "events": "f_events"}
    checks = [_check(source, runner, "enterprises", GRID_TABLES["enterprises"],
                     cats["enterprises"], "t_enterprises", None)]
    for table, fact in facts.items():
        dup = fact if table in UNIQUE_KEYS else None
        checks.append(_check(source, runner, table, GRID_TABLES[table], cats[table], fact, dup))
    for check in checks[1:]:
        fact = facts[check.table]
        check_known(source, runner, check, "ent_id",
                    f"SELECT 1 FROM {fact} AS f WHERE ent_id NOT IN "
                    "(SELECT ent_id FROM t_enterprises AS e) LIMIT 1", "t_enterprises")


def grid_indicators(runner: SqlRunner, as_of: int, model: ShellModel, names: Sequence[str],
                    ids: Sequence[str] | None = None) -> pd.DataFrame:
    """The indicators ``names`` at ``as_of`` from the facts of :func:`grid_facts`."""
    if ids is not None:
        runner.register_ids("wanted_ids", ids)
    runner.materialize("g_rows", grid_sql.enterprise_rows(
        "t_enterprises", "f_usage", "f_bills", "f_events", as_of))
    return runner.frame(grid_sql.indicator_query(
        "g_rows", model, names, "wanted_ids" if ids is not None else None))


def bank_frame(runner: SqlRunner, source: RawSource, as_of: int, names: Sequence[str],
               horizon: int, overdue_days: int) -> pd.DataFrame:
    """Check the bank's tables and evaluate ``y`` and the indicators ``names``."""
    cats = load_bank(runner, source)
    bank_facts(runner, as_of, horizon)
    check_bank(runner, source, cats)
    return bank_indicators(runner, as_of, names, overdue_days)


def load_bank(runner: SqlRunner, source: RawSource,
              in_memory: bool = False) -> dict[str, dict[str, Category]]:
    """The bank's side of :func:`load_grid`."""
    cats = runner.attach(source, BANK_TABLES)
    _typed(runner, source, BANK_TABLES, cats, "loans", in_memory)
    return cats


def bank_facts(runner: SqlRunner, as_of: int, horizon: int) -> None:
    """The per-enterprise facts at ``as_of`` (and the flags of every row, any month)."""
    runner.materialize("f_repayments", bank_sql.repayment_facts("typed_repayments", as_of,
                                                                horizon))
    runner.materialize("f_taxes", bank_sql.tax_facts("typed_taxes", as_of))


def check_bank(runner: SqlRunner, source: RawSource,
               cats: dict[str, dict[str, Category]]) -> None:
    """The checks of the bank's tables, on the facts of :func:`bank_facts`; like
    :func:`check_grid`, they read every row whatever the month."""
    _check(source, runner, "loans", BANK_TABLES["loans"], cats["loans"], "t_loans", None)
    repayments = TableCheck("repayments", BANK_TABLES["repayments"], "raw_repayments",
                            cats["repayments"], "f_repayments")
    check_table(source, runner, repayments, None)
    check_table(source, runner, TableCheck("repayments", BANK_TABLES["repayments"],
                                           "raw_repayments", cats["repayments"],
                                           "typed_repayments"), UNIQUE_KEYS["repayments"])
    _check(source, runner, "taxes", BANK_TABLES["taxes"], cats["taxes"], "f_taxes", "f_taxes")
    check_known(source, runner, repayments, "loan_id",
                "SELECT 1 FROM typed_repayments AS r WHERE loan_id NOT IN "
                "(SELECT loan_id FROM t_loans AS l) LIMIT 1", "t_loans")


def bank_indicators(runner: SqlRunner, as_of: int, names: Sequence[str],
                    overdue_days: int) -> pd.DataFrame:
    """``y`` and the indicators ``names`` at ``as_of`` from the facts of :func:`bank_facts`."""
    runner.materialize("borrowers", bank_sql.borrowers("t_loans", as_of))
    return runner.frame(bank_sql.indicator_query("borrowers", "f_repayments", "f_taxes", names,
                                                 overdue_days))


def _source(raw: RawSource | str | pathlib.Path, role: str) -> RawSource:
    return raw if isinstance(raw, RawSource) else open_source(raw, role)


@contextlib.contextmanager
def _runner(engine: Engine, spark_master: str | None) -> Iterator[Any]:
    if engine is Engine.SPARK:
        from parties.labels.spark import SparkRunner

        with SparkRunner(spark_master or "local[2]") as spark:
            try:
                yield spark
            except Exception as e:  # Spark's failures become one line; anything else is ours
                error = spark.input_error(e)
                if error is None:
                    raise
                raise error from None
    else:
        from parties.labels.duck import DuckRunner

        with DuckRunner() as duck:
            yield duck


def build_grid_features(raw: RawSource | str | pathlib.Path, as_of: int,
                        engine: Engine = Engine.DUCKDB, ids: Sequence[str] | None = None,
                        model: ShellModel | None = None, model_only: bool = True,
                        spark_master: str | None = None) -> FeatureBuild:
    """One row per grid customer connected by ``as_of``, one column per indicator.

    Parameters
    ----------
    raw
        The grid's raw tables: a source, a folder or a ``postgresql://`` DSN.
    as_of
        Month ordinal; nothing after it is read.
    engine
        DuckDB (default), Spark, or the pandas reference.
    ids
        Only these enterprises (rows keep the enterprises table's order; industry and rank
        figures are still over everyone).
    model
        ENT_SHELL_SCORE model; the packaged one if None.
    model_only
        Leave out indicators that duplicate another exactly.
    spark_master
        Spark master URL (``local[2]``, ``spark://...``, ``yarn``) or Spark Connect URL
        (``sc://...``) for the Spark engine.

    Raises
    ------
    InputError
        The first bad table, row or cell, named in one line.
    """
    source = _source(raw, "grid")
    registry = grid_registry(model or load_shell_model())
    if engine is Engine.PANDAS:
        from parties.labels.reference import reference_grid

        table = reference_grid(source, as_of, registry, model_only, ids)
    else:
        names = [i.name for i in registry if i.model_feature or not model_only]
        with staged(source, list(GRID_TABLES)) as src, _runner(engine, spark_master) as run:
            table = grid_frame(run, src, as_of, model or load_shell_model(), names, ids)
    return FeatureBuild(table, data_dictionary(table, registry), registry)


def build_bank_features(raw: RawSource | str | pathlib.Path, as_of: int,
                        engine: Engine = Engine.DUCKDB, horizon: int = 6,
                        overdue_days: int = 30, spark_master: str | None = None) -> FeatureBuild:
    """One row per borrower with a label: ``id``, ``y`` (0/1), then the bank indicators.

    Parameters are those of :func:`build_grid_features`, plus the label's ``horizon``
    (months after ``as_of``) and ``overdue_days`` (days past due that count as overdue).
    """
    source = _source(raw, "bank")
    if engine is Engine.PANDAS:
        from parties.labels.reference import reference_bank

        return reference_bank(source, as_of, horizon, overdue_days)
    names = [i.name for i in BANK_INDICATORS]
    with staged(source, list(BANK_TABLES)) as src, _runner(engine, spark_master) as run:
        table = bank_frame(run, src, as_of, names, horizon, overdue_days)
    labelled = ~np.isnan(table["y"].to_numpy(np.float64))
    table = table[labelled].reset_index(drop=True)
    table["y"] = table["y"].astype(np.int64)
    return FeatureBuild(table, data_dictionary(table, BANK_INDICATORS), BANK_INDICATORS,
                        int((~labelled).sum()))
