"""Each node's append-only audit log of the messages it sent and received, and its checks.

One JSON line per message: sequence number, time, job, round, step, direction, peer,
the tensors' names, dtypes and shapes, the byte count, the SHA-256 of the payload
bytes, the previous entry's hash and this entry's hash (a chain: editing, dropping or
reordering a line breaks it at that line). Never a payload value.

A log is a sequence of sessions (one per process that wrote it). A session starts with an
``audit/open`` entry binding the chain to the job, the node and the federation CA (the
SHA-256 fingerprint of its certificate) and ends with an ``audit/close`` entry holding the
number of message entries of the session; its ``prev`` is the final hash. In between,
every ``CHECKPOINT_EVERY`` message entries an ``audit/checkpoint`` entry is written. These
marks have the message fields too (direction ``none``, step ``audit/...``). With a signing
key the marks, and only they, carry ``sig``: base64 DER ECDSA-P256-SHA256 over
``SIG_CONTEXT + hash`` (the hex digest as ASCII), so ``openssl dgst -sha256 -verify`` can
check one by hand. A signed mark covers, through the chain, every entry before it: one
signature per batch instead of one per message (ECDSA costs ~120 µs holding the GIL).
Entries are written as whole lines. With ``hold`` > 1 (the party nodes: two entries per
iteration of a fit) message entries wait in memory and go to the file in one write with the
next session mark (so a signed mark and everything before it are always on disk together),
once ``hold`` of them wait, once the oldest waited ``HOLD_SECONDS``, on ``flush`` and on
``close``. A crash (SIGKILL) loses the waiting entries: at most ``hold - 1`` message entries
of the last ``HOLD_SECONDS``, none of them yet covered by a signature, and leaves a valid
prefix without its closing entry (``audit verify`` reports it as truncated or still open),
as before; reopening a log continues its chain after the last whole entry with a new session.
The default ``hold=1`` writes each entry at once (the coordinator, whose log tests and
operators watch while it runs).

Verification is pure (no printing): :func:`verify_chain` finds the first break in one
log, :func:`match_peers` pairs every ``sent`` entry with the peer's ``received`` entry
across the logs of one job, :func:`summarize` counts messages and bytes per step and peer.

Assumes: one writer process per log file; node keys are ECDSA P-256 (as written by
``federation.transport.certs``); a node's log is read by an auditor who trusts the federation CA.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from federation.protocol.errors import ConfigError
from federation.transport.audit_format import message_texts

log = logging.getLogger(__name__)
GENESIS = "0" * 64
# Domain separation: the node's TLS key signs TLS handshakes too, never this prefix.
SIG_CONTEXT = b"gridcredit-audit-v1:"
MARK = "none"  # the direction of the session marks below
DIRECTIONS = ("sent", "received", MARK)
STEP_OPEN, STEP_CHECKPOINT, STEP_CLOSE = "audit/open", "audit/checkpoint", "audit/close"
MARK_STEPS = (STEP_OPEN, STEP_CHECKPOINT, STEP_CLOSE)
CHECKPOINT_EVERY = 256
HOLD_SECONDS = 0.25  # the longest a held entry waits for its write (given another entry)
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


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:  # two readers could disagree on which value counts
            raise ValueError(f"duplicate field {key!r}")
        out[key] = value
    return out


def parse_entry(raw: bytes) -> tuple[dict[str, Any] | None, str]:
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
    if (value["direction"] == MARK) != (value["step"] in MARK_STEPS):
        return None, f"step {value['step']!r} does not go with direction {value['direction']!r}"
    return value, ""


def is_mark(entry: dict[str, Any]) -> bool:
    """Whether ``entry`` is a session mark (open, checkpoint, close), not a message."""
    return bool(entry["direction"] == MARK)


def ca_fingerprint(ca_pem: bytes) -> str:
    """SHA-256 (hex) of the DER form of the CA certificate in ``ca_pem``."""
    try:
        cert = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise ConfigError(f"audit log: the CA certificate is not PEM ({exc})") from exc
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()



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
        entry, _ = parse_entry(raw)
        if entry is not None:
            return int(entry["seq"]), str(entry["hash"]), not data.endswith(b"\n")
    return 0, GENESIS, bool(data) and not data.endswith(b"\n")


def _open_private(path: Path) -> IO[str]:
    """Open ``path`` for appending, created 0600, never through a symbolic link."""
    flags = os.O_CREAT | os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise ConfigError(f"audit log {path}: cannot open it ({exc.strerror or exc}; "
                          "a symbolic link is refused)") from None
    os.fchmod(fd, 0o600)  # audit logs are confidential, also one an older version wrote
    return os.fdopen(fd, "a", encoding="utf-8")


class AuditLog:
    """Append-only, hash-chained, batch-signed JSON Lines log of one node's messages.

    Parameters
    ----------
    path : Path
        The ``audit.jsonl`` file (created 0600); its folder is created. An existing log is
        continued with a new session.
    node : str
        This node's role, written into every entry.
    signing_key_pem : bytes, optional
        The node's ECDSA P-256 private key (PEM); when given every session mark gets ``sig``.
    job : str, optional
        The job the session belongs to ("" for a log of many, e.g. a scoring service's).
    ca_pem : bytes, optional
        The federation CA certificate; its fingerprint binds the session to the federation.
    hold : int, optional
        How many message entries may wait in memory for one write (1: each is written at
        once; see the module's note on what a crash loses).
    """

    def __init__(self, path: Path, node: str, signing_key_pem: bytes | None = None, *,
                 job: str = "", ca_pem: bytes | None = None, hold: int = 1) -> None:
        self._key = load_signing_key(signing_key_pem) if signing_key_pem is not None else None
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.node = node
        self.job = job
        self._lock = threading.Lock()
        self._file: IO[str] | None = _open_private(path)
        self._seq, self._prev, torn = _chain_tail(path)
        self._messages = 0  # message entries in this session
        self._unsigned = 0  # message entries since the last signed mark
        self._hold = max(1, hold)
        self._held: list[str] = []  # whole lines not yet written
        self._held_since = 0.0
        if torn:  # a crash cut the last line: keep it visible, start the next entry on its own
            self._file.write("\n")
            self._file.flush()
        ca = ca_fingerprint(ca_pem) if ca_pem is not None else ""
        with self._lock:
            self._append({"job": job, "round": 0, "step": STEP_OPEN, "direction": MARK,
                          "peer": "", "tensors": [], "bytes": 0, "sha256": "", "ca": ca})

    def _append(self, fields: dict[str, Any]) -> None:
        """Chain, (for a mark) sign, write and flush one entry; the caller holds the lock."""
        if self._file is None:
            raise ValueError(f"audit log {self.path} is closed")
        self._seq += 1
        now = time.time()
        entry: dict[str, Any] = {"seq": self._seq, "time": round(now, 6),
                                 "node": self.node, **fields, "prev": self._prev}
        texts = message_texts(entry)
        if texts is not None:  # a message entry: each JSON text built once
            digest = hashlib.sha256(texts[0]).hexdigest()
            self._held.append(texts[1] + digest + texts[2] + "\n")
        else:  # a session mark (or unusual types): json.dumps as the reader does
            digest = entry["hash"] = entry_hash(entry)
            if self._key is not None and entry["direction"] == MARK:
                entry["sig"] = sign_hash(self._key, digest)
                self._unsigned = 0
            self._held.append(json.dumps(entry, sort_keys=True) + "\n")
        self._prev = digest
        if len(self._held) == 1:
            self._held_since = now
        if (texts is None or len(self._held) >= self._hold
                or now - self._held_since >= HOLD_SECONDS):
            self._write()

    def _write(self) -> None:
        """Write the held lines in one go; the caller holds the lock."""
        if self._held and self._file is not None:
            self._file.write("".join(self._held))
            self._file.flush()
        self._held.clear()

    def flush(self) -> None:
        """Write the entries held in memory now."""
        with self._lock:
            self._write()

    def record(
        self,
        *,
        direction: str,
        peer: str,
        job: str,
        round_: int,
        step: str,
        payload: bytes | memoryview,
        tensors: list[dict[str, Any]] | None = None,
    ) -> None:
        """Append one entry for ``payload`` (its size and digest, never its bytes)."""
        digest = hashlib.sha256(payload).hexdigest()  # outside the lock (releases the GIL)
        with self._lock:
            self._append({"job": job, "round": round_, "step": step, "direction": direction,
                          "peer": peer, "tensors": tensors or [], "bytes": len(payload),
                          "sha256": digest})
            self._messages += 1
            self._unsigned += 1
            if self._key is not None and self._unsigned >= CHECKPOINT_EVERY:
                self._mark(STEP_CHECKPOINT)

    def _mark(self, step: str) -> None:
        self._append({"job": self.job, "round": 0, "step": step, "direction": MARK,
                      "peer": "", "tensors": [], "bytes": 0, "sha256": "",
                      "entries": self._messages})

    def close(self) -> None:
        """Write the signed closing entry (message count, final hash) and close the file."""
        with self._lock:
            if self._file is None:
                return
            self._mark(STEP_CLOSE)
            self._file.close()
            self._file = None


class AuditWriter:
    """Writes audit entries on its own thread, in the order they were handed over.

    Signing an entry (ECDSA P-256) and writing it costs about 0.5 ms; a request makes five
    entries per node, so on the request's path they would double its latency. Entries
    still queued when the process is killed are lost; a clean stop (``close``) writes them.
    """

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, name="audit", daemon=True)
        self._thread.start()

    def record(self, **entry: Any) -> None:
        """Queue one entry (the keyword arguments of ``AuditLog.record``)."""
        self._queue.put(entry)

    def _drain(self) -> None:
        while (entry := self._queue.get()) is not None:
            try:
                self._audit.record(**entry)
            except (OSError, ValueError) as exc:  # a full disk must not go unnoticed
                log.error("audit log %s: entry not written: %s", self._audit.path, exc)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (waiting at most ``timeout`` s), then close the log."""
        self._queue.put(None)
        self._thread.join(timeout)
        self._audit.close()
