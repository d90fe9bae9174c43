"""Platt scaling: one slope and one intercept that turn a model's logits into calibrated
probabilities, p = sigma(slope * u + intercept).

Training on the first-order Taylor loss finds a good direction but a scale and offset that
the exact logistic loss would not choose (its logits come out too small). The bank refits
those two numbers on its own exact logits of the training rows (docs/design.md, "One
training job", step 5):

1. Targets as Platt proposed, so the fit exists even when u separates the classes:
   t = (N_+ + 1) / (N_+ + 2) for y = 1 and t = 1 / (N_- + 2) for y = 0.
2. Minimize F(a, b) = sum log(1 + e^z) - t z with z = a u + b, from a = 1, b = 0 (the
   model as trained), by Newton steps with backtracking (F is convex; its Hessian is
   sum sigma(z)(1 - sigma(z)) [u^2 u; u 1]), as in Lin, Lin and Weng's robust version.

Pure: arrays in, two numbers out. Assumes labels 0/1 with both classes present.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crypto.sigmoid import sigmoid

Float = npt.NDArray[np.float64]
MAX_STEPS = 100
GRADIENT_TOLERANCE = 1e-10  # per row


@dataclass(frozen=True, slots=True)
class Platt:
    """p = sigma(slope * u + intercept); slope 1, intercept 0 changes nothing."""

    slope: float = 1.0
    intercept: float = 0.0

    def probability(self, u: npt.ArrayLike) -> Float:
        """Calibrated probabilities of the logits ``u``."""
        return sigmoid(self.slope * np.asarray(u, dtype=np.float64) + self.intercept)

    def as_dict(self) -> dict[str, float]:
        return {"slope": self.slope, "intercept": self.intercept}


def _objective(z: Float, t: Float) -> float:
    return float(np.sum(np.logaddexp(0.0, z) - t * z))


def fit_platt(u: npt.ArrayLike, y: npt.ArrayLike) -> Platt:
    """Fit the slope and intercept on logits ``u`` with labels ``y`` (the training rows).

    Raises
    ------
    ValueError
        If ``u`` and ``y`` differ in length, ``u`` is not finite, ``y`` is not 0/1 or lacks
        a class.
    """
    logits = np.asarray(u, dtype=np.float64)
    labels = np.asarray(y, dtype=np.float64)
    if logits.ndim != 1 or logits.shape != labels.shape:
        raise ValueError(f"need one logit per label, got shapes {logits.shape}, {labels.shape}")
    if not np.isfinite(logits).all():
        raise ValueError("logits must be finite to calibrate")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    n_pos = float(labels.sum())
    n_neg = labels.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("calibration needs both classes among the training rows")
    t = np.where(labels == 1.0, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    w = np.array([1.0, 0.0])
    design = np.column_stack([logits, np.ones_like(logits)])
    value = _objective(design @ w, t)
    for _ in range(MAX_STEPS):
        q = sigmoid(design @ w)
        gradient = design.T @ (q - t)
        if float(np.max(np.abs(gradient))) < GRADIENT_TOLERANCE * labels.shape[0]:
            break
        hessian = (design * (q * (1.0 - q))[:, None]).T @ design + 1e-12 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-10:  # backtracking: Newton may overshoot far from the optimum
            trial = w - scale * step
            trial_value = _objective(design @ trial, t)
            if trial_value <= value + 1e-4 * scale * float(gradient @ -step):
                break
            scale /= 2.0
        else:
            break  # no descent left at machine precision: w is the optimum
        w, value = trial, trial_value
    return Platt(float(w[0]), float(w[1]))
