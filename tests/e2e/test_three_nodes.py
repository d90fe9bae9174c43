"""The three example TOML files run one job as three separately started nodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federation.processes import NodeProcess, supervise
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.e2e
EXAMPLES = REPO / "examples"


def test_example_configs_run_a_job_across_three_nodes(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    assert run_cli("certs", "--out", str(certs)).returncode == 0
    common = ["--tls-dir", str(certs), "--listen", "127.0.0.1:0", "--job-id", "t3"]
    coordinator = NodeProcess("coordinator", [
        "coordinator", "--config", str(EXAMPLES / "coordinator.toml"), *common,
        "--out", str(tmp_path / "coordinator"), "--epochs", "2"], tmp_path / "coordinator")
    nodes = [coordinator]
    try:
        coordinator.start()
        address = coordinator.wait_listening(60)
        for role in ("grid", "bank"):
            node = NodeProcess(role, ["party", "--role", role, "--config",
                                      str(EXAMPLES / f"{role}.toml"), *common, "--coordinator",
                                      address, "--out", str(tmp_path / role)], tmp_path / role)
            node.start()
            nodes.append(node)
        supervise(nodes, 300, lambda event: None, coordinator)
    finally:
        for node in nodes:
            node.stop()
    job = json.loads((tmp_path / "coordinator" / "job.json").read_text())
    assert job["stage"] == "done" and len(job["losses"]) == 2
    metrics = json.loads((tmp_path / "bank" / "metrics.json").read_text())
    assert metrics["validation"]["auc"] > metrics["bank_only"]["validation"]["auc"]
    assert (tmp_path / "grid" / "model.json").is_file()
