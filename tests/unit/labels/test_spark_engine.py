"""The Spark engine (``local[2]``) runs the same SQL: same tables as DuckDB and the reference.

One session for the module; Java and pyspark come with the test extra and ``.ci/run``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pandas as pd
import pytest

from parties.labels.engine import build_bank_features, build_grid_features
from parties.labels.schema import InputError, parse_month
from parties.labels.sources import open_source
from parties.labels.spark import SparkRunner
from parties.labels.sqlkit import Engine
from parties.labels.synth import synthesize, write_synth
from tests.unit.labels.conftest import AS_OF, bank_csvs, grid_csvs, write_tables
from tests.unit.labels.test_engines import assert_same_table
from tests.unit.labels.test_schema import _corrupt

MASTER = "local[2]"
# Tiny tables: one shuffle partition and no code generation, whole-stage or per expression
# (compiling Java for each of the library's queries costs far more than running them on a few
# hundred rows; interpreted expressions are Spark's own fallback, of the same semantics).
# Performance settings only: the SQL and its results are the same.
SMALL_DATA = {"spark.sql.shuffle.partitions": "1", "spark.default.parallelism": "2",
              "spark.sql.codegen.wholeStage": "false",
              "spark.sql.codegen.factoryMode": "NO_CODEGEN", "spark.sql.adaptive.enabled": "false"}


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkRunner]:
    with SparkRunner(MASTER, SMALL_DATA) as runner:
        yield runner
    runner.spark.stop()


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    base = tmp_path_factory.mktemp("spark")
    write_tables(base / "fixture" / "grid", grid_csvs())
    write_tables(base / "fixture" / "bank", bank_csvs())
    data = synthesize(300, 36, 8)
    write_synth(data, base / "parquet", "parquet")
    return {"fixture": base / "fixture", "parquet": base / "parquet"}


@pytest.mark.parametrize(("root", "as_of"), [("fixture", AS_OF), ("parquet", "2023-06")])
def test_spark_tables_equal_duckdb_and_the_reference(spark: SparkRunner,
                                                     roots: dict[str, pathlib.Path], root: str,
                                                     as_of: str) -> None:
    """CSV files (the hand-computed fixture) and Parquet named by a URL, as on a cluster."""
    month = parse_month(as_of)
    for fn, role in ((build_grid_features, "grid"), (build_bank_features, "bank")):
        ref = fn(roots[root], month, Engine.PANDAS).table
        duck = fn(roots[root], month).table
        where = f"file://{roots[root] / role}" if root == "parquet" else roots[root]
        got = fn(open_source(where, role), month, Engine.SPARK, spark_master=MASTER).table
        assert_same_table(ref, got)
        pd.testing.assert_frame_equal(got, duck, check_exact=True)  # same SQL, same bits


def test_spark_names_the_bad_row_like_the_files(spark: SparkRunner,
                                                tmp_path: pathlib.Path) -> None:
    directory = write_tables(tmp_path, _corrupt("monthly_usage", "A,2022-03,100",
                                                "A,2022-03,abc", grid_csvs()))
    with pytest.raises(InputError) as info:
        build_grid_features(directory, parse_month(AS_OF), Engine.SPARK, spark_master=MASTER)
    assert str(info.value) == (f"{directory}/monthly_usage.csv: row 4, column 'kwh': "
                               "expected a number >= 0, got 'abc'")


@pytest.mark.parametrize(("old", "new", "why"), [
    ("A,2022-03,100", "A,2022-03,100,extra", "expected 3 cells, found 4"),
    ("A,2022-03,100", 'A,"2022-03,100', "a quote is opened and never closed"),
])
def test_spark_names_a_malformed_row_in_one_line(spark: SparkRunner, tmp_path: pathlib.Path,
                                                 old: str, new: str, why: str) -> None:
    directory = write_tables(tmp_path, _corrupt("monthly_usage", old, new, grid_csvs()))
    with pytest.raises(InputError) as info:
        build_grid_features(directory, parse_month(AS_OF), Engine.SPARK, spark_master=MASTER)
    assert str(info.value) == (f"{directory}/monthly_usage.csv: row 4: malformed CSV row "
                               f"({why})")


def test_py4j_stack_traces_stay_off_the_terminal(spark: SparkRunner) -> None:
    """py4j logs a Ctrl-C during a call with its stack through the root logger."""
    import logging

    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        for path in ("/x/py4j/java_gateway.py", "/x/gridcredit/mine.py"):
            root.handle(logging.LogRecord("root", logging.ERROR, path, 1,
                                          "KeyboardInterrupt while sending command.", None, None))
    finally:
        root.removeHandler(handler)
    assert [r.pathname for r in seen] == ["/x/gridcredit/mine.py"]


def test_spark_cli_error_is_one_line_without_java_output(tmp_path: pathlib.Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    directory = write_tables(tmp_path / "raw", _corrupt("monthly_usage", "A,2022-03,100",
                                                        "A,2022-03,100,extra", grid_csvs()))
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "federation.cli", "features", "build", "--role", "grid",
         "--raw", str(directory), "--as-of", AS_OF, "--engine", "spark", "--out",
         str(tmp_path / "g.csv")], capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**os.environ, "TMPDIR": str(temp)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {directory}/monthly_usage.csv: row 4: malformed CSV row "
        "(expected 3 cells, found 4)"]
    assert not (tmp_path / "g.csv").exists()
    assert not list(temp.glob("gridcredit-spark-*.log"))  # the JVM's output went, unneeded
