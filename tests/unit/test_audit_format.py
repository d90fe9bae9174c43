"""federation.transport.audit_format: the hand-built texts equal json.dumps, byte for byte."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from federation.transport.audit import AuditLog, entry_hash
from federation.transport.audit_check import verify_chain
from federation.transport.audit_format import message_texts

WORDS = ["fit", "grid", "bank", "job-1", "é", "a\"b", "tab\there", "new\nline", "\u2028",
         "back\\slash", "", "0123abcdef", "ü-ß", "\x00", "💥", "fit-start", "dealer/0"]


def random_entry(rng: random.Random) -> dict[str, Any]:
    tensors = [{"name": rng.choice(WORDS), "dtype": rng.choice(["<u8", "<f8", "|u1", "<U3"]),
                "shape": [rng.randrange(0, 1 << 31) for _ in range(rng.randrange(0, 4))]}
               for _ in range(rng.randrange(0, 4))]
    return {"seq": rng.randrange(1, 1 << 40), "time": round(rng.uniform(0, 2e9), 6),
            "node": rng.choice(WORDS), "job": rng.choice(WORDS),
            "round": rng.randrange(-5, 1 << 33),
            "step": rng.choice(WORDS), "direction": rng.choice(["sent", "received"]),
            "peer": rng.choice(WORDS), "tensors": tensors, "bytes": rng.randrange(0, 1 << 40),
            "sha256": hashlib.sha256(rng.randbytes(8)).hexdigest(),
            "prev": rng.choice([hashlib.sha256(rng.randbytes(8)).hexdigest(), "0" * 64])}


def test_texts_equal_json_dumps_on_random_entries() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        entry = random_entry(rng)
        texts = message_texts(entry)
        assert texts is not None
        canon, head, tail = texts
        assert canon == json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        digest = hashlib.sha256(canon).hexdigest()
        assert digest == entry_hash(entry)
        assert head + digest + tail == json.dumps({**entry, "hash": digest}, sort_keys=True)


@pytest.mark.parametrize("change", [
    {"extra": 1}, {"round": True}, {"seq": 1.0}, {"time": float("nan")}, {"time": 3},
    {"tensors": [{"name": "F", "dtype": "<u8", "shape": [True]}]},
    {"tensors": [{"name": "F", "dtype": "<u8", "shape": (4,)}]},
    {"tensors": [{"name": "F", "dtype": "<u8", "shape": [4], "x": 1}]},
    {"tensors": ({"name": "F", "dtype": "<u8", "shape": [4]},)}, {"job": 5},
])
def test_unusual_entries_fall_back_to_json_dumps(change: dict[str, Any]) -> None:
    assert message_texts({**random_entry(random.Random(1)), **change}) is None


def test_held_entries_are_written_at_marks_flush_and_close(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, "grid", job="j", hold=1000)
    opening = path.read_bytes()
    assert opening.count(b"\n") == 1  # a mark is written at once
    for i in range(5):
        log.record(direction="sent", peer="bank", job="j", round_=i, step="fit",
                   payload=b"x" * i, tensors=[{"name": "F", "dtype": "<u8", "shape": [i]}])
    assert path.read_bytes() == opening  # held (a crash now loses these five, unsigned)
    log.flush()
    assert path.read_bytes().count(b"\n") == 6
    log.record(direction="received", peer="bank", job="j", round_=9, step="fit", payload=b"")
    log.close()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 8 and json.loads(lines[-1])["step"] == "audit/close"
    assert verify_chain(path) == []
