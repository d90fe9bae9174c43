"""``gridcredit monitor --watch`` against a real PostgreSQL server: a month runs when it lands.

Both parties' tables are loaded as of 2022-08 (the rows of later months are held back in
side tables). A bank watching from 2022-08 runs that month, waits for its own 2022-09 rows,
then for the grid's ("not yet" from the grid), and runs 2022-09 as soon as both are in: the
same scores and ratings as ``warn`` and the local scores of that month, its alerts, and each
party's indicator drift against the training period in its own folder. The watch ends on
``--max-periods`` and, restarted with no bound, on SIGTERM while it waits.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import psycopg
from psycopg import sql

from federation.protocol.messages import Role
from parties.model import PartyModel
from tests.conftest import run_cli
from tests.e2e.test_monitor import (
    TIMEOUT,
    Node,
    _alerts,
    _book,
    _check_ratings_against_warn,
    _check_scores,
)

HELD = {"grid": ("monthly_usage", "bills"), "bank": ("repayments", "taxes")}
FIRST, NEXT, LATER = "2022-08", "2022-09", "2022-10"


def _sql(dsn: str, *queries: sql.Composed) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for query in queries:
            conn.execute(query)


def _hold_back(dsn: str, schema: str, role: str) -> None:
    """Move the rows after FIRST of ``role``'s monthly tables into ``held_<table>``."""
    for table in HELD[role]:
        s, t, h = sql.Identifier(schema), sql.Identifier(table), sql.Identifier(f"held_{table}")
        _sql(dsn, sql.SQL("CREATE TABLE {}.{} AS SELECT * FROM {}.{} WHERE month > {}").format(
            s, h, s, t, sql.Literal(FIRST)),
            sql.SQL("DELETE FROM {}.{} WHERE month > {}").format(s, t, sql.Literal(FIRST)))


def _land(dsn: str, schema: str, role: str, month: str) -> None:
    """Insert ``month``'s held rows of ``role`` back: the month's data arrive."""
    for table in HELD[role]:
        s, t, h = sql.Identifier(schema), sql.Identifier(table), sql.Identifier(f"held_{table}")
        _sql(dsn, sql.SQL("INSERT INTO {}.{} SELECT * FROM {}.{} WHERE month = {}").format(
            s, t, s, h, sql.Literal(month)))


def test_watch_runs_a_month_once_both_parties_hold_it(trained: Path, pg_dsn: str,  # noqa: F811
                                                      pg_schemas: tuple[str, str],
                                                      tmp_path: Path) -> None:
    grid_schema, bank_schema = pg_schemas
    result = run_cli("synth", "--enterprises", "300", "--months", "30", "--seed", "5", "--to",
                     pg_dsn, "--grid-schema", grid_schema, "--bank-schema", bank_schema)
    assert result.returncode == 0, result.stderr[-2000:]
    _hold_back(pg_dsn, grid_schema, "grid")
    _hold_back(pg_dsn, bank_schema, "bank")
    g, out = tmp_path / "g", tmp_path / "bank"
    g.mkdir()
    out.mkdir()
    certs, base = str(trained / "run/certs"), ("--baseline-month", "2022-06")
    grid = Node(["monitor", "--role", "grid", "--model", str(trained / "run/grid/model.json"),
                 "--tls-dir", certs, "--out", str(g), "--raw", pg_dsn, "--schema", grid_schema,
                 *base], tmp_path / "grid.log")
    try:
        peer = grid.wait_line(r"^LISTENING ").split()[1]
        bank_args = ["monitor", "--role", "bank", "--model", str(trained / "run/bank/model.json"),
                     "--tls-dir", certs, "--out", str(out), "--peer", peer, "--raw", pg_dsn,
                     "--schema", bank_schema, "--watch", "--poll-seconds", "0.3",
                     "--period-from", FIRST, *base]
        bank = Node([*bank_args, "--max-periods", "2"], tmp_path / "bank.log")
        try:
            bank.wait_line(rf"^PERIOD {FIRST} done ")
            bank.wait_line(rf"^WAITING {NEXT} for bank data$")
            _land(pg_dsn, bank_schema, "bank", NEXT)
            bank.wait_line(rf"^WAITING {NEXT} for grid data$")
            assert not (out / "periods" / NEXT).exists()
            _land(pg_dsn, grid_schema, "grid", NEXT)
            bank.wait_line(rf"^PERIOD {NEXT} done ")
            bank.wait_line(r"^WATCH done \(2 periods\)$")
            assert bank.proc.wait(TIMEOUT) == 0
        finally:
            bank.stop()
        _check_period(trained, out, g, tmp_path)
        again = Node(bank_args, tmp_path / "bank2.log")
        try:
            again.wait_line(rf"^PERIOD {NEXT} done \(earlier run\)$")
            again.wait_line(rf"^WAITING {LATER} for bank data$")
            again.proc.send_signal(signal.SIGTERM)
            again.wait_line(r"^WATCH done \(stopped\)$", timeout=20)
            assert again.proc.wait(20) == 0
        finally:
            again.stop()
        assert "Traceback" not in (tmp_path / "bank2.log").read_text()
    finally:
        grid.stop()


def _check_period(root: Path, out: Path, g: Path, tmp: Path) -> None:
    book = _book(out, NEXT)
    _check_scores(root, book, NEXT)
    _check_ratings_against_warn(root, book, NEXT, tmp)
    summary = json.loads((out / "periods" / NEXT / "summary.json").read_text())
    alerts = [a for a in _alerts(out / "alerts.jsonl") if a["period"] == NEXT]
    assert summary["alerts"] == len(alerts)
    bank_model = PartyModel.load(root / "run/bank/model.json", Role.BANK)
    grid_model = PartyModel.load(root / "run/grid/model.json", Role.GRID)
    drift = pd.read_csv(out / "periods" / NEXT / "drift.csv")
    assert drift["indicator"].tolist() == bank_model.features
    assert drift["psi"].notna().all() and (drift["period_rows"] == len(book)).all()
    assert set(summary["psi_indicators"]) == set(bank_model.features)
    own = pd.read_csv(g / "grid_periods" / NEXT / "drift.csv")
    assert own["indicator"].tolist() == grid_model.features
    assert not set(grid_model.features) & set(drift["indicator"])  # the grid's stay with it
