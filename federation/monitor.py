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
- Both print ``LISTENING host:port`` (the grid its service's, the bank its dashboard's; a
  bank without ``--http`` prints none) and audit every party-to-party message
  (``gridcredit audit verify`` pairs them).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import urllib.request
from collections.abc import Callable

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from federation.monitor_config import MonitorConfig, months
from federation.monitor_folder import MonitorFolder, check_monitor_folder
from federation.nodes import ExitCode
from federation.protocol.errors import ConfigError, InputDataError
from federation.protocol.messages import Role
from federation.serve import _announce, _stop_event
from federation.serve_services import GridLink, add_serve_peer
from federation.transport.audit import AuditLog, AuditWriter
from federation.transport.certs import check_own_certificate
from federation.transport.grpc_server import refuse_unbindable as check_listen
from federation.transport.grpc_server import start_server
from parties.evaluation.scorecard import Scorecard
from parties.labels.features import grid_registry
from parties.labels.schema import BANK_TABLES, GRID_TABLES, format_month, parse_month
from parties.labels.sources import open_source
from parties.labels.warning import load_rules
from parties.model import PartyModel
from parties.monitoring import MonitorStore, compare, load_warning_rules, summarize
from parties.monitoring_data import BankPeriod, GridPeriod, bank_matrix, grid_period
from parties.monitoring_drift import DriftBaseline, drift_baseline, drift_table, write_drift
from parties.monitoring_serving import MonitorGrid, PeriodBank
from parties.monitoring_stage import StagedTables
from parties.monitoring_tables import BankTables, GridTables
from parties.monitoring_watch import PeriodNotReady, covers, last_month
from parties.psi_pool import PsiPool
from parties.serving import MAX_IDS

log = logging.getLogger(__name__)
CRASH_ENV = "GRIDCREDIT_MONITOR_CRASH_AFTER_ALERTS"  # fault injection for the restart test


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


def points_range(cfg: MonitorConfig) -> tuple[float, float]:
    """The points this node's scorecard gives for probabilities 1 - 1e-12 to 1e-12: where a
    rule's ``below`` can mean anything."""
    low, high = Scorecard(cfg.base_score, cfg.base_odds, cfg.pdo).points(
        np.array([1.0 - 1e-12, 1e-12]))
    return float(low), float(high)


def deliver(url: str, retries: int, store: MonitorStore,
            new: list[dict[str, str]] | None = None) -> bool:
    """Queue ``new`` alerts in the folder's outbox and POST every pending one; the outbox
    is emptied only once the webhook took them, so alerts of a failed delivery go with the
    next period or run (a receiver may get an alert twice, never lose one)."""
    pending = store.pending() + list(new or [])
    store.set_pending(pending)
    if not pending:
        return True
    if post_alerts(url, pending, retries):
        store.set_pending([])
        return True
    log.warning("webhook %s: %d alert(s) kept in %s, sent again with the next period or "
                "run", url, len(store.pending()), store.outbox_path)
    return False


def run_period(cfg: MonitorConfig, model: PartyModel, bank: BankPeriod, bank_seconds: float,
               store: MonitorStore, audit: AuditWriter,
               baseline: DriftBaseline | None = None) -> dict[str, float]:
    """One period of the bank, its book ``bank`` at hand: joint scores (calibrated by
    ``model``, as ``score`` and ``serve``) and ratings, levels, alerts, drift, the folder. A
    grid without that month's data raises ``PeriodNotReady`` (as a ``ProtocolAbort``)
    before anything is written."""
    period = format_month(bank.month)
    if not bank.ids:  # no session for nothing: the grid would learn the month for no result
        raise InputDataError(f"loans: no loan active at {period} (the bank's loan book is "
                             "empty that month; nothing to monitor)")
    times: dict[str, float] = {"bank_data": bank_seconds}
    card = Scorecard(cfg.base_score, cfg.base_odds, cfg.pdo)
    state = PeriodBank(bank.month, bank.ids, bank.u, card, cfg.bands,
                       probability=model.probability)
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
    first = store.book(done[0]) if done else None
    rules = load_warning_rules(cfg.rules, points_range(cfg))
    book, alerts = compare(book, previous, rules)
    store.add_alerts(period, alerts, queue=bool(cfg.alert_url))  # queued before logged
    if cfg.alert_url:
        deliver(cfg.alert_url, cfg.alert_retries, store)
    if os.environ.get(CRASH_ENV) == period:
        os._exit(137)
    summary = summarize(period, book, first, len(alerts))
    drift = None if baseline is None else drift_table(baseline, bank.x)
    if drift is not None:
        summary["drift_baseline"] = format_month(baseline.month)  # type: ignore[union-attr]
        summary["psi_indicators"] = {str(k): None if math.isnan(v) else float(v)
                                     for k, v in zip(drift["indicator"], drift["psi"],
                                                     strict=True)}
    times["rules_alerts"] = time.perf_counter() - t
    summary["seconds"] = times
    store.write_period(period, book, summary, drift)
    return times


def _grid_start(cfg: MonitorConfig, tables: StagedTables, model: PartyModel,
                loaded: GridTables) -> GridPeriod:
    """Check the grid's rules and data before it listens: ``--table7`` against the
    indicator library, the source (reachable, its tables present and not empty), and one
    month computed whole (parsing and checking every table): ``--baseline-month``, else the
    last month its data hold. That month's period.

    Raises
    ------
    ConfigError
        ``--table7`` unreadable or naming an unknown indicator.
    InputDataError
        The source cannot be read, a table is missing, malformed or empty.
    """
    try:
        load_rules({i.name for i in grid_registry()}, cfg.table7)
    except ValueError as exc:
        raise ConfigError(f"--table7: {exc}") from exc
    last = last_month(tables.source, "grid")
    if last is None:
        raise InputDataError(f"{tables.source.label('monthly_usage')}, "
                             f"{tables.source.label('bills')}: no rows (the grid's monthly "
                             "tables are empty)")
    month = parse_month(cfg.baseline_month) if cfg.baseline_month else last
    return grid_period(tables.current(), month, model, cfg.table7, loaded)


def _grid_build(cfg: MonitorConfig, tables: StagedTables, model: PartyModel,
                loaded: GridTables) -> tuple[Callable[[int], GridPeriod], list[str]]:
    """Month -> the grid's period; refuses a month its data do not cover, and writes the
    drift of its own indicators (``OUT/grid_periods/<YYYY-MM>/drift.csv``, never sent).
    Also the enterprises of ``--baseline-month`` (none without one), to blind at start."""
    baseline = None
    ids: list[str] = []
    at_start = _grid_start(cfg, tables, model, loaded)
    if cfg.baseline_month:
        month = parse_month(cfg.baseline_month)
        baseline = drift_baseline(month, model.features, at_start.x)
        ids = at_start.ids

    def build(month: int) -> GridPeriod:
        if not covers(tables.source, "grid", month):
            log.info("monitoring: month %d asked, not in the grid's data yet", month)
            raise PeriodNotReady(month)
        started = time.perf_counter()
        period = grid_period(tables.current(), month, model, cfg.table7, loaded)
        built = time.perf_counter()
        if baseline is not None:
            path = cfg.out / "grid_periods" / format_month(month) / "drift.csv"
            write_drift(path, drift_table(baseline, period.x))
        print(f"PERIOD {format_month(month)} built grid_data={built - started:.2f}s "
              f"drift={time.perf_counter() - built:.2f}s", flush=True)
        return period

    return build, ids


Ready = Callable[[], AuditWriter]  # creates and locks --out, opens the audit log


def _grid(cfg: MonitorConfig, ready: Ready, stop: threading.Event) -> None:
    model = PartyModel.load(cfg.model, Role.GRID)
    tables = StagedTables(open_source(cfg.raw, "grid", cfg.schema), list(GRID_TABLES))
    pool = PsiPool(None)
    loaded = GridTables()
    server = None
    try:
        build, ids = _grid_build(cfg, tables, model, loaded)  # checks before --out exists
        grid = MonitorGrid(build, pool=pool, rotate_seconds=cfg.rotate_seconds)
        if ids:  # the epoch's first table while idle: a period then blinds only new IDs
            grid.points.table(ids)
        server, port = start_server(cfg.certs, cfg.listen, add_serve_peer(grid, ready()))
        _announce(cfg.listen, port)
        while not stop.wait(0.5):
            pass
    finally:
        if server is not None:
            server.stop(grace=2.0).wait(5)
        pool.close()
        loaded.close()
        tables.close()


def _bank(cfg: MonitorConfig, ready: Ready, stop: threading.Event) -> None:
    from federation.monitor_http import start_dashboard
    from federation.monitor_watch import check_bank_data, run_periods

    model = PartyModel.load(cfg.model, Role.BANK)
    tables = StagedTables(open_source(cfg.raw, "bank", cfg.schema), list(BANK_TABLES))
    loaded = BankTables()
    dashboard = None
    try:
        check_bank_data(cfg, tables.source)
        baseline = None
        if cfg.baseline_month:
            month = parse_month(cfg.baseline_month)
            x = bank_matrix(tables.current(), month, model, loaded)
            baseline = drift_baseline(month, model.features, x)
        store = MonitorStore(cfg.out)  # creates nothing until a period is written
        dashboard = start_dashboard(cfg.http, store) if cfg.http else None
        audit = ready()  # data and port checked: only now --out and the audit log
        if cfg.alert_url and store.pending():  # left by an earlier run's failed delivery
            deliver(cfg.alert_url, cfg.alert_retries, store)
        if dashboard is not None:
            _announce(cfg.http, dashboard.server_address[1])
        ended = run_periods(cfg, tables, model, store, stop, lambda bank, seconds: run_period(
            cfg, model, bank, seconds, store, audit, baseline), loaded)
        print(ended, flush=True)
        if dashboard is not None:
            while not stop.wait(0.5):
                pass
    finally:
        if dashboard is not None:
            dashboard.shutdown()
            dashboard.server_close()
        loaded.close()
        tables.close()


def run_monitor(cfg: MonitorConfig, stop: threading.Event | None = None) -> ExitCode:
    """Run one monitoring node (grid: until SIGTERM; bank: the replay, then the dashboard).

    Flags, certificate, model, rules, ``--out`` and the node's data (and the bank's
    dashboard port) are checked before ``--out`` is created or the audit log opened, so a
    refused start leaves nothing behind."""
    if cfg.role is Role.BANK and not cfg.peer:
        raise ConfigError("bank: --peer HOST:PORT of the grid's monitor node is required")
    if cfg.role is Role.BANK and not (cfg.period_from and (cfg.period_to or cfg.watch)):
        raise ConfigError("bank: --period-from and --period-to YYYY-MM are required "
                          "(--period-to is optional with --watch)")
    if not 0.1 <= cfg.poll_seconds <= 3600 or cfg.max_periods < 0:
        raise ConfigError("--poll-seconds must be 0.1 to 3600 and --max-periods >= 0")
    if not cfg.rotate_seconds > 0:
        raise ConfigError(f"--rotate-hours must be > 0, got {cfg.rotate_seconds / 3600:g}")
    if cfg.baseline_month:
        try:
            parse_month(cfg.baseline_month)
        except ValueError as exc:
            raise ConfigError(f"--baseline-month: {exc}") from exc
    check_monitor_folder(cfg.out)  # a user's folder is refused before anything else is read
    check_own_certificate(cfg.certs, cfg.role)
    PartyModel.load(cfg.model, cfg.role)
    if cfg.role is Role.GRID:  # a busy --listen port is refused before --out is created
        check_listen(cfg.listen)
    if cfg.role is Role.BANK:  # bad flags stop the node before anything is written
        from federation.monitor_http import loopback_address

        months(cfg)
        load_warning_rules(cfg.rules, points_range(cfg))
        if cfg.http:
            loopback_address(cfg.http)
    opened: list[MonitorFolder | AuditWriter] = []

    def ready() -> AuditWriter:
        opened.append(MonitorFolder(cfg.out, cfg.role.value))  # marked, locked until the end
        audit = AuditWriter(AuditLog(cfg.audit, cfg.role.value, cfg.certs.key.read_bytes()))
        opened.append(audit)
        return audit

    try:
        (_grid if cfg.role is Role.GRID else _bank)(cfg, ready, stop or _stop_event())
    finally:
        for item in reversed(opened):
            item.close()
    return ExitCode.OK
