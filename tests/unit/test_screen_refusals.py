"""Bad screening, selection and stage inputs stop with one line naming what and where, exit
code 2, before any process starts and without writing a run folder's outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def test_bad_rules_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[rules]\nmin_iv = -1\n", encoding="utf-8")
    code, line = run(capsys, "screen", "--out", str(tmp_path / "out"), "--rules", str(rules))
    assert code == 2 and line.startswith("error: ") and "min_iv" in line and str(rules) in line
    assert not (tmp_path / "out" / "selection.json").exists()


def test_bad_bins_and_reveal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, line = run(capsys, "screen", "--out", str(tmp_path / "o"), "--bins", "1")
    assert code == 2 and "--bins" in line


def test_simulate_refuses_a_bad_pca_and_a_selection_naming_absent_columns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, line = run(capsys, "simulate", "--out", str(tmp_path / "o"), "--pca", "zero")
    assert code == 2 and "--pca" in line
    grid, bank = tmp_path / "g.csv", tmp_path / "b.csv"
    grid.write_text("id,a,b\n1,0.5,1\n2,0.1,2\n", encoding="utf-8")
    bank.write_text("id,y,c\n1,0,3\n2,1,4\n", encoding="utf-8")
    selection = tmp_path / "selection.json"
    selection.write_text('{"parties": {"grid": {"kept": ["a", "zz"]}, "bank": {"kept": ["c"]}}}',
                         encoding="utf-8")
    code, line = run(capsys, "simulate", "--out", str(tmp_path / "o"), "--grid-data", str(grid),
                     "--bank-data", str(bank), "--select", str(selection))
    assert code == 2 and "zz" in line and str(grid) in line
    selection.write_text("{not json", encoding="utf-8")
    code, line = run(capsys, "simulate", "--out", str(tmp_path / "o"), "--grid-data", str(grid),
                     "--bank-data", str(bank), "--select", str(selection))
    assert code == 2 and str(selection) in line


def test_simulate_with_an_empty_selection_names_the_flag_not_none(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid, bank = tmp_path / "g.csv", tmp_path / "b.csv"
    grid.write_text("id,a\n1,0.5\n2,0.1\n", encoding="utf-8")
    bank.write_text("id,y,c\n1,0,3\n2,1,4\n", encoding="utf-8")
    selection = tmp_path / "selection.json"
    selection.write_text('{"parties": {"grid": {"kept": []}, "bank": {"kept": ["c"]}}}',
                         encoding="utf-8")
    code, line = run(capsys, "simulate", "--out", str(tmp_path / "o"), "--grid-data", str(grid),
                     "--bank-data", str(bank), "--select", str(selection))
    assert code == 2 and "None" not in line
    assert line == f"error: {grid}: no grid column left to train on after --select {selection}"
