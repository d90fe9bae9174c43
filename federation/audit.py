"""Each node's append-only audit log of the messages it sent and received, and its checks.

One JSON line per message: sequence number, time, job, round, step, direction, peer,
the tensors' names, dtypes and shapes, the byte count, the SHA-256 of the payload
bytes, the previous entry's hash and this entry's hash (a chain: editing, dropping or
reordering a line breaks it at that line). Never a payload value. With a signing key,
each entry also carries ``sig``: base64 DER ECDSA-P256-SHA256 over
``SIG_CONTEXT + hash`` (the hex digest as ASCII), so ``openssl dgst -sha256 -verify``
can check one line by hand. Each entry is written and flushed as one line, so a crash
leaves a valid prefix; reopening a log continues its chain after the last whole entry.

Verification is pure (no printing): :func:`verify_chain` finds the first break in one
log, :func:`match_peers` pairs every ``sent`` entry with the peer's ``received`` entry
across the logs of one job, :func:`summarize` counts messages and bytes per step and peer.

Assumes: one writer process per log file; node keys are ECDSA P-256 (as written by
``federation.certs``); a node's log is read by an auditor who trusts the federation CA.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from federation.errors import ConfigError

GENESIS = "0" * 64
# Domain separation: the node's TLS key signs TLS handshakes too, never this prefix.
SIG_CONTEXT = b"gridcredit-audit-v1:"
DIRECTIONS = ("sent", "received")
FIELDS: dict[str, tuple[type, ...]] = {
    "seq": (int,),
    "time": (int, float),
    "node": (str,),
    "job": (str,),
    "round": (int,),
    "step": (str,),
    "direction": (str,),
    "peer": (str,),
    "tensors": (list,),
    "bytes": (int,),
    "sha256": (str,),
    "prev": (str,),
    "hash": (str,),
}
UNHASHED = frozenset({"hash", "sig"})


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of the entry's canonical JSON without its ``hash`` and ``sig`` fields."""
    body = {k: v for k, v in entry.items() if k not in UNHASHED}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canon).hexdigest()


def load_signing_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """The node's ECDSA P-256 private key from unencrypted PEM; anything else is a ConfigError."""
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"audit signing key: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError(f"audit signing key: expected ECDSA P-256, got {type(key).__name__}")
    return key


def sign_hash(key: ec.EllipticCurvePrivateKey, entry_digest: str) -> str:
    """Base64 DER ECDSA-P256-SHA256 signature over ``SIG_CONTEXT + entry_digest``."""
    der = key.sign(SIG_CONTEXT + entry_digest.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode("ascii")


def _chain_tail(path: Path) -> tuple[int, str, bool]:
    """(seq, hash) of the last whole entry in ``path`` and whether the file ends mid-line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, GENESIS, False
    for raw in reversed(data.split(b"\n")):
        entry, _ = _parse(raw)
        if entry is not None:
            return int(entry["seq"]), str(entry["hash"]), not data.endswith(b"\n")
    return 0, GENESIS, bool(data) and not data.endswith(b"\n")


class AuditLog:
    """Append-only, hash-chained, optionally signed JSON Lines log of one node's messages.

    Parameters
    ----------
    path : Path
        The ``audit.jsonl`` file; its folder is created. An existing log is continued.
    node : str
        This node's role, written into every entry.
    signing_key_pem : bytes, optional
        The node's ECDSA P-256 private key (PEM); when given every entry gets ``sig``.
    """

    def __init__(self, path: Path, node: str, signing_key_pem: bytes | None = None) -> None:
        self._key = load_signing_key(signing_key_pem) if signing_key_pem is not None else None
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.node = node
        self._lock = threading.Lock()
        self._seq, self._prev, torn = _chain_tail(path)
        self._file: IO[str] = path.open("a", encoding="utf-8")
        if torn:  # a crash cut the last line: keep it visible, start the next entry on its own
            self._file.write("\n")
            self._file.flush()

    def record(
        self,
        *,
        direction: str,
        peer: str,
        job: str,
        round_: int,
        step: str,
        payload: bytes,
        tensors: list[dict[str, Any]] | None = None,
    ) -> None:
        """Append one entry for ``payload`` (its size and digest, never its bytes)."""
        with self._lock:
            self._seq += 1
            entry: dict[str, Any] = {
                "seq": self._seq,
                "time": round(time.time(), 6),
                "node": self.node,
                "job": job,
                "round": round_,
                "step": step,
                "direction": direction,
                "peer": peer,
                "tensors": tensors or [],
                "bytes": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
                "prev": self._prev,
            }
            entry["hash"] = entry_hash(entry)
            if self._key is not None:
                entry["sig"] = sign_hash(self._key, entry["hash"])
            self._prev = entry["hash"]
            self._file.write(json.dumps(entry, sort_keys=True) + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


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


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:  # two readers could disagree on which value counts
            raise ValueError(f"duplicate field {key!r}")
        out[key] = value
    return out


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """(entry, "") for a well-formed line, else (None, why not)."""
    if not raw.strip():
        return None, "empty line"
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"not valid JSON ({exc})"
    if not isinstance(value, dict):
        return None, f"not a JSON object but {type(value).__name__}"
    for name, types in FIELDS.items():
        if name not in value:
            return None, f"field {name!r} missing"
        if isinstance(value[name], bool) or not isinstance(value[name], types):
            return (
                None,
                f"field {name!r} is {type(value[name]).__name__}, expected {types[0].__name__}",
            )
    if value["direction"] not in DIRECTIONS:
        return None, f"direction {value['direction']!r} is neither 'sent' nor 'received'"
    return value, ""


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
        entry, error = _parse(raw)
        out.append(Line(i, entry, error, torn and i == len(raws)))
    return out


def _short(digest: str) -> str:
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
            "the genesis hash" if prev == GENESIS else f"line {number - 1}'s hash {_short(prev)}"
        )
        diffs.append(f"prev mismatch: prev is {_short(entry['prev'])}, expected {where}")
    recomputed = entry_hash(entry)
    if entry["hash"] != recomputed:
        diffs.append(
            f"hash mismatch: line says {_short(entry['hash'])}, its fields hash to "
            f"{_short(recomputed)} (the entry was edited)"
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


# ---------------------------------------------------------------------------------------------
# Cross-matching the logs of one job

Key = tuple[str, int, str, str, int]  # job, round, step, sha256, bytes


def _key(entry: dict[str, Any]) -> Key:
    return entry["job"], entry["round"], entry["step"], entry["sha256"], entry["bytes"]


def _describe(entry: dict[str, Any]) -> str:
    return (
        f"{entry['step']!r} (job {entry['job']}, round {entry['round']}, "
        f"{entry['bytes']} bytes, sha256 {_short(entry['sha256'])})"
    )


def _pair(
    sender: str,
    sender_file: Path,
    sent: list[tuple[int, dict[str, Any]]],
    receiver: str,
    receiver_file: Path,
    got: list[tuple[int, dict[str, Any]]],
) -> list[Problem]:
    """Pair each sent entry with one received entry of the same key, in log order."""
    waiting: dict[Key, deque[tuple[int, dict[str, Any]]]] = defaultdict(deque)
    for item in got:
        waiting[_key(item[1])].append(item)
    lonely_sent = []
    for n, e in sent:
        if waiting[_key(e)]:
            waiting[_key(e)].popleft()
        else:
            lonely_sent.append((n, e))
    near: dict[tuple[str, int, str], deque[tuple[int, dict[str, Any]]]] = defaultdict(deque)
    for n, e in sorted(
        (item for queue in waiting.values() for item in queue), key=lambda item: item[0]
    ):
        near[_key(e)[:3]].append((n, e))
    problems = []
    for n, e in lonely_sent:
        queue = near[_key(e)[:3]]
        if queue:  # same job, round and step: say what differs
            m, r = queue.popleft()
            problems.append(
                Problem(
                    sender_file,
                    n,
                    f"sent {_describe(e)} to {receiver}, but "
                    f"{receiver_file} line {m} received {r['bytes']} bytes, "
                    f"sha256 {_short(r['sha256'])}",
                )
            )
        else:
            problems.append(
                Problem(
                    sender_file,
                    n,
                    f"sent {_describe(e)} to {receiver}; no "
                    f"matching 'received' entry in {receiver_file}",
                )
            )
    for queue in near.values():
        for m, r in queue:
            problems.append(
                Problem(
                    receiver_file,
                    m,
                    f"received {_describe(r)} from {sender}; "
                    f"no matching 'sent' entry in {sender_file}",
                )
            )
    return problems


def match_peers(logs: dict[str, Path]) -> list[Problem]:
    """Pair every ``sent`` entry with exactly one ``received`` entry in the peer's log.

    Parameters
    ----------
    logs : dict[str, Path]
        Node name -> its ``audit.jsonl``, for several nodes of one job. Entries to or from
        a node whose log is not given are not checked.

    Returns
    -------
    list[Problem]
        Each unmatched entry (either side) with its file and line; a sent/received pair
        with the same job, round and step but a different digest or size is one problem
        at the sender's line naming the receiver's line. Logs of disjoint jobs give one
        problem per log instead.
    """
    entries: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    problems: list[Problem] = []
    for node, path in logs.items():
        try:
            entries[node] = read_entries(path)
        except OSError as exc:
            problems.append(Problem(path, 0, f"cannot read: {exc.strerror or exc}"))
            continue
        strangers = [n for n, e in entries[node] if e["node"] != node]
        if strangers:
            problems.append(Problem(path, strangers[0], f"entry is not {node}'s (node field)"))
    jobs = {node: {e["job"] for _, e in es} for node, es in entries.items()}
    common = set.intersection(*jobs.values()) if jobs else set()
    if len(jobs) > 1 and not common:
        return problems + [
            Problem(
                logs[n],
                0,
                f"{n}'s log is of job(s) {sorted(j)}, no job common to all the logs given",
            )
            for n, j in jobs.items()
        ]
    for sender, sender_entries in entries.items():
        for receiver, receiver_entries in entries.items():
            if sender == receiver:
                continue
            sent = [
                (n, e)
                for n, e in sender_entries
                if e["direction"] == "sent" and e["peer"] == receiver
            ]
            got = [
                (n, e)
                for n, e in receiver_entries
                if e["direction"] == "received" and e["peer"] == sender
            ]
            problems += _pair(sender, logs[sender], sent, receiver, logs[receiver], got)
    return sorted(problems, key=lambda p: (str(p.file), p.line))


# ---------------------------------------------------------------------------------------------
# Summary


@dataclass(frozen=True, slots=True)
class Flow:
    """The messages of one step from one node to another."""

    sender: str
    receiver: str
    step: str
    messages: int
    bytes: int
    first_round: int
    last_round: int
    tensors: tuple[str, ...]  # "name dtype[shape|shape...]" per tensor name, never values


@dataclass(frozen=True)
class Summary:
    """What crossed the wire, as the given logs tell it."""

    jobs: tuple[str, ...]
    entries: dict[str, int]  # node -> well-formed entries read
    flows: tuple[Flow, ...]  # in order of first appearance
    skipped: dict[str, int] = field(default_factory=dict)  # node -> lines not read

    def per_peer(self) -> list[tuple[str, str, int, int]]:
        """(sender, receiver, messages, bytes) per direction of travel."""
        totals: dict[tuple[str, str], list[int]] = {}
        for f in self.flows:
            t = totals.setdefault((f.sender, f.receiver), [0, 0])
            t[0] += f.messages
            t[1] += f.bytes
        return [(s, r, m, b) for (s, r), (m, b) in totals.items()]

    def reveal(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """Receiver -> sender -> the steps (kinds of message) it received from that sender."""
        out: dict[str, dict[str, tuple[str, ...]]] = {}
        for f in self.flows:
            steps = out.setdefault(f.receiver, {}).get(f.sender, ())
            out[f.receiver][f.sender] = steps + (f.step,)
        return out


def _tensor_kinds(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """("name dtype", "shape") of each tensor described in ``entry``."""
    kinds = []
    for t in entry["tensors"]:
        if isinstance(t, dict):
            shape = ",".join(str(d) for d in t.get("shape", []))
            kinds.append((f"{t.get('name')} {t.get('dtype')}", shape))
    return kinds


def summarize(logs: dict[str, Path]) -> Summary:
    """Count messages and bytes per step and per (sender, receiver).

    Each message is counted once: from the sender's log when it is given, else from the
    receiver's. Malformed lines are skipped and counted (``audit verify`` names them).

    Parameters
    ----------
    logs : dict[str, Path]
        Node name -> its ``audit.jsonl``.

    Returns
    -------
    Summary
        Flows in order of first appearance, per-peer totals and the reveal table.
    """
    acc: dict[tuple[str, str, str], dict[str, Any]] = {}
    counts, skipped, jobs = {}, {}, set()
    for node, path in logs.items():
        lines = read_lines(path)
        entries = [line.entry for line in lines if line.entry is not None]
        counts[node], skipped[node] = len(entries), len(lines) - len(entries)
        for e in entries:
            sent = e["direction"] == "sent"
            sender, receiver = (node, e["peer"]) if sent else (e["peer"], node)
            if not sent and sender in logs:
                continue  # the sender's log counts it
            jobs.add(e["job"])
            a = acc.setdefault(
                (sender, receiver, e["step"]),
                {"time": e["time"], "messages": 0, "bytes": 0, "rounds": [], "tensors": {}},
            )
            a["time"] = min(a["time"], e["time"])
            a["messages"] += 1
            a["bytes"] += e["bytes"]
            a["rounds"].append(e["round"])
            for kind, shape in _tensor_kinds(e):
                a["tensors"].setdefault(kind, {})[shape] = None
    flows = [
        Flow(
            s,
            r,
            step,
            a["messages"],
            a["bytes"],
            min(a["rounds"]),
            max(a["rounds"]),
            tuple(f"{kind}[{'|'.join(shapes)}]" for kind, shapes in a["tensors"].items()),
        )
        for (s, r, step), a in sorted(acc.items(), key=lambda kv: kv[1]["time"])
    ]
    return Summary(tuple(sorted(jobs)), counts, tuple(flows), skipped)
