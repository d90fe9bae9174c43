"""``gridcredit monitor``: post-loan monitoring nodes, grid and bank, over mutual TLS.

The edge around :mod:`parties.monitoring` (the bank's periods, levels, alerts, drift),
:mod:`parties.monitoring_serving` (the per-period serving session, what each party learns)
and :mod:`parties.monitoring_data` (each party's data at a month, from its raw tables).

- The grid node serves ``ServePeer`` to the bank only (as ``serve``); each session the bank
  opens names a month, for which the grid computes its indicators, u_G and Table 7 ratings.
- The bank node replays ``--period-from`` .. ``--period-to``: per month its active loan
  book, u_B, a session with the grid, the joint score and rating of every borrower, warning
  levels, alerts (``alerts.jsonl``, webhook) and ``periods/<YYYY-MM>/``; completed periods
  are skipped on restart. With ``--http`` it then keeps serving the dashboard until SIGTERM.
- Both print ``LISTENING host:port`` (the bank: its dashboard's, or ``-`` without one) and
  audit every party-to-party message (``gridcredit audit verify`` pairs them).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from federation.nodes import ExitCode
from federation.protocol.errors import ConfigError
from federation.protocol.messages import Role
from federation.serve import _announce, _stop_event
from federation.serve_services import GridLink, add_serve_peer
from federation.transport.audit import AuditLog, AuditWriter
from federation.transport.certs import NodeCerts, check_own_certificate
from federation.transport.grpc_server import start_server
from parties.evaluation.scorecard import Scorecard
from parties.labels.schema import format_month, parse_month
from parties.labels.sources import open_source
from parties.labels.warning import DEFAULT_RULES
from parties.model import PartyModel
from parties.monitoring import MonitorStore, compare, load_warning_rules, summarize
from parties.monitoring_data import bank_period, grid_period
from parties.monitoring_serving import MonitorGrid, PeriodBank
from parties.psi_pool import PsiPool
from parties.serving import MAX_IDS

log = logging.getLogger(__name__)
CRASH_ENV = "GRIDCREDIT_MONITOR_CRASH_AFTER_ALERTS"  # fault injection for the restart test


@dataclass(frozen=True)
class MonitorConfig:
    """One monitoring node's settings (see ``gridcredit monitor --help``)."""

    role: Role
    model: Path
    raw: str
    certs: NodeCerts
    schema: str | None = None
    listen: str = "127.0.0.1:0"
    peer: str = ""
    audit: Path = Path("monitor_audit.jsonl")
    out: Path = Path("monitor")
    period_from: str = ""
    period_to: str = ""
    rules: Path | None = None  # bank: warning-level rules TOML
    table7: Path = DEFAULT_RULES  # grid: Table 7 rules
    bands: tuple[float, ...] | None = None
    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0
    deadline: float = 30.0
    connect_timeout: float = 60.0
    http: str = ""
    alert_url: str = ""
    alert_retries: int = 3
    extra: dict[str, str] = field(default_factory=dict)


def months(cfg: MonitorConfig) -> list[int]:
    """The replayed month ordinals (``--period-from`` .. ``--period-to``, inclusive)."""
    try:
        first, last = parse_month(cfg.period_from), parse_month(cfg.period_to)
    except ValueError as exc:
        raise ConfigError(f"--period-from/--period-to: {exc}") from exc
    if last < first or last - first > 240:
        raise ConfigError("--period-to must be 0 to 240 months after --period-from")
    return list(range(first, last + 1))


def post_alerts(url: str, alerts: list[dict[str, str]], retries: int) -> bool:
    """POST the alerts as JSON (retried ``retries`` times, 5 s each); whether it went."""
    body = json.dumps({"alerts": alerts}).encode()
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5.0) as reply:  # noqa: S310
                if 200 <= reply.status < 300:
                    return True
        except OSError as exc:
            log.warning("webhook %s: attempt %d failed: %s", url, attempt + 1, exc)
        time.sleep(min(0.2 * 2**attempt, 2.0))
    return False


def run_period(cfg: MonitorConfig, month: int, store: MonitorStore, model: PartyModel,
               audit: AuditWriter) -> dict[str, float]:
    """One period of the bank: book, joint scores and ratings, levels, alerts, the folder."""
    period = format_month(month)
    times: dict[str, float] = {}
    t = time.perf_counter()
    bank = bank_period(open_source(cfg.raw, "bank", cfg.schema), month, model)
    times["bank_data"] = time.perf_counter() - t
    card = Scorecard(cfg.base_score, cfg.base_odds, cfg.pdo)
    state = PeriodBank(month, bank.ids, bank.u, card, cfg.bands)
    link = GridLink(cfg.peer, cfg.certs, audit, state, cfg.deadline)
    t = time.perf_counter()
    try:
        link.open(cfg.connect_timeout)
        times["grid_session"] = time.perf_counter() - t
        t = time.perf_counter()
        scored = []
        for start in range(0, len(bank.ids), MAX_IDS):
            scored += link.score(bank.ids[start:start + MAX_IDS], None)[1]
    finally:
        link.close()
    times["joint_scoring"] = time.perf_counter() - t
    t = time.perf_counter()
    book = pd.DataFrame({
        "id": [r.id for r in scored], "probability": [r.probability for r in scored],
        "points": [r.points for r in scored], "band": [r.band for r in scored],
        "rating": [state.ratings.get(r.id, "") for r in scored]})
    done = [p for p in store.done() if p < period]
    previous = store.book(done[-1]) if done else None
    baseline = store.book(done[0]) if done else None
    rules = load_warning_rules(cfg.rules)
    book, alerts = compare(book, previous, rules)
    new = store.add_alerts(period, alerts)
    if new and cfg.alert_url:
        post_alerts(cfg.alert_url, new, cfg.alert_retries)
    if os.environ.get(CRASH_ENV) == period:
        os._exit(137)
    summary = summarize(period, book, baseline, len(alerts))
    times["rules_alerts"] = time.perf_counter() - t
    summary["seconds"] = times
    store.write_period(period, book, summary)
    return times


def _grid(cfg: MonitorConfig, audit: AuditWriter, stop: threading.Event) -> None:
    model = PartyModel.load(cfg.model, Role.GRID)
    source = open_source(cfg.raw, "grid", cfg.schema)
    pool = PsiPool(None)
    grid = MonitorGrid(lambda m: grid_period(source, m, model, cfg.table7), pool=pool)
    server = None
    try:
        server, port = start_server(cfg.certs, cfg.listen, add_serve_peer(grid, audit))
        _announce(cfg.listen, port)
        while not stop.wait(0.5):
            pass
    finally:
        if server is not None:
            server.stop(grace=2.0).wait(5)
        pool.close()


def _bank(cfg: MonitorConfig, audit: AuditWriter, stop: threading.Event) -> None:
    from federation.monitor_http import start_dashboard

    model = PartyModel.load(cfg.model, Role.BANK)
    wanted = months(cfg)
    store = MonitorStore(cfg.out)
    dashboard = start_dashboard(cfg.http, store) if cfg.http else None
    if dashboard is None:
        print("LISTENING -", flush=True)
    else:
        _announce(cfg.http, dashboard.server_address[1])
    try:
        for month in wanted:
            period = format_month(month)
            if period in store.done():
                print(f"PERIOD {period} done (earlier run)", flush=True)
                continue
            if stop.is_set():
                return
            times = run_period(cfg, month, store, model, audit)
            split = " ".join(f"{k}={v:.2f}s" for k, v in times.items())
            print(f"PERIOD {period} done {split}", flush=True)
        print("REPLAY done", flush=True)
        if dashboard is not None:
            while not stop.wait(0.5):
                pass
    finally:
        if dashboard is not None:
            dashboard.shutdown()
            dashboard.server_close()


def run_monitor(cfg: MonitorConfig, stop: threading.Event | None = None) -> ExitCode:
    """Run one monitoring node (grid: until SIGTERM; bank: the replay, then the dashboard)."""
    if cfg.role is Role.BANK and not cfg.peer:
        raise ConfigError("bank: --peer HOST:PORT of the grid's monitor node is required")
    if cfg.role is Role.BANK and not (cfg.period_from and cfg.period_to):
        raise ConfigError("bank: --period-from and --period-to YYYY-MM are required")
    check_own_certificate(cfg.certs, cfg.role)
    PartyModel.load(cfg.model, cfg.role)
    if cfg.role is Role.BANK:  # bad flags stop the node before anything is written
        from federation.monitor_http import loopback_address

        months(cfg)
        load_warning_rules(cfg.rules)
        if cfg.http:
            loopback_address(cfg.http)
    cfg.out.mkdir(parents=True, exist_ok=True)
    if stop is None:
        stop = _stop_event()
    audit = AuditWriter(AuditLog(cfg.audit, cfg.role.value, cfg.certs.key.read_bytes()))
    try:
        (_grid if cfg.role is Role.GRID else _bank)(cfg, audit, stop)
    finally:
        audit.close()
    return ExitCode.OK


