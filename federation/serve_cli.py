"""The ``serve`` subcommand: keep a trained federation's grid or bank node up for scoring.

What it does: :func:`add_commands` adds ``serve`` to the project's single ``gridcredit``
parser; its handler turns the flags into one ``ServeConfig`` and runs
``federation.serve.run_serve`` until SIGTERM or SIGINT, returning the exit code.
:func:`main` builds a parser with only this command (for tests and ``python -m``).

What it assumes: the model and data files are those of one finished ``simulate`` run (or
the same layout on a real node); the TLS folder holds ``ca.pem`` and ``<role>.pem/.key`` as
``gridcredit certs`` writes them. Errors become one ``error: ...`` line and exit code 2
(bad input) or 1 (the peer failed).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path

from federation.protocol.errors import ConfigError, VflError
from parties.serving_limits import Quotas

Handler = Callable[[argparse.Namespace], int]
DEFAULTS_HELP = "(default: %(default)s)"


def parse_bands(text: str) -> tuple[float, ...]:
    """Band edges from ``"-inf,500,550,600,650,inf"`` (strictly increasing, open ends).

    Raises
    ------
    ConfigError
        A value is not a number, the edges do not increase, or the ends are not -inf / inf.
    """
    try:
        edges = tuple(float(part) for part in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"--bands {text!r}: not a comma-separated list of numbers") from exc
    if len(edges) < 2 or edges[0] != -math.inf or edges[-1] != math.inf:
        raise ConfigError(
            f"--bands {text!r}: must start with -inf and end with inf, so that "
            "every score falls in a band"
        )
    if any(math.isnan(e) for e in edges) or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ConfigError(f"--bands {text!r}: edges must be strictly increasing")
    return edges


def cmd_serve(args: argparse.Namespace) -> int:
    """Run one serve node; returns its exit code."""
    from federation.protocol.messages import Role
    from federation.serve import ServeConfig, run_serve
    from federation.transport.certs import NodeCerts

    role = Role(args.role)
    cfg = ServeConfig(
        role=role,
        model=args.model,
        data=args.data,
        certs=NodeCerts.in_dir(args.tls_dir, role),
        listen=args.listen,
        peer=args.peer or "",
        audit=args.audit or args.model.parent / "serve_audit.jsonl",
        id_column=args.id_column,
        bands=parse_bands(args.bands) if args.bands else None,
        base_score=args.base_score,
        base_odds=args.base_odds,
        pdo=args.pdo,
        max_ids=args.max_ids,
        deadline=args.deadline,
        connect_timeout=args.connect_timeout,
        psi_workers=args.psi_workers,
        rotate_seconds=args.rotate_hours * 3600.0,
        quotas=_quotas(args),
    )
    return int(run_serve(cfg))


def _quotas(args: argparse.Namespace) -> Quotas:
    try:
        return Quotas(args.max_rows_per_session, args.max_requests_per_minute,
                      args.max_opens_per_minute)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to ``subparsers``."""
    serve = subparsers.add_parser(
        "serve",
        help="keep a trained grid or bank node up for online scoring",
        description="Serve one party of a trained federation. The grid node answers the bank "
        "node only; the bank node dials the grid (--peer), opens a PSI session, then answers "
        "gRPC Scoring.Score calls from scoring clients (a certificate from 'gridcredit certs "
        "--client NAME', or the bank's own): per ID the exact probability, score points and "
        "band, or 'no grid record'. The grid answers only rows it finds a request matched and "
        "refuses what passes its quotas (one line to the client). Prints "
        "'LISTENING host:port' once ready; stops on SIGTERM or Ctrl-C.",
    )
    serve.add_argument("--role", required=True, choices=["grid", "bank"], help="this node's role")
    net = serve.add_argument_group("network")
    net.add_argument(
        "--listen",
        default="127.0.0.1:0",
        help="HOST:PORT to serve on; port 0 picks a free one " + DEFAULTS_HELP,
    )
    net.add_argument("--peer", help="bank only: HOST:PORT of the grid's serve node")
    net.add_argument(
        "--tls-dir",
        type=Path,
        required=True,
        help="folder with ca.pem and <role>.pem/.key (e.g. <run>/certs)",
    )
    net.add_argument(
        "--deadline",
        type=float,
        default=10.0,
        help="seconds per call to the grid, plus 1 ms per ID " + DEFAULTS_HELP,
    )
    net.add_argument(
        "--connect-timeout",
        type=float,
        default=60.0,
        help="bank only: seconds to wait for the grid at start-up " + DEFAULTS_HELP,
    )
    data = serve.add_argument_group("data")
    data.add_argument(
        "--model",
        type=Path,
        required=True,
        help="this party's model.json of the run (e.g. <run>/grid/model.json)",
    )
    data.add_argument(
        "--data",
        type=Path,
        required=True,
        help="this party's CSV: ID column + the model's features (bank: the "
        "enterprises it may be asked to score)",
    )
    data.add_argument("--id-column", default="id", help="enterprise ID column " + DEFAULTS_HELP)
    data.add_argument(
        "--audit",
        type=Path,
        help="this node's audit log (default: serve_audit.jsonl next to --model)",
    )
    data.add_argument(
        "--psi-workers",
        type=int,
        help="threads for PSI curve work of the grid's table and of large requests "
        "(default: all cores)",
    )
    data.add_argument(
        "--rotate-hours",
        type=float,
        default=24.0,
        help="grid: a new PSI key and blinded table after this many hours; sessions opened "
        "before keep theirs " + DEFAULTS_HELP,
    )
    quotas = serve.add_argument_group(
        "quotas (grid)",
        "Refusals reach the bank and its client as one line naming the flag "
        "(gRPC RESOURCE_EXHAUSTED).")
    quotas.add_argument(
        "--max-rows-per-session", type=int, metavar="N", default=1_000_000,
        help="rows (enterprises with a grid record) one bank session may score; a request "
        "that would pass it closes the session and the bank opens a new one, one that alone "
        "asks for more is refused " + DEFAULTS_HELP)
    quotas.add_argument(
        "--max-requests-per-minute", type=int, metavar="N", default=6_000,
        help="scoring requests from the bank, all sessions together, in any 60 s "
        + DEFAULTS_HELP)
    quotas.add_argument(
        "--max-opens-per-minute", type=int, metavar="N", default=10,
        help="session opens per caller in any 60 s (an open sends the whole blinded table "
        "and may start a new key epoch, a pass over all rows) " + DEFAULTS_HELP)
    scoring = serve.add_argument_group("scoring (bank)")
    scoring.add_argument(
        "--max-ids", type=int, default=10_000, help="most IDs in one Score request " + DEFAULTS_HELP
    )
    scoring.add_argument(
        "--bands",
        help="score band edges in points, e.g. '-inf,500,550,600,650,inf' "
        "(default: 20-point bands aligned to multiples of 20)",
    )
    scoring.add_argument(
        "--base-score", type=float, default=600.0, help="points at the base odds " + DEFAULTS_HELP
    )
    scoring.add_argument(
        "--base-odds",
        type=float,
        default=50.0,
        help="good:bad odds that earn the base score " + DEFAULTS_HELP,
    )
    scoring.add_argument(
        "--pdo", type=float, default=20.0, help="points to double the odds " + DEFAULTS_HELP
    )
    serve.set_defaults(handler=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    """A parser with only the ``serve`` command."""
    parser = argparse.ArgumentParser(prog="gridcredit", description="online scoring nodes")
    parser.add_argument("--log-level", default="WARNING", help="logging level " + DEFAULTS_HELP)
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (e.g. ``["serve", "--role", "grid", ...]``) and run the handler."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except VflError as exc:
        from federation.nodes import exit_code_for

        print(f"error: {exc}", file=sys.stderr, flush=True)
        return int(exit_code_for(exc))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
