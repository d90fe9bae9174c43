"""parties.monitoring_stage against a real PostgreSQL server: a party's tables are copied out
once and again only after a committed insert, update or delete."""

from __future__ import annotations

import psycopg
from psycopg import sql

from parties.labels.cli import main
from parties.labels.schema import GRID_TABLES
from parties.labels.sources import open_source
from parties.monitoring_stage import StagedTables


def _run(dsn: str, query: sql.Composed) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query)


def test_tables_are_restaged_only_when_they_change(pg_dsn: str,
                                                   pg_schemas: tuple[str, str]) -> None:
    grid, bank = pg_schemas
    assert main(["synth", "--enterprises", "200", "--months", "30", "--seed", "3", "--to",
                 pg_dsn, "--grid-schema", grid, "--bank-schema", bank]) == 0
    tables = StagedTables(open_source(pg_dsn, "grid", grid), list(GRID_TABLES))
    usage = sql.SQL("{}.monthly_usage").format(sql.Identifier(grid))
    try:
        first = tables.current()
        assert first.root is not None and tables.copies == 1
        lines = (first.root / "monthly_usage.csv").read_text().count("\n")
        assert tables.current() is first and tables.copies == 1  # unchanged: no copy
        _run(pg_dsn, sql.SQL("INSERT INTO {} VALUES ('NEW-1', '2030-01', 5.0)").format(usage))
        second = tables.current()
        assert tables.copies == 2 and second.root is not None and not first.root.exists()
        text = (second.root / "monthly_usage.csv").read_text()
        assert text.count("\n") == lines + 1 and "NEW-1" in text
        _run(pg_dsn, sql.SQL("UPDATE {} SET kwh = 6.0 WHERE ent_id = 'NEW-1'").format(usage))
        assert tables.current() is not second and tables.copies == 3
        _run(pg_dsn, sql.SQL("DELETE FROM {} WHERE ent_id = 'NEW-1'").format(usage))
        last = tables.current()
        assert tables.copies == 4 and last.root is not None
        assert (last.root / "monthly_usage.csv").read_text().count("\n") == lines
    finally:
        tables.close()
    assert last.root is not None and not last.root.exists()
    folder = open_source("/nonexistent-but-a-folder", "grid")
    assert StagedTables(folder, ["enterprises"]).current() is folder  # files: read in place
