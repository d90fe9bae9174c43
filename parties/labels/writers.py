"""Fast writers of large tables: CSV and Parquet through DuckDB, PostgreSQL through COPY.

What it does: :func:`write_csv_fast` writes a frame with the exact bytes of
:func:`parties.labels.output.write_csv` (pandas' ``to_csv``: shortest round-trip floats,
empty cells for missing values, minimal quoting) several times faster, atomically;
:func:`write_raw` writes a typed raw table (as :mod:`parties.labels.schema` returns them) as
the CSV files the library reads, or as Parquet with typed columns, formatting months and
dates in DuckDB rather than as millions of Python strings; :func:`copy_to_postgres` creates a
party's table with typed columns and its key and streams the rows in with ``COPY``.

What it assumes: typed raw frames hold months as ordinals, dates as ``datetime64`` (NaT
where missing); an empty string and a missing value are written alike (an empty cell), as
pandas does.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Callable

import duckdb
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import psycopg
from psycopg import sql

from parties.labels.output import _umask
from parties.labels.schema import UNIQUE_KEYS, InputError, Kind
from parties.labels.sqlkit import text

PG_TYPES = {
    Kind.TEXT: "TEXT NOT NULL", Kind.OPT_TEXT: "TEXT", Kind.EVENT: "TEXT NOT NULL",
    Kind.MONTH: "CHAR(7) NOT NULL", Kind.DATE: "DATE NOT NULL", Kind.OPT_DATE: "DATE",
    Kind.AMOUNT: "DOUBLE PRECISION NOT NULL", Kind.OPT_AMOUNT: "DOUBLE PRECISION",
    Kind.COUNT: "BIGINT NOT NULL", Kind.POSITIVE: "BIGINT NOT NULL",
}
_PARQUET = {Kind.DATE: "DATE", Kind.OPT_DATE: "DATE", Kind.AMOUNT: "DOUBLE",
            Kind.OPT_AMOUNT: "DOUBLE", Kind.COUNT: "BIGINT", Kind.POSITIVE: "BIGINT"}


def _atomic(path: pathlib.Path, write: Callable[[str], None]) -> pathlib.Path:
    """``write(tmp)`` a file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _is_text(series: pd.Series) -> bool:
    return bool(series.dtype == object or pd.api.types.is_string_dtype(series.dtype))


def _copy(frame: pd.DataFrame, select: str, target: str, options: str) -> None:
    con = duckdb.connect(":memory:", config={"preserve_insertion_order": True})
    try:
        con.register("frame", frame)
        con.execute(f"COPY (SELECT {select} FROM frame) TO {text(target)} ({options})")
    finally:
        con.close()


def write_csv_fast(path: pathlib.Path, frame: pd.DataFrame) -> pathlib.Path:
    """Write ``frame`` (no index) as UTF-8 CSV, atomically, as pandas would."""
    select = ", ".join(f"nullif(\"{c}\", '') AS \"{c}\"" if _is_text(frame[c]) else f'"{c}"'
                       for c in frame.columns)
    return _atomic(path, lambda tmp: _copy(frame, select, tmp,
                                           "FORMAT csv, HEADER, DELIMITER ','"))


def write_parquet(path: pathlib.Path, frame: pd.DataFrame, spec: dict[str, Kind]) -> pathlib.Path:
    """Write a table of text cells (as a CSV reads) as Parquet, dates and numbers typed,
    months as ``YYYY-MM`` text."""
    parts = []
    for column in frame.columns:
        kind = spec.get(column)
        typed = _PARQUET.get(kind) if kind is not None else None
        value = f"nullif(CAST(\"{column}\" AS VARCHAR), '')" if typed else f'"{column}"'
        parts.append(f"CAST({value} AS {typed}) AS \"{column}\"" if typed else value)
    return _atomic(path, lambda tmp: _copy(frame, ", ".join(parts), tmp, "FORMAT parquet"))


def _raw_select(frame: pd.DataFrame, spec: dict[str, Kind], parquet: bool) -> str:
    parts = []
    for column in frame.columns:
        kind, q = spec.get(column), f'"{column}"'
        if kind is Kind.MONTH:
            value = f"printf('%04d-%02d', {q} // 12, {q} % 12 + 1)"
        elif kind in (Kind.DATE, Kind.OPT_DATE):
            value = f"CAST({q} AS DATE)" if parquet else f"strftime({q}, '%Y-%m-%d')"
        elif _is_text(frame[column]) and not parquet:
            value = f"nullif({q}, '')"
        else:
            value = q
        parts.append(f"{value} AS {q}")
    return ", ".join(parts)


def write_raw(path: pathlib.Path, frame: pd.DataFrame, spec: dict[str, Kind],
              fmt: str = "csv") -> pathlib.Path:
    """Write a typed raw table as the library's CSV (the bytes pandas would write for its
    text form) or as Parquet (``fmt="parquet"``), atomically."""
    parquet = fmt == "parquet"
    options = "FORMAT parquet" if parquet else "FORMAT csv, HEADER, DELIMITER ','"
    select = _raw_select(frame, spec, parquet)
    return _atomic(path, lambda tmp: _copy(frame, select, tmp, options))


def _create(conn: psycopg.Connection[tuple[object, ...]], schema: str, table: str,
            spec: dict[str, Kind]) -> None:
    columns = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(PG_TYPES[k]))
               for c, k in spec.items()]
    if table in UNIQUE_KEYS:
        key = sql.SQL(", ").join(sql.Identifier(k) for k in UNIQUE_KEYS[table])
        columns.append(sql.SQL("PRIMARY KEY ({})").format(key))
    conn.execute(sql.SQL("CREATE TABLE {}.{} ({})").format(
        sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(columns)))


def copy_to_postgres(conn: psycopg.Connection[tuple[object, ...]], schema: str, table: str,
                     frame: pd.DataFrame, spec: dict[str, Kind]) -> None:
    """Create ``schema.table`` (typed, keyed) and stream the typed raw ``frame``'s declared
    columns in.

    Raises
    ------
    InputError
        If the table exists already (it is never replaced).
    """
    exists = conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()
    if exists is not None and exists[0] is not None:
        raise InputError(f"{schema}.{table}: table exists already; drop it or choose another "
                         "schema")
    _create(conn, schema, table, spec)
    with tempfile.TemporaryDirectory(prefix="gridcredit-copy-") as tmp:
        path = pathlib.Path(tmp) / f"{table}.csv"
        write_raw(path, frame[list(spec)], spec)
        names = sql.SQL(", ").join(sql.Identifier(c) for c in spec)
        query = sql.SQL("COPY {}.{} ({}) FROM STDIN WITH (FORMAT csv, HEADER)").format(
            sql.Identifier(schema), sql.Identifier(table), names)
        with conn.cursor() as cur, cur.copy(query) as copy, path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                copy.write(chunk)
