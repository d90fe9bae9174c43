"""``gridcredit simulate --model gbdt``, ``score`` and ``serve`` as real processes over
loopback with mutual TLS, on FATE breast (569 rows).

The run's predictions are the bank's own walk of the trees during training; batch
scoring and the serve nodes (also after the grid's serve node is killed and restarted)
must give the same probabilities. Each model file holds only its party's part.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from federation.processes import ServeProcess
from federation.proto import vfl_pb2, vfl_pb2_grpc
from federation.protocol.messages import Role
from federation.transport.certs import NodeCerts
from federation.transport.grpc_client import secure_channel
from tests.conftest import fate_file, run_cli

pytestmark = pytest.mark.e2e
START_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gbdt") / "run"
    result = run_cli(
        "simulate", "--model", "gbdt",
        "--grid-data", str(fate_file("breast_hetero_host.csv")),
        "--bank-data", str(fate_file("breast_hetero_guest.csv")),
        "--out", str(out), "--trees", "12", "--depth", "3", "--bins", "16",
        "--learning-rate", "0.3", "--quiet",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "federated LR" in result.stdout
    return out


def _predictions(run: Path) -> dict[str, float]:
    with (run / "bank" / "predictions.csv").open() as handle:
        return {row["id"]: float(row["probability"]) for row in csv.DictReader(handle)}


def test_report_compares_gbdt_with_centralized_bank_only_and_federated_lr(run: Path) -> None:
    r = json.loads((run / "report.json").read_text())
    c = r["config"]
    assert (c["model"], c["trees"], c["depth"], c["learning_rate"], c["bins"], c["l2"]) == \
        ("gbdt", 12, 3, 0.3, 16, 1.0)
    assert r["intersection_size"] == 569 and 1 <= r["trees_run"] <= 12
    assert abs(r["validation"]["auc"] - r["centralized"]["validation"]["auc"]) <= 0.02
    assert "HistGradientBoosting" in r["centralized"]["model"]
    for key in ("bank_only", "federated_lr", "centralized_lr"):
        assert 0.5 < r[key]["validation"]["auc"] <= 1.0
    assert r["lift"]["auc_over_federated_lr"] == pytest.approx(
        r["validation"]["auc"] - r["federated_lr"]["validation"]["auc"])
    grid_names = json.loads((run / "grid" / "model.json").read_text())["features"]
    assert {x["feature"] for x in r["importance"]["grid"]} == set(grid_names)
    assert sum(x["splits"] for x in r["importance"]["grid"] + r["importance"]["bank"]) > 0
    assert "## Feature importance" in (run / "summary.md").read_text()


def test_each_model_file_holds_only_its_partys_part(run: Path) -> None:
    bank = json.loads((run / "bank" / "model.json").read_text())
    grid = json.loads((run / "grid" / "model.json").read_text())
    assert bank["model"] == grid["model"] == "gbdt"
    grid_nodes = {(t, n["id"]) for t, tree in enumerate(bank["trees"]) for n in tree
                  if n["kind"] == "grid"}
    assert grid_nodes == {(s["tree"], s["node"]) for s in grid["splits"]}
    for tree in bank["trees"]:
        for node in tree:
            if node["kind"] == "grid":  # the bank knows the grid's bin slot, not its threshold
                assert "threshold" not in node and node["feature"] < bank["grid_features"]
    assert set(grid) == {"role", "model", "job_id", "features", "importance", "splits"}
    assert all(set(s) == {"tree", "node", "feature", "slot", "threshold"} for s in grid["splits"])


def test_batch_scoring_matches_the_runs_predictions(run: Path, tmp_path: Path) -> None:
    result = run_cli("score", "--run", str(run), "--bank-data",
                     str(fate_file("breast_hetero_guest.csv")), "--out", str(tmp_path),
                     "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    expected = _predictions(run)
    with (tmp_path / "bank" / "scores.csv").open() as handle:
        scores = {row["id"]: row for row in csv.DictReader(handle)}
    assert set(scores) == set(expected)
    # scores.csv is at full precision, predictions.csv at 10 significant digits
    assert all(float(f"{float(scores[i]['probability']):.10g}") == p
               for i, p in expected.items())


def _serve(role: Role, run: Path, extra: list[str], out: Path) -> ServeProcess:
    data = "breast_hetero_host.csv" if role is Role.GRID else "breast_hetero_guest.csv"
    node = ServeProcess(role.value, ["serve", "--role", role.value, "--model",
                                     str(run / role.value / "model.json"), "--data",
                                     str(fate_file(data)), "--tls-dir", str(run / "certs"),
                                     *extra], out, module="federation.cli")
    node.start()
    return node


@pytest.fixture(scope="module")
def serving(run: Path) -> Iterator[tuple[ServeProcess, str, vfl_pb2_grpc.ScoringStub]]:
    nodes: list[ServeProcess] = []
    channel: grpc.Channel | None = None
    try:
        grid = _serve(Role.GRID, run, ["--listen", "127.0.0.1:0"], run / "serve-grid")
        nodes.append(grid)
        grid_address = grid.wait_listening(START_TIMEOUT)
        bank = _serve(Role.BANK, run, ["--peer", grid_address], run / "serve-bank")
        nodes.append(bank)
        address = bank.wait_listening(START_TIMEOUT)
        channel = secure_channel(address, NodeCerts.in_dir(run / "certs", Role.BANK), Role.BANK)
        grpc.channel_ready_future(channel).result(timeout=10)
        yield grid, grid_address, vfl_pb2_grpc.ScoringStub(channel)
    finally:
        if channel is not None:
            channel.close()
        for node in nodes:
            node.stop()


def _scores(stub: vfl_pb2_grpc.ScoringStub, ids: list[str]) -> np.ndarray:
    reply = stub.Score(vfl_pb2.ScoreRequest(ids=ids), timeout=30)
    assert {r.status for r in reply.results} == {"scored"}
    return np.array([r.probability for r in reply.results])


def test_serve_matches_batch_scoring_also_after_the_grid_restarts(
        serving: tuple[ServeProcess, str, vfl_pb2_grpc.ScoringStub], run: Path) -> None:
    grid, grid_address, stub = serving
    expected = _predictions(run)
    ids = sorted(expected)
    want = np.array([expected[i] for i in ids])
    # predictions.csv holds 10 significant digits
    assert np.abs(_scores(stub, ids) - want).max() <= 1e-9
    grid.stop()  # kill the grid's serve node and start it again on the same address
    again = _serve(Role.GRID, run, ["--listen", grid_address], run / "serve-grid-2")
    try:
        again.wait_listening(START_TIMEOUT)
        assert np.abs(_scores(stub, ids[:50]) - want[:50]).max() <= 1e-9
    finally:
        again.stop()


def test_bank_only_predictions_carry_the_labels_for_evaluate(run: Path) -> None:
    header = (run / "bank" / "bank_only_predictions.csv").read_text().splitlines()[0]
    assert header == "id,split,y,probability"
