"""Each node's append-only audit log of the messages it sent and received.

One JSON line per message: sequence number, time, job, round, step, direction, peer,
the tensors' names, dtypes and shapes, the byte count, the SHA-256 of the payload
bytes, the previous entry's hash and this entry's hash (a chain: editing, dropping or
reordering a line breaks every hash after it). Never a payload value. Each entry is
flushed as it is written, so a crash leaves a valid prefix.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import IO, Any

GENESIS = "0" * 64


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of the entry's canonical JSON without its own ``hash`` field."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class AuditLog:
    def __init__(self, path: Path, node: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.node = node
        self._lock = threading.Lock()
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._seq = 0
        self._prev = GENESIS

    def record(self, *, direction: str, peer: str, job: str, round_: int, step: str,
               payload: bytes, tensors: list[dict[str, Any]] | None = None) -> None:
        with self._lock:
            self._seq += 1
            entry: dict[str, Any] = {
                "seq": self._seq, "time": round(time.time(), 6), "node": self.node,
                "job": job, "round": round_, "step": step, "direction": direction,
                "peer": peer, "tensors": tensors or [], "bytes": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(), "prev": self._prev,
            }
            entry["hash"] = entry_hash(entry)
            self._prev = entry["hash"]
            self._file.write(json.dumps(entry, sort_keys=True) + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
