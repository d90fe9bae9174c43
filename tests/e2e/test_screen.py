"""``gridcredit screen`` and ``simulate --select`` as real processes on the synthetic data.

The screening keeps at least one indicator of every mechanism the generator drives from
its hidden risk state (``parties.labels.synth.RISK_SIGNALS``) and drops those nothing
drives; training on its selection loses at most 0.005 validation AUC against training on
every indicator while dropping at least half of them (rules: IV >= 0.1, as
``examples/screen_rules.toml``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parties.labels.synth import NOT_DRIVEN, RISK_SIGNALS
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.e2e
ENTERPRISES = "6000"


@pytest.fixture(scope="module")
def screened(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("screen")
    result = run_cli("screen", "--out", str(out), "--demo-enterprises", ENTERPRISES,
                     "--rules", str(REPO / "examples" / "screen_rules.toml"),
                     "--compare-as-of", "2022-12", "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_screen_writes_the_run_folder_and_verifiable_audit_logs(screened: Path) -> None:
    for path in ("bank/screen.json", "grid/screen.json", "selection.json", "report.json",
                 "summary.md", "plots/iv.png"):
        assert (screened / path).is_file(), path
    assert len(list((screened / "plots").glob("woe_*.png"))) == 6
    bank = json.loads((screened / "bank" / "screen.json").read_text())
    entry = bank["indicators"][0]
    for key in ("party", "name", "iv", "ks", "auc", "missing_rate", "psi", "monotone", "bins"):
        assert key in entry
    assert all(e["psi_months"] is not None for e in bank["indicators"])
    grid = json.loads((screened / "grid" / "screen.json").read_text())
    assert "iv" not in grid and all("edges" in i for i in grid["indicators"])
    selection = json.loads((screened / "selection.json").read_text())
    assert grid["kept"] == selection["parties"]["grid"]["kept"]
    logs = [str(screened / n / "audit.jsonl") for n in ("coordinator", "grid", "bank")]
    verify = run_cli("audit", "verify", *logs, "--certs", str(screened / "certs"))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_selection_keeps_every_driven_mechanism_and_drops_the_undriven(screened: Path) -> None:
    selection = json.loads((screened / "selection.json").read_text())
    kept = set(selection["parties"]["grid"]["kept"]) | set(selection["parties"]["bank"]["kept"])
    for mechanism, names in RISK_SIGNALS.items():
        assert kept & set(names), f"no indicator of {mechanism!r} kept"
    assert not kept & set(NOT_DRIVEN)


def test_training_on_the_selection_loses_at_most_0005_auc_with_half_dropped(
        screened: Path, tmp_path: Path) -> None:
    selection = json.loads((screened / "selection.json").read_text())
    document = json.loads((screened / "bank" / "screen.json").read_text())
    everything = {"parties": {p: {"kept": [e["name"] for e in document["indicators"]
                                           if e["party"] == p], "dropped": []}
                              for p in ("grid", "bank")}}
    all_file = tmp_path / "all.json"
    all_file.write_text(json.dumps(everything))
    total = len(document["indicators"])
    kept = sum(len(v["kept"]) for v in selection["parties"].values())
    assert kept <= total / 2
    aucs = {}
    for name, select in (("all", all_file), ("kept", screened / "selection.json")):
        out = tmp_path / name
        result = run_cli("simulate", "--out", str(out), "--select", str(select),
                         "--demo-enterprises", ENTERPRISES, "--epochs", "10", "--quiet",
                         timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        aucs[name] = json.loads((out / "report.json").read_text())["validation"]["auc"]
    assert aucs["kept"] >= aucs["all"] - 0.005, aucs
