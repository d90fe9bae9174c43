"""Spark, the cluster engine: the same SQL definitions as DuckDB, run by Spark SQL.

What it does: :class:`SparkRunner` opens a session on a master URL (``local[2]``,
``spark://host:7077``, ``yarn``, ...) or a Spark Connect URL (``sc://host:15002``),
registers a source's tables as temporary views (CSV read with every column as text, or
Parquet), caches the per-enterprise facts, and brings the final table back to the driver in
Arrow batches.

What it assumes: the raw tables are readable by the cluster at the paths given (a local
folder in local mode; ``hdfs://``, ``s3a://``, ... on a cluster); Spark keeps a file's row
order in ``monotonically_increasing_id`` (it numbers partitions in file order), which orders
the output like the enterprises table and numbers rows in error messages. Only the final
table (one row per enterprise) reaches the driver.

Spark's own output (log4j's console, the JDK's warnings, executor stack traces) goes to a log
file in the temporary folder, not the terminal: the JVM is started with that file as its
standard error. :meth:`SparkRunner.input_error` turns Spark's failures into one line naming
the file and, for a malformed CSV row, the row (found by reading the file, as Spark does not
say which); the row's content is never shown.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import logging
import os
import pathlib
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.checks import Category, category, require_columns
from parties.labels.schema import InputError, Kind
from parties.labels.sources import Format, RawSource
from parties.labels.sqlkit import SPARK

LOCAL_CONF = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.driver.memory": "2g",
    "spark.ui.showConsoleProgress": "false",
}


_READ_FILE = re.compile(r"while reading file (\S+?)\.?(?:\s|$)")


@contextlib.contextmanager
def _stderr_to(log: pathlib.Path) -> Iterator[None]:
    """File descriptor 2 pointed at ``log`` meanwhile: a process started now (the JVM) keeps
    writing there for its whole life; this process's stderr is back afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def malformed_row(path: pathlib.Path) -> tuple[int, str] | None:
    """The first malformed row of a CSV file (its line number, the header being 1) and why:
    a cell count other than the header's, or a quote never closed; None if there is none."""
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            reader = csv.reader(stream, strict=True)
            width: int | None = None
            while True:
                start = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return None
                except csv.Error as e:  # a quote left open runs to the end of the file
                    unclosed = "end of data" in str(e) or "field limit" in str(e)
                    return start, "a quote is opened and never closed" if unclosed else str(e)
                if width is None:
                    width = len(row)
                elif len(row) != width:
                    return start, f"expected {width} cells, found {len(row)}"
    except (OSError, UnicodeDecodeError):
        return None


_KEPT_LOGS: set[pathlib.Path] = set()  # Spark logs an error line points the user to


def _drop_log(log: pathlib.Path) -> None:
    """At exit: the JVM's output is of no use unless an error line named the file."""
    if log not in _KEPT_LOGS:
        log.unlink(missing_ok=True)


def _not_py4j(record: logging.LogRecord) -> bool:
    """py4j logs its own stack traces through the root logger (a Ctrl-C during a call, a
    closed gateway); the CLI says what happened in one line instead."""
    return f"{os.sep}py4j{os.sep}" not in record.pathname


def _local(uri: str) -> str:
    return os.path.abspath(re.sub(r"^file:/*", "/", uri))


class SparkRunner:
    """A Spark session used by the checks and the indicator queries."""

    dialect = SPARK
    order_expr = "monotonically_increasing_id()"

    def __init__(self, master: str, conf: dict[str, str] | None = None) -> None:
        # pyspark warns on every conversion that it has not been tested with pandas 3; the
        # engine's tables are compared bit for bit with DuckDB's by the tests.
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                                category=FutureWarning)
        from pyspark.sql import SparkSession

        self.log = pathlib.Path(tempfile.gettempdir()) / f"gridcredit-spark-{os.getpid()}.log"
        self.labels: dict[str, str] = {}  # local path of a table -> how messages name it
        # Kept for the process: the session (and py4j's gateway) outlives this runner.
        logging.getLogger().addFilter(_not_py4j)
        logging.getLogger("py4j").setLevel(logging.CRITICAL)
        remote = master.startswith("sc://")
        active = None if remote else SparkSession.getActiveSession()
        if active is not None:  # the process's session, kept as its creator configured it
            self.spark: Any = active
        else:
            builder: Any = SparkSession.builder.appName("gridcredit-features")
            if remote:
                builder = builder.remote(master)
            else:
                builder = builder.master(master)
                for key, value in {**LOCAL_CONF, **(conf or {})}.items():
                    builder = builder.config(key, value)
            with _stderr_to(self.log):
                self.spark = builder.getOrCreate()
            atexit.register(_drop_log, self.log)  # registered after py4j's: it runs first
        if not remote:
            self.spark.sparkContext.setLogLevel("ERROR")
        self.spark.conf.set("spark.sql.session.timeZone", "UTC")
        self._cached: list[Any] = []

    def close(self) -> None:
        """Drop the cached facts; the session itself is left to the process (it is shared)."""
        for frame in self._cached:
            frame.unpersist()
        self._cached.clear()

    def __enter__(self) -> SparkRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        """All rows of ``query``."""
        return [tuple(r) for r in self.spark.sql(query).collect()]

    def numbered(self, relation: str) -> str:
        """``relation`` with ``_rn``, the row index in storage order (error path only)."""
        return (f"(SELECT row_number() OVER (ORDER BY _rid) - 1 AS _rn, * FROM "
                f"(SELECT monotonically_increasing_id() AS _rid, * FROM {relation}) AS i)")

    def materialize(self, name: str, query: str) -> None:
        """``query`` cached (memory and disk) as temporary view ``name``."""
        frame = self.spark.sql(query).persist()
        self._cached.append(frame)
        frame.createOrReplaceTempView(name)

    def materialize_all(self, queries: dict[str, str]) -> None:
        """:meth:`materialize` each query, in order (Spark schedules the work itself)."""
        for name, query in queries.items():
            self.materialize(name, query)

    def view(self, name: str, query: str) -> None:
        """``query`` as temporary view ``name``."""
        self.spark.sql(query).createOrReplaceTempView(name)

    def register_ids(self, name: str, ids: Sequence[str]) -> None:
        """Temporary view ``name`` with column ``id``."""
        frame = self.spark.createDataFrame([(str(i),) for i in ids], "id STRING")
        frame.createOrReplaceTempView(name)

    def frame(self, query: str) -> pd.DataFrame:
        """``query`` as pandas, in Arrow batches (NULL as NaN in float columns)."""
        return self.spark.sql(query).toPandas()

    def _read(self, source: RawSource, table: str) -> Any:
        path = source.location(table)
        if source.format is Format.PARQUET:
            return self.spark.read.parquet(path)
        header = source.header(table)
        if not header:
            raise InputError(f"{source.label(table)}: empty file, expected a "
                             "header row")
        return self.spark.read.csv(path, header=True, inferSchema=False, escape='"',
                                   encoding="UTF-8", mode="FAILFAST")

    def attach(self, source: RawSource,
               tables: dict[str, dict[str, Kind]]) -> dict[str, dict[str, Category]]:
        """Register ``raw_<table>`` views; return each declared column's stored category.

        Raises
        ------
        InputError
            A missing file or declared column.
        """
        out = {}
        for table, spec in tables.items():
            if source.url is None and source.format is Format.PARQUET \
                    and not source.path(table).exists():
                raise InputError(f"{source.label(table)}: file not found")
            if source.url is None:
                self.labels[os.path.abspath(source.location(table))] = source.label(table)
            frame = self._read(source, table)
            stored = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
            require_columns(source, table, spec, list(stored))
            frame.createOrReplaceTempView(f"raw_{table}")
            out[table] = {c: category(stored[c]) for c in spec}
        return out

    def input_error(self, error: BaseException) -> InputError | None:
        """One line for a Spark failure (None if ``error`` is not Spark's).

        A malformed CSV row is named by file and row (``FILE: row N: malformed CSV row
        (...)``, as DuckDB's); any other failure by its error class and the log file.
        """
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException

        if not isinstance(error, (PySparkException, Py4JError)):
            return None
        text = str(error)
        found = _READ_FILE.search(text)
        path = _local(found.group(1)) if found else None
        label = self.labels.get(path, path) if path else None
        if label is not None and path is not None and "MALFORMED" in text:
            bad = malformed_row(pathlib.Path(path))
            if bad is not None:
                return InputError(f"{label}: row {bad[0]}: malformed CSV row ({bad[1]})")
            return InputError(f"{label}: malformed CSV row (Spark does not say which)")
        kind = re.search(r"\[([A-Z_.]+)\]", text)
        what = kind.group(1) if kind else type(error).__name__
        where = f"{label}: " if label else ""
        _KEPT_LOGS.add(self.log)
        return InputError(f"{where}the Spark engine failed ({what}); Spark's log: {self.log}")
