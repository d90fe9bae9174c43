"""``gridcredit monitor`` refusing bad input as real processes: one ``error:`` line, a
non-zero exit and nothing announced or half-written.

The grid node checks its Table 7 rules and its data (reachable, tables present, one month
computed whole) before it prints ``LISTENING``; a failure after that (its data broken while
it runs) reaches the bank as a generic reason, the detail staying in the grid's log.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import REPO
from tests.e2e.test_monitor import PERIODS, TIMEOUT, Node, _grid, grid_node  # noqa: F401

pytestmark = pytest.mark.e2e


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """A monitor node that must end by itself (bounded)."""
    return subprocess.run([sys.executable, "-m", "federation.cli", "monitor", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=TIMEOUT)


def _refused(result: subprocess.CompletedProcess[str], *says: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines[-10:]
    assert "LISTENING" not in result.stdout
    for part in says:
        assert part in lines[0], lines[0]
    return lines[0]


def _grid_args(root: Path, out: Path, *raw: str) -> list[str]:
    return ["--role", "grid", "--model", str(root / "run/grid/model.json"), "--tls-dir",
            str(root / "run/certs"), "--out", str(out), *raw]


def test_grid_refuses_a_malformed_folder_before_listening(trained: Path,
                                                          tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(trained / "raw", raw)
    (raw / "grid" / "monthly_usage.csv").unlink()
    _refused(_run(*_grid_args(trained, tmp_path / "g", "--raw", str(raw))), "monthly_usage")
    assert not (tmp_path / "g").exists()  # checked before --out is created


def test_grid_refuses_table7_with_an_unknown_indicator(trained: Path, tmp_path: Path) -> None:
    rules = tmp_path / "table7.toml"
    rules.write_text('[rules.no_such_indicator]\nalert = "(0, inf)"\n')
    _refused(_run(*_grid_args(trained, tmp_path / "g", "--raw", str(trained / "raw"),
                              "--table7", str(rules))), "--table7", "no_such_indicator")
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize("fault", ["schema", "user"])
def test_grid_refuses_an_unreadable_database_before_listening(trained: Path, pg_dsn: str,
                                                              tmp_path: Path,
                                                              fault: str) -> None:
    dsn, schema, says = pg_dsn, "no_such_schema", "no_such_schema.monthly_usage"
    if fault == "user":
        parts = urlsplit(pg_dsn)
        host = parts.netloc.rsplit("@", 1)[-1]
        dsn, schema = urlunsplit(parts._replace(netloc=f"no_such_user@{host}")), "grid"
        says = "no_such_user"
    _refused(_run(*_grid_args(trained, tmp_path / "g", "--raw", dsn, "--schema", schema)),
             "postgresql", says)
    assert not (tmp_path / "g").exists()


def test_a_grid_failure_later_reaches_the_bank_as_a_generic_reason(trained: Path,
                                                                   tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(trained / "raw", raw)
    (tmp_path / "g").mkdir()
    grid = _grid(trained, tmp_path / "g", "--raw", str(raw))
    try:
        peer = grid.wait_line(r"^LISTENING ").split()[1]
        (raw / "grid" / "monthly_usage.csv").write_text("not,a\nusage,table\n")  # broken while up
        logs = tmp_path / "logs"
        logs.mkdir()
        bank = Node(["monitor", "--role", "bank", "--model", str(trained / "run/bank/model.json"),
                     "--tls-dir", str(trained / "run/certs"), "--out", str(tmp_path / "bank"),
                     "--peer", peer, "--raw", str(trained / "raw"), "--period-from",
                     PERIODS[0], "--period-to", PERIODS[0]], logs / "bank.log")
        try:
            assert bank.proc.wait(TIMEOUT) != 0
        finally:
            bank.stop()
        said = (logs / "bank.log").read_text().strip().splitlines()
        assert len(said) == 1 and said[0].startswith("error: "), said[-10:]
        assert f"the grid could not read its data for period {PERIODS[0]}" in said[0]
        assert str(raw) not in said[0] and "monthly_usage" not in said[0]
        assert grid.proc.poll() is None  # the grid keeps serving
    finally:
        grid.stop()
    grid_log = (tmp_path / "g.grid.log").read_text()
    assert "cannot build the period" in grid_log and "monthly_usage" in grid_log
    assert "Traceback" not in grid_log and "Exception iterating" not in grid_log


def _bank_args(root: Path, out: Path, peer: str, *extra: str) -> list[str]:
    return ["--role", "bank", "--model", str(root / "run/bank/model.json"), "--tls-dir",
            str(root / "run/certs"), "--out", str(out), "--peer", peer, "--raw",
            str(root / "raw"), "--period-from", PERIODS[0], "--period-to", PERIODS[0], *extra]


def test_bank_refuses_a_users_folder_and_leaves_it_untouched(trained: Path,
                                                             tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "alerts.jsonl").write_text('{"mine": "yes"}\n')
    _refused(_run(*_bank_args(trained, mine, "127.0.0.1:1")), str(mine),
             "not a gridcredit monitor folder")
    assert sorted(p.name for p in mine.iterdir()) == ["alerts.jsonl"]
    assert (mine / "alerts.jsonl").read_text() == '{"mine": "yes"}\n'


def test_a_second_bank_on_the_same_folder_is_refused(trained: Path, grid_node: str,  # noqa: F811
                                                     tmp_path: Path) -> None:
    out = tmp_path / "bank"
    first = Node(["monitor", *_bank_args(trained, out, grid_node, "--http", "127.0.0.1:0")],
                 tmp_path / "first.log")
    try:
        first.wait_line(r"^REPLAY done")  # it keeps the folder while serving the dashboard
        audit = (out / "bank_monitor_audit.jsonl").read_bytes()
        _refused(_run(*_bank_args(trained, out, grid_node)), "another bank monitor")
        assert (out / "bank_monitor_audit.jsonl").read_bytes() == audit
    finally:
        first.stop()
    verify = subprocess.run([sys.executable, "-m", "federation.cli", "audit", "verify",
                             str(out / "bank_monitor_audit.jsonl")], capture_output=True,
                            text=True, cwd=REPO, timeout=TIMEOUT)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_bank_refuses_an_empty_loan_book_before_any_session(trained: Path,
                                                             tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(trained / "raw", raw)
    for table in ("loans", "repayments"):  # header-only tables
        path = raw / "bank" / f"{table}.csv"
        path.write_text(path.read_text().splitlines()[0] + "\n")
    out = tmp_path / "bank"
    args = _bank_args(trained, out, "127.0.0.1:1")
    args[args.index("--raw") + 1] = str(raw)
    _refused(_run(*args), "loans.csv: no rows")
    assert not out.exists()


def test_bank_refuses_months_after_its_own_data_before_any_session(trained: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "bank"
    args = _bank_args(trained, out, "127.0.0.1:1")
    args[args.index("--period-from") + 1] = "2030-01"
    args[args.index("--period-to") + 1] = "2030-02"
    line = _refused(_run(*args), "--period-from 2030-01", "end at ")
    assert re.search(r"end at \d{4}-\d{2}", line)
    assert not out.exists()


def test_bank_names_a_busy_dashboard_port_and_leaves_no_folder(trained: Path,
                                                               tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = tmp_path / "bank"
        _refused(_run(*_bank_args(trained, out, "127.0.0.1:1", "--http",
                                  f"127.0.0.1:{port}")), f"--http 127.0.0.1:{port}",
                 f"port {port}")
    assert not out.exists()


def test_bank_with_an_unreadable_database_leaves_no_folder(trained: Path, pg_dsn: str,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "bank"
    args = _bank_args(trained, out, "127.0.0.1:1", "--schema", "no_such_schema")
    args[args.index("--raw") + 1] = pg_dsn
    _refused(_run(*args), "no_such_schema")
    assert not out.exists()


def test_grid_refuses_a_busy_listen_port_and_leaves_no_folder(trained: Path,
                                                              tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _refused(_run(*_grid_args(trained, tmp_path / "g", "--raw", str(trained / "raw"),
                                  "--listen", f"127.0.0.1:{port}")), f"127.0.0.1:{port}")
    assert not (tmp_path / "g").exists()
