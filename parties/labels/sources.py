"""Where a party's raw tables live: a CSV folder, a Parquet folder or a PostgreSQL schema.

What it does: :func:`open_source` turns ``--raw`` (a folder, a ``synth`` output root, or a
``postgresql://`` DSN) into a :class:`RawSource`, which names each table for error messages
(the file for folders, ``schema.table`` and the row's key for a database) and reads a table's
header. :func:`stage_postgres` streams tables out of PostgreSQL with ``COPY ... TO STDOUT``
through psycopg into CSV files of a private temporary folder, which the engines then read like
any CSV folder (DuckDB's own postgres extension is downloaded at run time, so it is not used).

What it assumes:
- A folder holds ``<table>.csv`` or ``<table>.parquet`` (a file, or a folder of part files as
  Spark writes them) for each table of :data:`~parties.labels.schema.GRID_TABLES` /
  :data:`~parties.labels.schema.BANK_TABLES`; a ``synth`` root holding ``grid/`` and ``bank/``
  is accepted too.
- A database keeps one schema per party (``grid``, ``bank`` unless ``schema`` says otherwise),
  tables named as the files. The DSN may hold a password: it never appears in a message.
"""

from __future__ import annotations

import contextlib
import csv
import enum
import pathlib
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql

from parties.labels.schema import UNIQUE_KEYS, InputError, first_line

# Columns naming a row of a database table in messages (its unique key, or what identifies it).
ROW_KEYS: dict[str, tuple[str, ...]] = {**UNIQUE_KEYS, "events": ("ent_id", "date", "type")}
MARKERS = {"grid": "enterprises", "bank": "loans"}


class Format(enum.StrEnum):
    """How a source stores its tables."""

    CSV = "csv"
    PARQUET = "parquet"
    POSTGRES = "postgresql"


@dataclass(frozen=True, slots=True)
class RawSource:
    """One party's raw tables.

    Attributes
    ----------
    format
        CSV, Parquet or PostgreSQL.
    root
        The folder (CSV, Parquet); for PostgreSQL, the folder of the staged CSV copies once
        :func:`stage_postgres` has run, else None.
    dsn
        PostgreSQL connection string (None for folders).
    schema
        PostgreSQL schema of the party's tables.
    url
        A cluster folder of Parquet tables (``hdfs://...``, ``s3a://...``), for Spark.
    """

    format: Format
    root: pathlib.Path | None = None
    dsn: str | None = None
    schema: str = ""
    url: str | None = None  # a cluster folder (hdfs://, s3a://, ...) only Spark reads

    @property
    def keyed(self) -> bool:
        """Rows are named by their key (database) rather than by their line (files)."""
        return self.format is Format.POSTGRES

    def location(self, table: str) -> str:
        """Where an engine reads ``table``: a local path or a cluster URL."""
        if self.url is not None:
            return f"{self.url}/{table}.parquet"
        return str(self.path(table))

    def path(self, table: str) -> pathlib.Path:
        """The local file (or part-file folder) holding ``table``."""
        if self.url is not None:
            raise InputError(f"{self.url}: a cluster folder is read by --engine spark only")
        if self.root is None:
            raise ValueError(f"{self.label(table)}: not staged to files")
        ext = "parquet" if self.format is Format.PARQUET else "csv"
        return self.root / f"{table}.{ext}"

    def label(self, table: str) -> str:
        """How messages name ``table``: its path, or ``schema.table`` (never the DSN)."""
        if self.format is Format.POSTGRES:
            return f"{self.schema}.{table}"
        return self.location(table)

    def header(self, table: str) -> list[str]:
        """Column names of a CSV table (its first line); [] for an empty file.

        Raises
        ------
        InputError
            Missing file or a first line that is not UTF-8.
        """
        path = self.path(table)
        if not path.is_file():
            raise InputError(f"{self.label(table)}: file not found")
        try:
            with path.open(encoding="utf-8", newline="") as stream:
                return next(csv.reader(stream), [])
        except UnicodeDecodeError as e:
            raise InputError(f"{self.label(table)}: not UTF-8 text") from e


def is_dsn(raw: str | pathlib.Path) -> bool:
    """Whether ``--raw`` names a PostgreSQL database."""
    return str(raw).startswith(("postgresql://", "postgres://"))


def _folder_format(folder: pathlib.Path, marker: str) -> Format | None:
    if (folder / f"{marker}.csv").is_file():
        return Format.CSV
    if (folder / f"{marker}.parquet").exists():
        return Format.PARQUET
    return None


def open_source(raw: str | pathlib.Path, role: str, schema: str | None = None) -> RawSource:
    """The raw tables of ``role`` (``grid`` or ``bank``) named by ``--raw``.

    Parameters
    ----------
    raw
        A folder of ``<table>.csv`` / ``<table>.parquet``, a ``synth`` output root holding
        ``<role>/``, a ``postgresql://`` DSN, or a cluster folder URL of ``<table>.parquet``
        (``hdfs://``, ``s3a://``, ...) for the Spark engine.
    role
        ``grid`` or ``bank``.
    schema
        PostgreSQL schema (default: ``role``); ignored for folders.
    """
    if is_dsn(raw):
        return RawSource(Format.POSTGRES, dsn=str(raw), schema=schema or role)
    if "://" in str(raw):
        return RawSource(Format.PARQUET, url=str(raw).rstrip("/"))
    folder = pathlib.Path(raw)
    marker = MARKERS[role]
    for candidate in (folder, folder / role):
        found = _folder_format(candidate, marker)
        if found is not None:
            return RawSource(found, root=candidate)
    return RawSource(Format.CSV, root=folder)  # reading then names the missing file


def _copy_table(conn: psycopg.Connection[tuple[object, ...]], source: RawSource, table: str,
                target: pathlib.Path) -> None:
    query = sql.SQL("COPY (SELECT * FROM {}.{}) TO STDOUT WITH (FORMAT csv, HEADER)").format(
        sql.Identifier(source.schema), sql.Identifier(table))
    try:
        with conn.cursor() as cur, target.open("wb") as out, cur.copy(query) as copy:
            for chunk in copy:
                out.write(chunk)
    except psycopg.errors.UndefinedTable as e:
        raise InputError(f"{source.label(table)}: table not found") from e
    except psycopg.errors.InvalidSchemaName as e:
        raise InputError(f"{source.label(table)}: schema not found") from e


@contextlib.contextmanager
def stage_postgres(source: RawSource, tables: Sequence[str]) -> Iterator[RawSource]:
    """Copy ``tables`` of a PostgreSQL source into CSV files of a temporary folder.

    Yields the source with ``root`` set to that folder; the folder and its files are removed
    on exit. Every row is copied (validation reads every row, as for files); the copy streams,
    so memory stays flat whatever the table's size.

    Raises
    ------
    InputError
        The server cannot be reached, or a schema or table is missing.
    """
    if source.format is not Format.POSTGRES or source.dsn is None:
        raise ValueError("stage_postgres needs a PostgreSQL source")
    with tempfile.TemporaryDirectory(prefix="gridcredit-pg-") as tmp:
        try:
            conn = psycopg.connect(source.dsn, connect_timeout=10)
        except psycopg.Error as e:
            first = first_line(e)
            raise InputError(f"postgresql: cannot connect ({first})") from e
        with conn:
            conn.execute("SET DateStyle TO ISO, YMD")
            conn.execute("SET extra_float_digits TO 1")
            for table in tables:
                _copy_table(conn, source, table, pathlib.Path(tmp) / f"{table}.csv")
        yield replace(source, root=pathlib.Path(tmp))


@contextlib.contextmanager
def staged(source: RawSource, tables: Sequence[str]) -> Iterator[RawSource]:
    """``source`` itself, or its PostgreSQL tables copied to a temporary CSV folder."""
    if source.format is Format.POSTGRES and source.root is None:
        with stage_postgres(source, tables) as copy:
            yield copy
    else:
        yield source
