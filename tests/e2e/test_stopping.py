"""Stopping: port in use is one line; SIGTERM on simulate stops every node and leaves no model;
nodes whose parent or coordinator is gone stop by themselves."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.processes import NodeProcess
from parties.model import PartyModel
from tests.conftest import REPO, fate_file, run_cli
from tests.e2e.nodes_helper import children_of, coordinator, error_line, federation, party, tails

pytestmark = pytest.mark.e2e
GONE_WITHIN = 30.0


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"simulate exited {proc.returncode} before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout:g} s"
        time.sleep(0.02)


def _wait_for_line(node: NodeProcess, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in (node.out / "node.log").read_text(encoding="utf-8", errors="replace"):
        assert node.returncode() is None, tails([node])
        assert time.monotonic() < deadline, f"no {text!r} in {node.name}'s log\n" + tails([node])
        time.sleep(0.05)


@pytest.mark.parametrize("command", ["coordinator", "party", "serve"])
def test_port_in_use_is_one_line(tmp_path: Path, busy_port: int, command: str) -> None:
    certs = federation(tmp_path / "certs")
    listen = f"127.0.0.1:{busy_port}"
    grid_csv = tmp_path / "grid.csv"
    grid_csv.write_text("id,a\ne1,0.5\ne2,1.5\n")
    model = tmp_path / "model.json"
    PartyModel("grid", "j", "shared", ["a"], [1.0], [0.5], [0.3]).save(model)
    argv = {
        "coordinator": ["coordinator", "--job-id", "j", "--out", str(tmp_path / "c")],
        "party": ["party", "--role", "grid", "--job-id", "j", "--out", str(tmp_path / "g"),
                  "--coordinator", "127.0.0.1:9", "--data", str(grid_csv)],
        "serve": ["serve", "--role", "grid", "--model", str(model), "--data", str(grid_csv)],
    }[command]
    result = run_cli(*argv, "--tls-dir", str(certs), "--listen", listen, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot listen on {listen}: Address already in use")


def test_sigterm_on_simulate_stops_every_node_and_keeps_no_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "federation.cli", "simulate", "--grid-data",
         str(fate_file("breast_hetero_host.csv")), "--bank-data",
         str(fate_file("breast_hetero_guest.csv")), "--out", str(out), "--batch-size", "128",
         "--epochs", "3", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        _wait_for(out / "grid" / "model.json", proc, 240)  # training is over, evaluation runs
        nodes = [pid for pid, _ in children_of(proc.pid)]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=GONE_WITHIN)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "error: stopped by SIGTERM"
    assert len(nodes) == 3 and _wait_gone(nodes, 10) == []
    for name in ("grid/model.json", "bank/model.json", "bank/predictions.csv", "report.json",
                 "summary.md", "grid/stats.json"):
        assert not (out / name).exists(), name
    assert "stopped by SIGTERM" in (out / "FAILED").read_text()
    for node in ("coordinator", "grid", "bank"):
        assert (out / node / "audit.jsonl").stat().st_size > 0
    assert " INFO " in (out / "grid" / "node.log").read_text()  # node logs are not empty
    assert run_cli("audit", "verify", *(str(out / n / "audit.jsonl") for n in
                                        ("coordinator", "grid", "bank")),
                   "--certs", str(out / "certs")).returncode in (0, 1)


def test_nodes_stop_by_themselves_when_simulate_is_killed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "federation.cli", "simulate", "--grid-data",
         str(fate_file("breast_hetero_host.csv")), "--bank-data",
         str(fate_file("breast_hetero_guest.csv")), "--out", str(out), "--batch-size", "128",
         "--epochs", "200", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    try:
        _wait_for(out / "bank" / "audit.jsonl", proc, 240)
        nodes = [pid for pid, _ in children_of(proc.pid)]
    finally:
        proc.kill()
        proc.wait(10)
    assert len(nodes) == 3
    assert _wait_gone(nodes, GONE_WITHIN) == [], "nodes outlived simulate"
    logs = {r: (out / r / "node.log").read_text() for r in ("coordinator", "grid", "bank")}
    # Each node stopped on its own: its parent is gone, or the node it talks to stopped first.
    assert any("parent process" in log for log in logs.values()), logs
    for role, log in logs.items():
        assert "error: " in log, (role, log[-500:])
        assert not (out / role / "model.json").exists()


def test_a_party_whose_coordinator_is_gone_stops_naming_it(tmp_path: Path) -> None:
    certs = federation(tmp_path / "certs")
    grid_csv = tmp_path / "grid.csv"
    grid_csv.write_text("id,a\n" + "".join(f"e{i},{i % 7}\n" for i in range(50)))
    coord = coordinator(tmp_path / "c", certs, "j1")
    grid: NodeProcess | None = None
    try:
        coord.start()
        address = coord.wait_listening(60)
        grid = party("grid", tmp_path / "g", certs, "j1", address, grid_csv)
        grid.log_level = "INFO"
        grid.start()
        grid.wait_listening(60)  # it joins and waits for the bank, which never comes
        _wait_for_line(grid, "watching the coordinator", 60)
        coord.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        coord.proc.wait(10)  # type: ignore[union-attr]
        assert grid.proc is not None
        grid.proc.wait(GONE_WITHIN)
    finally:
        for node in (grid, coord):
            if node is not None:
                node.stop()
    assert grid.returncode() not in (None, 0), tails([grid])
    assert "coordinator" in error_line(grid), tails([grid])
