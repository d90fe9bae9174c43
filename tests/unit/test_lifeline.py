"""federation.lifeline: the first SIGINT or SIGTERM unwinds; a second does not interrupt the
cleanup it started; a third Ctrl-C ends the process at once.

Each case runs a small process that installs the handlers, waits for the first signal, then
"cleans up" until the test lets it finish, so the later signals land inside the cleanup.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = """
import logging, sys, time
from pathlib import Path
from federation.lifeline import terminate_as_interrupt

hold = Path(sys.argv[1])
logging.basicConfig(filename=hold / "log", level=logging.INFO)


def wait_for(name: str) -> None:
    deadline = time.monotonic() + 60
    while not (hold / name).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


terminate_as_interrupt()
try:
    (hold / "ready").touch()
    wait_for("never")
except KeyboardInterrupt as exc:
    (hold / "cleaning").write_text(type(exc).__name__)
    wait_for("go")
    (hold / "cleaned").touch()
    sys.exit(130)
"""
WITHIN = 30.0


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WITHIN
    while not path.exists():
        assert proc.poll() is None, f"exited {proc.returncode} before {path.name} appeared"
        assert time.monotonic() < deadline, f"{path.name} did not appear within {WITHIN:g} s"
        time.sleep(0.01)


def _ignored(hold: Path, proc: subprocess.Popen[str]) -> None:
    """Wait until the process logged that it ignored a signal during its cleanup."""
    deadline = time.monotonic() + WITHIN
    log = hold / "log"
    while not (log.exists() and "ignored" in log.read_text()):
        assert proc.poll() is None, f"exited {proc.returncode}: the cleanup was interrupted"
        assert time.monotonic() < deadline, f"no signal ignored within {WITHIN:g} s"
        time.sleep(0.01)


def _start(hold: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(hold)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(hold / "ready", proc)
    return proc


@pytest.mark.parametrize(("first", "second"), [
    (signal.SIGINT, signal.SIGINT), (signal.SIGINT, signal.SIGTERM),
    (signal.SIGTERM, signal.SIGINT), (signal.SIGTERM, signal.SIGTERM)])
def test_a_second_signal_does_not_interrupt_the_cleanup(
        tmp_path: Path, first: signal.Signals, second: signal.Signals) -> None:
    proc = _start(tmp_path)
    try:
        proc.send_signal(first)
        _wait_for(tmp_path / "cleaning", proc)
        proc.send_signal(second)
        _ignored(tmp_path, proc)
        (tmp_path / "go").touch()
        _, err = proc.communicate(timeout=WITHIN)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert (tmp_path / "cleaned").exists(), err
    assert proc.returncode == 130, err
    expected = "Terminated" if first is signal.SIGTERM else "KeyboardInterrupt"
    assert (tmp_path / "cleaning").read_text() == expected
    assert "Traceback" not in err, err


def test_a_third_ctrl_c_stops_at_once_without_cleanup(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    try:
        proc.send_signal(signal.SIGINT)
        _wait_for(tmp_path / "cleaning", proc)
        proc.send_signal(signal.SIGINT)
        _ignored(tmp_path, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=WITHIN)  # "go" never comes: the cleanup would hang
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130
    assert not (tmp_path / "cleaned").exists()
    assert err.strip().splitlines() == ["error: interrupted again; stopped without cleanup"]
