"""``gridcredit audit verify`` / ``summary`` on the three logs of a real ``simulate`` run.

The untouched, signed logs verify against the run's certificates; each tampered copy
(a flipped byte, a deleted line, two swapped lines) fails and names the line.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import fate_file, run_cli

pytestmark = pytest.mark.e2e
NODES = ("coordinator", "grid", "bank")
LINE = 10  # the grid log's line the tamperings touch (1-based), mid-training


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audit-run")
    result = run_cli("simulate", "--grid-data", str(fate_file("breast_hetero_host.csv")),
                     "--bank-data", str(fate_file("breast_hetero_guest.csv")),
                     "--out", str(out), "--batch-size", "128", "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def copy_logs(run: Path, to: Path) -> list[Path]:
    paths = []
    for node in NODES:
        (to / node).mkdir(parents=True)
        paths.append(Path(shutil.copy(run / node / "audit.jsonl", to / node / "audit.jsonl")))
    return paths


def verify(logs: list[Path], certs: Path | None, *options: str) -> tuple[int, str]:
    extra = ["--certs", str(certs)] if certs else []
    result = run_cli("audit", "verify", *map(str, logs), *extra, *options, timeout=60)
    return result.returncode, result.stdout + result.stderr


def test_verify_passes_on_the_three_signed_logs(run: Path) -> None:
    logs = [run / n / "audit.jsonl" for n in NODES]
    code, out = verify(logs, run / "certs")
    assert code == 0, out
    total = sum(1 for p in logs for line in p.read_text().splitlines() if '"sig"' in line)
    sent_between = sum(1 for p in logs for line in p.read_text().splitlines()
                       if json.loads(line)["direction"] == "sent")
    assert out.startswith("OK: 3 log(s)")
    assert f"{total} signatures valid" in out and f"{sent_between} messages cross-matched" in out
    assert "not checked" not in out  # --certs given: the line must not also say they were not


def flip_byte(lines: list[bytes]) -> str:
    line = bytearray(lines[LINE - 1])
    line[line.index(b'"sha256": "') + 30] ^= 0x01
    lines[LINE - 1] = bytes(line)
    return "hash mismatch"


def delete_line(lines: list[bytes]) -> str:
    del lines[LINE - 1]
    return "seq gap"


def reorder_lines(lines: list[bytes]) -> str:
    lines[LINE - 1], lines[LINE] = lines[LINE], lines[LINE - 1]
    return "out of order"


@pytest.mark.parametrize("signed", [False, True], ids=["chain", "chain+signatures"])
@pytest.mark.parametrize("tamper", [flip_byte, delete_line, reorder_lines],
                         ids=lambda f: f.__name__)
def test_verify_fails_on_a_tampered_copy_and_names_the_line(
        run: Path, tmp_path: Path, tamper: Callable[[list[bytes]], str], signed: bool) -> None:
    logs = copy_logs(run, tmp_path)
    grid = logs[1]
    lines = grid.read_bytes().splitlines(keepends=True)
    expect = tamper(lines)
    grid.write_bytes(b"".join(lines))
    code, out = verify(logs, run / "certs" if signed else None)
    assert code == 1, out
    first = next(line for line in out.splitlines() if line.startswith(f"{grid}:"))
    assert first.startswith(f"{grid}:{LINE}: ") and expect in first, out
    assert "OK" not in out


def test_a_deleted_received_entry_is_also_caught_by_cross_matching(run: Path,
                                                                   tmp_path: Path) -> None:
    logs = copy_logs(run, tmp_path)
    bank = logs[2]
    lines = bank.read_bytes().splitlines(keepends=True)
    index = next(i for i, raw in enumerate(lines)
                 if json.loads(raw)["direction"] == "received" and json.loads(raw)["peer"] == "grid"
                 and json.loads(raw)["step"] == "fit")
    gone = json.loads(lines[index])
    bank.write_bytes(b"".join(lines[:index] + lines[index + 1:]))
    code, out = verify(logs, None)
    assert code == 1, out
    assert f"{bank}:{index + 1}: " in out  # the chain break
    grid_sent = [i + 1 for i, raw in enumerate(logs[1].read_bytes().splitlines())
                 if json.loads(raw)["sha256"] == gone["sha256"]
                 and json.loads(raw)["direction"] == "sent"]
    assert grid_sent and re.search(rf"^{re.escape(str(logs[1]))}:{grid_sent[0]}: sent 'fit' .*"
                                   "no matching 'received' entry", out, re.MULTILINE), out


def test_verify_names_the_job_and_refuses_another(run: Path) -> None:
    logs = [run / n / "audit.jsonl" for n in NODES]
    job = json.loads((run / "coordinator" / "job.json").read_text())["job_id"]
    code, out = verify(logs, run / "certs", "--job", job)
    assert code == 0 and f"all of job {job}" in out, out
    code, out = verify(logs, None, "--job", "another-job")
    assert code == 1 and out.count("not of job 'another-job'") == 3, out


def test_summary_prints_per_step_counts(run: Path) -> None:
    logs = [run / n / "audit.jsonl" for n in NODES]
    result = run_cli("audit", "summary", *map(str, logs), timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    sent = Counter((e["step"], e["node"], e["peer"])
                   for p in logs for e in map(json.loads, p.read_text().splitlines())
                   if e["direction"] == "sent")
    assert {"fit", "psi/key", "psi/match", "deal", "join"} <= {step for step, _, _ in sent}
    for (step, sender, receiver), count in sent.items():
        row = rf"^{re.escape(step)}\s+{sender}\s+{receiver}\s+{count}\s"
        assert re.search(row, out, re.MULTILINE), (step, sender, receiver, count, out)
    assert "Per peer" in out and "Reveal" in out
    assert re.search(r"^bank\s+grid\s+.*\bfit\b", out, re.MULTILINE)
