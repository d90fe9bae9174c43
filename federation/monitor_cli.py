"""The ``monitor`` subcommand: a post-loan monitoring node (grid or bank).

:func:`add_commands` adds ``monitor`` to the ``gridcredit`` parser; its handler turns the
flags into one ``MonitorConfig`` and runs ``federation.monitor.run_monitor``. Errors become
one ``error: ...`` line and exit code 2 (bad input) or 1 (the peer failed), as for ``serve``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from federation.serve_cli import DEFAULTS_HELP as D
from federation.serve_cli import parse_bands


def cmd_monitor(args: argparse.Namespace) -> int:
    """Run one monitoring node; returns its exit code."""
    from federation.monitor import run_monitor
    from federation.monitor_config import MonitorConfig
    from federation.protocol.messages import Role
    from federation.transport.certs import NodeCerts
    from parties.labels.options import DEFAULT_RULES

    role = Role(args.role)
    cfg = MonitorConfig(
        role=role, model=args.model, raw=args.raw, certs=NodeCerts.in_dir(args.tls_dir, role),
        schema=args.schema, listen=args.listen, peer=args.peer or "",
        audit=args.audit or args.out / f"{role.value}_monitor_audit.jsonl", out=args.out,
        period_from=args.period_from or "", period_to=args.period_to or "",
        rules=args.rules, table7=args.table7 or DEFAULT_RULES,
        bands=parse_bands(args.bands) if args.bands else None, base_score=args.base_score,
        base_odds=args.base_odds, pdo=args.pdo, deadline=args.deadline,
        connect_timeout=args.connect_timeout, http=args.http or "",
        alert_url=args.alert_url or "", alert_retries=args.alert_retries,
        baseline_month=args.baseline_month or "", watch=args.watch,
        poll_seconds=args.poll_seconds, max_periods=args.max_periods,
        rotate_seconds=args.rotate_hours * 3600.0)
    return int(run_monitor(cfg))


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``monitor`` to ``subparsers``."""
    p = subparsers.add_parser(
        "monitor", help="post-loan monitoring: re-rate the loan book every month",
        description="A post-loan monitoring node. The grid node computes, per month the bank "
        "asks about, its indicators, partial logits and Table 7 ratings, and answers the bank "
        "only. The bank node replays --period-from..--period-to over its raw tables: per "
        "month the active loan book, joint scores and ratings, warning levels, alerts and "
        "OUT/periods/<YYYY-MM>/book.csv; with --watch it waits for each month's data. "
        "Prints 'LISTENING host:port' once ready (a bank only with --http).")
    p.add_argument("--role", required=True, choices=["grid", "bank"], help="this node's role")
    p.add_argument("--model", type=Path, required=True, help="this party's model.json of a run")
    p.add_argument("--raw", required=True,
                   help="this party's raw tables: a folder (CSV/Parquet) or postgresql:// DSN")
    p.add_argument("--schema", default=None, help="PostgreSQL schema (default: the role)")
    p.add_argument("--tls-dir", type=Path, required=True, help="ca.pem and <role>.pem/.key")
    p.add_argument("--listen", default="127.0.0.1:0", help="grid: HOST:PORT to serve on " + D)
    p.add_argument("--peer", help="bank: HOST:PORT of the grid's monitor node")
    p.add_argument("--out", type=Path, default=Path("monitor"),
                   help="folder for periods/, alerts.jsonl and the audit log " + D)
    p.add_argument("--audit", type=Path, default=None,
                   help="audit log (default: OUT/<role>_monitor_audit.jsonl)")
    p.add_argument("--period-from", help="bank: first month to replay, YYYY-MM")
    p.add_argument("--period-to", help="bank: last month to replay, YYYY-MM (with --watch: "
                   "optional, the watch ends once it is done)")
    p.add_argument("--watch", action="store_true",
                   help="bank: run each month only once both parties' tables hold it (the "
                   "grid answers 'not yet' until its own do), asking every --poll-seconds")
    p.add_argument("--poll-seconds", type=float, default=60.0,
                   help="bank, --watch: seconds between checks for the next month, 0.1 to "
                   "3600 " + D)
    p.add_argument("--max-periods", type=int, default=0,
                   help="bank: stop after running this many periods (0: no bound) " + D)
    p.add_argument("--baseline-month", default=None,
                   help="both: the training period, YYYY-MM; each period then gets the "
                   "population stability of each of this party's model indicators against "
                   "it (bank: OUT/periods/<YYYY-MM>/drift.csv; grid: OUT/grid_periods/"
                   "<YYYY-MM>/drift.csv, kept by the grid)")
    p.add_argument("--rules", type=Path, default=None,
                   help="bank: warning-level rules TOML (default: alert on a Table 7 alert)")
    p.add_argument("--table7", type=Path, default=None,
                   help="grid: Table 7 rules TOML (default: the packaged one)")
    p.add_argument("--rotate-hours", type=float, default=24.0,
                   help="grid: a new PSI key epoch (all points blinded again) after this "
                        "many hours; periods within one epoch share its blinded points " + D)
    p.add_argument("--bands", default=None, help="band edges in points, e.g. -inf,500,600,inf")
    p.add_argument("--base-score", type=float, default=600.0, help="scorecard " + D)
    p.add_argument("--base-odds", type=float, default=50.0, help="scorecard " + D)
    p.add_argument("--pdo", type=float, default=20.0, help="scorecard " + D)
    p.add_argument("--deadline", type=float, default=30.0, help="seconds per call " + D)
    p.add_argument("--connect-timeout", type=float, default=60.0,
                   help="bank: seconds to wait for the grid " + D)
    p.add_argument("--http", default=None,
                   help="bank: serve the dashboard on this loopback HOST:PORT (port 0: any)")
    p.add_argument("--alert-url", default=None, help="bank: POST each period's new alerts here")
    p.add_argument("--alert-retries", type=int, default=3, help="webhook retries " + D)
    p.set_defaults(handler=cmd_monitor)
