"""A run folder's ``configs/*.toml`` start a job by hand, as the README promises.

The trial found coordinator.toml with ``listen = "127.0.0.1:0"`` while grid.toml and
bank.toml named the run's ephemeral coordinator port: the three never met. simulate now
writes the coordinator's actual address into coordinator.toml once it listens.
"""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pytest

from federation.processes import NodeFailed, NodeProcess
from tests.conftest import run_cli
from tests.e2e.nodes_helper import START_TIMEOUT, stop_all, tails, wait_exits

pytestmark = pytest.mark.e2e
JOB_WITHIN = 240.0


def _nodes(configs: Path, out: Path, listen: list[str]) -> list[NodeProcess]:
    coordinator = NodeProcess("coordinator", ["coordinator", "--config",
                                              str(configs / "coordinator.toml"),
                                              "--out", str(out / "coordinator"), *listen],
                              out / "coordinator")
    coordinator.start()
    address = coordinator.wait_listening(START_TIMEOUT)
    nodes = [coordinator]
    for role in ("grid", "bank"):
        extra = ["--coordinator", address] if listen else []
        nodes.append(NodeProcess(role, ["party", "--role", role, "--config",
                                        str(configs / f"{role}.toml"), "--out",
                                        str(out / role), *extra], out / role))
        nodes[-1].start()
    return nodes


def test_the_run_folders_configs_start_a_job_that_finishes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = run_cli("simulate", "--demo-enterprises", "400", "--epochs", "2", "--batch-size",
                     "128", "--quiet", "--out", str(run))
    assert result.returncode == 0, result.stderr[-2000:]
    configs = run / "configs"
    tables = {n: tomllib.loads((configs / f"{n}.toml").read_text())
              for n in ("coordinator", "grid", "bank")}
    listen = tables["coordinator"]["node"]["listen"]
    assert not listen.endswith(":0"), listen
    assert tables["grid"]["node"]["coordinator"] == listen
    assert tables["bank"]["node"]["coordinator"] == listen

    manual = tmp_path / "manual"
    nodes: list[NodeProcess] = []
    try:
        try:  # the configs as written: the old run's port is free again...
            nodes = _nodes(configs, manual, [])
        except NodeFailed:  # ...unless another process took it since: a fresh port then
            nodes = _nodes(configs, tmp_path / "manual-fresh-port", ["--listen", "127.0.0.1:0"])
        exited = wait_exits(nodes, time.monotonic(), JOB_WITHIN)
        assert len(exited) == 3, tails(nodes)
        assert [n.returncode() for n in nodes] == [0, 0, 0], tails(nodes)
    finally:
        stop_all(nodes)
    assert (nodes[2].out / "model.json").exists()
