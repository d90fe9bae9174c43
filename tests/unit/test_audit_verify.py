"""Audit log verification: chains, signatures, cross-matching, summary, and the CLI.

Every tampering must make ``verify_chain`` fail at the right line; a forger who rewrites
the hashes passes the chain but not the signatures.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from federation.audit_cli import main
from federation.protocol.messages import Role
from federation.transport.audit import AuditLog, entry_hash
from federation.transport.audit_check import Problem, check_sessions, verify_chain
from federation.transport.audit_pairs import match_peers, summarize
from federation.transport.certs import write_federation

JOB = "job-7"
# (step, round, payload) of the grid -> bank messages of a toy job
MESSAGES = [("psi/blinded", 0, b"points" * 40), ("pair-key", 0, b"k" * 32),
            ("fit", 1, b"\x01" * 128), ("fit", 2, b"\x02" * 128), ("fit", 3, b"\x03" * 71),
            ("evaluate", 4, b"u" * 569)]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    write_federation(out)
    return out


def public_key(certs: Path, node: str) -> ec.EllipticCurvePublicKey:
    from cryptography import x509

    key = x509.load_pem_x509_certificate((certs / f"{node}.pem").read_bytes()).public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise TypeError(type(key))
    return key


def write_job(folder: Path, certs: Path | None, drop_received: int | None = None,
              job: str = JOB) -> dict[str, Path]:
    """grid sends MESSAGES to bank and bank acknowledges each; both logs, optionally signed."""
    paths = {node: folder / node / "audit.jsonl" for node in ("grid", "bank")}
    pem = {node: (certs / f"{node}.key").read_bytes() if certs else None for node in paths}
    ca = (certs / "ca.pem").read_bytes() if certs else None
    grid, bank = (AuditLog(paths[n], n, pem[n], job=job, ca_pem=ca) for n in ("grid", "bank"))
    for i, (step, round_, payload) in enumerate(MESSAGES):
        tensors = [{"name": "x", "dtype": "uint64", "shape": [len(payload) // 8]}]
        grid.record(direction="sent", peer="bank", job=job, round_=round_, step=step,
                    payload=payload, tensors=tensors)
        if i != drop_received:
            bank.record(direction="received", peer="grid", job=job, round_=round_, step=step,
                        payload=payload, tensors=tensors)
        ack = hashlib.sha256(payload).digest()
        bank.record(direction="sent", peer="grid", job=job, round_=round_, step=f"{step}/ack",
                    payload=ack)
        grid.record(direction="received", peer="bank", job=job, round_=round_,
                    step=f"{step}/ack", payload=ack)
    grid.close()
    bank.close()
    return paths


@pytest.fixture
def signed(tmp_path: Path, certs: Path) -> dict[str, Path]:
    return write_job(tmp_path, certs)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def edit_entry(path: Path, line: int, change: Callable[[dict[str, Any]], None]) -> None:
    lines = lines_of(path)
    entry = json.loads(lines[line - 1])
    change(entry)
    lines[line - 1] = (json.dumps(entry, sort_keys=True) + "\n").encode()
    rewrite(path, lines)


def only_problem(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


# --- chains and signatures ------------------------------------------------------------------


def test_signed_log_verifies_with_its_node_key_and_not_another(signed: dict[str, Path],
                                                               certs: Path) -> None:
    grid = signed["grid"]
    entries = [json.loads(line) for line in lines_of(grid)]
    assert len(entries) == 2 * len(MESSAGES) + 2  # opening and closing entries
    assert all(e["hash"] == entry_hash(e) for e in entries)
    assert all(isinstance(e["sig"], str) for e in (entries[0], entries[-1]))
    assert verify_chain(grid, public_key(certs, "grid")) == []
    assert verify_chain(grid) == []
    wrong = only_problem(verify_chain(grid, public_key(certs, "bank")))
    assert wrong.line == 1 and "bad signature" in wrong.what


def test_unsigned_log_keeps_the_old_constructor_and_fails_only_when_a_key_is_given(
        tmp_path: Path, certs: Path) -> None:
    paths = write_job(tmp_path, None)
    assert "sig" not in json.loads(lines_of(paths["grid"])[0])
    assert verify_chain(paths["grid"]) == []
    problem = only_problem(verify_chain(paths["grid"], public_key(certs, "grid")))
    assert problem.line == 1 and "no signature" in problem.what


def flip_byte(path: Path) -> int:
    lines = lines_of(path)
    line = bytearray(lines[4])
    at = line.index(b'"sha256": "') + 20
    line[at] ^= 0x01
    lines[4] = bytes(line)
    rewrite(path, lines)
    return 5


def delete_line(path: Path) -> int:
    lines = lines_of(path)
    del lines[3]
    rewrite(path, lines)
    return 4


def reorder_lines(path: Path) -> int:
    lines = lines_of(path)
    lines[6], lines[7] = lines[7], lines[6]
    rewrite(path, lines)
    return 7


def change_digest(path: Path) -> int:
    edit_entry(path, 3, lambda e: e.update(sha256=hashlib.sha256(b"other").hexdigest()))
    return 3


def drop_signature(path: Path) -> int:
    last = len(lines_of(path))
    edit_entry(path, last, lambda e: e.pop("sig"))  # the closing entry's
    return last


def forge_rehashed(path: Path) -> int:
    """Change a digest and recompute that entry's hash and every later prev/hash."""
    lines = [json.loads(line) for line in lines_of(path)]
    lines[5]["bytes"] += 1
    for i in range(5, len(lines)):
        lines[i]["prev"] = lines[i - 1]["hash"]
        lines[i]["hash"] = entry_hash(lines[i])
    rewrite(path, [(json.dumps(e, sort_keys=True) + "\n").encode() for e in lines])
    return len(lines)  # caught at the next signed entry: here the closing one


@pytest.mark.parametrize(("tamper", "expect"), [
    (flip_byte, "hash mismatch"),
    (delete_line, "seq gap"),
    (reorder_lines, "seq is 8, expected 7: lines out of order (seq 7 is at line 8)"),
    (change_digest, "hash mismatch"),
    (drop_signature, "no signature"),
    (forge_rehashed, "bad signature"),
], ids=lambda v: getattr(v, "__name__", ""))
def test_each_tampering_fails_at_its_line(signed: dict[str, Path], certs: Path,
                                          tamper: Callable[[Path], int], expect: str) -> None:
    line = tamper(signed["grid"])
    problem = only_problem(verify_chain(signed["grid"], public_key(certs, "grid")))
    assert (problem.file, problem.line) == (signed["grid"], line)
    assert expect in problem.what
    assert str(problem).startswith(f"{signed['grid']}:{line}: ")


def test_deleted_line_reports_both_the_seq_gap_and_the_prev_mismatch(
        signed: dict[str, Path]) -> None:
    delete_line(signed["grid"])
    problem = only_problem(verify_chain(signed["grid"]))
    assert "seq is 5, expected 4" in problem.what and "1 entry missing" in problem.what
    assert "prev mismatch" in problem.what and "line 3's hash" in problem.what


def test_a_rehashing_forger_passes_the_chain_but_not_the_signatures(
        signed: dict[str, Path]) -> None:
    forge_rehashed(signed["grid"])
    assert verify_chain(signed["grid"]) == []  # why entries are signed


@pytest.mark.parametrize("bit", [0x01, 0x20, 0x80])
def test_every_single_byte_flip_of_a_line_is_caught_at_that_line(
        signed: dict[str, Path], certs: Path, bit: int) -> None:
    path, key = signed["grid"], public_key(certs, "grid")
    original = lines_of(path)
    target = 4  # 1-based; its newline included
    for at in range(len(original[target - 1])):
        line = bytearray(original[target - 1])
        line[at] ^= bit
        rewrite(path, [*original[:target - 1], bytes(line), *original[target:]])
        problems = verify_chain(path, key)
        assert problems and problems[0].line == target, (at, chr(original[target - 1][at]))


def test_crash_truncated_last_line_is_reported_as_incomplete(signed: dict[str, Path],
                                                             certs: Path) -> None:
    path = signed["bank"]
    data = path.read_bytes()
    path.write_bytes(data[:-40])  # the writer died mid-line
    n = data.count(b"\n")
    problem = only_problem(verify_chain(path, public_key(certs, "bank")))
    assert problem.line == n
    assert "incomplete last line" in problem.what and f"the {n - 1} entries before it verify" \
        in problem.what


def test_reopening_a_log_continues_its_chain(signed: dict[str, Path], certs: Path) -> None:
    path = signed["grid"]
    log = AuditLog(path, "grid", (certs / "grid.key").read_bytes(), job=JOB)
    log.record(direction="sent", peer="bank", job=JOB, round_=9, step="late", payload=b"x")
    log.close()
    entries = [json.loads(line) for line in lines_of(path)]
    assert [e["step"] for e in entries[-3:]] == ["audit/open", "late", "audit/close"]
    assert entries[-1]["seq"] == 2 * len(MESSAGES) + 5
    assert verify_chain(path, public_key(certs, "grid")) == []
    assert check_sessions(path, JOB).problems == []


def test_reopening_after_a_crash_keeps_the_torn_line_visible(signed: dict[str, Path]) -> None:
    path = signed["grid"]
    path.write_bytes(path.read_bytes()[:-30])
    torn = path.read_bytes().count(b"\n") + 1
    log = AuditLog(path, "grid")
    log.record(direction="sent", peer="bank", job=JOB, round_=9, step="late", payload=b"x")
    log.close()
    problem = only_problem(verify_chain(path))
    assert problem.line == torn and "not valid JSON" in problem.what
    reopened = json.loads(lines_of(path)[torn])
    assert reopened["step"] == "audit/open"
    assert reopened["prev"] == json.loads(lines_of(path)[torn - 2])["hash"]


@pytest.mark.parametrize(("raw", "expect"), [
    (b"\n", "empty line"),
    (b"[1, 2]\n", "not a JSON object"),
    (b'{"seq": 1, "seq": 1}\n', "duplicate field 'seq'"),
    (b'{"seq": 1}\n', "field 'time' missing"),
])
def test_malformed_first_lines_are_named(tmp_path: Path, raw: bytes, expect: str) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(raw)
    problem = only_problem(verify_chain(path))
    assert problem.line == 1 and expect in problem.what


def test_missing_file_is_one_problem(tmp_path: Path) -> None:
    problem = only_problem(verify_chain(tmp_path / "nope.jsonl"))
    assert problem.line == 0 and "cannot read" in problem.what


# --- cross-matching -------------------------------------------------------------------------


def test_complete_job_cross_matches(signed: dict[str, Path]) -> None:
    assert match_peers(signed) == []


def test_missing_received_entry_is_named_at_the_senders_line(tmp_path: Path) -> None:
    paths = write_job(tmp_path, None, drop_received=3)
    problem = only_problem(match_peers(paths))
    sent_line = 2 * 3 + 2  # grid writes its opening entry, then (sent, received-ack) each
    assert (problem.file, problem.line) == (paths["grid"], sent_line)
    assert "no matching 'received' entry" in problem.what and "'fit'" in problem.what


def test_received_entry_without_sender_is_named_in_the_receivers_log(
        signed: dict[str, Path]) -> None:
    lines = lines_of(signed["grid"])
    del lines[5]  # grid's 'sent' of message 3 (0-based 2)
    rewrite(signed["grid"], lines)
    problem = only_problem(match_peers(signed))
    assert (problem.file, problem.line) == (signed["bank"], 6)
    assert "no matching 'sent' entry" in problem.what


def test_digest_mismatch_names_both_lines(signed: dict[str, Path]) -> None:
    edit_entry(signed["bank"], 4, lambda e: e.update(sha256="ab" * 32))
    problem = only_problem(match_peers(signed))
    assert (problem.file, problem.line) == (signed["grid"], 4)
    assert f"{signed['bank']} line 4" in problem.what and "sha256 abababababab" in problem.what


def test_duplicate_received_entry_is_unmatched(signed: dict[str, Path]) -> None:
    lines = lines_of(signed["bank"])
    rewrite(signed["bank"], [*lines, lines[1]])
    problem = only_problem(match_peers(signed))
    assert (problem.file, problem.line) == (signed["bank"], len(lines) + 1)


def test_a_retried_send_that_never_arrived_is_no_problem(signed: dict[str, Path]) -> None:
    lines = lines_of(signed["grid"])
    retry = json.loads(lines[1])  # grid's first 'sent': logged again for a second attempt
    retry.update(seq=len(lines) + 1)
    rewrite(signed["grid"], [*lines, (json.dumps(retry, sort_keys=True) + "\n").encode()])
    assert match_peers(signed) == []


def test_a_repeated_send_of_a_message_that_never_arrived_is_still_named(
        tmp_path: Path) -> None:
    paths = write_job(tmp_path, None, drop_received=3)
    lines = lines_of(paths["grid"])
    rewrite(paths["grid"], [*lines, lines[2 * 3 + 1]])
    problems = match_peers(paths)
    assert [(p.file, p.line) for p in problems] == [(paths["grid"], 8),
                                                    (paths["grid"], len(lines) + 1)]


def test_logs_of_different_jobs_are_one_problem_each(tmp_path: Path) -> None:
    a = write_job(tmp_path / "a", None, job="a")
    b = write_job(tmp_path / "b", None, job="b")
    problems = match_peers({"grid": a["grid"], "bank": b["bank"]})
    assert len(problems) == 2 and all("no job common" in p.what for p in problems)


# --- summary --------------------------------------------------------------------------------


def test_summary_counts_each_message_once_per_step_and_peer(signed: dict[str, Path]) -> None:
    s = summarize(signed)
    fit = next(f for f in s.flows if (f.step, f.sender) == ("fit", "grid"))
    assert (fit.receiver, fit.messages, fit.bytes) == ("bank", 3, 128 + 128 + 71)
    assert (fit.first_round, fit.last_round) == (1, 3)
    assert fit.tensors == ("x uint64[16|8]",)
    assert sum(f.messages for f in s.flows) == 2 * len(MESSAGES)
    assert {(a, b): m for a, b, m, _ in s.per_peer()} == {
        ("grid", "bank"): len(MESSAGES), ("bank", "grid"): len(MESSAGES)}
    assert s.reveal()["bank"]["grid"] == ("psi/blinded", "pair-key", "fit", "evaluate")
    assert s.jobs == (JOB,) and s.entries == {"grid": 12, "bank": 12}


def test_summary_from_one_log_counts_both_directions(signed: dict[str, Path]) -> None:
    s = summarize({"bank": signed["bank"]})
    assert sum(f.messages for f in s.flows) == 2 * len(MESSAGES)
    assert set(s.reveal()) == {"bank", "grid"}


# --- the CLI on signed logs (the e2e test runs it on a real job) -----------------------------


def test_cli_verify_passes_with_certs(signed: dict[str, Path], certs: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["audit", "verify", str(signed["grid"]), str(signed["bank"]),
                 "--certs", str(certs)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("OK: 2 log(s) (grid 12, bank 12 entries)")
    assert "4 signatures valid" in out and "12 messages cross-matched" in out


def test_cli_verify_fails_on_a_certificate_of_another_ca(
        signed: dict[str, Path], certs: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    write_federation(other, roles=(Role.GRID,))
    (other / "ca.pem").write_bytes((certs / "ca.pem").read_bytes())
    assert main(["audit", "verify", str(signed["grid"]), "--certs", str(other)]) == 1
    out = capsys.readouterr().out
    assert f"{other / 'grid.pem'}: not issued by {other / 'ca.pem'}" in out


def test_cli_verify_requires_signatures_with_certs(tmp_path: Path, certs: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_job(tmp_path, None)
    assert main(["audit", "verify", str(paths["grid"])]) == 0
    assert "signatures not checked" in capsys.readouterr().out
    assert main(["audit", "verify", str(paths["grid"]), "--certs", str(certs)]) == 1
    assert capsys.readouterr().out.startswith(f"{paths['grid']}:1: no signature")


def test_cli_verify_fails_on_an_emptied_log(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_job(tmp_path, None)
    paths["grid"].write_bytes(b"")  # zeroed: the grid's whole record is gone
    assert main(["audit", "verify", str(paths["grid"])]) == 1
    assert f"{paths['grid']}: no audit entries" in capsys.readouterr().out
    assert main(["audit", "verify", *map(str, paths.values())]) == 1
    assert "no audit entries" in capsys.readouterr().out


def test_cli_verify_lists_the_first_problems_and_counts_them_all(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import federation.audit_cli as audit_cli

    monkeypatch.setattr(audit_cli, "SHOWN", 5)  # this small job has a dozen problems
    paths = write_job(tmp_path, None)
    lines = paths["grid"].read_bytes().splitlines(keepends=True)
    paths["grid"].write_bytes(b"".join(lines[:2]))  # truncated: most of its peers' go unmatched
    logs = [str(p) for p in paths.values()]
    assert main(["audit", "verify", *logs]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    total = int(out[-1].split()[1])
    assert total > 6 and len(out) == 6, out[-1]
    assert out[-1] == (f"FAILED: {total} problem(s) in {len(logs)} log(s) (the first 5 above; "
                       "--all lists every one)")
    assert main(["audit", "verify", "--all", *logs]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == total + 1 and out[-1] == f"FAILED: {total} problem(s) in {len(logs)} log(s)"
