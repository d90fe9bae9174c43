"""``gridcredit monitor``: grid and bank monitoring nodes as real processes over mutual TLS.

Once per session (``trained``, tests/e2e/conftest.py): synthetic raw data (300 enterprises,
30 months), features at 2022-06, a ``simulate`` run on them (the models). Then a replay of
2022-07..2022-09 from the files with the dashboard on, checked against ``gridcredit warn`` run
by hand and against the scores computed locally from both parties' data; the dashboard in
headless Chromium; a bank killed mid-period and restarted (no duplicate alert, same result);
and the replay from PostgreSQL.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from crypto.sigmoid import sigmoid
from federation.monitor import CRASH_ENV
from federation.protocol.messages import Role
from parties.evaluation.scorecard import Scorecard
from parties.labels.schema import parse_month
from parties.labels.sources import open_source
from parties.model import PartyModel
from parties.monitoring_data import bank_period, grid_period
from parties.outputs import NO_GRID_RECORD
from tests.conftest import REPO, run_cli

TIMEOUT = 120.0
PERIODS = ("2022-07", "2022-08", "2022-09")
BASELINE = ("--baseline-month", "2022-06")  # the training period of the models


class Node:
    """A ``gridcredit`` process whose stdout lines are read into a queue."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.log = log
        with log.open("w", encoding="utf-8") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "federation.cli", *args], stdout=subprocess.PIPE,
                stderr=err, text=True, cwd=REPO, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; stdout {self.seen[-5:]}, "
                             f"stderr {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _grid(root: Path, out: Path, *raw: str) -> Node:
    node = Node(["monitor", "--role", "grid", "--model", str(root / "run/grid/model.json"),
                 "--tls-dir", str(root / "run/certs"), "--out", str(out), *raw],
                out.with_name(f"{out.name}.grid.log"))  # beside the monitor folder
    return node


def _bank(root: Path, out: Path, peer: str, *extra: str, env: dict[str, str] | None = None
          ) -> Node:
    return Node(["monitor", "--role", "bank", "--model", str(root / "run/bank/model.json"),
                 "--tls-dir", str(root / "run/certs"), "--out", str(out), "--peer", peer,
                 "--period-from", PERIODS[0], "--period-to", PERIODS[-1], *extra],
                out.with_name(f"{out.name}.bank.log"), env)


@pytest.fixture
def grid_node(trained: Path, tmp_path: Path) -> Iterator[str]:
    (tmp_path / "g").mkdir()
    node = _grid(trained, tmp_path / "g", "--raw", str(trained / "raw"), *BASELINE)
    try:
        yield node.wait_line(r"^LISTENING ").split()[1]
    finally:
        node.stop()


def _alerts(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _book(out: Path, period: str) -> pd.DataFrame:
    return pd.read_csv(out / "periods" / period / "book.csv", dtype={"id": str},
                       keep_default_na=False, na_values={"points": [""], "change": [""],
                                                         "probability": [""]})


def test_replay_agrees_with_warn_and_local_scores(trained: Path, grid_node: str,
                                                  tmp_path: Path) -> None:
    out = tmp_path / "bank"
    out.mkdir()
    bank = _bank(trained, out, grid_node, "--raw", str(trained / "raw"), "--http", "127.0.0.1:0",
                 *BASELINE)
    try:
        url = "http://" + bank.wait_line(r"^LISTENING ").split()[1] + "/"
        bank.wait_line(r"^REPLAY done")
        alerts = _alerts(out / "alerts.jsonl")
        keys = [(a["period"], a["id"], a["kind"]) for a in alerts]
        assert len(keys) == len(set(keys)) and keys
        for period in PERIODS:
            book = _book(out, period)
            assert list(book.columns) == ["id", "probability", "points", "band", "rating",
                                          "level", "change", "previous_level"]
            _check_ratings_against_warn(trained, book, period, tmp_path)
            _check_scores(trained, book, period)
            drift = pd.read_csv(out / "periods" / period / "drift.csv")
            grid_drift = pd.read_csv(tmp_path / "g" / "grid_periods" / period / "drift.csv")
            assert set(drift["indicator"]).isdisjoint(grid_drift["indicator"])
            assert drift["psi"].notna().all() and grid_drift["psi"].notna().all()
        last = [a for a in alerts if a["period"] == PERIODS[-1]]
        _check_dashboard(url, len(last), tmp_path)
    finally:
        bank.stop()


def _check_ratings_against_warn(root: Path, book: pd.DataFrame, period: str,
                                tmp: Path) -> None:
    ids = tmp / f"ids-{period}.csv"
    book[["id"]].to_csv(ids, index=False)
    out = tmp / f"warn-{period}.csv"
    result = run_cli("warn", "--raw", str(root / "raw"), "--as-of", period, "--ids", str(ids),
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    warn = pd.read_csv(out, dtype={"id": str}, keep_default_na=False).set_index("id")
    expected = np.where(warn["found"] == 1, warn["rating"], NO_GRID_RECORD)
    got = book.set_index("id")["rating"].reindex(warn.index).to_numpy()
    assert (got == expected).all(), period
    assert (got == NO_GRID_RECORD).any() and (got != NO_GRID_RECORD).any()
    scored = ~np.isnan(book["points"].to_numpy(np.float64))
    assert (scored == (book["rating"] != NO_GRID_RECORD).to_numpy()).all()


def _check_scores(root: Path, book: pd.DataFrame, period: str) -> None:
    month = parse_month(period)
    g = grid_period(open_source(root / "raw", "grid"), month,
                    PartyModel.load(root / "run/grid/model.json", Role.GRID))
    model = PartyModel.load(root / "run/bank/model.json", Role.BANK)
    b = bank_period(open_source(root / "raw", "bank"), month, model)
    assert sorted(b.ids) == sorted(book["id"])
    u_g = dict(zip(g.ids, g.u, strict=True))
    both = [(i, u + u_g[i]) for i, u in zip(b.ids, b.u, strict=True) if i in u_g]
    u = np.array([u for _, u in both])
    # calibrated by model.json's Platt scaling, exactly as score and serve (not sigma(u))
    assert model.calibration is not None
    slope, intercept = model.calibration["slope"], model.calibration["intercept"]
    probability = sigmoid(slope * u + intercept)
    assert not np.allclose(probability, sigmoid(u), atol=1e-4)
    ids = [i for i, _ in both]
    got = book.set_index("id").reindex(ids)
    np.testing.assert_allclose(got["probability"].to_numpy(np.float64), probability, atol=1e-5)
    expected = Scorecard(600.0, 50.0, 20.0).points(probability)
    np.testing.assert_allclose(got["points"].to_numpy(np.float64), expected, atol=1e-5)


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    return path


def _check_dashboard(url: str, alert_count: int, tmp: Path) -> None:
    chromium = _chromium()
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp))
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shown = re.search(r'id="alert-count">(\d+)<', dom.stdout)
    assert shown is not None, dom.stdout[:2000]
    assert int(shown.group(1)) == alert_count
    assert f'id="period">{PERIODS[-1]}<' in dom.stdout
    assert 'id="drift-indicators"' in dom.stdout
    shot = tmp / "dashboard.png"
    done = subprocess.run([*flags, "--window-size=1000,1400", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0 and shot.stat().st_size > 1000, done.stderr[-2000:]
    print(f"dashboard screenshot: {shot}")


def test_killed_mid_period_resumes_without_duplicate_alerts(trained: Path, grid_node: str,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "bank"
    out.mkdir()
    raw = ("--raw", str(trained / "raw"))
    crashed = _bank(trained, out, grid_node, *raw, env={CRASH_ENV: PERIODS[1]})
    assert crashed.proc.wait(TIMEOUT) == 137
    assert (out / "periods" / PERIODS[0] / "book.csv").is_file()
    assert not (out / "periods" / PERIODS[1]).exists()
    written = _alerts(out / "alerts.jsonl")
    assert any(a["period"] == PERIODS[1] for a in written)
    again = _bank(trained, out, grid_node, *raw)
    try:
        again.wait_line(rf"^PERIOD {PERIODS[0]} done \(earlier run\)")
        again.wait_line(r"^REPLAY done")
    finally:
        again.stop()
    assert not [line for line in again.seen if line.startswith("LISTENING")]  # no --http
    alerts = _alerts(out / "alerts.jsonl")
    keys = [(a["period"], a["id"], a["kind"]) for a in alerts]
    assert len(keys) == len(set(keys))
    assert alerts[: len(written)] == written
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    once = _bank(trained, fresh, grid_node, *raw)
    try:
        once.wait_line(r"^REPLAY done")
    finally:
        once.stop()
    assert sorted(keys) == sorted((a["period"], a["id"], a["kind"])
                                  for a in _alerts(fresh / "alerts.jsonl"))
    for period in PERIODS:
        pd.testing.assert_frame_equal(_book(out, period), _book(fresh, period))


def test_replay_from_postgresql_equals_files(trained: Path, pg_dsn: str,
                                             pg_schemas: tuple[str, str],
                                             tmp_path: Path) -> None:
    grid_schema, bank_schema = pg_schemas
    result = run_cli("synth", "--enterprises", "300", "--months", "30", "--seed", "5", "--to",
                     pg_dsn, "--grid-schema", grid_schema, "--bank-schema", bank_schema)
    assert result.returncode == 0, result.stderr[-2000:]
    (tmp_path / "g").mkdir()
    grid = _grid(trained, tmp_path / "g", "--raw", pg_dsn, "--schema", grid_schema)
    out = tmp_path / "bank"
    out.mkdir()
    try:
        peer = grid.wait_line(r"^LISTENING ").split()[1]
        bank = _bank(trained, out, peer, "--raw", pg_dsn, "--schema", bank_schema)
        try:
            bank.wait_line(r"^REPLAY done")
        finally:
            bank.stop()
    finally:
        grid.stop()
    files = tmp_path / "files"
    files.mkdir()
    grid = _grid(trained, tmp_path / "g", "--raw", str(trained / "raw"))
    try:
        peer = grid.wait_line(r"^LISTENING ").split()[1]
        bank = _bank(trained, files, peer, "--raw", str(trained / "raw"))
        try:
            bank.wait_line(r"^REPLAY done")
        finally:
            bank.stop()
    finally:
        grid.stop()
    assert (out / "alerts.jsonl").read_text() == (files / "alerts.jsonl").read_text()
    for period in PERIODS:
        pd.testing.assert_frame_equal(_book(out, period), _book(files, period))


class _Hook(BaseHTTPRequestHandler):
    bodies: list[dict[str, list[dict[str, str]]]] = []

    def do_POST(self) -> None:  # noqa: N802
        type(self).bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_alerts_the_webhook_missed_are_sent_on_the_next_run(trained: Path, grid_node: str,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "bank"
    raw = ("--raw", str(trained / "raw"))
    down = _bank(trained, out, grid_node, *raw, "--alert-url", "http://127.0.0.1:1/alerts",
                 "--alert-retries", "0")
    try:
        down.wait_line(r"^REPLAY done")
        assert down.proc.wait(TIMEOUT) == 0
    finally:
        down.stop()
    written = _alerts(out / "alerts.jsonl")
    assert written and _alerts(out / "outbox.jsonl") == written
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.bodies = []
    try:
        up = _bank(trained, out, grid_node, *raw, "--alert-url",
                   f"http://127.0.0.1:{server.server_address[1]}/alerts")
        try:
            up.wait_line(r"^REPLAY done")
            assert up.proc.wait(TIMEOUT) == 0
        finally:
            up.stop()
    finally:
        server.shutdown()
        server.server_close()
    assert [a for body in _Hook.bodies for a in body["alerts"]] == written
    assert not (out / "outbox.jsonl").exists()
