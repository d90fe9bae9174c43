"""Shared test helpers: where the FATE fixtures are and how to run the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from tests import pgserver

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


def write_predictions(path: Path, n: int = 200) -> Path:
    """A fixed, well-calibrated ``id,y,probability`` file of ``n`` rows for ``evaluate``."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0.02, 0.9, n)
    y = (rng.random(n) < p).astype(int)
    path.write_text("id,y,probability\n" + "".join(
        f"e{i},{t},{q:.6f}\n" for i, (t, q) in enumerate(zip(y, p, strict=True))))
    return path


def run_cli(*args: str, timeout: float = 300.0, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run ``gridcredit ARGS`` as a real process; always bounded in time."""
    return subprocess.run([sys.executable, "-m", "federation.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or REPO)


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A real PostgreSQL server: ``GRIDCREDIT_TEST_PG`` (a DSN) if set, else a temporary one
    started for the session and stopped at its end. In CI (``CI=true``) a server that cannot
    be started fails the tests instead of skipping them."""
    given = os.environ.get("GRIDCREDIT_TEST_PG")
    if given:
        yield given
        return
    directory = Path(tempfile.mkdtemp(prefix="gridcredit-pg-"))
    try:
        server = pgserver.start(directory)
    except (pgserver.PgUnavailable, subprocess.TimeoutExpired) as e:
        shutil.rmtree(directory, ignore_errors=True)
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL could not be started: {e}")
        pytest.skip(f"PostgreSQL could not be started: {e}")
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture
def pg_schemas(pg_dsn: str) -> Iterator[tuple[str, str]]:
    """Two fresh schema names (grid, bank) in the test server, dropped after the test."""
    import psycopg
    from psycopg import sql

    tag = uuid.uuid4().hex[:10]
    names = (f"grid_{tag}", f"bank_{tag}")
    yield names
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(name)))
