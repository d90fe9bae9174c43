"""Reading an audit log back and checking its hash chain and signatures, line by line.

Pure (no printing): :func:`verify_chain` finds the first break in one log and every bad
signature, naming the line. The format is the one :class:`federation.transport.audit.AuditLog`
writes (see that module).
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

from federation.transport.audit import GENESIS, SIG_CONTEXT, entry_hash, parse_entry

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
        The node's key; when given, every entry must carry a valid ``sig``.

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
    seq, prev, node = 0, GENESIS, None
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
        if not diffs and public_key is not None:
            bad_sig = _signature_problem(entry, public_key)
            diffs += [bad_sig] if bad_sig else []
        if diffs:
            return [Problem(path, line.number, "; ".join(diffs))]
        seq, prev, node = entry["seq"], entry["hash"], entry["node"]
    return []


def read_entries(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, entry) of every well-formed line; raises OSError if unreadable."""
    return [(line.number, line.entry) for line in read_lines(path) if line.entry is not None]
