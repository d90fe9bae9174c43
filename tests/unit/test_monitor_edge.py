"""Monitoring without processes: the per-period session in process (what crosses), the
webhook (retried, bounded) and the dashboard page."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from federation.monitor import deliver, post_alerts
from federation.monitor_http import render
from parties.evaluation.platt import Platt
from parties.evaluation.scorecard import Scorecard
from parties.monitoring import MonitorStore, WarningRules, compare, summarize
from parties.monitoring_data import GridPeriod
from parties.monitoring_serving import MonitorGrid, PeriodBank
from parties.outputs import NO_GRID_RECORD
from parties.serving import SCORED


def test_a_period_session_carries_u_and_ratings_of_matched_rows_only() -> None:
    asked: list[int] = []

    def build(month: int) -> GridPeriod:
        asked.append(month)
        return GridPeriod(["a", "b", "c", "d"], np.array([0.1, -0.2, 0.3, 0.0]),
                          np.array([0, 3, 2, 1], dtype=np.int8))

    grid = MonitorGrid(build)
    platt = Platt(slope=0.7, intercept=-1.2)  # the bank model's calibration
    bank = PeriodBank(24_000, ["b", "c", "x"], np.array([0.5, -0.5, 0.0]),
                      Scorecard(600.0, 50.0, 20.0), probability=platt.probability)
    opened = bank.open_request()
    assert set(opened.tensors) == {"period"}
    bank.accept_points(grid.open(opened))
    assert asked == [24_000]
    plan, blinded = bank.blinded_request(["b", "c", "x"])
    assert blinded is not None
    rows = bank.rows_request(plan, grid.step(blinded))
    assert rows is not None and set(rows.tensors) == {"index", "keys"}  # the matches only
    assert len(rows.tensors["index"]) == 2
    partial = grid.step(rows)
    assert set(partial.tensors) == {"u", "rating"} and len(partial.tensors["u"]) == 2
    results = bank.results(plan, partial)
    assert [r.status for r in results] == [SCORED, SCORED, NO_GRID_RECORD]
    assert bank.ratings == {"b": "alert", "c": "shrink", "x": NO_GRID_RECORD}
    u = np.array([0.5 - 0.2, -0.5 + 0.3])
    expected = 1 / (1 + np.exp(-(0.7 * u - 1.2)))  # calibrated, as score and serve
    np.testing.assert_allclose([r.probability for r in results[:2]], expected)
    np.testing.assert_allclose([r.points for r in results[:2]],
                               Scorecard(600.0, 50.0, 20.0).points(expected))


class _Flaky(BaseHTTPRequestHandler):
    bodies: list[bytes] = []
    failures = 1

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        fail = type(self).failures > 0
        type(self).failures -= 1
        if not fail:
            type(self).bodies.append(body)
        self.send_response(500 if fail else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_is_retried_and_bounded(hook: str) -> None:
    _Flaky.bodies, _Flaky.failures = [], 1
    alerts = [{"period": "2024-01", "id": "a", "kind": "new alert", "before": "none",
               "after": "alert"}]
    assert post_alerts(hook, alerts, retries=2)
    assert [json.loads(b) for b in _Flaky.bodies] == [{"alerts": alerts}]
    _Flaky.failures = 10
    started = time.monotonic()
    assert not post_alerts(hook, alerts, retries=2)
    assert time.monotonic() - started < 10


def test_undelivered_alerts_wait_in_the_outbox_for_the_next_run(hook: str,
                                                                  tmp_path: Path) -> None:
    store = MonitorStore(tmp_path)
    first = [{"period": "2024-01", "id": "a", "kind": "new alert", "before": "none",
              "after": "alert"}]
    _Flaky.bodies, _Flaky.failures = [], 100  # the receiver is down
    assert not deliver(hook, 0, store, first)
    assert store.pending() == first and _Flaky.bodies == []
    second = [{**first[0], "period": "2024-02"}]
    assert not deliver(hook, 0, store, second)
    assert store.pending() == first + second
    _Flaky.failures = 0  # back up: the next run (no new alert) delivers both, once
    assert deliver(hook, 0, store)
    assert [json.loads(b) for b in _Flaky.bodies] == [{"alerts": first + second}]
    assert store.pending() == [] and not store.outbox_path.exists()


def test_an_alert_is_queued_before_it_is_logged_so_a_kill_between_loses_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alerts = [("a", "new alert", "none -> alert"), ("b", "score drop", "640 -> 600")]
    store = MonitorStore(tmp_path)
    new = store.add_alerts("2024-02", alerts, queue=True)
    # Killed right after the alert log was written: the outbox already holds both.
    assert store.pending() == new and len(new) == 2

    other = MonitorStore(tmp_path / "killed")
    import parties.monitoring as monitoring

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the process dies while appending to alerts.jsonl

    monkeypatch.setattr(monitoring, "open_log", killed)
    with pytest.raises(KeyboardInterrupt):
        other.add_alerts("2024-02", alerts, queue=True)
    monkeypatch.undo()
    assert not other.alerts_path.exists() and len(other.pending()) == 2
    # The rerun of the period finds them new again, logs them, and the outbox keeps one copy.
    assert len(other.add_alerts("2024-02", alerts, queue=True)) == 2
    assert other.pending() == other.alerts() and len(other.alerts()) == 2


def test_dashboard_shows_the_last_period(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path)
    assert "No period completed yet" in render(store)
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

    for period, points in (("2024-01", [600.0, 550.0]), ("2024-02", [560.0, 550.0])):
        book = pd.DataFrame({"id": ["a", "b", "n"], "probability": [0.1, 0.1, np.nan],
                             "points": [*points, np.nan], "band": "",
                             "rating": ["stable", "alert", NO_GRID_RECORD]})
        previous = store.book(store.done()[-1]) if store.done() else None
        book, alerts = compare(book, previous, WarningRules())
        store.add_alerts(period, alerts)
        store.write_period(period, book, summarize(period, book, store.book("2024-01"),
                                                   len(alerts)))
    page = render(store)
    assert 'id="period">2024-02<' in page
    assert 'id="alert-count">1<' in page  # a's score drop of 40 points
    assert 'id="level-alert">1<' in page and "<svg" in page
    assert 'id="level-normal">1<' in page  # the borrower without grid record is not normal
    assert 'id="level-unrated">1<' in page


def test_dashboard_lists_a_borrower_once_and_labels_the_histogram(tmp_path: Path) -> None:
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

    store = MonitorStore(tmp_path)
    for period, points, rating in (("2024-01", [600.0, 640.0, 650.0], "stable"),
                                   ("2024-02", [600.0, 640.0, 600.0], "alert")):
        book = pd.DataFrame({"id": ["a", "b", "c"], "probability": 0.1, "points": points,
                             "band": "", "rating": ["stable", "stable", rating]})
        previous = store.book(store.done()[-1]) if store.done() else None
        book, alerts = compare(book, previous, WarningRules())
        store.add_alerts(period, alerts)
        store.write_period(period, book, summarize(period, book, None, len(alerts)))
    page = render(store)
    table = page[page.index('id="alerts"'):]
    assert table.count("<td>c</td>") == 1  # new alert, rating worsened and score drop: one row
    assert "new alert, rating worsened, score drop" in table
    assert 'id="alert-count">3<' in page and 'id="alert-borrowers">1<' in page
    hist = page[page.index("Score distribution"):page.index("Drift:")]
    assert 'class="bar-value"' in hist and 'text-anchor="end">2<' in hist  # counts, y axis


@pytest.mark.parametrize(("flags", "says"), [
    (["--period-from", "2024-13", "--period-to", "2024-02"], "expected a month YYYY-MM"),
    (["--period-from", "2024-03", "--period-to", "2024-02"], "--period-to must be"),
    (["--period-from", "2024-01", "--period-to", "2024-02", "--http", "0.0.0.0:80"],
     "loopback"),
    (["--period-from", "2024-01", "--period-to", "2024-02", "--rules", "missing.toml"],
     "missing.toml: cannot read"),
    (["--period-from", "2024-01", "--period-to", "2024-02", "--rules", "negative.toml"],
     "negative.toml: [alerts] score_drop = -30: a drop in points must be positive"),
])
def test_bad_flags_one_line_nothing_written(tmp_path: Path, flags: list[str],
                                            says: str) -> None:
    from federation.protocol.messages import Role
    from parties.model import PartyModel
    from tests.conftest import run_cli

    assert run_cli("certs", "--out", str(tmp_path / "certs")).returncode == 0
    model = tmp_path / "bank.json"
    PartyModel(Role.BANK.value, "j", "shared", ["x"], [0.0], [1.0], [1.0], 0.0).save(model)
    out = tmp_path / "out"
    (tmp_path / "negative.toml").write_text("[alerts]\nscore_drop = -30\n")
    flags = [str(tmp_path / f) if f.endswith(".toml") else f for f in flags]
    result = run_cli("monitor", "--role", "bank", "--model", str(model), "--raw",
                     str(tmp_path), "--tls-dir", str(tmp_path / "certs"), "--peer",
                     "127.0.0.1:1", "--out", str(out), *flags)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert not out.exists()
