"""Shared test helpers: where the FATE fixtures are and how to run the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests run derandomized: the same examples on every run and machine, so CI never
# fails on an example nobody has seen before. Examples a search once found are pinned with
# ``@example`` on the test itself.
settings.register_profile("gridcredit", derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.load_profile("gridcredit")

REPO = Path(__file__).resolve().parent.parent
FATE = REPO.parent / "shared" / "data" / "fate"


def fate_file(name: str) -> Path:
    path = FATE / name
    if not path.is_file():
        pytest.skip(f"FATE fixture {path} not present")
    return path


def run_cli(*args: str, timeout: float = 300.0, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run ``gridcredit ARGS`` as a real process; always bounded in time."""
    return subprocess.run([sys.executable, "-m", "federation.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or REPO)
