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
"""

from __future__ import annotations

from collections.abc import Sequence
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


class SparkRunner:
    """A Spark session used by the checks and the indicator queries."""

    dialect = SPARK
    order_expr = "monotonically_increasing_id()"

    def __init__(self, master: str, conf: dict[str, str] | None = None) -> None:
        from pyspark.sql import SparkSession

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
            self.spark = builder.getOrCreate()
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
            frame = self._read(source, table)
            stored = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
            require_columns(source, table, spec, list(stored))
            frame.createOrReplaceTempView(f"raw_{table}")
            out[table] = {c: category(stored[c]) for c in spec}
        return out
