"""Static checks the style guide asks for: ruff on the tree, mypy --strict on the packages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600, check=False)


def test_ruff_finds_nothing() -> None:
    pytest.importorskip("ruff")
    result = _run("ruff", "check", "crypto", "parties", "federation", "tests", "bench",
                  "examples")
    assert result.returncode == 0, result.stdout[-3000:]


def test_mypy_strict_on_the_packages() -> None:
    pytest.importorskip("mypy")
    result = _run("mypy", "--strict", "--ignore-missing-imports", "crypto", "parties",
                  "federation")
    assert result.returncode == 0, result.stdout[-3000:]
