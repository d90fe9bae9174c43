"""A job killed mid-training resumes from its checkpoints to the same final weights."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, fate_file, run_cli

pytestmark = pytest.mark.e2e


def _args(out: Path) -> list[str]:
    return ["simulate", "--grid-data", str(fate_file("breast_hetero_host.csv")),
            "--bank-data", str(fate_file("breast_hetero_guest.csv")), "--out", str(out),
            "--mode", "local", "--epochs", "150", "--batch-size", "128", "--tolerance", "0",
            "--checkpoint-every", "1", "--deadline", "5", "--quiet"]


def _grid_process(out: Path) -> psutil.Process | None:
    config = str(out.resolve() / "configs" / "grid.toml")
    for proc in psutil.process_iter(["cmdline"]):
        if config in (proc.info["cmdline"] or []):
            return proc
    return None


def _checkpointed_epoch(out: Path) -> int:
    try:
        states = json.loads((out / "grid" / "checkpoint.json").read_text())["states"]
    except (OSError, ValueError, KeyError):
        return 0
    return max(int(e) for e in states)


def _start(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "federation.cli", *_args(out)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_job_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    # The uninterrupted job runs alongside the one to kill: two independent run folders.
    whole = _start(tmp_path / "whole")
    out = tmp_path / "killed"
    sim = _start(out)
    try:
        deadline = time.monotonic() + 120
        while _checkpointed_epoch(out) < 3:
            assert sim.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        grid = _grid_process(out)
        assert grid is not None
        grid.send_signal(signal.SIGKILL)
        _, stderr = sim.communicate(timeout=60)
        _, whole_stderr = whole.communicate(timeout=300)
    finally:
        for proc in (sim, whole):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert whole.returncode == 0, whole_stderr[-2000:]
    assert sim.returncode != 0
    assert "grid" in stderr.strip().splitlines()[-1]
    assert not (out / "grid" / "model.json").exists()
    assert not (out / "report.json").exists()
    killed_at = _checkpointed_epoch(out)
    assert 3 <= killed_at < 150

    resumed = run_cli(*_args(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    stats = json.loads((out / "bank" / "stats.json").read_text())
    assert 3 <= stats["resumed_after_epoch"] <= killed_at
    for role in ("grid", "bank"):
        a = json.loads((tmp_path / "whole" / role / "model.json").read_text())
        b = json.loads((out / role / "model.json").read_text())
        assert a["weights"] == b["weights"] and a["intercept"] == b["intercept"]
