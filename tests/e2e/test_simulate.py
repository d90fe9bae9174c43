"""``gridcredit simulate`` as three real processes over loopback with mutual TLS."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import fate_file, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def breast_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("breast")
    result = run_cli(
        "simulate",
        "--grid-data",
        str(fate_file("breast_hetero_host.csv")),
        "--bank-data",
        str(fate_file("breast_hetero_guest.csv")),
        "--out",
        str(out),
        "--batch-size",
        "128",
        "--epochs",
        "10",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_simulate_breast_matches_centralized_auc_with_three_processes(breast_run: Path) -> None:
    report = json.loads((breast_run / "report.json").read_text())
    assert report["intersection_size"] == 569
    assert abs(report["validation"]["auc"] - report["centralized"]["validation"]["auc"]) <= 0.01
    pids = {report["nodes"][n]["pid"] for n in ("coordinator", "grid", "bank")}
    assert len(pids) == 3
    for node in ("coordinator", "grid", "bank"):
        lines = (breast_run / node / "audit.jsonl").read_text().splitlines()
        assert lines, f"{node} audit log is empty"
        assert report["bytes_sent"][node] > 0
    assert report["config"]["mode"] == "shared" and report["config"]["batch_size"] == 128
    assert report["psi_protocol"] == report["config"]["psi"] == "server-aided"
    assert 0 < report["psi_seconds"] < report["fit_seconds"] + 60
    assert 0 <= report["expected_wrap_failures"] < 1e-3
    for key in ("fit_seconds", "bank_only", "validation"):
        assert key in report
    assert report["centralized"]["fit_seconds"] > 0
    assert "ks" in report["validation"]
    assert (breast_run / "summary.md").read_text().startswith("# gridcredit run")


def test_predictions_cover_every_aligned_row(breast_run: Path) -> None:
    with (breast_run / "bank" / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "split", "y", "probability", "uncalibrated"]
    assert len(rows) == 569
    assert {r["split"] for r in rows} == {"train", "validation"}
    assert all(0.0 < float(r["probability"]) < 1.0 for r in rows)
    with (breast_run / "bank" / "bank_only_predictions.csv").open() as handle:
        alone = list(csv.DictReader(handle))
    assert list(alone[0]) == ["id", "split", "y", "probability"]  # gridcredit evaluate takes it
    assert [(r["id"], r["y"]) for r in alone] == [(r["id"], r["y"]) for r in rows]


def test_bank_calibrates_every_probability_with_platt_scaling(breast_run: Path) -> None:
    model = json.loads((breast_run / "bank" / "model.json").read_text())
    slope, intercept = model["calibration"]["slope"], model["calibration"]["intercept"]
    assert slope > 1.2  # Taylor-trained logits are too small for the exact logistic loss
    assert json.loads((breast_run / "grid" / "model.json").read_text())["calibration"] is None
    with (breast_run / "bank" / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    raw = np.array([float(r["uncalibrated"]) for r in rows])
    p = np.array([float(r["probability"]) for r in rows])
    u = np.log(raw / (1 - raw))
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(slope * u + intercept))), rtol=1e-6)
    cal = json.loads((breast_run / "report.json").read_text())["calibration"]
    assert cal["method"] == "platt" and cal["slope"] == slope
    for split in ("train", "validation"):
        assert cal["after"][split]["log_loss"] < cal["before"][split]["log_loss"]
    assert cal["validation_log_loss_over_centralized"] > 0
    summary = (breast_run / "summary.md").read_text()
    assert "## Calibration (validation)" in summary and "federated, Platt (after)" in summary


def test_each_party_saves_only_its_own_model(breast_run: Path) -> None:
    grid = json.loads((breast_run / "grid" / "model.json").read_text())
    bank = json.loads((breast_run / "bank" / "model.json").read_text())
    assert grid["role"] == "grid" and len(grid["weights"]) == 20 and grid["intercept"] is None
    assert bank["role"] == "bank" and len(bank["weights"]) == 10 and bank["intercept"] is not None
    assert set(grid["features"]).isdisjoint({"y"}) and len(bank["mean"]) == 10


def test_audit_logs_hold_digests_not_values(breast_run: Path) -> None:
    entry = json.loads((breast_run / "bank" / "audit.jsonl").read_text().splitlines()[0])
    for key in ("seq", "step", "round", "peer", "direction", "bytes", "sha256", "prev", "hash"):
        assert key in entry
    sent = {
        json.loads(line)["sha256"]
        for line in (breast_run / "grid" / "audit.jsonl").read_text().splitlines()
        if json.loads(line)["direction"] == "sent" and json.loads(line)["peer"] == "bank"
    }
    received = {
        json.loads(line)["sha256"]
        for line in (breast_run / "bank" / "audit.jsonl").read_text().splitlines()
        if json.loads(line)["direction"] == "received" and json.loads(line)["peer"] == "grid"
    }
    assert sent and sent == received
    # Server-aided PSI: each party's tags and the coordinator's answer, paired by digest.
    for party in ("grid", "bank"):
        own = [json.loads(line) for line in
               (breast_run / party / "audit.jsonl").read_text().splitlines()]
        coord = [json.loads(line) for line in
                 (breast_run / "coordinator" / "audit.jsonl").read_text().splitlines()]
        mine = {(e["direction"], e["sha256"]) for e in own if e["step"] == "psi/match"}
        theirs = {({"sent": "received", "received": "sent"}[e["direction"]], e["sha256"])
                  for e in coord if e["step"] == "psi/match" and e["peer"] == party}
        assert len(mine) == 2 and mine == theirs


def test_score_reports_ids_without_grid_record(breast_run: Path, tmp_path: Path) -> None:
    bank = fate_file("breast_hetero_guest.csv").read_text().splitlines()
    header, rows = bank[0], bank[1:41]
    unknown = [",".join([f"new-{i}"] + r.split(",")[1:]) for i, r in enumerate(rows[:5])]
    to_score = tmp_path / "to_score.csv"
    to_score.write_text("\n".join([header, *rows, *unknown]) + "\n")
    out = tmp_path / "scores"
    result = run_cli(
        "score",
        "--run",
        str(breast_run),
        "--bank-data",
        str(to_score),
        "--out",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with (out / "bank" / "scores.csv").open() as handle:
        scored = {r["id"]: r for r in csv.DictReader(handle)}
    assert len(scored) == 45
    assert all(scored[f"new-{i}"]["status"] == "no grid record" for i in range(5))
    known = [r for r in scored.values() if r["status"] == "scored"]
    assert len(known) == 40 and all(0 < float(r["probability"]) < 1 for r in known)
    # Scoring a training row gives the probability the training run predicted for it.
    with (breast_run / "bank" / "predictions.csv").open() as handle:
        trained = {r["id"]: float(r["probability"]) for r in csv.DictReader(handle)}
    first = rows[0].split(",")[0]
    assert abs(float(scored[first]["probability"]) - trained[first]) < 1e-9


@pytest.mark.parametrize("psi", ["server-aided", "ecdh"])
def test_partial_overlap_aligns_exactly_the_common_ids(tmp_path: Path, psi: str) -> None:
    grid_lines = fate_file("breast_hetero_host.csv").read_text().splitlines()
    kept = grid_lines[1:][::2]  # every other enterprise has a grid record
    grid = tmp_path / "grid.csv"
    grid.write_text("\n".join([grid_lines[0], *kept]) + "\n")
    out = tmp_path / "run"
    result = run_cli(
        "simulate",
        "--grid-data",
        str(grid),
        "--bank-data",
        str(fate_file("breast_hetero_guest.csv")),
        "--out",
        str(out),
        "--batch-size",
        "128",
        "--mode",
        "local",
        "--psi",
        psi,
        "--quiet",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["mode"] == "local" and report["psi_protocol"] == psi
    assert abs(report["validation"]["auc"] - report["centralized"]["validation"]["auc"]) <= 0.01
    common = {line.split(",")[0] for line in kept}
    assert report["intersection_size"] == len(common) == 285
    with (out / "bank" / "predictions.csv").open() as handle:
        assert {r["id"] for r in csv.DictReader(handle)} == common


def test_default_credit_auc_within_0_005_of_centralized(tmp_path: Path) -> None:
    """The foundation issue's bar, on FATE's default_credit split (host = grid, guest = bank)."""
    out = tmp_path / "dc"
    result = run_cli("simulate", "--grid-data",
                     str(fate_file("default_credit_hetero_host.csv")), "--bank-data",
                     str(fate_file("default_credit_hetero_guest.csv")), "--out", str(out),
                     "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["intersection_size"] == 30000
    gap = report["validation"]["auc"] - report["centralized"]["validation"]["auc"]
    assert abs(gap) <= 0.005, gap
    assert report["lift"]["auc_over_bank_only"] > 0.03
    # Issue 9, item 19: calibrated validation log-loss within 1 % of the centralized model's;
    # item 16: the default run stops because the loss converged, not at a fixed epoch count.
    assert report["calibration"]["validation_log_loss_over_centralized"] <= 1.01
    assert report["stop_reason"].startswith("converged at epoch")


def test_reveal_none_keeps_weights_shared_and_scores_jointly(breast_run: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "none"
    result = run_cli("simulate", "--grid-data", str(fate_file("breast_hetero_host.csv")),
                     "--bank-data", str(fate_file("breast_hetero_guest.csv")), "--out", str(out),
                     "--batch-size", "128", "--epochs", "10", "--reveal-weights", "none",
                     "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    for role in ("grid", "bank"):
        model = json.loads((out / role / "model.json").read_text())
        assert model["weights"] == [] and model["intercept"] is None
        assert set(model["shares"]) == {"grid", "bank"}
    # The bank opened u jointly and never received the grid's partial logits.
    steps = {json.loads(line)["step"] for line in
             (out / "bank" / "audit.jsonl").read_text().splitlines()
             if json.loads(line)["direction"] == "received"}
    assert "joint-open" in steps and "evaluate" not in steps

    def probabilities(path: Path, column: str = "probability") -> dict[str, float]:
        with path.open() as handle:
            return {r["id"]: float(r[column]) for r in csv.DictReader(handle)}

    own = probabilities(breast_run / "bank" / "predictions.csv")
    none = probabilities(out / "bank" / "predictions.csv")
    assert max(abs(own[i] - none[i]) for i in own) < 0.01  # same training, truncation noise
    to_score = tmp_path / "to_score.csv"
    to_score.write_text("\n".join(fate_file("breast_hetero_guest.csv").read_text()
                                  .splitlines()[:31]) + "\n")
    scored = run_cli("score", "--run", str(out), "--bank-data", str(to_score), "--out",
                     str(tmp_path / "scores"), "--quiet")
    assert scored.returncode == 0, scored.stderr[-3000:]
    scores = probabilities(tmp_path / "scores" / "bank" / "scores.csv")
    assert len(scores) == 30 and max(abs(scores[i] - none[i]) for i in scores) < 1e-4


# -- file modes (issue 9, item 5): written with their final mode, private unless shared -------
PRIVATE, SHARED = 0o600, 0o644
MODES = {
    ".gridcredit-run.json": PRIVATE, "report.json": SHARED, "summary.md": SHARED,
    "bank/predictions.csv": PRIVATE, "bank/bank_only_predictions.csv": PRIVATE,
    "bank/metrics.json": PRIVATE, "bank/model.json": PRIVATE, "grid/model.json": PRIVATE,
    "bank/coefficients.csv": PRIVATE, "grid/coefficients.csv": PRIVATE,
    "bank/stats.json": PRIVATE, "grid/stats.json": PRIVATE, "coordinator/job.json": PRIVATE,
    "bank/node.log": PRIVATE, "grid/node.log": PRIVATE, "coordinator/node.log": PRIVATE,
    "configs/coordinator.toml": PRIVATE, "configs/grid.toml": PRIVATE,
    "configs/bank.toml": PRIVATE, "certs/ca.pem": SHARED,
    **{f"certs/{node}.{kind}": PRIVATE if kind == "key" else SHARED
       for node in ("ca", "coordinator", "grid", "bank") for kind in ("key", "pem")},
    **{f"plots/{name}.png": SHARED
       for name in ("roc", "ks", "calibration", "score_distribution", "loss")},
}
# The audit logs' mode is set by their own writer (federation/transport/audit.py).
AUDIT_LOGS = {f"{node}/audit.jsonl" for node in ("coordinator", "grid", "bank")}


def test_every_file_of_the_run_folder_has_its_stated_mode(breast_run: Path) -> None:
    found = {str(p.relative_to(breast_run)): p.stat().st_mode & 0o777
             for p in breast_run.rglob("*") if p.is_file()}
    assert set(found) - AUDIT_LOGS == set(MODES), sorted(set(found) ^ set(MODES))
    wrong = {name: oct(mode) for name, mode in found.items()
             if name in MODES and mode != MODES[name]}
    assert not wrong, wrong


def test_nothing_held_out_reports_the_training_rows(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("simulate", "--grid-data", str(fate_file("breast_hetero_host.csv")),
                     "--bank-data", str(fate_file("breast_hetero_guest.csv")), "--out", str(out),
                     "--batch-size", "128", "--epochs", "3", "--validation-fraction", "0",
                     "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["validation"]["n"] == 0 and report["train"]["n"] == 569
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith(f"no validation rows: train AUC {report['train']['auc']:.4f}"), line
    summary = (out / "summary.md").read_text()
    assert "## Training rows (no validation rows" in summary
    assert f"| federated (grid + bank) | {report['train']['auc']:.4f} |" in summary
