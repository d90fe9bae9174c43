"""Post-loan monitoring: whether a party's raw tables hold a month yet (no gRPC).

A party's data *cover* a month when each of its monthly tables (grid: ``monthly_usage``,
``bills``; bank: ``repayments``, ``taxes``) has a row of that month or a later one: the
month has been loaded. The bank runs a watched period once its own data cover the month and
the grid opens the period's session; a grid whose data do not cover the month refuses the
session with :class:`PeriodNotReady`, whose message carries :data:`NOT_READY` and nothing
else, so the bank learns one bit per attempt ("not yet") and nothing of the grid's data.

Assumes: months are loaded in order (a month once present is complete); one aggregate per
table (``parties.labels.months``) is cheap next to a period.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from federation.protocol.errors import InputDataError, ProtocolAbort
from parties.labels.months import month_spans
from parties.labels.schema import InputError, first_line, format_month, parse_month
from parties.labels.sources import Format, RawSource

MONTHLY_TABLES = {"grid": ("monthly_usage", "bills"), "bank": ("repayments", "taxes")}
NOT_READY = "period not ready"


class PeriodNotReady(ProtocolAbort):
    """The grid's data do not cover the month the bank asked about (yet)."""

    def __init__(self, month: int) -> None:
        super().__init__(f"{NOT_READY}: {format_month(month)}")


def is_not_ready(exc: BaseException) -> bool:
    """Whether ``exc`` (as the bank receives it) is the grid's "not yet" answer."""
    return isinstance(exc, ProtocolAbort) and NOT_READY in str(exc)


def _file_reader(source: RawSource, table: str) -> tuple[str, str]:
    """(DuckDB reader function, its argument) for a table kept as a file or a folder."""
    path = source.path(table)
    if not path.exists():
        raise InputDataError(f"{source.label(table)}: file not found")
    reader = "read_parquet" if source.format is Format.PARQUET else "read_csv"
    return reader, f"{path}/*.parquet" if path.is_dir() else str(path)


def last_month(source: RawSource, role: str) -> int | None:
    """The last month every monthly table of ``role`` reaches (None if one is empty).

    Raises
    ------
    InputDataError
        A table is missing or the database cannot be read.
    """
    try:
        spans = month_spans(source, MONTHLY_TABLES[role])
    except InputError as e:
        raise InputDataError(str(e)) from e
    if any(span is None for span in spans):
        return None
    return min(parse_month(span[1][:7]) for span in spans if span is not None)


def covers(source: RawSource, role: str, month: int) -> bool:
    """Whether ``role``'s raw tables hold ``month`` (see the module docstring)."""
    last = last_month(source, role)
    return last is not None and last >= month


def has_rows(source: RawSource, table: str) -> bool:
    """Whether ``table`` of ``source`` holds at least one row (a header-only file: no).

    Raises
    ------
    InputDataError
        The table is missing or cannot be read.
    """
    if source.format is Format.POSTGRES:
        try:
            with psycopg.connect(str(source.dsn), connect_timeout=10) as conn:
                query = sql.SQL("SELECT 1 FROM {}.{} LIMIT 1").format(
                    sql.Identifier(source.schema), sql.Identifier(table))
                return conn.execute(query).fetchone() is not None
        except psycopg.errors.UndefinedTable as e:
            raise InputDataError(f"postgresql table {source.label(table)}: not found") from e
        except psycopg.Error as e:
            first = first_line(e)
            raise InputDataError(f"postgresql schema {source.schema}: cannot read "
                                 f"({first})") from e
    import duckdb

    reader, target = _file_reader(source, table)
    try:
        row = duckdb.execute(f"SELECT 1 FROM {reader}(?) LIMIT 1", [target]).fetchone()
    except duckdb.Error as e:
        first = first_line(e)
        raise InputDataError(f"{source.label(table)}: cannot read ({first})") from e
    return row is not None
