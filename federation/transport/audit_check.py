"""Reading an audit log back and checking its hash chain, signatures and sessions.

Pure (no printing): :func:`verify_chain` finds the first break in one log or bad signature,
naming the line; :func:`check_sessions` checks that each session opens bound to its job,
node and CA and ends with its closing entry. The format is the one
:class:`federation.transport.audit.AuditLog` writes (see that module): signatures sit on the
session marks, each covering through the chain every entry before it, so an entry changed
and rehashed inside a batch shows at the next signed mark.
Assumes: the auditor trusts the federation CA whose certificates give the node keys.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from federation.transport.audit import (
    GENESIS,
    SIG_CONTEXT,
    STEP_CHECKPOINT,
    STEP_CLOSE,
    STEP_OPEN,
    entry_hash,
    is_mark,
    parse_entry,
)

# ---------------------------------------------------------------------------------------------
# Reading and verification


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: ``file``, 1-based ``line`` (0 = the file as a whole) and what differs."""

    file: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.what}" if self.line else f"{self.file}: {self.what}"


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a log: its number, and the entry or why it is not one."""

    number: int
    entry: dict[str, Any] | None
    error: str
    last_without_newline: bool = False


def read_lines(path: Path) -> list[Line]:
    """Every line of ``path`` (split on ``\\n`` only), parsed; raises OSError if unreadable."""
    data = path.read_bytes()
    raws = data.split(b"\n")
    torn = raws[-1] != b""
    if not torn:
        raws.pop()
    out = []
    for i, raw in enumerate(raws, start=1):
        entry, error = parse_entry(raw)
        out.append(Line(i, entry, error, torn and i == len(raws)))
    return out


def short_digest(digest: str) -> str:
    return digest[:12] + "…" if len(digest) > 12 else repr(digest)


def _signature_problem(entry: dict[str, Any], key: ec.EllipticCurvePublicKey) -> str:
    sig = entry.get("sig")
    if sig is None:
        return "no signature ('sig' missing) but signatures are required"
    if not isinstance(sig, str):
        return f"signature is {type(sig).__name__}, expected a base64 string"
    try:
        der = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        return "signature is not valid base64"
    if base64.b64encode(der).decode("ascii") != sig:
        return "signature is not canonical base64 (edited)"
    try:
        key.verify(der, SIG_CONTEXT + str(entry["hash"]).encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return f"bad signature: does not verify with {entry['node']}'s key"
    return ""


def _seq_problem(got: int, expected: int, later: dict[int, int]) -> str:
    """Why ``got`` is not ``expected``; ``later`` maps seq -> line for the lines after it."""
    if expected in later:
        return (
            f"seq is {got}, expected {expected}: lines out of order (seq {expected} is at "
            f"line {later[expected]})"
        )
    if got > expected:
        gap = got - expected
        return (
            f"seq gap: seq is {got}, expected {expected} "
            f"({gap} entr{'y' if gap == 1 else 'ies'} missing before this line)"
        )
    return f"seq is {got}, expected {expected}: an earlier entry repeated or moved here"


def _entry_problems(
    entry: dict[str, Any], number: int, seq: int, prev: str, node: str | None, lines: list[Line]
) -> list[str]:
    diffs = []
    if node is not None and entry["node"] != node:
        diffs.append(f"node is {entry['node']!r}, earlier lines say {node!r}")
    if entry["seq"] != seq + 1:
        later = {}
        for line in reversed(lines[number:]):
            if line.entry is not None:
                later[line.entry["seq"]] = line.number
        diffs.append(_seq_problem(entry["seq"], seq + 1, later))
    if entry["prev"] != prev:
        where = (
            "the genesis hash"
            if prev == GENESIS
            else f"line {number - 1}'s hash {short_digest(prev)}"
        )
        diffs.append(f"prev mismatch: prev is {short_digest(entry['prev'])}, expected {where}")
    recomputed = entry_hash(entry)
    if entry["hash"] != recomputed:
        diffs.append(
            f"hash mismatch: line says {short_digest(entry['hash'])}, its fields hash to "
            f"{short_digest(recomputed)} (the entry was edited)"
        )
    return diffs


def verify_chain(path: Path, public_key: ec.EllipticCurvePublicKey | None = None) -> list[Problem]:
    """Check one log's hash chain (and signatures, given the node's public key).

    Parameters
    ----------
    path : Path
        An ``audit.jsonl`` written by :class:`AuditLog`.
    public_key : EllipticCurvePublicKey, optional
        The node's key; when given, every session mark (and any entry that has one, as
        logs of earlier versions signed each entry) must carry a valid ``sig``.

    Returns
    -------
    list[Problem]
        Empty if the chain holds; else one problem at the first break, naming the line
        and every way it differs (bad JSON, seq gap, prev mismatch, hash mismatch, bad
        signature). Later lines are not judged: after a break their chain means nothing.
    """
    try:
        lines = read_lines(path)
    except OSError as exc:
        return [Problem(path, 0, f"cannot read: {exc.strerror or exc}")]
    seq, prev, node, signed_at = 0, GENESIS, None, 0
    for line in lines:
        if line.entry is None:
            what = line.error
            if line.last_without_newline:
                what = (
                    f"incomplete last line (no newline at the end of the file; the writer "
                    f"stopped mid-entry, e.g. a crash): {what}; the {line.number - 1} "
                    "entries before it verify"
                )
            return [Problem(path, line.number, what)]
        entry = line.entry
        diffs = _entry_problems(entry, line.number, seq, prev, node, lines)
        if not diffs and public_key is not None and (is_mark(entry) or "sig" in entry):
            bad_sig = _signature_problem(entry, public_key)
            if bad_sig.startswith("bad signature") and line.number - signed_at > 1:
                bad_sig += (f"; an entry of lines {signed_at + 1}-{line.number - 1} (since the "
                            "last signed entry) was changed and the chain rehashed, or this "
                            "entry was forged")
            diffs += [bad_sig] if bad_sig else []
            signed_at = line.number
        if diffs:
            return [Problem(path, line.number, "; ".join(diffs))]
        seq, prev, node = entry["seq"], entry["hash"], entry["node"]
    return []


def read_entries(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, entry) of every well-formed message line (no session marks); raises
    OSError if unreadable."""
    return [(line.number, line.entry) for line in read_lines(path)
            if line.entry is not None and not is_mark(line.entry)]


@dataclass(frozen=True, slots=True)
class Sessions:
    """What :func:`check_sessions` found: problems, and whether the last session is open."""

    problems: list[Problem]
    open_at: int = 0  # line of the opening entry of a session never closed (0: all closed)
    unsigned: int = 0  # message entries after the last signed mark
    jobs: tuple[str, ...] = ()


def check_sessions(path: Path, job: str | None = None, ca: str | None = None) -> Sessions:
    """Check a log whose chain holds: every session is bound and closed.

    Parameters
    ----------
    path : Path
        An ``audit.jsonl`` that :func:`verify_chain` passed.
    job : str, optional
        The job every session must be bound to (``audit verify --job``).
    ca : str, optional
        The CA fingerprint a session bound to a CA must name (from ``--certs``).

    Returns
    -------
    Sessions
        Problems (a message outside a session, another job, another CA, a wrong count, a
        session that never closed before the next one opened); ``open_at`` names the
        opening line of a last session without a closing entry (truncated or still open).
    """
    problems: list[Problem] = []
    opened: dict[str, Any] | None = None
    open_line = messages = unsigned = 0
    jobs: list[str] = []
    for number, entry in ((n.number, n.entry) for n in read_lines(path) if n.entry):
        step = entry["step"] if is_mark(entry) else ""
        unsigned = 0 if "sig" in entry else unsigned + (not step)
        if step == STEP_OPEN:
            if opened is not None:
                problems.append(Problem(path, open_line, "truncated: this session has no "
                                        f"closing entry (the next opens at line {number})"))
            opened, open_line, messages = entry, number, 0
            jobs.append(str(entry["job"]))
            problems += _binding_problems(path, number, entry, job, ca)
        elif opened is None:
            return Sessions([*problems, Problem(path, number, "entry outside a session (no "
                             "audit/open before it: the log's start was cut, or it was "
                             "written by an older version)")], 0, unsigned, tuple(jobs))
        elif step == STEP_CLOSE:
            if entry.get("entries") != messages:
                problems.append(Problem(path, number, f"closing entry counts "
                                        f"{entry.get('entries')} messages, the session holds "
                                        f"{messages}"))
            opened = None
        elif step != STEP_CHECKPOINT:
            messages += 1
            if opened["job"] and entry["job"] != opened["job"]:
                problems.append(Problem(path, number, f"entry of job {entry['job']!r} in a "
                                        f"session bound to job {opened['job']!r}"))
    return Sessions(problems, open_line if opened is not None else 0, unsigned, tuple(jobs))


def _binding_problems(path: Path, number: int, entry: dict[str, Any], job: str | None,
                      ca: str | None) -> list[Problem]:
    out = []
    if job is not None and entry["job"] != job:
        bound = f"job {entry['job']!r}" if entry["job"] else "no job"
        out.append(Problem(path, number, f"log of {bound}, not of job {job!r} (--job)"))
    if ca is not None and entry.get("ca") and entry.get("ca") != ca:
        out.append(Problem(path, number, f"bound to the CA {short_digest(str(entry['ca']))}, "
                           f"not the given CA {short_digest(ca)}"))
    return out
