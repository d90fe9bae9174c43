"""First and last month of a party's raw monthly tables: one aggregate per table.

Two callers share it: the indicator commands refuse an ``--as-of`` month outside the records
(``parties.labels.commands``), and the post-loan monitor asks whether a month has been
loaded yet (``parties.monitoring_watch``). Files are read the way the build reads them
(DuckDB, every CSV column as text, no sniffing); a PostgreSQL schema by one ``min``/``max``
query per table. Nothing but the two months per table leaves this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import psycopg
from psycopg import sql

from parties.labels.duck import csv_relation, parquet_files
from parties.labels.schema import InputError, first_line
from parties.labels.sources import Format, RawSource

Span = tuple[str, str] | None
"""(first, last) ``month`` of one table as text (``YYYY-MM...``), None if it has no rows."""


def _postgres(source: RawSource, tables: Sequence[str]) -> list[Span]:
    table = tables[0]
    try:
        with psycopg.connect(str(source.dsn), connect_timeout=10) as conn:
            out: list[Span] = []
            for table in tables:
                query = sql.SQL("SELECT min({m})::text, max({m})::text FROM {}.{}").format(
                    sql.Identifier(source.schema), sql.Identifier(table),
                    m=sql.Identifier("month"))
                row = conn.execute(query).fetchone()
                out.append(None if row is None or row[0] is None or row[1] is None
                           else (str(row[0]), str(row[1])))
            return out
    except psycopg.errors.UndefinedTable as e:
        raise InputError(f"postgresql table {source.label(table)}: not found") from e
    except psycopg.Error as e:
        raise InputError(f"postgresql schema {source.schema}: cannot read "
                         f"({first_line(e)})") from e


def _file(source: RawSource, table: str) -> Span:
    path = source.path(table)
    if not path.exists():
        raise InputError(f"{source.label(table)}: file not found")
    relation = (f"read_parquet({parquet_files(path)})" if source.format is Format.PARQUET
                else csv_relation(path, source.header(table)))
    try:
        row = duckdb.execute(f"SELECT min(CAST(month AS VARCHAR)), "
                             f"max(CAST(month AS VARCHAR)) FROM {relation}").fetchone()
    except duckdb.Error as e:
        raise InputError(f"{source.label(table)}: cannot read column 'month' "
                         f"({first_line(e)})") from e
    return None if row is None or row[0] is None or row[1] is None else (str(row[0]),
                                                                           str(row[1]))


def month_spans(source: RawSource, tables: Sequence[str]) -> list[Span]:
    """The first and last ``month`` of each of ``tables``, in order.

    Raises
    ------
    InputError
        A table is missing, cannot be read, or has no ``month`` column (names the table;
        never a value from it).
    """
    if source.format is Format.POSTGRES and source.root is None:
        return _postgres(source, tables)
    return [_file(source, table) for table in tables]
