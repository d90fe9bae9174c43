"""``gridcredit evaluate`` on the files a user has: predictions with or without ``split``,
and the ``scores.csv`` of ``gridcredit score`` with the labels beside it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from federation.cli import main


def _rows(n: int = 400, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.9, n)
    y = (rng.random(n) < p).astype(int)
    return [f"e{i}" for i in range(n)], y, p


def test_evaluate_writes_summary_md_as_its_help_says(tmp_path: Path) -> None:
    ids, y, p = _rows()
    split = ["train" if i % 3 else "validation" for i in range(len(ids))]
    src = tmp_path / "predictions.csv"
    src.write_text("id,split,y,probability\n" + "".join(
        f"{i},{s},{t},{q:.6f}\n" for i, s, t, q in zip(ids, split, y, p)))
    out = tmp_path / "eval"
    assert main(["evaluate", "--predictions", str(src), "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# Evaluation of") and "| AUC |" in summary
    assert "validation" in summary and "## Score bands" in summary
    assert "plots/roc.png" in summary and (out / "plots" / "roc.png").is_file()
    assert json.loads((out / "metrics.json").read_text())["validation"]["auc"] > 0.5


def test_evaluate_accepts_a_file_without_split(tmp_path: Path) -> None:
    ids, y, p = _rows()
    src = tmp_path / "preds.csv"
    src.write_text("id,y,probability\n" + "".join(
        f"{i},{t},{q:.6f}\n" for i, t, q in zip(ids, y, p)))
    out = tmp_path / "eval"
    assert main(["evaluate", "--predictions", str(src), "--out", str(out)]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["all"]["n"] == len(ids) and (out / "summary.md").is_file()


def test_evaluate_reads_scores_csv_with_labels_beside_it(tmp_path: Path) -> None:
    ids, y, p = _rows()
    scores = tmp_path / "scores.csv"
    scores.write_text("id,status,probability,points,band\n" + "".join(
        f"{i},scored,{q:.10g},600.0,\"[600, 620)\"\n" for i, q in zip(ids, p))
        + "new-1,no grid record,,,\n")
    labels = tmp_path / "to_score.csv"
    labels.write_text("id,y,x1\n" + "".join(f"{i},{t},0.5\n" for i, t in zip(ids, y))
                      + "new-1,0,0.1\n")
    out = tmp_path / "eval"
    assert main(["evaluate", "--predictions", str(scores), "--labels", str(labels),
                 "--out", str(out)]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["all"]["n"] == len(ids) and result["rows_without_probability"] == 1


@pytest.mark.parametrize(("header", "missing"), [
    ("id,split,y", "'probability'"),
    ("id,split,probability", "'y'"),
    ("split,y,probability", "'id'"),
])
def test_evaluate_names_the_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           header: str, missing: str) -> None:
    src = tmp_path / "bad.csv"
    src.write_text(header + "\n" + "a,b,c\n")
    assert main(["evaluate", "--predictions", str(src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(src) in err[0]
    assert f"column {missing}" in err[0], err[0]
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_evaluate_never_overwrites_a_folder_that_is_not_its_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids, y, p = _rows()
    src = tmp_path / "preds.csv"
    src.write_text("id,y,probability\n" + "".join(
        f"{i},{t},{q:.6f}\n" for i, t, q in zip(ids, y, p)))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.md").write_text("my notes")
    assert main(["evaluate", "--predictions", str(src), "--out", str(mine)]) != 0
    assert "not a gridcredit run folder" in capsys.readouterr().err
    assert (mine / "summary.md").read_text() == "my notes"
    assert main(["evaluate", "--predictions", str(src), "--out", str(mine), "--force"]) == 0
    assert (mine / "metrics.json").is_file()
    out = tmp_path / "eval"
    assert main(["evaluate", "--predictions", str(src), "--out", str(out)]) == 0
    assert main(["evaluate", "--predictions", str(src), "--out", str(out)]) == 0  # its own


def test_evaluate_refuses_a_duplicate_id_naming_both_rows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids, y, p = _rows()
    src = tmp_path / "preds.csv"
    src.write_text("id,y,probability\n" + "".join(
        f"{i},{t},{q:.6f}\n" for i, t, q in zip(ids, y, p)) + f"{ids[3]},1,0.5\n")
    assert main(["evaluate", "--predictions", str(src), "--out", str(tmp_path / "e")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {src}: row {len(ids) + 2}, column 'id': duplicate ID "
                   f"'{ids[3]}' (first on row 5)"], err
    assert not (tmp_path / "e").exists()  # refused before any folder was made
    scores = tmp_path / "scores.csv"
    scores.write_text("id,status,probability\n" + "".join(
        f"{i},scored,{q:.6f}\n" for i, q in zip(ids, p)))
    labels = tmp_path / "labels.csv"  # one ID labelled twice, differently
    labels.write_text("id,y\n" + "".join(f"{i},{t}\n" for i, t in zip(ids, y))
                      + f"{ids[7]},{1 - y[7]}\n")
    assert main(["evaluate", "--predictions", str(scores), "--labels", str(labels), "--out",
                 str(tmp_path / "e")]) != 0
    assert f"{labels}: row {len(ids) + 2}, column 'id': duplicate ID '{ids[7]}' (first on " \
        "row 9)" in capsys.readouterr().err
