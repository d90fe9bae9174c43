"""federation.transport.audit: the hash-chained JSON Lines log, one line per message, no payload."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from federation.transport.audit import GENESIS, AuditLog, entry_hash

PAYLOADS = [b"first \x00 payload", b"SECRET-FEATURES-0123456789", b"", bytes(range(256))]


def write_log(path: Path) -> None:
    log = AuditLog(path, "grid")
    for i, payload in enumerate(PAYLOADS):
        log.record(direction="sent" if i % 2 == 0 else "received", peer="bank", job="job-1",
                   round_=i, step="fit", payload=payload,
                   tensors=[{"name": "F", "dtype": "<u8", "shape": [4]}])
    log.close()


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "nested" / "audit.jsonl"  # the parent folder is created
    write_log(path)
    return path


def test_one_json_line_per_record(log_path: Path) -> None:
    lines = log_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(PAYLOADS)
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert log_path.read_text(encoding="utf-8").endswith("\n")


def test_entries_chain_from_genesis(log_path: Path) -> None:
    entries = read(log_path)
    assert entries[0]["prev"] == GENESIS
    for before, after in itertools.pairwise(entries):
        assert after["prev"] == before["hash"]
    assert [e["seq"] for e in entries] == list(range(1, len(PAYLOADS) + 1))


def test_each_hash_recomputes_with_entry_hash(log_path: Path) -> None:
    for e in read(log_path):
        assert e["hash"] == entry_hash(e)
        body = {k: v for k, v in e.items() if k != "hash"}
        canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        assert e["hash"] == hashlib.sha256(canon).hexdigest()


def test_editing_a_field_breaks_its_hash(log_path: Path) -> None:
    e = read(log_path)[1]
    e["bytes"] += 1
    assert entry_hash(e) != e["hash"]


def test_records_digest_and_size_of_payload_not_the_payload(log_path: Path) -> None:
    entries = read(log_path)
    for e, payload in zip(entries, PAYLOADS):
        assert e["sha256"] == hashlib.sha256(payload).hexdigest()
        assert e["bytes"] == len(payload)
        assert e["tensors"] == [{"name": "F", "dtype": "<u8", "shape": [4]}]
        assert (e["node"], e["peer"], e["job"], e["step"]) == ("grid", "bank", "job-1", "fit")
    assert [e["round"] for e in entries] == list(range(len(PAYLOADS)))
    assert [e["direction"] for e in entries] == ["sent", "received", "sent", "received"]


def test_no_payload_bytes_in_the_file(log_path: Path) -> None:
    raw = log_path.read_bytes()
    secret = PAYLOADS[1]
    for form in (secret, secret.hex().encode(), base64.b64encode(secret),
                 json.dumps(secret.decode()).encode()[1:-1], b"SECRET"):
        assert form not in raw
    assert bytes(range(256)).hex().encode() not in raw


def test_concurrent_records_keep_one_unbroken_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, "bank")

    def work(k: int) -> None:
        for i in range(50):
            log.record(direction="sent", peer="grid", job="j", round_=i, step=f"s{k}",
                       payload=b"x" * i)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10.0)
    log.close()
    entries = read(path)
    assert [e["seq"] for e in entries] == list(range(1, 201))
    assert all(b["hash"] == a["prev"] for b, a in itertools.pairwise(entries))
    assert all(e["hash"] == entry_hash(e) for e in entries)
