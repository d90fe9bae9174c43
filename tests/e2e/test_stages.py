"""``gridcredit stages`` as real processes: three federated stage models on principal
components, stages.json and the Table-2-style summary; a stage's models (each party's own
PCA kept with its model) score new rows exactly as the run predicted them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e
KEYS = ("coefficients", "chi2", "hosmer_lemeshow_p", "minus_2_log_likelihood", "cox_snell_r2",
        "nagelkerke_r2", "accuracy", "auc", "bank_only_auc")


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stages")
    made = run_cli("synth", "--enterprises", "2500", "--seed", "7", "--out", str(root / "raw"))
    assert made.returncode == 0, made.stderr[-2000:]
    result = run_cli("stages", "--raw", str(root / "raw"), "--out", str(root / "out"),
                     "--quiet", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "out"


def test_stages_json_and_summary(staged: Path) -> None:
    result = json.loads((staged / "stages.json").read_text())
    for stage in ("pre", "in", "post"):
        entry = result[stage]
        for key in KEYS:
            assert key in entry, (stage, key)
        assert set(entry["coefficients"]) == {"grid", "bank", "constant"}
        assert all(k.startswith("pc") for k in entry["coefficients"]["grid"])
    # The paper's direction, on the federated models of the synthetic data.
    assert result["post"]["auc"] > result["pre"]["auc"]
    summary = (staged / "summary.md").read_text()
    assert summary.startswith("# Stage models") and "Nagelkerke" in summary


def test_a_stage_model_with_principal_components_scores_as_it_predicted(
        staged: Path, tmp_path: Path) -> None:
    run = staged / "post"
    model = json.loads((run / "grid" / "model.json").read_text())
    assert model["pca"] is not None and len(model["weights"]) == len(model["pca"]["explained"])
    scored = run_cli("score", "--run", str(run), "--bank-data",
                     str(staged / "data" / "post" / "bank_features.csv"), "--out",
                     str(tmp_path), "--quiet", timeout=600)
    assert scored.returncode == 0, scored.stderr[-3000:]
    with (run / "bank" / "predictions.csv").open() as handle:
        predicted = {r["id"]: float(r["probability"]) for r in csv.DictReader(handle)}
    with (tmp_path / "bank" / "scores.csv").open() as handle:
        scores = {r["id"]: float(r["probability"]) for r in csv.DictReader(handle)
                  if r["status"] == "scored"}
    assert set(scores) == set(predicted)
    assert max(abs(scores[i] - predicted[i]) for i in scores) < 1e-9
