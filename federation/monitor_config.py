"""``gridcredit monitor``: one node's settings, and the months a bank node runs.

Plain data and checks (no gRPC, no I/O): shared by the node (:mod:`federation.monitor`), its
period loop (:mod:`federation.monitor_watch`) and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from federation.protocol.errors import ConfigError
from federation.protocol.messages import Role
from federation.transport.certs import NodeCerts
from parties.labels.options import DEFAULT_RULES
from parties.labels.schema import parse_month


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
    baseline_month: str = ""  # both: the training period, for the indicators' drift
    watch: bool = False  # bank: wait for each period's data instead of replaying at once
    poll_seconds: float = 60.0
    max_periods: int = 0  # bank: stop after this many periods run (0: no bound)
    rotate_seconds: float = 24 * 3600.0  # grid: a key epoch's length (serve --rotate-hours)
    extra: dict[str, str] = field(default_factory=dict)


def months(cfg: MonitorConfig) -> list[int]:
    """The month ordinals to run (``--period-from`` .. ``--period-to``, inclusive; with
    ``--watch`` and no ``--period-to``, the 240 months from ``--period-from``)."""
    try:
        first = parse_month(cfg.period_from)
        last = parse_month(cfg.period_to) if cfg.period_to else first + 240
        if cfg.baseline_month:
            parse_month(cfg.baseline_month)
    except ValueError as exc:
        raise ConfigError(f"--period-from/--period-to/--baseline-month: {exc}") from exc
    if last < first or last - first > 240:
        raise ConfigError("--period-to must be 0 to 240 months after --period-from")
    return list(range(first, last + 1))
