"""``--log-level``: gridcredit's own loggers at the level asked; third-party libraries at
WARNING unless ``--log-libraries`` (the trial's ``--log-level DEBUG simulate`` printed ~220
``DEBUG matplotlib.font_manager`` lines and added nothing to node.log)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, write_predictions

SCRIPT = """
import logging, sys
from federation.cli import configure_logging
from federation.protocol.messages import Role
from parties.state import PartyState, Stage

configure_logging(sys.argv[1], libraries=sys.argv[2] == "yes")
logging.getLogger("matplotlib.font_manager").debug("library debug")
logging.getLogger("urllib3").warning("library warning")
PartyState(Role.GRID).advance(Stage.JOINED)
"""


def _stderr(level: str, libraries: bool) -> str:
    return subprocess.run([sys.executable, "-c", SCRIPT, level, "yes" if libraries else "no"],
                          capture_output=True, text=True, timeout=120, cwd=REPO).stderr


def test_debug_shows_our_stage_timings_and_no_library_debug() -> None:
    err = _stderr("DEBUG", False)
    assert "DEBUG parties.state: grid: stage idle took " in err and "s; now joined" in err, err
    assert "library debug" not in err and "library warning" in err, err


def test_log_libraries_lets_library_debug_through() -> None:  # the positive control
    err = _stderr("DEBUG", True)
    assert "library debug" in err and "stage idle took" in err, err


def test_error_level_silences_library_warnings_too() -> None:
    err = _stderr("ERROR", False)
    assert err == "", err


def test_debug_evaluate_prints_no_matplotlib_lines(tmp_path: Path) -> None:
    src = write_predictions(tmp_path / "predictions.csv")
    result = run_cli("--log-level", "DEBUG", "evaluate", "--predictions", str(src), "--out",
                     str(tmp_path / "eval"), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "matplotlib" not in result.stderr and "PIL" not in result.stderr, \
        result.stderr[:2000]


def test_log_libraries_is_passed_on_while_the_command_runs_and_not_left_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import federation.cli_jobs as jobs
    from federation.cli import LOG_LIBRARIES, main

    seen: list[str | None] = []
    monkeypatch.setattr(jobs, "cmd_evaluate",
                        lambda args: seen.append(os.environ.get(LOG_LIBRARIES)) or 0)
    assert main(["--log-libraries", "evaluate", "--predictions", "p.csv", "--out", "e"]) == 0
    assert seen == ["1"]  # what the nodes a command starts inherit
    assert LOG_LIBRARIES not in os.environ  # and not left behind
