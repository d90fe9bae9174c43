"""Validation of raw tables in SQL, with the messages of :mod:`parties.labels.schema`.

What it does: renders, for each declared column, the typed SQL expression and the predicate
that flags a cell not holding its :class:`~parties.labels.schema.Kind` (:func:`typed_view`);
the engines aggregate those flags while they scan the tables for the indicators, and
:func:`raise_first_error` turns the first problem into one :class:`InputError` line naming
the table, the row (its line in a file, its key in a database) and the column, as reading a
CSV with pandas does.

What it assumes: the checks and their order are those of :func:`schema.load_grid` /
:func:`schema.load_bank`: per table in declaration order, the first column (in declaration
order) holding a bad cell is reported at its first bad row, then the first row repeating an
earlier row's key; then rows naming an enterprise or loan the master table lacks. Typed
columns are: text as strings, months as ordinals ``year * 12 + month - 1``, dates as DATE,
amounts as DOUBLE (an empty optional amount is 0), counts as BIGINT.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from parties.labels.schema import _EXPECTED, EVENT_TYPES, SENSITIVE_COLUMNS, InputError, Kind
from parties.labels.sources import ROW_KEYS, RawSource
from parties.labels.sqlkit import Dialect, text

MAX_DOUBLE = "1.7976931348623157E308"


class Category(enum.Enum):
    """What type a stored column has (CSV columns are all TEXT)."""

    TEXT = enum.auto()
    NUMBER = enum.auto()
    DATE = enum.auto()


class Runner(Protocol):
    """What the checks need from an engine."""

    dialect: Dialect

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        """Run ``query`` and return all its rows."""
        ...

    def numbered(self, relation: str) -> str:
        """SQL of ``relation`` plus ``_rn``, the 0-based row index in storage order."""
        ...


def category(type_name: str) -> Category:
    """The category of an engine's column type name (DuckDB or Spark spelling)."""
    name = type_name.upper()
    if name.startswith(("DATE", "TIMESTAMP")):
        return Category.DATE
    if name.startswith(("DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC", "INT", "BIGINT",
                        "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER", "LONG",
                        "SHORT", "BYTE")):
        return Category.NUMBER
    return Category.TEXT


def _number(d: Dialect, kind: Kind, x: str, empty: str) -> tuple[str, str]:
    """Typed value and bad predicate of a numeric kind over the DOUBLE expression ``x``."""
    ok = f"coalesce({x} BETWEEN 0 AND {MAX_DOUBLE}, FALSE)"
    if kind is Kind.AMOUNT:
        return x, f"NOT {ok}"
    if kind is Kind.OPT_AMOUNT:
        return f"CASE WHEN {empty} THEN 0E0 ELSE {x} END", f"NOT ({empty} OR {ok})"
    whole = f"{ok} AND {x} = floor({x})"
    if kind is Kind.POSITIVE:
        whole += f" AND {x} >= 1"
    return f"try_cast({x} AS BIGINT)", f"NOT coalesce({whole}, FALSE)"


def typed_column(d: Dialect, kind: Kind, column: str, cat: Category) -> tuple[str, str]:
    """(typed expression, bad-cell predicate) of one stored column.

    Parameters
    ----------
    d
        The engine's dialect.
    kind
        What the column must hold.
    column
        The column as SQL (a quoted identifier).
    cat
        Its stored type: TEXT cells are parsed as the CSV reader parses them, typed cells
        (Parquet, database) are only checked.
    """
    if cat is Category.DATE and kind in (Kind.DATE, Kind.OPT_DATE, Kind.MONTH):
        day = f"CAST({column} AS DATE)"
        if kind is Kind.MONTH:
            return f"(year({day}) * 12 + month({day}) - 1)", f"({column} IS NULL)"
        return day, "FALSE" if kind is Kind.OPT_DATE else f"({column} IS NULL)"
    if cat is Category.NUMBER and kind in (Kind.AMOUNT, Kind.OPT_AMOUNT, Kind.COUNT,
                                           Kind.POSITIVE):
        return _number(d, kind, f"CAST({column} AS DOUBLE)", f"({column} IS NULL)")
    s = f"coalesce(CAST({column} AS {d.text_type}), '')"
    # Blank after trimming; a printable non-space ASCII first character (most cells) settles
    # it without building the trimmed string.
    empty = f"(CASE WHEN ascii({s}) BETWEEN 33 AND 126 THEN FALSE ELSE trim({s}) = '' END)"
    if kind is Kind.TEXT:
        return s, empty
    if kind is Kind.OPT_TEXT:
        return s, "FALSE"
    if kind is Kind.EVENT:
        return s, f"({s} NOT IN ({', '.join(text(t) for t in EVENT_TYPES)}))"
    if kind is Kind.MONTH:
        value = (f"(try_cast(substr({s}, 1, 4) AS INT) * 12 + try_cast(substr({s}, 6, 2) AS INT)"
                 " - 1)")
        return value, f"(NOT {d.matches(s, '[0-9]{4}-(0[1-9]|1[0-2])')})"
    if kind in (Kind.DATE, Kind.OPT_DATE):
        day = f"try_cast({s} AS DATE)"
        bad = f"(NOT {d.matches(s, '[0-9]{4}-[0-9]{2}-[0-9]{2}')} OR {day} IS NULL)"
        if kind is Kind.DATE:
            return day, bad
        return f"CASE WHEN {empty} THEN NULL ELSE {day} END", f"(NOT {empty} AND {bad})"
    return _number(d, kind, f"try_cast({s} AS DOUBLE)", empty)


def typed_view(d: Dialect, raw: str, spec: dict[str, Kind], categories: dict[str, Category],
               extra: Sequence[str] = (), lookups: bool = False) -> str:
    """SELECT of the typed columns and ``_bad_<column>`` flags of relation ``raw``.

    With ``lookups`` (and no ``extra``: a join does not keep the storage order), months
    stored as text are parsed and checked once per distinct value, in a small table joined
    back, instead of once per row; for a source whose column is cheap to scan twice
    (Parquet, not CSV).
    """
    parts, joins = [*extra], []
    for column, kind in spec.items():
        quoted = d.quote(column)
        if lookups and not extra and kind is Kind.MONTH and categories[column] is Category.TEXT:
            value, bad = typed_column(d, kind, "_s", Category.TEXT)
            cell, alias = f"coalesce(CAST(r.{quoted} AS {d.text_type}), '')", f"_l_{column}"
            joins.append(f"JOIN (SELECT _s, {value} AS _v, {bad} AS _b FROM (SELECT DISTINCT "
                         f"{cell} AS _s FROM {raw} AS r) AS x) AS {alias} ON {alias}._s = {cell}")
            parts += [f"{alias}._v AS {column}", f"{alias}._b AS _bad_{column}"]
            continue
        value, bad = typed_column(d, kind, f"r.{quoted}", categories[column])
        parts += [f"{value} AS {column}", f"{bad} AS _bad_{column}"]
    return f"SELECT {', '.join(parts)} FROM {raw} AS r {' '.join(joins)}".rstrip()


def flag_aggregates(spec: dict[str, Kind]) -> list[str]:
    """``bool_or`` of every column's bad flag, for a fact query's SELECT list."""
    return [f"bool_or(_bad_{c}) AS _bad_{c}" for c in spec]


@dataclass(frozen=True, slots=True)
class TableCheck:
    """Where the checks of one table find their inputs.

    Attributes
    ----------
    table
        Table name (as the file or database table).
    spec
        Declared columns.
    raw
        Relation of the stored columns (text for CSV).
    categories
        Stored category of each declared column.
    flags
        Relation with one boolean ``_bad_<column>`` per declared column (per row or per group).
    duplicates
        Relation whose rows ``_rows <> _keys`` mark a group holding a repeated key, or None to
        group the typed rows by the key here.
    """

    table: str
    spec: dict[str, Kind]
    raw: str
    categories: dict[str, Category]
    flags: str
    duplicates: str | None = None


def _where(source: RawSource, runner: Runner, check: TableCheck, rn: int, column: str) -> str:
    """``<table>: row N, column 'c'`` (files) or ``<table>: row (key=...), column 'c'``."""
    if not source.keyed:
        return f"{source.label(check.table)}: row {rn + 2}, column '{column}'"
    d = runner.dialect
    keys = [k for k in ROW_KEYS.get(check.table, ()) if k in check.spec]
    values = runner.rows(f"SELECT {', '.join(_raw_text(d, k) for k in keys)} FROM "
                         f"{runner.numbered(check.raw)} AS n WHERE _rn = {rn}")[0]
    named = ", ".join(f"{k}={v!r}" for k, v in zip(keys, values, strict=True))
    return f"{source.label(check.table)}: row ({named}), column '{column}'"


def _raw_text(d: Dialect, column: str) -> str:
    return f"coalesce(CAST({d.quote(column)} AS {d.text_type}), '')"


def _first_bad_cell(source: RawSource, runner: Runner, check: TableCheck) -> InputError | None:
    d = runner.dialect
    flags = ", ".join(f"coalesce(bool_or(_bad_{c}), FALSE)" for c in check.spec)
    bad = runner.rows(f"SELECT {flags} FROM {check.flags} AS f")[0]
    for (column, kind), flagged in zip(check.spec.items(), bad, strict=True):
        if not flagged:
            continue
        _, predicate = typed_column(d, kind, d.quote(column), check.categories[column])
        rn, got = runner.rows(
            f"SELECT _rn, {_raw_text(d, column)} FROM {runner.numbered(check.raw)} AS n "
            f"WHERE {predicate} ORDER BY _rn LIMIT 1")[0]
        shown = "<masked>" if column in SENSITIVE_COLUMNS else repr(got)
        return InputError(f"{_where(source, runner, check, int(rn), column)}: expected "
                          f"{_EXPECTED[kind]}, got {shown}")
    return None


def _first_duplicate(source: RawSource, runner: Runner, check: TableCheck,
                     key: tuple[str, ...]) -> InputError | None:
    keys = ", ".join(key)
    if check.duplicates is not None:
        found = runner.rows(f"SELECT 1 FROM {check.duplicates} AS g WHERE _rows <> _keys LIMIT 1")
    else:
        found = runner.rows(f"SELECT 1 FROM {check.flags} AS t GROUP BY {keys} "
                            "HAVING count(*) > 1 LIMIT 1")
    if not found:
        return None
    d = runner.dialect
    raw_keys = ", ".join(f"{_raw_text(d, k)} AS {k}" for k in key)
    rn = runner.rows(
        f"SELECT min(_rn) FROM (SELECT _rn, row_number() OVER (PARTITION BY {keys} ORDER BY _rn)"
        f" AS occurrence FROM (SELECT _rn, {raw_keys} FROM {runner.numbered(check.raw)} AS n) "
        "AS k) AS o WHERE occurrence > 1")[0][0]
    return InputError(f"{_where(source, runner, check, int(rn), ','.join(key))}: "
                      "duplicate of an earlier row")


def check_table(source: RawSource, runner: Runner, check: TableCheck,
                key: tuple[str, ...] | None) -> None:
    """Raise the first bad cell, then the first repeated ``key``, of one table.

    Raises
    ------
    InputError
        One line naming table, row and column.
    """
    error = _first_bad_cell(source, runner, check)
    if error is None and key is not None:
        error = _first_duplicate(source, runner, check, key)
    if error is not None:
        raise error


def check_known(source: RawSource, runner: Runner, check: TableCheck, column: str,
                unknown: str, master: str) -> None:
    """Raise at the first row whose ``column`` value is not in ``master``'s ``column``.

    Parameters
    ----------
    unknown
        A cheap query returning a row if any value is unknown (for instance over a table of
        facts already grouped by ``column``).
    master
        Relation listing the known values in its column ``column``.
    """
    if not runner.rows(unknown):
        return
    d = runner.dialect
    raw = _raw_text(d, column)
    rn, value = runner.rows(
        f"SELECT _rn, {raw} FROM {runner.numbered(check.raw)} AS n WHERE {raw} NOT IN "
        f"(SELECT {column} FROM {master} AS m) ORDER BY _rn LIMIT 1")[0]
    raise InputError(f"{_where(source, runner, check, int(rn), column)}: {value!r} is not "
                     "listed in the enterprises/loans table")


def require_columns(source: RawSource, table: str, spec: dict[str, Kind],
                    present: Sequence[str]) -> None:
    """Raise for the first declared column missing from the stored table."""
    for column in spec:
        if column not in present:
            if source.keyed:  # a database table has columns, not a header line
                raise InputError(f"table {source.label(table)} has no column '{column}'")
            raise InputError(f"{source.label(table)}: row 1, column '{column}': missing from "
                             "the header")
