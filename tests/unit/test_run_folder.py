"""Run folders: refuse to clobber a foreign folder, clear only what an earlier run wrote,
and leave logs and a FAILED marker (never a model or report) when a run fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federation.protocol.errors import ConfigError
from federation.run_folder import FAILED, MARKER, RunFolder, ensure_folder, listing
from federation.simulate import simulate

OUTPUTS = ("grid/model.json", "bank/model.json", "bank/predictions.csv", "bank/stats.json",
           "report.json", "summary.md", "plots/roc.png")
LOGS = ("grid/node.log", "grid/audit.jsonl", "coordinator/job.json", "configs/grid.toml",
        "certs/ca.pem")


def _write(root: Path, names: tuple[str, ...], text: str = "x") -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def _a_run(root: Path) -> RunFolder:
    folder = RunFolder.open(root, "simulate")
    _write(root, OUTPUTS + LOGS)
    return folder


def test_a_foreign_folder_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    _write(tmp_path, ("plots/mychart.png", "notes.txt"), "mine")
    with pytest.raises(ConfigError, match="not a gridcredit run folder.*--force"):
        RunFolder.open(tmp_path, "simulate")
    assert listing(tmp_path) == {"plots/", "plots/mychart.png", "notes.txt"}


def test_force_writes_into_a_foreign_folder_and_never_deletes_its_files(tmp_path: Path) -> None:
    _write(tmp_path, ("plots/mychart.png",), "mine")
    folder = RunFolder.open(tmp_path, "simulate", force=True)
    _write(tmp_path, OUTPUTS + LOGS)
    folder.failed("bank failed")
    assert (tmp_path / "plots" / "mychart.png").read_text() == "mine"
    folder = RunFolder.open(tmp_path, "simulate")  # it is a run folder now
    assert (tmp_path / "plots" / "mychart.png").read_text() == "mine"
    assert not (tmp_path / FAILED).exists() and not (tmp_path / "grid" / "node.log").exists()


def test_an_earlier_run_folder_is_cleared_of_its_files_only(tmp_path: Path) -> None:
    _a_run(tmp_path).done()
    _write(tmp_path, ("plots/mychart.png",), "mine")  # added by the user after the run
    RunFolder.open(tmp_path, "simulate")
    assert listing(tmp_path) == {"plots/", "plots/mychart.png"}


def test_a_killed_run_is_cleared_by_the_programs_own_layout(tmp_path: Path) -> None:
    _write(tmp_path / "out", ("my-notes.txt",), "mine")
    RunFolder.open(tmp_path / "out", "simulate", force=True)  # marker says "running"
    _write(tmp_path / "out", OUTPUTS + LOGS)  # ... and the process was SIGKILLed here
    assert json.loads((tmp_path / "out" / MARKER).read_text())["status"] == "running"
    RunFolder.open(tmp_path / "out", "simulate")
    assert {n for n in listing(tmp_path / "out") if not n.endswith("/")} == {"my-notes.txt"}


def test_a_failed_run_keeps_logs_and_a_marker_but_no_model_or_report(tmp_path: Path) -> None:
    folder = _a_run(tmp_path)
    folder.failed("grid failed (exit 1): boom")
    for name in OUTPUTS:
        assert not (tmp_path / name).exists(), name
    for name in LOGS:
        assert (tmp_path / name).is_file(), name
    assert not (tmp_path / "plots").exists()
    assert "grid failed (exit 1): boom" in (tmp_path / FAILED).read_text()
    marker = json.loads((tmp_path / MARKER).read_text())
    assert marker["status"] == "failed" and FAILED in marker["files"]


def test_resume_keeps_the_earlier_runs_files(tmp_path: Path) -> None:
    first = RunFolder.open(tmp_path, "simulate")
    _write(tmp_path, ("grid/checkpoint.json", "grid/model.json"))
    first.failed("interrupted")
    assert not (tmp_path / "grid" / "model.json").exists()
    folder = RunFolder.open(tmp_path, "simulate", resume=True)
    assert (tmp_path / "grid" / "checkpoint.json").is_file() and not (tmp_path / FAILED).exists()
    folder.done()
    assert "grid/checkpoint.json" in json.loads((tmp_path / MARKER).read_text())["files"]


def test_out_pointing_at_a_file_is_one_readable_error(tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    target.write_text("mine")
    with pytest.raises(ConfigError, match=f"--out {target}: is a file, not a folder"):
        RunFolder.open(target, "simulate")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        ensure_folder(target)
    with pytest.raises(ConfigError, match="cannot create the folder"):
        ensure_folder(target / "sub")
    assert target.read_text() == "mine"


def test_python_api_with_one_data_file_fails_like_the_cli(tmp_path: Path) -> None:
    grid = tmp_path / "grid.csv"
    grid.write_text("id,a\n1,0.5\n")
    with pytest.raises(ConfigError, match="give both --grid-data and --bank-data"):
        simulate(tmp_path / "mine", grid)
    with pytest.raises(ConfigError, match="give both"):
        simulate(tmp_path / "mine", bank_data=grid)
    assert not (tmp_path / "mine").exists()


def test_a_failed_party_removes_only_the_outputs_it_wrote(tmp_path: Path) -> None:
    from federation.nodes import PARTY_OUTPUTS
    from federation.run_folder import remove_written, stamp
    from parties.model import atomic_write_text

    _write(tmp_path, ("model.json", "notes.txt", "audit.jsonl"), "old")
    before = stamp(tmp_path, PARTY_OUTPUTS)
    atomic_write_text(tmp_path / "stats.json", "{}")  # written by the failed run
    atomic_write_text(tmp_path / "predictions.csv", "id")
    remove_written(tmp_path, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl", "model.json",
                                                          "notes.txt"]
    assert (tmp_path / "model.json").read_text() == "old"


def test_a_run_is_never_cleared_of_what_the_new_run_reads(tmp_path: Path) -> None:
    _a_run(tmp_path).done()
    before = listing(tmp_path)
    with pytest.raises(ConfigError, match="which this run reads.*another --out"):
        RunFolder.open(tmp_path, "score", reads=(tmp_path,))  # scoring a run into itself
    with pytest.raises(ConfigError, match="which this run reads"):
        RunFolder.open(tmp_path, "simulate", reads=(tmp_path / "bank" / "predictions.csv",))
    assert listing(tmp_path) == before
    RunFolder.open(tmp_path, "simulate", reads=(tmp_path / "notes.txt",))  # not the run's file
    assert listing(tmp_path) == set()


def test_scoring_into_the_scored_run_folder_is_refused_before_anything_starts(
        tmp_path: Path) -> None:
    from federation.simulate import ScoringSpec, run_scoring

    _a_run(tmp_path).done()
    (tmp_path / "report.json").write_text(json.dumps({"data": {"grid": "g.csv"}}))
    before = {n: (tmp_path / n).read_bytes() for n in listing(tmp_path) if not n.endswith("/")}
    with pytest.raises(ConfigError, match="which this run reads"):
        run_scoring(ScoringSpec(run=tmp_path, bank_data=tmp_path / "b.csv", out=tmp_path))
    assert {n: (tmp_path / n).read_bytes() for n in before} == before


def test_another_commands_run_folder_is_refused_and_kept(tmp_path: Path) -> None:
    _a_run(tmp_path).done()
    before = listing(tmp_path)
    for force in (False, True):  # --force is for a user's folder, not for another run
        with pytest.raises(ConfigError, match="holds a gridcredit simulate run; choose another"):
            RunFolder.open(tmp_path, "evaluate", force=force)
        assert listing(tmp_path) == before


def test_an_interrupt_while_marking_done_fails_the_run(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from federation.run_folder import in_run_folder

    folder = RunFolder.open(tmp_path, "simulate")

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(folder, "done", interrupted)
    with pytest.raises(KeyboardInterrupt):
        in_run_folder(folder, lambda: _write(tmp_path, OUTPUTS + LOGS))
    assert json.loads((tmp_path / MARKER).read_text())["status"] == "failed"
    assert not (tmp_path / "bank" / "model.json").exists()
    assert "node.log" in (tmp_path / FAILED).read_text()  # a run with nodes points at their logs


def test_a_failed_run_without_nodes_does_not_speak_of_node_logs(tmp_path: Path) -> None:
    folder = RunFolder.open(tmp_path, "evaluate")
    _write(tmp_path, ("metrics.json", "plots/roc.png"))
    folder.failed("bad input")
    assert (tmp_path / FAILED).read_text() == ("evaluate failed: bad input\n"
                                               "None of its outputs was kept.\n")
