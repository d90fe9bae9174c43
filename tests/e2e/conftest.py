"""Fixtures shared by more than one e2e module: each is made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The monitoring suites' models (test_monitor, test_monitor_watch): synthetic raw data
    (300 enterprises, 30 months), features at 2022-06 and a ``simulate`` run on them. The
    suites only read it (their nodes write under their own tmp_path)."""
    root = tmp_path_factory.mktemp("monitor")
    steps = [("synth", "--enterprises", "300", "--months", "30", "--seed", "5", "--out",
              str(root / "raw"))]
    steps += [("features", "build", "--role", role, "--raw", str(root / "raw"), "--as-of",
               "2022-06", "--impute", "median", "--out", str(root / f"{role}.csv"))
              for role in ("grid", "bank")]
    steps.append(("simulate", "--grid-data", str(root / "grid.csv"), "--bank-data",
                  str(root / "bank.csv"), "--epochs", "1", "--batch-size", "200", "--out",
                  str(root / "run"), "--quiet"))
    for step in steps:
        result = run_cli(*step)
        assert result.returncode == 0, result.stderr[-3000:]
    return root
