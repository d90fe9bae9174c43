"""The ``audit`` subcommands: ``audit verify LOG...`` and ``audit summary LOG...``.

What it does: :func:`add_commands` adds ``audit`` to the project's single ``gridcredit``
parser; each handler returns the exit code. ``verify`` checks each log's hash chain, with
``--certs DIR`` each entry's signature against ``DIR/<node>.pem`` (itself checked against
``DIR/ca.pem``), and, given several logs, pairs every sent entry with the peer's received
entry. Each session of a log must open bound to its job, node and CA and end with its
signed closing entry: a log without one is reported as truncated or still open (accepted
with a note under ``--allow-open``); ``--job ID`` requires every log to be of job ID. It
prints ``OK: ...`` and returns 0, or one ``FILE:LINE: what`` per problem and
returns 1. ``summary`` prints messages and bytes per step and per peer and a reveal table.
:func:`main` builds a parser with only these commands (for tests and ``python -m``).

What it assumes: the logs were written by :class:`federation.transport.audit.AuditLog`; a log's node
is the ``node`` field of its first well-formed entry; node certificates are named
``<node>.pem`` as ``gridcredit certs`` writes them, and with ``--certs`` signatures are
required (an unsigned session mark is a problem).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from federation.protocol.errors import ConfigError
from federation.transport.audit import ca_fingerprint, is_mark
from federation.transport.audit_check import (
    Problem,
    check_sessions,
    read_entries,
    read_lines,
    verify_chain,
)
from federation.transport.audit_pairs import Summary, match_peers, summarize

Handler = Callable[[argparse.Namespace], int]
NODE_NAME = re.compile(r"[A-Za-z0-9_-]+")  # a node name becomes a file name under --certs


def _node_of(path: Path) -> tuple[str | None, int, int]:
    """(node named by the first well-formed entry, message entries, signed entries)."""
    try:
        entries = [line.entry for line in read_lines(path) if line.entry is not None]
    except OSError:
        return None, 0, 0  # verify_chain reports the unreadable file
    node = entries[0]["node"] if entries else None
    return node, sum(not is_mark(e) for e in entries), sum("sig" in e for e in entries)


def _ca_of(certs: Path | None) -> tuple[str | None, Problem | None]:
    if certs is None:
        return None, None
    try:
        return ca_fingerprint((certs / "ca.pem").read_bytes()), None
    except (OSError, ConfigError) as exc:
        return None, Problem(certs / "ca.pem", 0, f"cannot load the CA certificate: {exc}")


def _session_findings(path: Path, args: argparse.Namespace, ca: str | None
                      ) -> tuple[list[Problem], list[str]]:
    """(problems, notes) of one log's sessions; an open log is a problem unless allowed."""
    found = check_sessions(path, args.job, ca)
    problems, notes = list(found.problems), []
    if found.open_at:
        what = (f"truncated or still open: the session opened at line {found.open_at} has no "
                f"closing entry; {found.unsigned} message entr"
                f"{'y' if found.unsigned == 1 else 'ies'} after the last signed entry")
        if args.allow_open:
            notes.append(f"note: {path}: {what} (accepted: --allow-open)")
        else:
            problems.append(Problem(path, 0, what))
    return problems, notes


def _load_cert(path: Path) -> x509.Certificate:
    """Raises OSError or ValueError with the reason."""
    return x509.load_pem_x509_certificate(path.read_bytes())


def node_public_key(
    certs: Path, node: str
) -> tuple[ec.EllipticCurvePublicKey | None, Problem | None]:
    """The key of ``certs/<node>.pem`` once it is shown to be issued by ``certs/ca.pem``.

    Parameters
    ----------
    certs : Path
        Folder with ``ca.pem`` and ``<node>.pem``.
    node : str
        The node's role as written in its log.

    Returns
    -------
    tuple
        (public key, None), or (None, the problem naming the certificate file).
    """
    ca_path, cert_path = certs / "ca.pem", certs / f"{node}.pem"
    if not NODE_NAME.fullmatch(node):
        return None, Problem(cert_path, 0, f"node name {node!r} is not a certificate name")
    try:
        ca = _load_cert(ca_path)
    except (OSError, ValueError) as exc:
        return None, Problem(ca_path, 0, f"cannot load the CA certificate: {exc}")
    try:
        cert = _load_cert(cert_path)
    except (OSError, ValueError) as exc:
        return None, Problem(cert_path, 0, f"cannot load {node}'s certificate: {exc}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        return None, Problem(cert_path, 0, f"not issued by {ca_path}: {exc or 'bad signature'}")
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [node]:
        return None, Problem(cert_path, 0, f"certificate names {names}, the log's node is {node!r}")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return None, Problem(cert_path, 0, f"expected an ECDSA key, got {type(key).__name__}")
    return key, None


def _cross_checked(logs: dict[str, Path]) -> int:
    """Sent entries whose receiver's log is among ``logs`` (all paired when no problem)."""
    total = 0
    for node, path in logs.items():
        total += sum(
            1
            for _, e in read_entries(path)
            if e["direction"] == "sent" and e["peer"] in logs and e["peer"] != node
        )
    return total


SHOWN = 20  # problems listed without --all


def cmd_verify(args: argparse.Namespace) -> int:
    """Check chains, signatures (with ``--certs``) and cross-matches; 0 if all hold."""
    ca, ca_problem = _ca_of(args.certs)
    problems: list[Problem] = [ca_problem] if ca_problem else []
    notes: list[str] = []
    logs: dict[str, Path] = {}
    counts: list[str] = []
    signed = 0
    for path in args.logs:
        node, count, sigs = _node_of(path)
        key = None
        if args.certs is not None and node is not None:
            key, cert_problem = node_public_key(args.certs, node)
            problems += [cert_problem] if cert_problem else []
        chain = verify_chain(path, key)
        problems += chain
        if node is None and not chain:  # an emptied log must not pass as a node that said nothing
            problems.append(Problem(path, 0, "no audit entries: the log is empty"))
        if not chain and node is not None:
            found, said = _session_findings(path, args, ca)
            problems, notes = problems + found, notes + said
        signed += sigs if key is not None else 0
        if node is None:
            continue
        counts.append(f"{node} {count}")
        if node in logs:
            problems.append(
                Problem(
                    path, 0, f"a second log of node {node} (first: {logs[node]}); not cross-matched"
                )
            )
        else:
            logs[node] = path
    if len(logs) > 1:
        problems += match_peers(logs)
    for note in notes:
        print(note, flush=True)
    if problems:
        shown = problems if args.all else problems[:SHOWN]
        for problem in shown:
            print(problem, flush=True)
        more = (f" (the first {len(shown)} above; --all lists every one)"
                if len(shown) < len(problems) else "")
        print(f"FAILED: {len(problems)} problem(s) in {len(args.logs)} log(s){more}", flush=True)
        return 1
    closed = (f"sessions bound, {len(notes)} left open (--allow-open)" if notes
              else "sessions bound and closed")
    parts = [f"OK: {len(args.logs)} log(s) ({', '.join(counts) or 'empty'} entries), "
             f"chains intact, {closed}"]
    if args.certs is not None:
        parts.append(f"{signed} signatures valid (certificates issued by {args.certs / 'ca.pem'})")
    else:
        parts.append("signatures not checked (no --certs)")
    if args.job is not None:
        parts.append(f"all of job {args.job}")
    if len(logs) > 1:
        parts.append(f"{_cross_checked(logs)} messages cross-matched")
    print("; ".join(parts), flush=True)
    return 0


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise ValueError("unreachable")


Table = tuple[str, list[str], list[list[str]]]


def summary_tables(summary: Summary) -> list[Table]:
    """(title, headers, rows) of the three tables ``audit summary`` prints."""
    flows = [
        [
            f.step,
            f.sender,
            f.receiver,
            str(f.messages),
            _human(f.bytes),
            str(f.first_round)
            if f.first_round == f.last_round
            else f"{f.first_round}-{f.last_round}",
            ", ".join(f.tensors[:3])
            + (f" +{len(f.tensors) - 3} more" if len(f.tensors) > 3 else ""),
        ]
        for f in summary.flows
    ]
    peers = [[s, r, str(m), _human(b)] for s, r, m, b in summary.per_peer()]
    reveal = [
        [receiver, sender, ", ".join(steps)]
        for receiver, senders in summary.reveal().items()
        for sender, steps in senders.items()
    ]
    return [
        (
            "Messages per step",
            ["step", "from", "to", "messages", "bytes", "rounds", "tensors"],
            flows,
        ),
        ("Per peer", ["from", "to", "messages", "bytes"], peers),
        ("Reveal: what each node received, from whom", ["node", "from", "steps"], reveal),
    ]


def _print_plain(title: str, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    print(f"\n{title}")
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _print_rich(title: str, headers: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    table = RichTable(title=title, title_justify="left")
    for h in headers:
        table.add_column(h, justify="right" if h in ("messages", "bytes") else "left")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def cmd_summary(args: argparse.Namespace) -> int:
    """Print per-step and per-peer counts and the reveal table; 1 if a log is unreadable."""
    logs: dict[str, Path] = {}
    for path in args.logs:
        node, _, _ = _node_of(path)
        if node is None:
            print(f"{path}: no readable audit entries", file=sys.stderr)
            return 1
        logs.setdefault(node, path)
    summary = summarize(logs)
    jobs = ", ".join(summary.jobs) or "-"
    entries = ", ".join(f"{n} {c}" for n, c in summary.entries.items())
    print(f"job {jobs}; entries read: {entries}")
    for node, count in summary.skipped.items():
        if count:
            print(
                f"warning: {count} malformed line(s) in {logs[node]} skipped; run "
                "'gridcredit audit verify'",
                file=sys.stderr,
            )
    show = _print_rich if sys.stdout.isatty() and not args.plain else _print_plain
    for title, headers, rows in summary_tables(summary):
        show(title, headers, rows)
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``audit`` (``verify``, ``summary``) to ``subparsers``."""
    audit = subparsers.add_parser(
        "audit",
        help="check and summarize the nodes' audit logs",
        description="Check the hash chains, signatures and "
        "cross-matches of audit.jsonl files, or summarize them.",
    )
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = sub.add_parser(
        "verify",
        help="check chains, signatures and sent/received pairs",
        description="Exit 0 and print 'OK: ...' if every chain holds, every "
        "signature verifies (with --certs) and, given several nodes' logs "
        "of one job, every sent entry has exactly one matching received "
        "entry; else print 'FILE:LINE: what' per problem and exit 1.",
    )
    verify.add_argument("logs", nargs="+", type=Path, metavar="LOG", help="audit.jsonl files")
    verify.add_argument(
        "--certs",
        type=Path,
        metavar="DIR",
        help="folder with ca.pem and <node>.pem: check every entry's "
        "signature (then required) (default: signatures not checked)",
    )
    verify.add_argument("--job", metavar="ID", help="require every log to be bound to job ID "
                        "(default: any job, but the logs must share one)")
    verify.add_argument("--all", action="store_true",
                        help=f"list every problem (default: the first {SHOWN}; one truncated "
                        "log leaves every later message of its peers unmatched)")
    verify.add_argument("--allow-open", action="store_true",
                        help="accept a log without its closing entry (a node that is still "
                        "running or was killed) with a note (default: reported as truncated)")
    verify.set_defaults(handler=cmd_verify)
    summary = sub.add_parser(
        "summary",
        help="messages and bytes per step and peer",
        description="Print per step and per peer the message count and "
        "bytes, and which node received which kind of message from whom.",
    )
    summary.add_argument("logs", nargs="+", type=Path, metavar="LOG", help="audit.jsonl files")
    summary.add_argument(
        "--plain",
        action="store_true",
        help="plain text even on a terminal (default: tables on a terminal)",
    )
    summary.set_defaults(handler=cmd_summary)


def build_parser() -> argparse.ArgumentParser:
    """A parser with only the ``audit`` commands."""
    parser = argparse.ArgumentParser(prog="gridcredit", description="audit log checks")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (e.g. ``["audit", "verify", LOG]``) and run the handler."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
