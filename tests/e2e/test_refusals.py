"""Nodes refuse peers they should not trust, and bad input fails cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from federation.processes import NodeProcess
from tests.conftest import REPO, fate_file, run_cli

pytestmark = pytest.mark.e2e


def _stop(*nodes: NodeProcess) -> None:
    for node in nodes:
        node.stop()


def test_party_with_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    assert run_cli("certs", "--out", str(tmp_path / "federation")).returncode == 0
    assert run_cli("certs", "--out", str(tmp_path / "rogue")).returncode == 0
    coordinator = NodeProcess("coordinator", [
        "coordinator", "--job-id", "j1", "--listen", "127.0.0.1:0", "--out",
        str(tmp_path / "c"), "--tls-dir", str(tmp_path / "federation"),
        "--batch-size", "128"], tmp_path / "c")
    grid = None
    try:
        coordinator.start()
        address = coordinator.wait_listening(60)
        grid = subprocess.run(
            [sys.executable, "-m", "federation.cli", "party", "--role", "grid", "--job-id", "j1",
             "--coordinator", address, "--out", str(tmp_path / "g"), "--tls-dir",
             str(tmp_path / "rogue"), "--data", str(fate_file("breast_hetero_host.csv"))],
            capture_output=True, text=True, timeout=120, cwd=REPO)
    finally:
        _stop(coordinator)
    assert grid is not None and grid.returncode != 0
    last = grid.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "coordinator" in last
    assert "TLS handshake refused" in last, last
    assert not (tmp_path / "g" / "model.json").exists()


@pytest.mark.parametrize("case,fragment", [
    ("missing_label", "missing label column 'y'"),
    ("duplicate_id", "duplicate ID"),
    ("non_numeric", "non-numeric value 'abc'"),
    ("empty", "file is empty"),
    ("one_class", "column 'y': no row labelled 1 among 569"),
])
def test_bad_bank_input_fails_with_one_clear_line_and_no_model(
        tmp_path: Path, case: str, fragment: str) -> None:
    lines = fate_file("breast_hetero_guest.csv").read_text().splitlines()
    if case == "missing_label":
        lines = [",".join(c for i, c in enumerate(line.split(",")) if i != 1) for line in lines]
    elif case == "duplicate_id":
        lines.append(lines[5])
    elif case == "non_numeric":
        cells = lines[7].split(",")
        cells[3] = "abc"
        lines[7] = ",".join(cells)
    elif case == "one_class":
        lines = lines[:1] + [",".join([r.split(",")[0], "0", *r.split(",")[2:]])
                             for r in lines[1:]]
    else:
        lines = []
    bank = tmp_path / "bank.csv"
    bank.write_text("\n".join(lines) + ("\n" if lines else ""))
    out = tmp_path / "run"
    result = run_cli("simulate", "--grid-data", str(fate_file("breast_hetero_host.csv")),
                     "--bank-data", str(bank), "--out", str(out), "--quiet", timeout=180)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: bank failed") and fragment in last and str(bank) in last, last
    if case == "non_numeric":
        assert "row 8" in last and "column 'x1'" in last
    assert not (out / "bank" / "model.json").exists()
    assert not (out / "grid" / "model.json").exists()
    assert not (out / "report.json").exists()
    assert not (out / "bank" / "predictions.csv").exists()
    # A cleanly failed job's logs verify: an auditor tells a failure from tampering.
    logs = [str(out / node / "audit.jsonl") for node in ("coordinator", "grid", "bank")]
    verify = run_cli("audit", "verify", *logs, "--certs", str(out / "certs"), timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_diverging_training_stops_with_one_line_and_no_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("simulate", "--grid-data", str(fate_file("breast_hetero_host.csv")),
                     "--bank-data", str(fate_file("breast_hetero_guest.csv")),
                     "--learning-rate", "1", "--out", str(out), "--quiet", timeout=180)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "training diverged: the epoch" in last, last
    assert last.endswith("try a smaller --learning-rate (now 1)"), last
    assert "Traceback" not in result.stderr
    for node in ("grid", "bank"):
        assert not (out / node / "model.json").exists()
    assert not (out / "bank" / "predictions.csv").exists()
    assert not (out / "report.json").exists()
