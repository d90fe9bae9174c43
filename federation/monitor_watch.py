"""The bank monitor's loop over periods: a replay, or a watch for each new month.

Replay (``--period-from`` .. ``--period-to``): each month in turn, at once. Watch
(``--watch``): the same months (no ``--period-to``: without end), but a month runs only once
the bank's own tables hold it (:func:`parties.monitoring_watch.covers`) and the grid opens
its session; a grid whose data do not hold it answers "not yet" (``PeriodNotReady``), and
the bank asks again every ``--poll-seconds``. Either ends after ``--max-periods`` periods
run (0: no bound), at ``--period-to``, or on SIGTERM (checked between periods and while
waiting; a period under way is finished or, if the process dies, redone on restart).

Prints one stdout line per event: ``PERIOD <YYYY-MM> done ...``, ``WAITING <YYYY-MM> for
bank data|grid data`` (once per change) and, at the end, ``REPLAY done`` or ``WATCH done
(<why>)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from federation.monitor_config import MonitorConfig, months
from federation.protocol.errors import ConfigError, InputDataError, ProtocolAbort
from parties.labels.schema import format_month
from parties.labels.sources import RawSource
from parties.model import PartyModel
from parties.monitoring import MonitorStore
from parties.monitoring_data import BankPeriod, bank_period
from parties.monitoring_stage import StagedTables
from parties.monitoring_tables import BankTables
from parties.monitoring_watch import covers, has_rows, is_not_ready, last_month

log = logging.getLogger(__name__)
RunPeriod = Callable[[BankPeriod, float], dict[str, float]]


def check_bank_data(cfg: MonitorConfig, source: RawSource) -> None:
    """Refuse, before a grid session, a bank whose data cannot give a period: an empty
    ``loans`` or ``repayments`` table, monthly tables without rows, or (a replay) a
    ``--period-to`` after the last month the bank's monthly tables reach.

    Raises
    ------
    InputDataError
        A table is missing, unreadable or empty.
    ConfigError
        A replayed month after the bank's data.
    """
    for table in ("loans", "repayments"):
        if not has_rows(source, table):
            raise InputDataError(f"{source.label(table)}: no rows (the bank's loan book is "
                                 "empty; nothing to monitor)")
    last = last_month(source, "bank")
    if last is None:
        raise InputDataError(f"{source.label('taxes')}: no rows (the bank's monthly tables "
                             "must reach the months to monitor)")
    wanted = months(cfg)
    if not cfg.watch and wanted[-1] > last:
        flag = "--period-from" if wanted[0] > last else "--period-to"
        asked = format_month(wanted[0] if wanted[0] > last else wanted[-1])
        raise ConfigError(f"{flag} {asked}: after the bank's own data, which end at "
                          f"{format_month(last)} (repayments, taxes); replay up to "
                          f"{format_month(last)} or use --watch to wait for later months")


def _book(tables: StagedTables, month: int, model: PartyModel,
          cache: dict[int, tuple[BankPeriod, float]],
          loaded: BankTables | None) -> tuple[BankPeriod, float]:
    """The bank's book at ``month`` and the seconds it took, computed once per month."""
    if month not in cache:
        cache.clear()
        started = time.perf_counter()
        bank = bank_period(tables.current(), month, model, loaded)
        cache[month] = (bank, time.perf_counter() - started)
    return cache[month]


def _attempt(cfg: MonitorConfig, tables: StagedTables, model: PartyModel, month: int,
             run: RunPeriod, cache: dict[int, tuple[BankPeriod, float]],
             loaded: BankTables | None) -> dict[str, float] | str:
    """Run ``month``; what it still waits for instead (watch only)."""
    if cfg.watch and not covers(tables.source, "bank", month):
        return "bank data"
    bank, seconds = _book(tables, month, model, cache, loaded)
    try:
        return run(bank, seconds)
    except ProtocolAbort as exc:
        if cfg.watch and is_not_ready(exc):
            return "grid data"
        raise


def run_periods(cfg: MonitorConfig, tables: StagedTables, model: PartyModel,
                store: MonitorStore, stop: threading.Event, run: RunPeriod,
                loaded: BankTables | None = None) -> str:
    """Run the periods of ``cfg`` (see the module docstring); the closing line to print
    (``loaded``: the bank's tables kept parsed and checked across periods)."""
    ran = 0
    waiting = ""
    cache: dict[int, tuple[BankPeriod, float]] = {}
    for month in months(cfg):
        period = format_month(month)
        if period in store.done():
            print(f"PERIOD {period} done (earlier run)", flush=True)
            continue
        while True:
            if stop.is_set():
                return "WATCH done (stopped)" if cfg.watch else "REPLAY stopped"
            if cfg.max_periods and ran >= cfg.max_periods:
                return f"{'WATCH' if cfg.watch else 'REPLAY'} done ({ran} periods)"
            outcome = _attempt(cfg, tables, model, month, run, cache, loaded)
            if isinstance(outcome, dict):
                break
            if waiting != f"{period} {outcome}":
                waiting = f"{period} {outcome}"
                print(f"WAITING {period} for {outcome}", flush=True)
            stop.wait(cfg.poll_seconds)
        ran += 1
        split = " ".join(f"{k}={v:.2f}s" for k, v in outcome.items())
        print(f"PERIOD {period} done {split}", flush=True)
    return f"WATCH done ({ran} periods, --period-to)" if cfg.watch else "REPLAY done"
