"""Batched audit signatures and bound, closed sessions (issue 10 item 3, issue 9 item 4).

Only the session marks are signed (a checkpoint every ``CHECKPOINT_EVERY`` messages and the
closing entry), so tampering inside a batch must still be caught: at its own line when the
chain is left as it is, at the next signed mark when the forger rehashes the chain. A log
cut short (its closing entry gone) is reported as truncated; logs of job B do not verify
when job A is asked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from federation.audit_cli import main
from federation.transport.audit import CHECKPOINT_EVERY, AuditLog, ca_fingerprint, entry_hash
from federation.transport.audit_check import check_sessions, verify_chain
from federation.transport.certs import write_federation

N = 2 * CHECKPOINT_EVERY + 40  # two whole batches and a partial last one
JOB = "job-a"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    write_federation(out)
    return out


def key_of(certs: Path, node: str) -> ec.EllipticCurvePublicKey:
    key = x509.load_pem_x509_certificate((certs / f"{node}.pem").read_bytes()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def write_pair(folder: Path, certs: Path, job: str = JOB, n: int = N) -> dict[str, Path]:
    """grid sends n messages to bank; both logs signed, bound to ``job`` and the CA."""
    paths = {node: folder / node / "audit.jsonl" for node in ("grid", "bank")}
    ca = (certs / "ca.pem").read_bytes()
    logs = {node: AuditLog(paths[node], node, (certs / f"{node}.key").read_bytes(), job=job,
                           ca_pem=ca) for node in paths}
    for i in range(n):
        payload = i.to_bytes(4, "little") * 8
        logs["grid"].record(direction="sent", peer="bank", job=job, round_=i, step="fit",
                            payload=payload)
        logs["bank"].record(direction="received", peer="grid", job=job, round_=i, step="fit",
                            payload=payload)
    for log in logs.values():
        log.close()
    return paths


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def save(path: Path, es: list[dict[str, Any]], rehash_from: int | None = None) -> None:
    """Write ``es`` back; from index ``rehash_from`` renumber seq and recompute the chain."""
    if rehash_from is not None:
        for i in range(rehash_from, len(es)):
            es[i]["seq"] = es[i - 1]["seq"] + 1
            es[i]["prev"] = es[i - 1]["hash"]
            es[i]["hash"] = entry_hash(es[i])
    path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in es))


def signed_lines(es: list[dict[str, Any]]) -> list[int]:
    return [i + 1 for i, e in enumerate(es) if "sig" in e]


MIDDLE = CHECKPOINT_EVERY // 2 + 1  # 0-based index of a message inside the first batch
LAST = 2 * CHECKPOINT_EVERY + 20  # inside the last, partial batch (after two checkpoints)


def modify(es: list[dict[str, Any]], at: int) -> int:
    es[at]["bytes"] += 1
    return at


def delete(es: list[dict[str, Any]], at: int) -> int:
    del es[at]
    return at


def reorder(es: list[dict[str, Any]], at: int) -> int:
    es[at], es[at + 1] = es[at + 1], es[at]
    return at


Tamper = Callable[[list[dict[str, Any]], int], int]


@pytest.mark.parametrize("where", [MIDDLE, LAST], ids=["mid-batch", "last-partial-batch"])
@pytest.mark.parametrize("tamper", [modify, delete, reorder], ids=lambda f: f.__name__)
def test_tampering_inside_a_batch_breaks_the_chain_at_its_line(
        tmp_path: Path, certs: Path, tamper: Tamper, where: int) -> None:
    path = write_pair(tmp_path, certs)["grid"]
    es = entries(path)
    at = tamper(es, where)
    save(path, es)
    problems = verify_chain(path, key_of(certs, "grid"))
    assert len(problems) == 1 and problems[0].line == at + 1, problems


@pytest.mark.parametrize("where", [MIDDLE, LAST], ids=["mid-batch", "last-partial-batch"])
@pytest.mark.parametrize("tamper", [modify, delete, reorder], ids=lambda f: f.__name__)
def test_a_rehashed_tampering_inside_a_batch_fails_at_the_next_signed_entry(
        tmp_path: Path, certs: Path, tamper: Tamper, where: int) -> None:
    path = write_pair(tmp_path, certs)["grid"]
    es = entries(path)
    at = tamper(es, where)
    save(path, es, rehash_from=at)
    assert verify_chain(path) == []  # the chain alone cannot tell: why marks are signed
    problems = verify_chain(path, key_of(certs, "grid"))
    next_signed = min(n for n in signed_lines(es) if n > at + 1)
    assert len(problems) == 1 and problems[0].line == next_signed, problems
    assert "bad signature" in problems[0].what and "changed and the chain rehashed" \
        in problems[0].what
    assert main(["audit", "verify", str(path), "--certs", str(certs)]) == 1


def test_the_untouched_pair_verifies_with_job_and_certs(
        tmp_path: Path, certs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_pair(tmp_path, certs)
    code = main(["audit", "verify", str(paths["grid"]), str(paths["bank"]), "--certs",
                 str(certs), "--job", JOB])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"OK: 2 log(s) (grid {N}, bank {N} entries)" in out
    assert "8 signatures valid" in out and f"all of job {JOB}" in out  # 4 marks per log
    assert "not checked" not in out  # with --certs the line must not also say they were not


@pytest.mark.parametrize("drop", [1, 3, 40])
def test_dropping_the_last_entries_of_both_logs_is_reported_as_truncated(
        tmp_path: Path, certs: Path, drop: int, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_pair(tmp_path, certs)
    for path in paths.values():
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:-drop]))
    args = ["audit", "verify", str(paths["grid"]), str(paths["bank"]), "--certs", str(certs)]
    assert main(args) == 1
    out = capsys.readouterr().out
    for path in paths.values():
        assert f"{path}: truncated or still open: the session opened at line 1 has no " \
            "closing entry" in out, out
    assert "OK" not in out
    assert main([*args, "--allow-open"]) == 0  # a killed node's log: accepted with a note
    out = capsys.readouterr().out
    assert out.count("(accepted: --allow-open)") == 2 and "OK: 2 log(s)" in out
    assert "sessions bound, 2 left open (--allow-open)" in out and "and closed" not in out


def test_a_forged_closing_entry_does_not_verify(tmp_path: Path, certs: Path) -> None:
    path = write_pair(tmp_path, certs)["grid"]
    es = entries(path)
    close = es[-1]
    kept = es[:-11]  # ten messages cut, a closing entry forged for the rest
    close.update(entries=close["entries"] - 10, seq=kept[-1]["seq"] + 1, prev=kept[-1]["hash"])
    close["hash"] = entry_hash(close)
    save(path, [*kept, close])
    problems = verify_chain(path, key_of(certs, "grid"))
    assert len(problems) == 1 and "bad signature" in problems[0].what


def test_logs_of_another_job_do_not_verify_when_a_job_is_asked_for(
        tmp_path: Path, certs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = write_pair(tmp_path / "b", certs, job="job-b", n=5)
    code = main(["audit", "verify", str(b["grid"]), str(b["bank"]), "--certs", str(certs),
                 "--job", JOB])
    out = capsys.readouterr().out
    assert code == 1
    for path in b.values():
        assert f"{path}:1: log of job 'job-b', not of job '{JOB}' (--job)" in out, out
    a = write_pair(tmp_path / "a", certs, n=5)  # swapped: grid of job A, bank of job B
    assert main(["audit", "verify", str(a["grid"]), str(b["bank"])]) == 1
    assert "no job common to all the logs given" in capsys.readouterr().out


def test_a_message_of_another_job_inside_a_bound_session_is_reported(
        tmp_path: Path, certs: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, "grid", job=JOB)
    log.record(direction="sent", peer="bank", job="job-b", round_=1, step="fit", payload=b"")
    log.close()
    problems = check_sessions(path).problems
    assert len(problems) == 1 and problems[0].line == 2
    assert "entry of job 'job-b' in a session bound to job 'job-a'" in problems[0].what


def test_a_session_bound_to_another_ca_is_reported(tmp_path: Path, certs: Path) -> None:
    path = write_pair(tmp_path, certs, n=3)["grid"]
    other = tmp_path / "other"
    write_federation(other)
    found = check_sessions(path, JOB, ca_fingerprint((other / "ca.pem").read_bytes()))
    assert len(found.problems) == 1 and "bound to the CA" in found.problems[0].what
    own = ca_fingerprint((certs / "ca.pem").read_bytes())
    assert check_sessions(path, JOB, own).problems == []


def test_a_session_left_open_before_a_restart_is_reported_at_its_opening_line(
        tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditLog(path, "bank", job=JOB)
    first.record(direction="sent", peer="grid", job=JOB, round_=1, step="fit", payload=b"x")
    first._file.close()  # type: ignore[union-attr]  # killed: no closing entry
    second = AuditLog(path, "bank", job=JOB)
    second.close()
    assert verify_chain(path) == []
    found = check_sessions(path, JOB)
    assert [(p.line, p.what.split(":")[0]) for p in found.problems] == [(1, "truncated")]
    assert found.open_at == 0
