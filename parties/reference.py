"""Plaintext twins of the federated training, for tests and baselines.

``taylor_sgd`` runs the same iterations as mode ``local`` on the joined matrix in one
process: same schedule, same Taylor residual, same optimizer. With ``frac_bits`` set it
rounds exactly where the federated protocol encodes (the masks cancel in the ring, so
the federated weights must equal these bit for bit); with ``frac_bits=None`` it is plain
float SGD. ``centralized_lr`` is the non-federated logistic regression the report
compares against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from crypto.ring import decode, encode, rmatvec
from crypto.sigmoid import residual_share_features, residual_share_label, taylor_loss
from federation.messages import TrainSettings
from federation.schedule import Schedule
from parties.optim import OptimizerState

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

Float = npt.NDArray[np.float64]


def _gradient(x: Float, u_grid: Float, u_bank: Float, y: Float, frac_bits: int | None) -> Float:
    if frac_bits is None:
        return x.T @ (0.5 + (u_grid + u_bank) / 4.0 - y) / x.shape[0]
    d = residual_share_features(u_grid, frac_bits) + residual_share_label(u_bank, y, frac_bits)
    return decode(rmatvec(encode(x, frac_bits), d), 2 * frac_bits) / x.shape[0]


def taylor_sgd(x_grid: Float, x_bank: Float, y: Float, schedule: Schedule,
               settings: TrainSettings, frac_bits: int | None) -> tuple[Float, Float, list[float]]:
    """(theta_grid, theta_bank incl. intercept last, mean Taylor loss per epoch).

    ``x_bank`` must already carry the column of ones.
    """
    rows = schedule.train_rows
    batches = [rows[a:b] for a, b in schedule.batch_bounds]
    k_g = x_grid.shape[1]
    pen_b = np.ones(x_bank.shape[1])
    pen_b[-1] = 0.0
    opt_g = OptimizerState(settings.optimizer, settings.learning_rate, settings.l2, settings.l1,
                           settings.momentum, penalized=np.ones(k_g))
    opt_b = OptimizerState(settings.optimizer, settings.learning_rate, settings.l2, settings.l1,
                           settings.momentum, penalized=pen_b)
    theta_g, theta_b = np.zeros(k_g), np.zeros(x_bank.shape[1])
    losses: list[float] = []
    for epoch in range(1, settings.epochs + 1):
        total = 0.0
        for batch in schedule.order(epoch):
            idx = batches[int(batch)]
            xg, xb, yb = x_grid[idx], x_bank[idx], y[idx]
            u_g, u_b = xg @ theta_g, xb @ theta_b
            total += taylor_loss(u_g + u_b, yb)
            g_g = _gradient(xg, u_g, u_b, yb, frac_bits)
            g_b = _gradient(xb, u_g, u_b, yb, frac_bits)
            theta_g, theta_b = opt_g.step(theta_g, g_g), opt_b.step(theta_b, g_b)
        losses.append(total / schedule.n_train)
        if len(losses) > 1 and abs(losses[-2] - losses[-1]) < settings.tolerance:
            break
    return theta_g, theta_b, losses


def centralized_lr(x: Float, y: Float, l2: float, seed: int) -> LogisticRegression:
    """scikit-learn's exact (L-BFGS) logistic regression on joined, standardized rows.

    ``C = 1 / (n * l2)`` matches the per-row mean L2 penalty of the federated objective.
    """
    from sklearn.linear_model import LogisticRegression  # slow import: only where used

    c = 1.0 / (max(l2, 1e-12) * len(y))
    return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y.astype(int))
