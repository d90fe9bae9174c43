"""Malformed raw files raise InputError naming file, row (header = row 1) and column."""

from __future__ import annotations

import pathlib

import pytest

from parties.labels.schema import InputError, load_bank, load_grid
from tests.unit.labels.conftest import bank_csvs, grid_csvs, write_tables


def _corrupt(table: str, old: str, new: str, tables: dict[str, str]) -> dict[str, str]:
    assert old in tables[table]
    return {**tables, table: tables[table].replace(old, new, 1)}


GRID_CASES = [
    ("monthly_usage", "A,2022-03,100", "A,2022-13,100", "row 4, column 'month'"),
    ("monthly_usage", "A,2022-03,100", "A,2022-03,-5", "row 4, column 'kwh'"),
    ("monthly_usage", "A,2022-03,100", "A,2022-03,abc", "row 4, column 'kwh'"),
    ("monthly_usage", "A,2022-03,100", "A,2022-02,100", "row 4, column 'ent_id,month'"),
    ("monthly_usage", "A,2022-03,100", "Z,2022-03,100", "row 4, column 'ent_id'"),
    ("monthly_usage", "ent_id,month,kwh", "ent_id,month,kw", "row 1, column 'kwh'"),
    ("bills", "2023-06-15,120", "2023-06-31,120", "row 3, column 'paid_date'"),
    ("bills", "2023-06-15,120", "2023-06-15,1.5", "row 3, column 'late_days'"),
    ("events", "2023-08-05,theft", "2023-08-05,fraud", "row 6, column 'type'"),
    ("enterprises", "2020-01-10,100", "10/01/2020,100", "row 2, column 'account_open_date'"),
    ("monthly_usage", "A,2022-03,100", "A,2022-03,100,7", "row 4"),
]


@pytest.mark.parametrize(("table", "old", "new", "where"), GRID_CASES)
def test_malformed_grid_cell(tmp_path: pathlib.Path, table: str, old: str, new: str,
                             where: str) -> None:
    directory = write_tables(tmp_path, _corrupt(table, old, new, grid_csvs()))
    with pytest.raises(InputError) as info:
        load_grid(directory)
    message = str(info.value)
    assert f"{table}.csv" in message and where in message and "\n" not in message


def test_missing_file(tmp_path: pathlib.Path) -> None:
    directory = write_tables(tmp_path, grid_csvs())
    (directory / "events.csv").unlink()
    with pytest.raises(InputError, match="events.csv: file not found"):
        load_grid(directory)


def test_sensitive_values_are_not_echoed(tmp_path: pathlib.Path) -> None:
    tables = _corrupt("enterprises", "110101199003071234", "", grid_csvs())
    tables = _corrupt("enterprises", "张三丰", "", tables)
    with pytest.raises(InputError) as info:
        load_grid(write_tables(tmp_path, tables))
    assert "row 2, column 'name'" in str(info.value) and "<masked>" in str(info.value)


def test_bank_repayment_of_unknown_loan(tmp_path: pathlib.Path) -> None:
    tables = _corrupt("repayments", "E2,L2,2023-01", "E2,L9,2023-01", bank_csvs())
    with pytest.raises(InputError, match=r"repayments.csv: row \d+, column 'loan_id'"):
        load_bank(write_tables(tmp_path, tables))


def test_bank_zero_term(tmp_path: pathlib.Path) -> None:
    tables = _corrupt("loans", "120000,12", "120000,0", bank_csvs())
    with pytest.raises(InputError, match="loans.csv: row 2, column 'term_months'"):
        load_bank(write_tables(tmp_path, tables))


def test_valid_fixture_loads_typed(grid_dir: pathlib.Path) -> None:
    raw = load_grid(grid_dir)
    assert raw.usage["month"].dtype.kind == "i" and raw.bills["due_date"].dtype.kind == "M"
    assert raw.events["amount"].isna().sum() == 0  # an empty outage amount reads as 0
