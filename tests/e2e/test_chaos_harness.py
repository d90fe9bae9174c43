"""``bench/chaos.py`` itself: its checks catch planted violations, and two faulty jobs run
(the proxy fault on the TLS data plane, the default transport)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from bench import chaos
from bench.chaos_checks import leftover_outputs, model_gap, orphans

pytestmark = pytest.mark.e2e


def _model(folder: Path, grid: list[float], bank: list[float], intercept: float) -> Path:
    for role, weights, b in (("grid", grid, None), ("bank", bank, intercept)):
        (folder / role).mkdir(parents=True, exist_ok=True)
        (folder / role / "model.json").write_text(json.dumps({"weights": weights,
                                                              "intercept": b}))
    return folder


def test_checks_catch_a_planted_model_gap_leftover_and_orphan(tmp_path: Path) -> None:
    ref = _model(tmp_path / "ref", [0.1, 0.2], [0.3], -1.0)
    same = _model(tmp_path / "same", [0.1, 0.2], [0.3 + 1e-6], -1.0)
    other = _model(tmp_path / "other", [0.1, 0.25], [0.3], -1.0)
    assert model_gap(same, ref) < 1e-5 and model_gap(other, ref) == pytest.approx(0.05)
    assert leftover_outputs(other) == ["left grid/model.json, bank/model.json after failing"]
    (tmp_path / "none").mkdir()
    assert leftover_outputs(tmp_path / "none") == []
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        started = time.monotonic()
        found = orphans({sleeper.pid}, tmp_path / "none", wait=0.5)
        assert found == [f"orphan processes [{sleeper.pid}]"]
        assert sleeper.wait(10) != 0 and time.monotonic() - started < 10  # and it was stopped
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait(5)


def test_two_faulty_jobs_end_as_promised(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "chaos.json"
    code = chaos.main(["--jobs", "2", "--kinds", "kill,corrupt", "--seed", "3", "--no-twin",
                       "--rows", "300", "--root", str(tmp_path / "work"),
                       "--results", str(results)])
    out = capsys.readouterr().out
    runs = json.loads(results.read_text())["runs"]
    assert [r["kind"] for r in runs] == ["kill", "corrupt"], out
    assert code == 0 and all(not r["violations"] for r in runs), out
    assert all(r["result"] in ("finished", "failed") for r in runs)
    # the proxy fault hit the default transport, the TLS data plane, through the proxy
    assert json.loads(results.read_text())["reference"]["plane"] == "tls"
    # (the fault's chunk is drawn from the reference run's count, which varies with load by
    # a chunk or two: a fault that never fired lets the job finish, and is no violation)
    assert runs[1]["fired_on"] == ("data plane" if runs[1]["fired"] else ""), out
    assert "fault" in out and "all" in out.splitlines()[-1]
