"""Two quick Ctrl-C on ``simulate``: the second does not interrupt marking the run failed.

The trial pressed Ctrl-C twice ~20 ms apart while plots were written and found rc 130, the run
marked "running", no FAILED and bank/model.json left behind: the second SIGINT interrupted
``RunFolder.failed``. Here ``failed`` is held open (it signals it started, then waits for the
test) so the second SIGINT lands inside it every time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e
WITHIN = 240.0
SCRIPT = """
import logging, sys, time
from pathlib import Path
from federation import run_folder
from federation.cli import main

hold = Path(sys.argv[1])
original = run_folder.RunFolder.failed


def failed(self: run_folder.RunFolder, reason: str) -> None:
    logging.getLogger("federation.lifeline").addHandler(logging.FileHandler(hold / "log"))
    logging.getLogger("federation.lifeline").setLevel(logging.INFO)
    (hold / "cleaning").touch()
    deadline = time.monotonic() + 60
    while not (hold / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    original(self, reason)


run_folder.RunFolder.failed = failed  # type: ignore[method-assign]
sys.exit(main(sys.argv[2:]))
"""


def _wait(what: str, ready: object, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WITHIN
    while not ready():  # type: ignore[operator]
        assert proc.poll() is None, f"simulate exited {proc.returncode} before {what}"
        assert time.monotonic() < deadline, f"no {what} within {WITHIN:g} s"
        time.sleep(0.01)


def test_a_second_ctrl_c_while_plots_are_written_still_marks_the_run_failed(
        tmp_path: Path) -> None:
    out, hold = tmp_path / "run", tmp_path / "hold"
    hold.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(hold), "simulate", "--demo-enterprises", "400",
         "--epochs", "2", "--batch-size", "128", "--quiet", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    log = hold / "log"
    try:
        _wait("bank/predictions.csv", (out / "bank" / "predictions.csv").exists, proc)
        proc.send_signal(signal.SIGINT)
        _wait("cleanup", (hold / "cleaning").exists, proc)
        proc.send_signal(signal.SIGINT)
        _wait("ignored second SIGINT", lambda: log.exists() and "ignored" in log.read_text(),
              proc)
        (hold / "go").touch()
        _, err = proc.communicate(timeout=WITHIN)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "error: interrupted", err[-2000:]
    assert json.loads((out / ".gridcredit-run.json").read_text())["status"] == "failed"
    assert "interrupted" in (out / "FAILED").read_text()
    for name in ("grid/model.json", "bank/model.json", "bank/predictions.csv", "report.json"):
        assert not (out / name).exists(), name
