"""A party's data-plane port fixed by configuration (``[node] data_port``, ``--data-port``).

Behind a firewall the peer must be let in on a known port, so a party may fix the port of
its TLS data plane instead of taking a free one. Shown on real party nodes (ports chosen at
run time, loopback only): the node serves on the port it was given and names it on its
``DATA PLANE`` line; a port another program holds, or a value that is no port, ends the node
in one line before it listens, with no traceback.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from federation.transport.certs import write_federation
from tests.conftest import REPO
from tests.e2e.test_stream import read_lines, wait_line

pytestmark = pytest.mark.e2e
JOB = "job-data-port"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fed")
    write_federation(directory)
    return directory


def _command(fed: Path, tmp_path: Path, *extra: str) -> list[str]:
    (tmp_path / "grid.csv").write_text("id,g0\n1,0.5\n")
    return [sys.executable, "-m", "federation.cli", "party", "--role", "grid", "--job-id", JOB,
            "--listen", "127.0.0.1:0", "--coordinator", "127.0.0.1:1", "--out",
            str(tmp_path / "out"), "--tls-dir", str(fed), "--data", str(tmp_path / "grid.csv"),
            *extra]


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def test_the_node_serves_its_data_plane_on_the_port_it_was_given(
        fed: Path, tmp_path: Path) -> None:
    port = _free_port()
    with (tmp_path / "stderr.txt").open("w") as err:
        proc = subprocess.Popen(_command(fed, tmp_path, "--data-port", str(port)), cwd=REPO,
                                stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        try:
            line = wait_line(read_lines(proc), "DATA PLANE", proc)  # bounded: 60 s per line
        except AssertionError as exc:
            raise AssertionError(f"{exc}; stderr: {(tmp_path / 'stderr.txt').read_text()}") \
                from None
        assert line == f"DATA PLANE 127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # the node's listener accepts on that port
    finally:
        proc.kill()
        proc.wait(30)


def test_a_data_port_in_use_ends_the_node_in_one_line(fed: Path, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        result = subprocess.run(_command(fed, tmp_path, "--data-port", str(port)),
                                capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: cannot listen for the data plane on 127.0.0.1:{port}: the port is in use"), \
        result.stderr
    assert "Traceback" not in result.stderr
    assert "LISTENING" not in result.stdout and "DATA PLANE" not in result.stdout


@pytest.mark.parametrize("value", ['"4000"', "70000", "-1", "true"])
def test_a_data_port_that_is_no_port_is_refused_in_one_line(
        fed: Path, tmp_path: Path, value: str) -> None:
    config = tmp_path / "grid.toml"
    config.write_text(f"[node]\ndata_port = {value}\n")
    result = subprocess.run(_command(fed, tmp_path, "--config", str(config)),
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {config}: [node] data_port: expected a port 0-65535"), result.stderr
    assert "LISTENING" not in result.stdout


def test_the_coordinator_refuses_a_data_port_in_one_line(fed: Path, tmp_path: Path) -> None:
    config = tmp_path / "coordinator.toml"
    config.write_text("[node]\ndata_port = 5000\n")
    result = subprocess.run(
        [sys.executable, "-m", "federation.cli", "coordinator", "--config", str(config),
         "--job-id", JOB, "--listen", "127.0.0.1:0", "--out", str(tmp_path / "out"),
         "--tls-dir", str(fed)],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: config {config}: [node] data_port is a party's setting (the coordinator has "
        "no data plane)"], result.stderr
