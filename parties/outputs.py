"""What the bank writes after a job: predictions with metrics, and scores.

Each function writes its files atomically (``parties.model.atomic_write_text``) and
nothing else; the bank node calls them once training, evaluation or scoring is done.
Assumes: logits are exact (u = u_G + u_B); probabilities come from the bank's calibration
(``parties.evaluation.platt``) of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from crypto.sigmoid import sigmoid
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import TrainSettings
from federation.protocol.schedule import Schedule
from parties.data import PartyData
from parties.evaluation import metrics
from parties.evaluation.platt import Platt, fit_platt
from parties.evaluation.scorecard import Scorecard, band_of
from parties.model import atomic_write_text
from parties.reference import centralized_lr

Float = npt.NDArray[np.float64]
NO_GRID_RECORD = "no grid record"


def write_bank_evaluation(
    out: Path, aligned: PartyData, schedule: Schedule, u: Float, z: Float, settings: TrainSettings
) -> Platt:
    """Calibrate, then write the bank's predictions, its bank-only baseline's and the
    metrics of both; returns the calibration for the bank's model file.

    ``u`` holds the exact logits u_G + u_B of every aligned row. Platt scaling is fitted on
    the training rows only (docs/design.md, "One training job", step 5); ``probability`` is
    the calibrated probability, ``uncalibrated`` the logistic function of u itself.
    """
    if aligned.y is None:
        raise ProtocolAbort("the bank has no labels")
    y = aligned.y
    split = np.full(len(y), "train", dtype=object)
    split[schedule.validation_rows] = "validation"
    train, valid = schedule.train_rows, schedule.validation_rows
    platt = fit_platt(u[train], y[train])
    p, p_raw = platt.probability(u), sigmoid(u)
    lines = ["id,split,y,probability,uncalibrated"] + [
        f"{i},{s},{int(t)},{q:.10g},{r:.10g}"
        for i, s, t, q, r in zip(aligned.ids, split, y, p, p_raw)
    ]
    atomic_write_text(out / "predictions.csv", "\n".join(lines) + "\n")
    # The bank's own model on its own features: the baseline that grid data must beat.
    p_bank = centralized_lr(z[train], y[train], settings.l2, settings.seed).predict_proba(z)[
        :, 1
    ]
    atomic_write_text(
        out / "bank_only_predictions.csv",
        "\n".join(
            ["id,split,y,probability"]
            + [f"{i},{s},{int(t)},{q:.10g}" for i, s, t, q in zip(aligned.ids, split, y, p_bank)]
        )
        + "\n",
    )
    report: dict[str, Any] = {
        "train": metrics_or_reason(y[train], p[train]),
        "validation": metrics_or_reason(y[valid], p[valid]),
        "uncalibrated": {
            "train": metrics_or_reason(y[train], p_raw[train]),
            "validation": metrics_or_reason(y[valid], p_raw[valid]),
        },
        "calibration": {"method": "platt", **platt.as_dict(),
                        "fitted_on": f"{len(train)} training rows (exact logits)"},
        "bank_only": {
            "train": metrics_or_reason(y[train], p_bank[train]),
            "validation": metrics_or_reason(y[valid], p_bank[valid]),
        },
    }
    atomic_write_text(out / "metrics.json", json.dumps(report, indent=2) + "\n")
    return platt


def write_scores(out: Path, data: PartyData, rows: npt.NDArray[np.intp], p: Float) -> None:
    """``scores.csv``: every ID of the bank's file, scored or ``no grid record``.

    Probability and points at full precision (``repr`` round-trips a float) and the band of
    ``band_of`` with the default scorecard, exactly as ``gridcredit serve`` answers.
    """
    card = Scorecard()
    points = card.points(p)
    bands = band_of(points) if len(points) else np.array([], dtype=str)
    scored = {int(r): (float(q), float(s), str(b))
              for r, q, s, b in zip(rows, p, points, bands)}
    lines = ["id,status,probability,points,band"]
    for i, ent in enumerate(data.ids):
        if i in scored:
            q, s, b = scored[i]
            lines.append(f'{ent},scored,{q!r},{s!r},"{b}"')
        else:
            lines.append(f"{ent},{NO_GRID_RECORD},,,")
    atomic_write_text(out / "scores.csv", "\n".join(lines) + "\n")


def metrics_or_reason(y: Float, p: Float) -> dict[str, Any]:
    """The metric set, or why it is undefined (e.g. one class only in a tiny split)."""
    if len(y) == 0:
        return {"n": 0, "undefined": "empty split"}
    try:
        return dict(metrics.evaluate(y, p))
    except ValueError as exc:
        return {"n": len(y), "undefined": str(exc)}
