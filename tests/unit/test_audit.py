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

from federation.protocol.errors import ConfigError
from federation.protocol.messages import Role
from federation.transport.audit import (
    CHECKPOINT_EVERY,
    GENESIS,
    AuditLog,
    ca_fingerprint,
    entry_hash,
)
from federation.transport.certs import write_federation

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


def messages(path: Path) -> list[dict[str, Any]]:
    return [e for e in read(path) if e["direction"] != "none"]


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "nested" / "audit.jsonl"  # the parent folder is created
    write_log(path)
    return path


def test_one_json_line_per_record(log_path: Path) -> None:
    lines = log_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(PAYLOADS) + 2  # the session's opening and closing entries
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert log_path.read_text(encoding="utf-8").endswith("\n")


def test_entries_chain_from_genesis(log_path: Path) -> None:
    entries = read(log_path)
    assert entries[0]["prev"] == GENESIS
    for before, after in itertools.pairwise(entries):
        assert after["prev"] == before["hash"]
    assert [e["seq"] for e in entries] == list(range(1, len(PAYLOADS) + 3))
    assert entries[0]["step"] == "audit/open" and entries[-1]["step"] == "audit/close"


def test_each_hash_recomputes_with_entry_hash(log_path: Path) -> None:
    for e in read(log_path):
        assert e["hash"] == entry_hash(e)
        body = {k: v for k, v in e.items() if k != "hash"}
        canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        assert e["hash"] == hashlib.sha256(canon).hexdigest()


def test_editing_a_field_breaks_its_hash(log_path: Path) -> None:
    e = messages(log_path)[1]
    e["bytes"] += 1
    assert entry_hash(e) != e["hash"]


def test_records_digest_and_size_of_payload_not_the_payload(log_path: Path) -> None:
    entries = messages(log_path)
    for e, payload in zip(entries, PAYLOADS, strict=True):
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
    assert [e["seq"] for e in entries] == list(range(1, 203))
    assert len(messages(path)) == 200
    assert all(b["hash"] == a["prev"] for b, a in itertools.pairwise(entries))
    assert all(e["hash"] == entry_hash(e) for e in entries)


def test_log_is_created_private_and_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditLog(path, "grid").close()
    assert path.stat().st_mode & 0o777 == 0o600
    target = tmp_path / "elsewhere.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        AuditLog(link, "grid")
    assert not target.exists()


def test_session_opens_bound_to_job_node_and_ca_and_closes_with_the_count(
        tmp_path: Path) -> None:
    fed = tmp_path / "certs"
    write_federation(fed, roles=(Role.GRID,))
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, "grid", (fed / "grid.key").read_bytes(), job="job-9",
                   ca_pem=(fed / "ca.pem").read_bytes())
    for i in range(3):
        log.record(direction="sent", peer="bank", job="job-9", round_=i, step="fit",
                   payload=b"x")
    log.close()
    first, *middle, last = read(path)
    assert (first["step"], first["job"], first["node"]) == ("audit/open", "job-9", "grid")
    assert first["ca"] == ca_fingerprint((fed / "ca.pem").read_bytes()) and "sig" in first
    assert (last["step"], last["entries"], last["prev"]) == ("audit/close", 3, middle[-1]["hash"])
    assert "sig" in last and all("sig" not in e for e in middle)


def test_a_checkpoint_is_signed_every_batch_and_messages_are_not(tmp_path: Path) -> None:
    fed = tmp_path / "certs"
    write_federation(fed, roles=(Role.BANK,))
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, "bank", (fed / "bank.key").read_bytes(), job="j")
    n = 2 * CHECKPOINT_EVERY + 5
    for i in range(n):
        log.record(direction="received", peer="grid", job="j", round_=i, step="fit",
                   payload=b"y")
    log.close()
    entries = read(path)
    signed = [i for i, e in enumerate(entries) if "sig" in e]
    steps = [entries[i]["step"] for i in signed]
    assert steps == ["audit/open", "audit/checkpoint", "audit/checkpoint", "audit/close"]
    assert signed[1] - signed[0] == CHECKPOINT_EVERY + 1
    assert len(entries) == n + 4
