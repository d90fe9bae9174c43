"""The watch, without processes: when a party's tables hold a month, the grid's "not yet"
as the bank receives it, and the period loop (waits, bounds, stop)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from federation.monitor_config import MonitorConfig
from federation.monitor_watch import run_periods
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import Role
from federation.transport.certs import NodeCerts
from parties.labels.schema import parse_month
from parties.labels.sources import open_source
from parties.model import PartyModel
from parties.monitoring import MonitorStore
from parties.monitoring_data import BankPeriod
from parties.monitoring_stage import StagedTables
from parties.monitoring_watch import PeriodNotReady, covers, is_not_ready, last_month


def _tables(folder: Path, usage: str, bills: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "enterprises.csv").write_text("ent_id\n")
    (folder / "monthly_usage.csv").write_text(f"ent_id,month,kwh\na,2022-01,1\na,{usage},2\n")
    (folder / "bills.csv").write_text(f"ent_id,month,amount_due\na,{bills},1\n")


def test_a_month_is_held_when_every_monthly_table_reaches_it(tmp_path: Path) -> None:
    _tables(tmp_path, "2022-09", "2022-08")
    source = open_source(tmp_path, "grid")
    assert last_month(source, "grid") == parse_month("2022-08")  # bills lag: not 2022-09
    assert covers(source, "grid", parse_month("2022-08"))
    assert not covers(source, "grid", parse_month("2022-09"))
    (tmp_path / "bills.csv").write_text("ent_id,month,amount_due\n")
    assert last_month(source, "grid") is None


def test_not_yet_survives_the_trip_to_the_bank() -> None:
    refusal = PeriodNotReady(parse_month("2022-09"))
    assert str(refusal) == "period not ready: 2022-09"
    assert is_not_ready(ProtocolAbort(f"opening a serving session with the grid: {refusal}"))
    assert not is_not_ready(ProtocolAbort("serve/open: 'period' must hold one month ordinal"))
    assert not is_not_ready(ValueError(str(refusal)))


def _cfg(tmp: Path, **kw: object) -> MonitorConfig:
    return MonitorConfig(role=Role.BANK, model=tmp / "m.json", raw=str(tmp / "bank"),
                         certs=NodeCerts.in_dir(tmp, Role.BANK), period_from="2022-07",
                         poll_seconds=0.1, **kw)  # type: ignore[arg-type]


def _bank_tables(folder: Path, last: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loans.csv").write_text("ent_id,loan_id,start_month,amount,term_months\n")
    (folder / "repayments.csv").write_text(f"ent_id,loan_id,month,amount_due\na,l,{last},1\n")
    (folder / "taxes.csv").write_text(f"ent_id,month,tax_amount\na,{last},1\n")


def test_the_loop_waits_for_the_grid_and_ends_on_its_bound_or_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _bank_tables(tmp_path / "bank", "2022-08")
    monkeypatch.setattr("federation.monitor_watch.bank_period",
                        lambda source, month, model, tables=None:
                        BankPeriod(["a"], np.zeros(1), month=month))
    store = MonitorStore(tmp_path / "out")
    model = PartyModel("bank", "j", "shared", [], [], [], [])
    grid_ready = {parse_month("2022-07")}
    ran: list[int] = []
    stop = threading.Event()

    def run(bank: BankPeriod, seconds: float) -> dict[str, float]:
        if bank.month not in grid_ready:
            if len(ran) > 5:
                stop.set()
            ran.append(-1)
            raise ProtocolAbort(f"open: {PeriodNotReady(bank.month)}")
        ran.append(bank.month)
        return {"bank_data": seconds}

    cfg = _cfg(tmp_path, watch=True)
    source = StagedTables(open_source(cfg.raw, "bank"), ["loans"])  # folders: read in place
    assert run_periods(cfg, source, model, store, stop, run) == "WATCH done (stopped)"
    assert ran[0] == parse_month("2022-07") and set(ran[1:]) == {-1}  # 2022-08: grid not yet
    grid_ready.add(parse_month("2022-08"))
    stop.clear()
    ran.clear()
    bounded = _cfg(tmp_path, watch=True, max_periods=2)
    assert run_periods(bounded, source, model, store, stop, run) == "WATCH done (2 periods)"
    assert ran == [parse_month("2022-07"), parse_month("2022-08")]  # nothing stored: rerun
    with pytest.raises(ProtocolAbort, match="not ready"):  # a replay does not wait
        run_periods(_cfg(tmp_path, period_to="2022-09"), source, model, store, stop, run)


@pytest.mark.parametrize(("flags", "message"), [
    ({"watch": False}, "--period-to"),
    ({"watch": True, "poll_seconds": 0.0}, "--poll-seconds"),
    ({"watch": True, "max_periods": -1}, "--max-periods"),
    ({"watch": True, "baseline_month": "2022-13"}, "--baseline-month"),
])
def test_bad_watch_flags_stop_the_node_first(tmp_path: Path, flags: dict[str, object],
                                             message: str) -> None:
    from federation.monitor import run_monitor
    from federation.protocol.errors import ConfigError

    cfg = MonitorConfig(role=Role.BANK, model=tmp_path / "m.json", raw=str(tmp_path),
                        certs=NodeCerts.in_dir(tmp_path, Role.BANK), peer="127.0.0.1:1",
                        period_from="2022-07", out=tmp_path / "out",
                        **flags)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        run_monitor(cfg, threading.Event())
    assert not (tmp_path / "out").exists()
