"""The SQL engine (DuckDB) against the numpy reference: every indicator, every source format."""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest

from parties.labels.engine import build_bank_features, build_grid_features
from parties.labels.features import FeatureBuild
from parties.labels.output import write_csv
from parties.labels.schema import parse_month
from parties.labels.sqlkit import DUCKDB, EXACT, Engine, _to_exact, exact_sum, total
from parties.labels.synth import synthesize, write_synth
from parties.labels.writers import write_csv_fast
from tests.unit.labels.conftest import AS_OF

TOLERANCE = 1e-9  # relative and absolute; NaN where the reference has NaN


def assert_same_table(ref: pd.DataFrame, got: pd.DataFrame) -> None:
    """Same columns in the same order, same IDs in the same order, values to 1e-9."""
    assert list(got.columns) == list(ref.columns)
    assert got["id"].tolist() == ref["id"].tolist()
    assert (got.dtypes == ref.dtypes).all()
    for column in ref.columns[1:]:
        want, have = ref[column].to_numpy(np.float64), got[column].to_numpy(np.float64)
        np.testing.assert_array_equal(np.isnan(have), np.isnan(want), err_msg=column)
        np.testing.assert_allclose(have, want, rtol=TOLERANCE, atol=TOLERANCE, err_msg=column)


def _both(fn: object, raw: object, as_of: int, **kw: object) -> tuple[FeatureBuild, FeatureBuild]:
    build = fn  # type: ignore[assignment]
    return (build(raw, as_of, Engine.PANDAS, **kw),  # type: ignore[operator]
            build(raw, as_of, Engine.DUCKDB, **kw))  # type: ignore[operator]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("synth")
    write_synth(synthesize(600, 36, 21), root)
    write_synth(synthesize(600, 36, 21), root / "parquet", "parquet")
    return root


@pytest.mark.parametrize("model_only", [True, False])
def test_hand_computed_grid_fixture_matches_reference(grid_dir: pathlib.Path,
                                                      model_only: bool) -> None:
    ref, got = _both(build_grid_features, grid_dir, parse_month(AS_OF), model_only=model_only)
    assert_same_table(ref.table, got.table)
    assert got.table.set_index("id").loc["A", "late_days_12m"] == 210  # the paper's example
    pd.testing.assert_frame_equal(got.dictionary, ref.dictionary)


def test_hand_computed_bank_fixture_matches_reference(bank_dir: pathlib.Path) -> None:
    ref, got = _both(build_bank_features, bank_dir, parse_month(AS_OF))
    assert_same_table(ref.table, got.table)
    assert got.excluded == ref.excluded == 1


@pytest.mark.parametrize("as_of", ["2023-06", "2022-12", "2022-02"])
def test_synthetic_data_every_indicator_agrees(synth_root: pathlib.Path, as_of: str) -> None:
    month = parse_month(as_of)
    for fn in (build_grid_features, build_bank_features):
        ref, got = _both(fn, synth_root, month)
        assert_same_table(ref.table, got.table)
        assert got.excluded == ref.excluded
    ref, got = _both(build_grid_features, synth_root, month, model_only=False)
    assert_same_table(ref.table, got.table)
    # windows longer than the connection stay missing, never 0
    short = got.table["account_age_months"] < 24
    assert short.any() and got.table.loc[short, "use_yoy_index_12m"].isna().all()


def test_parquet_folder_gives_the_same_bytes_as_csv(synth_root: pathlib.Path,
                                                    tmp_path: pathlib.Path) -> None:
    for fn in (build_grid_features, build_bank_features):
        csv = fn(synth_root, parse_month("2023-06")).table
        parquet = fn(synth_root / "parquet", parse_month("2023-06")).table
        write_csv_fast(tmp_path / "a.csv", csv)
        write_csv_fast(tmp_path / "b.csv", parquet)
        assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_runs_are_deterministic_to_the_bit(synth_root: pathlib.Path) -> None:
    one = build_grid_features(synth_root, parse_month("2023-06")).table
    two = build_grid_features(synth_root, parse_month("2023-06")).table
    pd.testing.assert_frame_equal(one, two, check_exact=True)


def test_a_loan_book_subset_keeps_the_full_table_values(synth_root: pathlib.Path) -> None:
    month = parse_month("2023-06")
    full = build_grid_features(synth_root, month).table
    book = list(full["id"].iloc[::7]) + ["NOT-A-CUSTOMER"]
    part = build_grid_features(synth_root, month, ids=book).table
    pd.testing.assert_frame_equal(part, full[full["id"].isin(book)].reset_index(drop=True),
                                  check_exact=True)
    ref = build_grid_features(synth_root, month, Engine.PANDAS, ids=book).table
    assert_same_table(ref, part)


def test_fast_csv_writer_writes_pandas_bytes(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(3000) * 10.0 ** rng.integers(-20, 20, 3000),
                             [0.0, -0.0, 1e16, 1.5e-7, 1e-5, 0.1, np.nan, 2.0 ** 70, 5e-324]])
    n = len(values)
    frame = pd.DataFrame({"id": [f"x{i}" for i in range(n)], "v": values, "i": np.arange(n),
                          "s": (["", "a b", " lead", 'q"x', "c,d", "张三"] * n)[:n]})
    write_csv(tmp_path / "pandas.csv", frame)
    write_csv_fast(tmp_path / "duckdb.csv", frame)
    assert (tmp_path / "duckdb.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()


@pytest.mark.parametrize("n", [3, 8, 11, 12, 17, 24])
def test_sql_sum_order_is_numpys(n: int) -> None:
    """``total`` adds in numpy's pairwise order: evaluated as Python it gives numpy's bits."""
    rng = np.random.default_rng(n)
    rows = rng.standard_normal((500, n)) * 10.0 ** rng.integers(-8, 8, n)
    expr = total([f"x[{i}]" for i in range(n)])
    got = np.array([eval(expr, {"x": list(map(float, r))}) for r in rows])  # noqa: S307
    np.testing.assert_array_equal(got, rows.sum(axis=1))


def test_duckdb_spellings_of_sums_and_distinct_counts_agree_with_the_shared_ones() -> None:
    """DuckDB's split exact sum (integer cents + other decimals) and its bitwise distinct
    count give what the shared SQL gives, NULL groups, filters and months outside the word
    included."""
    import duckdb

    rng = np.random.default_rng(11)
    n = 30000
    cents = rng.integers(0, 2**42, n) // 10 ** rng.integers(0, 12, n)
    x = np.where(rng.random(n) < 0.2, rng.random(n) * 10.0 ** rng.integers(-6, 12, n),
                 cents / 100.0)
    frame = pd.DataFrame({"g": rng.integers(0, 400, n), "x": x,
                          "m": rng.integers(-40, 120, n), "f": rng.random(n) < 0.5})
    frame.loc[rng.random(n) < 0.05, "x"] = np.nan  # NULL cells
    frame.loc[frame["g"] == 7, "x"] = np.nan  # a group of NULLs only
    con = duckdb.connect()
    con.register("v", frame)
    con.execute("CREATE TABLE t AS SELECT g, CASE WHEN isnan(x) THEN NULL ELSE x END AS x, "
                "CAST(m AS BIGINT) AS m, f FROM v")
    for where in (None, "f", "m > 200"):
        shared, split = exact_sum("x", where), exact_sum("x", where, DUCKDB)
        differ = con.execute(f"SELECT count(*) FROM (SELECT g, {shared} AS a, {split} AS b "
                             "FROM t GROUP BY g) AS s WHERE a IS DISTINCT FROM b").fetchone()
        assert differ == (0,), where
    for low in (0, 30, 100):
        differ = con.execute(
            f"SELECT count(*) FROM (SELECT g, count(DISTINCT m) AS a, "
            f"{DUCKDB.distinct_count('m', low)} AS b FROM t GROUP BY g) AS s "
            "WHERE a <> b").fetchone()
        assert differ == (0,), low


def test_exact_decimal_of_cents_is_the_decimal_of_the_text() -> None:
    """The shortcut for whole cents gives the decimal of the double's text, bit for bit."""
    import duckdb

    rng = np.random.default_rng(5)
    cents = rng.integers(0, 2**47, 20000) // 10 ** rng.integers(0, 14, 20000)
    bound = 2.0**40
    values = np.concatenate([
        cents / 100.0, -cents / 100.0, rng.random(5000) * 10.0 ** rng.integers(-6, 12, 5000),
        np.nextafter(cents[:2000] / 100.0, np.inf),
        [bound - 0.01, bound, bound + 0.01, np.nextafter(bound, 0.0), 2.0**46 + 0.25, 0.0, -0.0,
         0.1 + 0.2, 1e-5, 0.125, 0.005, 1e15 + 0.01, 123456789012.35]])
    con = duckdb.connect()
    con.register("v", pd.DataFrame({"x": values}))
    differ, shortcut = con.execute(
        f"SELECT count(*) FILTER (WHERE CAST({_to_exact('x')} AS VARCHAR) <> "
        f"CAST(CAST(CAST(x AS VARCHAR) AS {EXACT}) AS VARCHAR)), count(*) FILTER "
        f"(WHERE abs(x) < 2E0 ^ 40 AND round(x * 100E0) / 100E0 = x) FROM v").fetchone()
    assert differ == 0
    assert shortcut > 30000  # most values took the shortcut
