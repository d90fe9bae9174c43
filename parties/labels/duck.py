"""DuckDB, the embedded engine: raw tables as views, checked and aggregated in one scan each.

What it does: :class:`DuckRunner` wraps a connection (threads, a memory limit and a spill
folder set for a shared machine) and maps DuckDB's CSV reader errors to the library's
one-line :class:`InputError`; :func:`attach` registers a source's tables as views
(``read_csv`` with every column as text, ``read_parquet``, or the CSV copies of PostgreSQL
tables) and returns each stored column's category.

What it assumes: CSV files are UTF-8 with a header row, comma-separated, ``"``-quoted, as
pandas writes them; DuckDB keeps a scan's storage order (``preserve_insertion_order``), which
numbers rows in error messages and orders the output like the enterprises table.
"""

from __future__ import annotations

import pathlib
import re
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.checks import Category, category, require_columns
from parties.labels.schema import InputError, Kind
from parties.labels.sources import Format, RawSource
from parties.labels.sqlkit import DUCKDB, text

_LINE = re.compile(r"Line: (\d+)")
# Bytes a CSV scan reads at a time: the smallest DuckDB allows (twice its 2 MB maximum line),
# so that a file of a few buffers is already read (and checked) by all threads at once; its
# default (32 MB) leaves a 10k-enterprise table to one thread.
CSV_BUFFER = 4 << 20


class DuckRunner:
    """A DuckDB connection used by the checks and the indicator queries."""

    dialect = DUCKDB
    order_expr = "row_number() OVER ()"

    def __init__(self, memory_limit: str = "2GB", threads: int | None = None) -> None:
        self._spill = tempfile.TemporaryDirectory(prefix="gridcredit-duckdb-")
        config: dict[str, Any] = {"memory_limit": memory_limit,
                                  "temp_directory": self._spill.name,
                                  "preserve_insertion_order": True}
        if threads is not None:
            config["threads"] = threads
        self.con = duckdb.connect(":memory:", config=config)
        self.con.execute("SET enable_progress_bar = false")
        self.labels: dict[str, str] = {}  # file path -> how messages name its table

    def close(self) -> None:
        """Close the connection and remove the spill folder."""
        self.con.close()
        self._spill.cleanup()

    def __enter__(self) -> DuckRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _input_error(self, e: duckdb.Error) -> InputError | None:
        message = str(e)
        if "CSV" not in message and "unicode" not in message:
            return None
        label = next((name for path, name in self.labels.items() if path in message), "CSV")
        line = _LINE.search(message)
        row = line.group(1) if line else "?"
        if "unicode" in message.lower():
            return InputError(f"{label}: row {row}: not UTF-8 text")
        detail = next((ln.strip() for ln in message.splitlines()
                       if ln.strip() and not ln.startswith(("Invalid Input", "CSV Error",
                                                            "Original Line"))), "")
        return InputError(f"{label}: row {row}: malformed CSV row ({detail})")

    def execute(self, query: str,
                con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
        """Run ``query`` (on ``con``, a cursor, if given); a CSV the reader rejects becomes an
        :class:`InputError`."""
        try:
            return (con or self.con).execute(query)
        except (duckdb.InvalidInputException, duckdb.ConversionException) as e:
            error = self._input_error(e)
            if error is None:
                raise
            raise error from e

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        """All rows of ``query``."""
        return self.execute(query).fetchall()

    def frame(self, query: str) -> pd.DataFrame:
        """``query`` as a pandas frame (NULL becomes NaN in float columns)."""
        return self.execute(query).df()

    def numbered(self, relation: str) -> str:
        """``relation`` with ``_rn``, the row index in storage order."""
        return f"(SELECT row_number() OVER () - 1 AS _rn, * FROM {relation})"

    def attach(self, source: RawSource,
               tables: dict[str, dict[str, Kind]]) -> dict[str, dict[str, Category]]:
        """Register ``raw_<table>`` views (see :func:`attach`)."""
        return attach(self, source, tables)

    def materialize(self, name: str, query: str) -> None:
        """``query`` computed once into table ``name`` (of this connection's private
        in-memory database)."""
        self.execute(f"CREATE OR REPLACE TABLE {name} AS {query}")

    def materialize_all(self, queries: dict[str, str]) -> None:
        """:meth:`materialize` each of several independent queries, all at once.

        Each runs on its own cursor in its own thread, so that one query's single-threaded
        phases (planning, the CSV sniff of a small file, the final merge of an aggregate)
        overlap another's scan. An error is raised once all have ended: the first in the
        order of ``queries``, as if they had run one after the other.
        """
        def run(name: str, query: str) -> BaseException | None:
            cursor = self.con.cursor()
            try:
                self.execute(f"CREATE OR REPLACE TABLE {name} AS {query}", cursor)
            except BaseException as e:  # noqa: BLE001 - re-raised below, in order
                return e
            finally:
                cursor.close()
            return None

        with ThreadPoolExecutor(max_workers=len(queries)) as pool:
            futures = [pool.submit(run, name, query) for name, query in queries.items()]
        for future in futures:
            error = future.result()
            if error is not None:
                raise error

    def view(self, name: str, query: str) -> None:
        """``query`` as view ``name``."""
        self.execute(f"CREATE OR REPLACE VIEW {name} AS {query}")

    def register_ids(self, name: str, ids: Sequence[str]) -> None:
        """Temporary table ``name`` with column ``id``."""
        frame = pd.DataFrame({"id": pd.Series(list(ids), dtype=object)})
        self.con.register("_ids_frame", frame)
        self.materialize(name, "SELECT CAST(id AS VARCHAR) AS id FROM _ids_frame")
        self.con.unregister("_ids_frame")

    def columns(self, relation: str) -> dict[str, str]:
        """Column name -> DuckDB type name."""
        return {str(r[0]): str(r[1]) for r in self.rows(f"DESCRIBE SELECT * FROM {relation}")}


def parquet_files(path: pathlib.Path) -> str:
    """The quoted argument of ``read_parquet`` for a Parquet file or a folder of them."""
    return text(str(path / "*.parquet") if path.is_dir() else str(path))


def csv_relation(path: pathlib.Path, header: Sequence[str]) -> str:
    """``read_csv`` of a CSV file with a header row, every column as text (no sniffing)."""
    columns = "{" + ", ".join(f"{text(c)}: 'VARCHAR'" for c in header) + "}"
    return (f"read_csv({text(str(path))}, header = true, auto_detect = false, "
            f"columns = {columns}, delim = ',', quote = '\"', escape = '\"', "
            f"buffer_size = {CSV_BUFFER})")


def attach(runner: DuckRunner, source: RawSource,
           tables: dict[str, dict[str, Kind]]) -> dict[str, dict[str, Category]]:
    """Register view ``raw_<table>`` for each table; return each column's stored category.

    Raises
    ------
    InputError
        A missing file or declared column, or an empty CSV file.
    """
    out = {}
    for table, spec in tables.items():
        path = source.path(table)
        runner.labels[str(path)] = source.label(table)
        if source.format is Format.PARQUET:
            if not path.exists():
                raise InputError(f"{source.label(table)}: file not found")
            relation = f"read_parquet({parquet_files(path)})"
            stored = runner.columns(relation)
        else:
            header = source.header(table)
            if not header:
                raise InputError(f"{source.label(table)}: empty file, "
                                 "expected a header row")
            relation = csv_relation(path, header)
            stored = {c: "VARCHAR" for c in header}
        require_columns(source, table, spec, list(stored))
        runner.view(f"raw_{table}", f"SELECT * FROM {relation}")
        out[table] = {c: category(stored[c]) for c in spec}
    return out
