"""Raw tables in a real PostgreSQL server: ``synth --to``, ``features build --raw DSN``.

The server is the session's ``pg_dsn`` (``GRIDCREDIT_TEST_PG`` or a temporary one); each test
works in fresh schemas that it drops afterwards.
"""

from __future__ import annotations

import pathlib

import psycopg
import pytest
from psycopg import sql

from parties.labels.cli import main
from parties.labels.engine import build_bank_features, build_grid_features
from parties.labels.schema import InputError, parse_month
from parties.labels.sources import open_source
from parties.labels.sqlkit import Engine
from tests.unit.labels.test_engines import assert_same_table

AS_OF = "2023-06"


@pytest.fixture
def loaded(pg_dsn: str, pg_schemas: tuple[str, str], tmp_path: pathlib.Path) -> pathlib.Path:
    """Synthetic data loaded into the server and written as CSV from the same draw."""
    grid, bank = pg_schemas
    assert main(["synth", "--enterprises", "400", "--seed", "5", "--out", str(tmp_path / "s"),
                 "--to", pg_dsn, "--grid-schema", grid, "--bank-schema", bank]) == 0
    return tmp_path / "s"


def test_features_from_postgres_equal_features_from_files(
        pg_dsn: str, pg_schemas: tuple[str, str], loaded: pathlib.Path,
        tmp_path: pathlib.Path) -> None:
    for role, schema in zip(("grid", "bank"), pg_schemas, strict=True):
        from_db, from_files = tmp_path / f"{role}.db.csv", tmp_path / f"{role}.files.csv"
        assert main(["features", "build", "--role", role, "--raw", pg_dsn, "--schema", schema,
                     "--as-of", AS_OF, "--out", str(from_db)]) == 0
        assert main(["features", "build", "--role", role, "--raw", str(loaded),
                     "--as-of", AS_OF, "--out", str(from_files)]) == 0
        assert from_db.read_bytes() == from_files.read_bytes()


def test_reference_engine_reads_postgres_too(pg_dsn: str, pg_schemas: tuple[str, str],
                                             loaded: pathlib.Path) -> None:
    month = parse_month(AS_OF)
    grid = open_source(pg_dsn, "grid", pg_schemas[0])
    assert_same_table(build_grid_features(grid, month, Engine.PANDAS).table,
                      build_grid_features(grid, month).table)
    bank = open_source(pg_dsn, "bank", pg_schemas[1])
    assert_same_table(build_bank_features(loaded, month, Engine.PANDAS).table,
                      build_bank_features(bank, month).table)


def _execute(dsn: str, query: sql.Composable, *params: object) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query, params)


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("kwh", "-5", "column 'kwh': expected a number >= 0, got '-5'"),
    ("month", "2022-13", "column 'month': expected a month YYYY-MM, got '2022-13'"),
])
def test_bad_cell_names_table_row_key_and_column(pg_dsn: str, pg_schemas: tuple[str, str],
                                                 loaded: pathlib.Path, column: str,
                                                 value: str, expected: str) -> None:
    grid = pg_schemas[0]
    _execute(pg_dsn, sql.SQL("ALTER TABLE {}.monthly_usage ALTER COLUMN kwh TYPE TEXT, "
                             "ALTER COLUMN month TYPE TEXT").format(sql.Identifier(grid)))
    _execute(pg_dsn, sql.SQL("UPDATE {}.monthly_usage SET {} = %s WHERE (ent_id, month) = "
                             "(SELECT ent_id, month FROM {}.monthly_usage ORDER BY ent_id, "
                             "month OFFSET 100 LIMIT 1) RETURNING ent_id").format(
        sql.Identifier(grid), sql.Identifier(column), sql.Identifier(grid)), value)
    with psycopg.connect(pg_dsn) as conn:
        ent_id = conn.execute(sql.SQL("SELECT ent_id FROM {}.monthly_usage ORDER BY ent_id, "
                                      "month OFFSET 100 LIMIT 1").format(
            sql.Identifier(grid))).fetchone()
    assert ent_id is not None
    with pytest.raises(InputError) as info:
        build_grid_features(open_source(pg_dsn, "grid", grid), parse_month(AS_OF))
    message = str(info.value)
    assert message.startswith(f"{grid}.monthly_usage: row (ent_id='{ent_id[0]}', month=")
    assert message.endswith(expected) and "\n" not in message
    assert "postgresql://" not in message  # the DSN (and any password) never appears


def test_missing_table_and_unreachable_server(pg_dsn: str, pg_schemas: tuple[str, str],
                                              loaded: pathlib.Path) -> None:
    grid = pg_schemas[0]
    _execute(pg_dsn, sql.SQL("DROP TABLE {}.events").format(sql.Identifier(grid)))
    with pytest.raises(InputError, match=rf"^{grid}\.events: table not found"):
        build_grid_features(open_source(pg_dsn, "grid", grid), parse_month(AS_OF))
    closed = "postgresql://nobody:secret@127.0.0.1:9/none"
    with pytest.raises(InputError, match="cannot connect") as info:
        build_grid_features(open_source(closed, "grid"), parse_month(AS_OF))
    assert "secret" not in str(info.value)


def test_synth_never_overwrites_tables(pg_dsn: str, pg_schemas: tuple[str, str],
                                       loaded: pathlib.Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    grid, bank = pg_schemas
    capsys.readouterr()
    assert main(["synth", "--enterprises", "50", "--to", pg_dsn, "--grid-schema", grid,
                 "--bank-schema", bank]) == 2
    assert "table exists already" in capsys.readouterr().err
    month = parse_month(AS_OF)
    assert len(build_grid_features(open_source(pg_dsn, "grid", grid), month).table) > 300


@pytest.mark.parametrize(("role", "as_of", "side"), [("grid", "2020-01", "before the first"),
                                                     ("grid", "2030-01", "after the last"),
                                                     ("bank", "2020-06", "before the first")])
def test_as_of_outside_the_tables_is_refused(pg_dsn: str, pg_schemas: tuple[str, str],
                                             loaded: pathlib.Path, tmp_path: pathlib.Path,
                                             capsys: pytest.CaptureFixture[str], role: str,
                                             as_of: str, side: str) -> None:
    schema = pg_schemas[0] if role == "grid" else pg_schemas[1]
    out = tmp_path / "f.csv"
    assert main(["features", "build", "--role", role, "--raw", pg_dsn, "--schema", schema,
                 "--as-of", as_of, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --as-of {as_of}: {side} month of the data in schema {schema} "
                   "(2021-01 to 2023-12)\n")
    assert not out.exists()
