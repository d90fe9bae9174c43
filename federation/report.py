"""The run folder's report: federated, bank-only and centralized models side by side.

The centralized model is the honest yardstick: scikit-learn's exact logistic regression
on the joined rows of both files, with the same aligned rows, the same train/validation
split and the same per-row L2 penalty. It exists only in a simulation, where one
process may read both parties' files; no deployed node ever does this.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from federation.protocol.files import SHARED
from federation.protocol.messages import Model, TrainSettings
from parties.data import Standardizer, load_party_csv
from parties.evaluation import metrics, plots
from parties.evaluation.scorecard import Scorecard, band_table
from parties.model import atomic_write_text
from parties.reference import centralized_gbdt, centralized_lr

NODES = ("coordinator", "grid", "bank")


def _json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _read_predictions(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    ids = [r["id"] for r in rows]
    split = np.array([r["split"] for r in rows])
    y = np.array([float(r["y"]) for r in rows]) if rows and "y" in rows[0] else np.zeros(0)
    p = np.array([float(r["probability"]) for r in rows])
    return ids, split, y, p


def _column(path: Path, name: str) -> np.ndarray | None:
    """One numeric column of a CSV, or None if the file has no such column."""
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or name not in rows[0]:
        return None
    return np.array([float(r[name]) for r in rows])


CALIBRATION_KEYS = ("log_loss", "brier", "hosmer_lemeshow", "hosmer_lemeshow_p")


def calibration_section(bank: dict[str, Any], central: dict[str, Any]) -> dict[str, Any]:
    """Platt scaling's slope and intercept, and the calibration metrics before and after it
    (train and validation), next to the centralized model's on validation."""
    def pick(m: dict[str, Any]) -> dict[str, Any]:
        return {k: m.get(k) for k in CALIBRATION_KEYS}

    out: dict[str, Any] = {
        **bank.get("calibration", {}),
        "before": {s: pick(bank.get("uncalibrated", {}).get(s, {})) for s in ("train",
                                                                              "validation")},
        "after": {s: pick(bank.get(s, {})) for s in ("train", "validation")},
        "centralized": {"validation": pick(central.get("validation", {}))},
    }
    after, ref = out["after"]["validation"]["log_loss"], central.get("validation", {}).get(
        "log_loss")
    if isinstance(after, float) and isinstance(ref, float) and ref > 0:
        out["validation_log_loss_over_centralized"] = after / ref
    return out


def bytes_sent(audit: Path) -> int:
    """Bytes this node sent, summed from its audit log."""
    total = 0
    with audit.open(encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            if entry["direction"] == "sent":
                total += int(entry["bytes"])
    return total


def _joined(grid_csv: Path, bank_csv: Path, id_col: str, label_col: str, ids: list[str],
            columns: dict[str, list[str]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Both files' features of the aligned rows side by side, and the labels."""
    grid = load_party_csv(grid_csv, id_col)
    bank = load_party_csv(bank_csv, id_col, label_col)
    if columns is not None:  # the same columns the parties trained on (before any PCA)
        grid, bank = grid.select(columns["grid"]), bank.select(columns["bank"])
    g_index = {v: i for i, v in enumerate(grid.ids)}
    b_index = {v: i for i, v in enumerate(bank.ids)}
    rows_g = np.array([g_index[i] for i in ids], dtype=np.int64)
    rows_b = np.array([b_index[i] for i in ids], dtype=np.int64)
    x = np.hstack([grid.x[rows_g], bank.x[rows_b]])
    y = bank.y[rows_b] if bank.y is not None else np.zeros(len(ids))
    return x, y


def load_reference() -> None:
    """scikit-learn's logistic regression (seconds on a cold start), imported ahead of
    :func:`build_report` by a caller that would only wait meanwhile."""
    import sklearn.linear_model  # noqa: F401


def _centralized_lr(x: np.ndarray, y: np.ndarray, split: np.ndarray, l2: float, seed: int
                    ) -> tuple[dict[str, Any], np.ndarray]:
    train, valid = split == "train", split == "validation"
    z = Standardizer.fit(x[train]).apply(x)
    import sklearn.linear_model  # noqa: F401  (imported before the clock: fit time only)

    start = time.perf_counter()
    model = centralized_lr(z[train], y[train], l2, seed)
    seconds = time.perf_counter() - start
    p = model.predict_proba(z)[:, 1]
    out = {"train": metrics.evaluate(y[train], p[train]),
           "validation": metrics.evaluate(y[valid], p[valid]) if valid.any() else {},
           "fit_seconds": seconds, "model": "scikit-learn LogisticRegression (L-BFGS), "
           "same rows, split and per-row L2"}
    return out, p


def _centralized_gbdt(x: np.ndarray, y: np.ndarray, split: np.ndarray, s: TrainSettings
                      ) -> tuple[dict[str, Any], np.ndarray]:
    train, valid = split == "train", split == "validation"
    start = time.perf_counter()
    model = centralized_gbdt(x[train], y[train], trees=s.trees, depth=s.depth,
                             learning_rate=s.learning_rate, bins=s.bins, l2=s.l2, seed=s.seed)
    seconds = time.perf_counter() - start
    p = model.predict_proba(x)[:, 1]
    out = {"train": metrics.evaluate(y[train], p[train]),
           "validation": metrics.evaluate(y[valid], p[valid]) if valid.any() else {},
           "fit_seconds": seconds, "model": "scikit-learn HistGradientBoostingClassifier, "
           "same rows, split, trees, depth, bins, learning rate and L2, min_samples_leaf 1"}
    return out, p


def _importance(out: Path) -> dict[str, Any]:
    """Feature importance per party: the bank's trees name its own features and index
    the grid's; the grid's model file names them (joined here, in the simulation only)."""
    bank = _json(out / "bank" / "model.json")["importance"]
    grid_model = _json(out / "grid" / "model.json")
    names = grid_model["features"]
    counts = {r["feature"]: r["splits"] for r in grid_model["importance"]}
    grid = [{**r, "feature": names[r["index"]]} for r in bank["grid"]]
    if any(counts[r["feature"]] != r["splits"] for r in grid):
        raise ValueError("the two model files disagree on the grid's split counts")
    return {"bank": bank["bank"], "grid": grid}


def scorecard_section(y: np.ndarray, p: np.ndarray, card: Scorecard) -> dict[str, Any]:
    """Points per row and the band table (count, bad count, bad rate per band)."""
    table = band_table(y, card.points(p))
    bands = [{"band": label, "count": int(n), "bad": int(bad),
              "bad_rate": None if not np.isfinite(rate) else float(rate)}
             for label, n, bad, rate in zip(table.labels, table.count, table.bad, table.bad_rate)]
    return {"base_score": card.base_score, "base_odds": card.base_odds, "pdo": card.pdo,
            "convention": "higher score = lower risk; points = offset + factor * ln(good:bad odds)",
            "validation_bands": bands}


def build_report(out: Path, job_id: str, settings: TrainSettings, pids: dict[str, int],
                 grid_csv: Path, bank_csv: Path, id_col: str, label_col: str,
                 threshold: float = 0.5, card: Scorecard | None = None,
                 federated_lr: dict[str, Any] | None = None,
                 columns: dict[str, list[str]] | None = None,
                 inputs: dict[str, object] | None = None) -> dict[str, Any]:
    bank_metrics = _json(out / "bank" / "metrics.json")
    stats = {n: _json(out / n / "stats.json") for n in ("grid", "bank")}
    job = _json(out / "coordinator" / "job.json")
    ids, split, y, p = _read_predictions(out / "bank" / "predictions.csv")
    _, _, _, p_bank = _read_predictions(out / "bank" / "bank_only_predictions.csv")
    x_joined, y_joined = _joined(grid_csv, bank_csv, id_col, label_col, ids, columns)
    gbdt = settings.model is Model.GBDT
    central_lr, p_central = _centralized_lr(x_joined, y_joined, split,
                                            TrainSettings().l2 if gbdt else settings.l2,
                                            settings.seed)
    central = central_lr
    if gbdt:
        central, p_central = _centralized_gbdt(x_joined, y_joined, split, settings)
    report: dict[str, Any] = {
        "job_id": job_id,
        "intersection_size": job["intersection_size"],
        "rows": {"grid": stats["grid"]["rows"], "bank": stats["bank"]["rows"]},
        "config": {**settings.as_dict(), **(inputs or {})},
        "validation": bank_metrics["validation"], "train": bank_metrics["train"],
        "bank_only": bank_metrics["bank_only"], "centralized": central,
        "calibration": calibration_section(bank_metrics, central),
        "fit_seconds": max(stats["grid"]["fit_seconds"], stats["bank"]["fit_seconds"]),
        "psi_seconds": max(stats["grid"]["psi_seconds"], stats["bank"]["psi_seconds"]),
        "psi_protocol": settings.psi.value,
        "epochs_run": stats["bank"]["epochs_run"], "losses": job["losses"],
        "stop_reason": job.get("stop_reason", ""),
        "expected_wrap_failures": max(stats[n].get("expected_wrap_failures", 0.0)
                                      for n in ("grid", "bank")),
        "bytes_sent": {n: bytes_sent(out / n / "audit.jsonl") for n in NODES},
        "nodes": {n: {"pid": pids[n], "audit_log": str(out / n / "audit.jsonl")} for n in NODES},
        "data": {"grid": str(grid_csv), "bank": str(bank_csv)},
        "peak_rss_mb": {n: (stats[n] if n in stats else job).get("peak_rss_mb")
                        for n in NODES},
    }
    if gbdt:
        report["model"] = "gbdt"
        report["trees_run"] = len(job["losses"])
        report["validation_losses"] = job.get("validation_losses", [])
        report["centralized_lr"] = central_lr
        report["federated_lr"] = federated_lr
        report["importance"] = _importance(out)
        report["models"] = {"grid": str(out / "grid" / "model.json"),
                            "bank": str(out / "bank" / "model.json")}
    else:
        report["coefficients"] = {"grid": str(out / "grid" / "coefficients.csv"),
                                  "bank": str(out / "bank" / "coefficients.csv")}
    valid = split == "validation"
    if valid.any():
        v = report["validation"]
        report["lift"] = {
            "auc_over_bank_only": v["auc"] - report["bank_only"]["validation"]["auc"],
            "auc_minus_centralized": v["auc"] - central["validation"]["auc"]}
        if gbdt and federated_lr is not None:
            report["lift"]["auc_over_federated_lr"] = (
                v["auc"] - federated_lr["validation"]["auc"])
        report["validation_at_threshold"] = {
            "threshold": threshold, **metrics.classification_at(y[valid], p[valid], threshold)}
        report["scorecard"] = scorecard_section(y[valid], p[valid], card or Scorecard())
        raw = _column(out / "bank" / "predictions.csv", "uncalibrated")
        curves = {"federated, calibrated (Platt)": p[valid], "centralized": p_central[valid]}
        if raw is not None:
            curves = {"federated, uncalibrated": raw[valid], **curves}
        report["plots"] = _plots(out, y[valid], p[valid], p_bank[valid], p_central[valid],
                                 job["losses"], card or Scorecard(), curves)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n", SHARED)
    atomic_write_text(out / "summary.md", summary_markdown(report), SHARED)
    return report


def _plots(out: Path, y: np.ndarray, p: np.ndarray, p_bank: np.ndarray, p_central: np.ndarray,
           losses: list[float], card: Scorecard, curves: dict[str, np.ndarray]) -> list[str]:
    folder = out / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    made = [
        plots.plot_roc({"federated": (y, p), "bank only": (y, p_bank),
                        "centralized": (y, p_central)}, folder / "roc.png"),
        plots.plot_ks(y, p, folder / "ks.png"),
        plots.plot_calibration_curves(y, curves, folder / "calibration.png"),
        plots.plot_score_distribution(y, card.points(p), folder / "score_distribution.png",
                                      xlabel="score points (higher = lower risk)"),
    ]
    if losses:
        made.append(plots.plot_loss(losses, folder / "loss.png",
                                    ylabel="Taylor loss (mean per row)"))
    return [str(path.relative_to(out)) for path in made]


def _row(name: str, m: dict[str, Any]) -> str:
    keys = ("auc", "ks", "accuracy", "precision", "recall", "log_loss", "brier")
    cells = [f"{m[k]:.4f}" if isinstance(m.get(k), (int, float)) else "-" for k in keys]
    return f"| {name} | " + " | ".join(cells) + " |"


def _gbdt_lines(r: dict[str, Any]) -> list[str]:
    c = r["config"]
    lines = [
        f"Training: gradient-boosted trees, {r['trees_run']} of {c['trees']} trees (depth "
        f"{c['depth']}, {c['bins']} value bins + a missing bin per feature, learning rate "
        f"{c['learning_rate']}, L2 {c['l2']}, min child weight {c['min_child_weight']}, "
        f"subsample {c['subsample']}, early stopping after {c['early_stopping_rounds']}), "
        f"seed {c['seed']}; federated fit {r['fit_seconds']:.2f} s vs centralized "
        f"{r['centralized']['fit_seconds']:.2f} s.", "",
        "## Validation", "",
        "| model | AUC | KS | accuracy | precision | recall | log-loss | Brier |",
        "|---|---|---|---|---|---|---|---|",
        _row("federated GBDT (grid + bank)", r["validation"]),
        _row("bank-only GBDT", r["bank_only"]["validation"]),
        _row("centralized GBDT (scikit-learn, joined data)", r["centralized"]["validation"]),
    ]
    if r.get("federated_lr"):
        lines.append(_row("federated LR (grid + bank)", r["federated_lr"]["validation"]))
    lines += [_row("centralized LR (joined data)", r["centralized_lr"]["validation"]), ""]
    return lines


def _importance_lines(r: dict[str, Any], top: int = 10) -> list[str]:
    lines = ["## Feature importance (total gain, split count)", ""]
    for party in ("bank", "grid"):
        rows = [x for x in r["importance"][party] if x["splits"]][:top]
        lines += [f"{party}: " + (", ".join(f"{x['feature']} {x['gain']:.1f} ({x['splits']})"
                                           for x in rows) or "no splits"), ""]
    return lines


def _calibration_lines(cal: dict[str, Any]) -> list[str]:
    if "slope" not in cal:
        return []

    def cells(m: dict[str, Any]) -> str:
        return " | ".join(f"{m[k]:.4f}" if isinstance(m.get(k), (int, float)) else "-"
                          for k in CALIBRATION_KEYS)

    lines = ["## Calibration (validation)", "",
             f"The bank recalibrates the exact logits u of the trained model by Platt scaling "
             f"fitted on the training rows: p = σ({cal['slope']:.4f}·u "
             f"{'+' if cal['intercept'] >= 0 else '−'} {abs(cal['intercept']):.4f}). Every "
             "probability it gives (predictions, `score`, "
             "`serve`) is calibrated.", "",
             "| probabilities | log-loss | Brier | Hosmer–Lemeshow | HL p |",
             "|---|---|---|---|---|",
             f"| federated, σ(u) (before) | {cells(cal['before']['validation'])} |",
             f"| federated, Platt (after) | {cells(cal['after']['validation'])} |",
             f"| centralized | {cells(cal['centralized']['validation'])} |", ""]
    if "validation_log_loss_over_centralized" in cal:
        lines += [f"Calibrated validation log-loss is "
                  f"{cal['validation_log_loss_over_centralized']:.4f}× the centralized "
                  "model's.", ""]
    return lines


def summary_markdown(r: dict[str, Any]) -> str:
    c = r["config"]
    gbdt = r.get("model") == "gbdt"
    lines = [
        f"# gridcredit run {r['job_id']}", "",
        f"Grid rows {r['rows']['grid']}, bank rows {r['rows']['bank']}, "
        f"aligned by {r['psi_protocol']} PSI: **{r['intersection_size']}** enterprises "
        f"({r['psi_seconds']:.2f} s).", "",
    ]
    split = "validation" if "auc" in r["validation"] else "train"
    if gbdt:
        lines += _gbdt_lines(r)
    else:
        lines += [
            f"Training: mode `{c['mode']}`, {r['epochs_run']} of at most {c['epochs']} epochs "
            f"({r['stop_reason'] or 'stopped'}), batch "
            f"{c['batch_size']}, {c['optimizer']} at learning rate {c['learning_rate']}, L2 "
            f"{c['l2']}, seed {c['seed']}; federated fit {r['fit_seconds']:.2f} s vs "
            f"centralized {r['centralized']['fit_seconds']:.2f} s.", "",
            "## Validation" if split == "validation" else
            "## Training rows (no validation rows: `--validation-fraction 0`)", "",
            "| model | AUC | KS | accuracy | precision | recall | log-loss | Brier |",
            "|---|---|---|---|---|---|---|---|",
            _row("federated (grid + bank)", r[split]),
            _row("bank only", r["bank_only"][split]),
            _row("centralized (joined data, not deployable)", r["centralized"][split]),
            "",
        ]
    if "lift" in r:
        lines += [f"Power data adds **{r['lift']['auc_over_bank_only']:+.4f}** AUC over the "
                  f"bank's own model; the federated model is "
                  f"{r['lift']['auc_minus_centralized']:+.4f} AUC from the centralized one.", ""]
    lines += _calibration_lines(r.get("calibration", {}))
    lines += ["## Traffic", "", "| node | bytes sent |", "|---|---|"]
    lines += [f"| {n} | {b:,} |" for n, b in r["bytes_sent"].items()]
    if gbdt:
        lines += ["", "Training loss per tree (logistic, mean per row): "
                  + ", ".join(f"{x:.4f}" for x in r["losses"]), "",
                  "Validation loss per tree: "
                  + ", ".join(f"{x:.4f}" for x in r["validation_losses"]), ""]
        lines += _importance_lines(r)
    else:
        lines += ["", "Epoch losses (Taylor, mean per row): "
                  + ", ".join(f"{x:.4f}" for x in r["losses"]), ""]
    if c["mode"] == "shared" and not gbdt:
        lines += [f"Mode `shared` truncates shares locally (SecureML); expected number of "
                  f"truncation wrap failures in this run: {r['expected_wrap_failures']:.2e} "
                  "(upper bound).", ""]
    if "scorecard" in r:
        sc = r["scorecard"]
        t = r["validation_at_threshold"]
        lines += [f"At threshold {t['threshold']:g}: accuracy {t['accuracy']:.4f}, precision "
                  f"{t['precision']:.4f}, recall {t['recall']:.4f}, F1 {t['f1']:.4f}.", "",
                  f"## Score bands (validation; base {sc['base_score']:g} at {sc['base_odds']:g}:1,"
                  f" PDO {sc['pdo']:g})", "", "| band | count | bad | bad rate |",
                  "|---|---|---|---|"]
        lines += [f"| {b['band']} | {b['count']} | {b['bad']} | "
                  + ("-" if b["bad_rate"] is None else f"{b['bad_rate']:.3f}") + " |"
                  for b in sc["validation_bands"] if b["count"]]
        lines += ["", "Each party's own model: `grid/model.json` (its split features and "
                  "thresholds per node), `bank/model.json` (the trees, the bank's splits, leaf "
                  "values)." if gbdt else "Each party's own coefficients: "
                  "`grid/coefficients.csv` (the grid's view), `bank/coefficients.csv` (the "
                  "bank's view, with the intercept).", ""]
    if r.get("plots"):
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in r["plots"]] + [""]
    lines += ["Each node's audit log (one line per message, digests only) is in "
              "`<node>/audit.jsonl`; models in `grid/model.json` and `bank/model.json`.", ""]
    return "\n".join(lines)
