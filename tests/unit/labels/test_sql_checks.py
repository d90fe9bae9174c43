"""Bad raw tables read by the SQL engine give the pandas loader's one-line messages."""

from __future__ import annotations

import pathlib

import pandas as pd
import pytest

from parties.labels.cli import main
from parties.labels.engine import build_bank_features, build_grid_features
from parties.labels.schema import GRID_TABLES, InputError, load_bank, load_grid, parse_month
from parties.labels.sqlkit import Engine
from parties.labels.writers import write_parquet
from tests.unit.labels.conftest import AS_OF, bank_csvs, grid_csvs, write_tables
from tests.unit.labels.test_schema import GRID_CASES, _corrupt

BANK_CASES = [
    ("repayments", "E2,L2,2023-01", "E2,L9,2023-01", "column 'loan_id'"),
    ("loans", "120000,12", "120000,0", "row 2, column 'term_months'"),
    ("taxes", "E1,2022-02,100", "E1,2022-01,100", "row 3, column 'ent_id,month'"),
    ("repayments", "E2,L2,2023-02,2600", "E2,L2,2023-01,2600", "column 'loan_id,month'"),
    ("taxes", "E1,2022-02,100", "E1,2022-02,1e999", "row 3, column 'tax_amount'"),
]


def _message(call: object) -> str:
    with pytest.raises(InputError) as info:
        call()  # type: ignore[operator]
    return str(info.value)


@pytest.mark.parametrize(("table", "old", "new", "where"), GRID_CASES)
def test_grid_cell_messages_equal_the_loaders(tmp_path: pathlib.Path, table: str, old: str,
                                              new: str, where: str) -> None:
    directory = write_tables(tmp_path, _corrupt(table, old, new, grid_csvs()))
    got = _message(lambda: build_grid_features(directory, parse_month(AS_OF)))
    assert f"{table}.csv" in got and where in got and "\n" not in got
    if "malformed" not in got:  # DuckDB's reader words a broken CSV row its own way
        assert got == _message(lambda: load_grid(directory))


@pytest.mark.parametrize(("table", "old", "new", "where"), BANK_CASES)
def test_bank_cell_messages_equal_the_loaders(tmp_path: pathlib.Path, table: str, old: str,
                                              new: str, where: str) -> None:
    directory = write_tables(tmp_path, _corrupt(table, old, new, bank_csvs()))
    got = _message(lambda: build_bank_features(directory, parse_month(AS_OF)))
    assert f"{table}.csv" in got and where in got
    assert got == _message(lambda: load_bank(directory))


def test_sensitive_values_are_not_echoed(tmp_path: pathlib.Path) -> None:
    tables = _corrupt("enterprises", "张三丰", "", grid_csvs())
    got = _message(lambda: build_grid_features(write_tables(tmp_path, tables),
                                               parse_month(AS_OF)))
    assert "row 2, column 'name'" in got and "<masked>" in got and "张三丰" not in got


@pytest.mark.parametrize(("content", "where"), [
    (b"", ": empty file"),
    (b"ent_id,month,kwh\nA,2022-01,1\xff00\n", "not UTF-8"),
])
def test_unreadable_files(tmp_path: pathlib.Path, content: bytes, where: str) -> None:
    directory = write_tables(tmp_path, grid_csvs())
    (directory / "monthly_usage.csv").write_bytes(content)
    got = _message(lambda: build_grid_features(directory, parse_month(AS_OF)))
    assert "monthly_usage.csv" in got and where in got


def test_parquet_rows_are_numbered_like_files(tmp_path: pathlib.Path) -> None:
    directory = write_tables(tmp_path / "csv", _corrupt("monthly_usage", "A,2022-03,100",
                                                        "A,2022-03,-5", grid_csvs()))
    parquet = tmp_path / "parquet"
    for table, spec in GRID_TABLES.items():
        frame = pd.read_csv(directory / f"{table}.csv", dtype=str, keep_default_na=False)
        write_parquet(parquet / f"{table}.parquet", frame, spec)
    got = _message(lambda: build_grid_features(parquet, parse_month(AS_OF)))
    assert got == (f"{parquet}/monthly_usage.parquet: row 4, column 'kwh': expected a number "
                   ">= 0, got '-5.0'")
    assert _message(lambda: build_grid_features(parquet, parse_month(AS_OF), Engine.PANDAS)) \
        == got


def test_cli_engine_flag_and_bad_input(tmp_path: pathlib.Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    directory = write_tables(tmp_path / "g", _corrupt("bills", "2023-06-15,120",
                                                      "2023-06-31,120", grid_csvs()))
    out = tmp_path / "x.csv"
    for engine in ("duckdb", "pandas"):
        assert main(["features", "build", "--role", "grid", "--raw", str(directory),
                     "--as-of", AS_OF, "--engine", engine, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "row 3, column 'paid_date'" in err
        assert err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize(("old", "new", "where"), [
    ("A,2022-03,100", "A,2022-13,100", "row 4, column 'month': expected a month YYYY-MM, "
                                       "got '2022-13'"),
    ("A,2022-03,100", "A,2022-02,100", "row 4, column 'ent_id,month': duplicate"),
    ("A,2022-03,100", "A,2019-02,100", None),  # a month outside the 64-month word: fine
])
def test_parquet_months_are_checked_once_per_value(tmp_path: pathlib.Path, old: str, new: str,
                                                   where: str | None) -> None:
    """Parquet months are parsed and checked per distinct value (a lookup joined back):
    the same messages, row numbers and features as the CSV path."""
    directory = write_tables(tmp_path / "csv", _corrupt("monthly_usage", old, new,
                                                        grid_csvs()))
    parquet = tmp_path / "parquet"
    for table, spec in GRID_TABLES.items():
        frame = pd.read_csv(directory / f"{table}.csv", dtype=str, keep_default_na=False)
        write_parquet(parquet / f"{table}.parquet", frame, spec)
    if where is None:
        got = build_grid_features(parquet, parse_month(AS_OF)).table
        pd.testing.assert_frame_equal(got, build_grid_features(directory,
                                                               parse_month(AS_OF)).table)
        return
    got = _message(lambda: build_grid_features(parquet, parse_month(AS_OF)))
    assert got.startswith(f"{parquet}/monthly_usage.parquet: {where}")
    assert got.replace(str(parquet), "").replace(".parquet", "") == _message(
        lambda: build_grid_features(directory, parse_month(AS_OF))).replace(
        str(directory), "").replace(".csv", "")


def test_a_database_table_without_a_column_is_named_as_a_table() -> None:
    from parties.labels.checks import require_columns
    from parties.labels.sources import Format, RawSource

    spec = GRID_TABLES["monthly_usage"]
    db = RawSource(Format.POSTGRES, dsn="postgresql://u:secret@h/db", schema="g4")
    with pytest.raises(InputError) as info:
        require_columns(db, "monthly_usage", spec, ["ent_id", "month"])
    assert str(info.value) == "table g4.monthly_usage has no column 'kwh'"
    folder = RawSource(Format.CSV, root=pathlib.Path("raw"))
    with pytest.raises(InputError, match="row 1, column 'kwh': missing from the header"):
        require_columns(folder, "monthly_usage", spec, ["ent_id", "month"])
