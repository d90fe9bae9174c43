"""``gridcredit evaluate``: credit-risk metrics, score bands and plots for a predictions file.

Reads the bank's ``predictions.csv`` (``id,split,y,probability``) of a run, any CSV with an
ID, a 0/1 label and a probability column (``split`` optional: without it every row is one
group), or the ``scores.csv`` that ``gridcredit score`` writes (``id,status,probability,...``;
rows without a probability, such as ``no grid record``, are left out and counted). Labels
come from the file's own label column or, when it has none, from ``--labels FILE`` joined
by ID. Writes ``metrics.json``, ``summary.md`` and ``plots/*.png`` into the output folder.

Assumes: probabilities are of bad (y = 1); the scorecard is the project's default one
(``parties.evaluation.scorecard.Scorecard``), as in a run's report.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from federation.protocol.errors import InputDataError
from federation.protocol.files import SHARED
from parties.evaluation import metrics, plots
from parties.evaluation.scorecard import Scorecard
from parties.model import atomic_write_text

Float = npt.NDArray[np.float64]
GROUPS = ("train", "validation")


@dataclass(frozen=True)
class Predictions:
    """The usable rows of a predictions file: ID, split ("" if none), label, probability."""

    ids: list[str]
    split: npt.NDArray[np.str_]
    y: Float
    p: Float
    skipped: int  # rows without a probability (e.g. "no grid record")


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except FileNotFoundError:
        raise InputDataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputDataError(f"{path}: cannot read it as CSV ({exc})") from None
    if not header:
        raise InputDataError(f"{path}: file is empty, expected a header row")
    return header, rows


def _require(path: Path, header: list[str], column: str, what: str) -> None:
    if column not in header:
        found = ", ".join(repr(c) for c in header[:8])
        raise InputDataError(f"{path}: missing {what} column {column!r} (found: {found})")


def _number(path: Path, row: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        what = "missing value" if not cell.strip() else "not a number"
        raise InputDataError(f"{path}: row {row}, column {column!r}: {what}")
    return value


def _label(path: Path, row: int, column: str, cell: str) -> float:
    value = _number(path, row, column, cell)
    if value not in (0.0, 1.0):
        raise InputDataError(f"{path}: row {row}, column {column!r}: label must be 0 or 1")
    return value


def _labels_by_id(path: Path, id_column: str, label_column: str) -> dict[str, float]:
    header, rows = _rows(path)
    _require(path, header, id_column, "ID")
    _require(path, header, label_column, "label")
    labels: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        ent = _unique_id(path, id_column, r, i + 2, first)  # two labels: neither is safe
        labels[ent] = _label(path, i + 2, label_column, r[label_column])
    return labels


def _unique_id(path: Path, id_column: str, r: dict[str, str], row: int,
               first: dict[str, int]) -> str:
    """The row's ID, recorded in ``first``; an ID seen on an earlier row is an error."""
    ent = (r[id_column] or "").strip()
    if first.setdefault(ent, row) != row:
        raise InputDataError(f"{path}: row {row}, column {id_column!r}: duplicate ID {ent!r} "
                             f"(first on row {first[ent]})")
    return ent


def read_predictions(path: Path, *, id_column: str = "id", label_column: str = "y",
                     labels: Path | None = None) -> Predictions:
    """The usable rows of ``path``; labels from ``labels`` (joined by ID) if given.

    Raises
    ------
    InputDataError
        A missing column (named), a bad cell (file, row and column), a duplicate ID, an ID
        without a label, or no row with a probability.
    """
    header, rows = _rows(path)
    _require(path, header, "probability", "probability")
    _require(path, header, id_column, "ID")
    by_id = _labels_by_id(labels, id_column, label_column) if labels is not None else None
    if by_id is None and label_column not in header:
        raise InputDataError(f"{path}: missing label column {label_column!r} (scores.csv has "
                             "none: give --labels FILE with the ID and label columns)")
    ids: list[str] = []
    split: list[str] = []
    y: list[float] = []
    p: list[float] = []
    skipped = 0
    seen: dict[str, int] = {}
    for i, r in enumerate(rows):
        row = i + 2
        ent = _unique_id(path, id_column, r, row, seen)  # counted twice, it bends every metric
        if not (r.get("probability") or "").strip():
            skipped += 1  # "no grid record" and other unscored rows
            continue
        if by_id is None:
            y.append(_label(path, row, label_column, r[label_column]))
        elif ent in by_id:
            y.append(by_id[ent])
        else:
            raise InputDataError(f"{labels}: no label for the ID on row {row} of {path}")
        ids.append(ent)
        split.append((r.get("split") or "").strip())
        value = _number(path, row, "probability", r["probability"])
        if not 0.0 <= value <= 1.0:
            raise InputDataError(f"{path}: row {row}, column 'probability': outside [0, 1]")
        p.append(value)
    if not p:
        raise InputDataError(f"{path}: no row with a probability")
    return Predictions(ids, np.array(split, dtype=np.str_), np.array(y), np.array(p), skipped)


def _groups(pred: Predictions) -> dict[str, npt.NDArray[np.bool_]]:
    groups = {name: pred.split == name for name in GROUPS if (pred.split == name).any()}
    return groups or {"all": np.ones(len(pred.p), dtype=bool)}


def evaluate_predictions(path: Path, out: Path, threshold: float = 0.5,
                         card: Scorecard | None = None, *, id_column: str = "id",
                         label_column: str = "y", labels: Path | None = None,
                         pred: Predictions | None = None) -> dict[str, Any]:
    """Metrics per split, the validation (or only) group's score bands and plots.

    Writes ``out/metrics.json``, ``out/summary.md`` and ``out/plots/*.png``; returns the
    metrics as a dict. ``pred``: ``path`` already read by :func:`read_predictions`.
    """
    from federation.report import scorecard_section

    if pred is None:
        pred = read_predictions(path, id_column=id_column, label_column=label_column,
                                labels=labels)
    card = card or Scorecard()
    groups = _groups(pred)
    result: dict[str, Any] = {"file": str(path), "rows": len(pred.p),
                              "rows_without_probability": pred.skipped}
    for name, rows in groups.items():
        y, p = pred.y[rows], pred.p[rows]
        try:
            result[name] = {**metrics.evaluate(y, p), "at_threshold": {
                "threshold": threshold, **metrics.classification_at(y, p, threshold)}}
        except ValueError as exc:
            raise InputDataError(f"{path}: {name} rows: {exc}") from None
    key = "validation" if "validation" in groups else next(iter(groups))
    rows = groups[key]
    y, p = pred.y[rows], pred.p[rows]
    result["scorecard"] = {"group": key, **scorecard_section(y, p, card)}
    folder = out / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    result["plots"] = [str(x.relative_to(out)) for x in (
        plots.plot_roc({"model": (y, p)}, folder / "roc.png"),
        plots.plot_ks(y, p, folder / "ks.png"),
        plots.plot_calibration(y, p, folder / "calibration.png"),
        plots.plot_score_distribution(y, card.points(p), folder / "score_distribution.png",
                                      xlabel="score points (higher = lower risk)"))]
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2) + "\n", SHARED)
    atomic_write_text(out / "summary.md", summary_markdown(result), SHARED)
    return result


ROWS = (("AUC", "auc"), ("Gini", "gini"), ("KS", "ks"), ("accuracy", "accuracy"),
        ("precision", "precision"), ("recall", "recall"), ("F1", "f1"),
        ("log-loss", "log_loss"), ("Brier", "brier"), ("Hosmer-Lemeshow", "hosmer_lemeshow"),
        ("Hosmer-Lemeshow p", "hosmer_lemeshow_p"), ("-2LL", "minus_2_log_likelihood"),
        ("Cox-Snell R2", "cox_snell_r2"), ("Nagelkerke R2", "nagelkerke_r2"))


def _cell(value: object) -> str:
    if isinstance(value, float) and 0.0 < abs(value) < 0.001:
        return f"{value:.2e}"
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def summary_markdown(result: dict[str, Any]) -> str:
    """``summary.md`` of ``gridcredit evaluate``: the metrics table, score bands, plots."""
    names = [g for g in (*GROUPS, "all") if g in result]
    first = result[names[0]]
    lines = [f"# Evaluation of {result['file']}", "",
             f"{result['rows']} rows with a probability"
             + (f" ({result['rows_without_probability']} without one left out)"
                if result["rows_without_probability"] else "")
             + f"; decision threshold {first['threshold']:g}.", "",
             "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(_cell(result[g].get(key)) for g in names) + " |"
              for label, key in ROWS]
    sc = result["scorecard"]
    lines += ["", f"## Score bands ({sc['group']} rows; base {sc['base_score']:g} at "
              f"{sc['base_odds']:g}:1, PDO {sc['pdo']:g})", "",
              "| band | count | bad | bad rate |", "|---|---|---|---|"]
    lines += [f"| {b['band']} | {b['count']} | {b['bad']} | "
              + ("-" if b["bad_rate"] is None else f"{b['bad_rate']:.3f}") + " |"
              for b in sc["validation_bands"] if b["count"]]
    lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in result["plots"]] + [""]
    return "\n".join(lines)
