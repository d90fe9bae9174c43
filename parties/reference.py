"""Plaintext twins of the federated training, for tests and baselines.

``taylor_sgd`` runs the same iterations as mode ``local`` on the joined matrix in one
process: same schedule, same Taylor residual, same optimizer. With ``frac_bits`` set it
rounds exactly where the federated protocol encodes (the masks cancel in the ring, so
the federated weights must equal these bit for bit); with ``frac_bits=None`` it is plain
float SGD. ``centralized_lr`` and ``centralized_gbdt`` are the non-federated models the
report compares against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from crypto.ring import Ring, decode, dot, encode, rmatvec, truncate_share, zeros
from crypto.sigmoid import LOG2, residual_share_features, residual_share_label, taylor_loss
from federation.protocol.convergence import Outcome, judge
from federation.protocol.messages import TrainSettings
from federation.protocol.schedule import Schedule
from parties.optim import OptimizerState
from parties.shared_params import (
    DEFAULT_FEATURE_CLIP,
    DEFAULT_FEATURE_FRAC_BITS,
    STEP_FRAC_BITS,
    decay_constants,
    encode_features,
    gradient_shift,
    momentum_constant,
    step_constant,
    wrap_probability,
)

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

Float = npt.NDArray[np.float64]


def _gradient(x: Float, u_grid: Float, u_bank: Float, y: Float, frac_bits: int | None) -> Float:
    if frac_bits is None:
        return np.asarray(x.T @ (0.5 + (u_grid + u_bank) / 4.0 - y) / x.shape[0])
    d = residual_share_features(u_grid, frac_bits) + residual_share_label(u_bank, y, frac_bits)
    return np.asarray(decode(rmatvec(encode(x, frac_bits), d), 2 * frac_bits) / x.shape[0])


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
        if judge(losses, settings.tolerance).outcome is not Outcome.CONTINUE:
            break  # where the coordinator stops the federated job
    return theta_g, theta_b, losses


def centralized_lr(x: Float, y: Float, l2: float, seed: int) -> LogisticRegression:
    """scikit-learn's exact (L-BFGS) logistic regression on joined, standardized rows.

    ``C = 1 / (n * l2)`` matches the per-row mean L2 penalty of the federated objective.
    """
    from sklearn.linear_model import LogisticRegression  # slow import: only where used

    c = 1.0 / (max(l2, 1e-12) * len(y))
    return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y.astype(int))


def centralized_gbdt(x: Float, y: Float, *, trees: int, depth: int, learning_rate: float,
                     bins: int, l2: float, seed: int) -> HistGradientBoostingClassifier:
    """scikit-learn's HistGradientBoostingClassifier on joined rows, with the federated
    model's hyper-parameters: as many trees (no early stopping), the same depth (no leaf
    limit), learning rate, value bins per feature (missing values get their own) and L2.
    ``min_samples_leaf=1``: the federated trees bound a leaf by its hessian sum only
    (``min_child_weight``), not by a row count (scikit-learn's default is 20 rows)."""
    from sklearn.ensemble import HistGradientBoostingClassifier  # slow import

    return HistGradientBoostingClassifier(
        max_iter=trees, max_depth=depth, learning_rate=learning_rate, max_bins=min(bins, 255),
        l2_regularization=l2, max_leaf_nodes=None, early_stopping=False, min_samples_leaf=1,
        random_state=seed).fit(x, y.astype(int))


# -- mode ``shared`` ---------------------------------------------------------------------
@dataclass
class SharedTwin:
    """What ``shared_sgd`` computed: weights, epoch losses and the wrap statistics."""

    theta_grid: Float
    theta_bank: Float
    losses: list[float]
    expected_wrap_failures: float  # exact: sum over truncated elements of |x| / 2^64
    wraps: int  # truncations that actually wrapped in this simulation


@dataclass
class _Truncator:
    """SecureML truncation of a value as if it were shared: a twin of the two shares."""

    rng: np.random.Generator | None
    expected: float = 0.0
    wraps: int = 0

    def __call__(self, x: Ring, shift: int) -> Ring:
        self.expected += float(np.sum(wrap_probability(x)))
        exact = (x.view(np.int64) >> shift).view(np.uint64)
        if self.rng is None:  # deterministic twin: round to nearest
            half = np.array([1 << (shift - 1)], dtype=np.uint64)
            return ((x + half).view(np.int64) >> shift).view(np.uint64)
        x_0 = self.rng.integers(0, 2**64, x.shape, dtype=np.uint64)
        out = truncate_share(0, x_0, shift) + truncate_share(1, x - x_0, shift)
        off = (out - exact).view(np.int64)
        self.wraps += int(np.count_nonzero((off < 0) | (off > 1)))
        return out


def shared_sgd(x_grid: Float, x_bank: Float, y: Float, schedule: Schedule,
               settings: TrainSettings, rng: np.random.Generator | None,
               feature_frac_bits: int = DEFAULT_FEATURE_FRAC_BITS,
               feature_clip: float = DEFAULT_FEATURE_CLIP) -> SharedTwin:
    """Mode ``shared`` in one process, with its fixed point and truncations.

    The same encodings, public constants and truncation points as ``SharedFit``, on the
    joint values. With ``rng`` every truncation splits its value into two uniform shares
    and truncates them as the parties do (unbiased, at most 1 ulp off, wrapping with
    probability |x| / 2^64): the federated weights then differ from these only by the
    draw of those shares. With ``rng=None`` truncations round to nearest. ``x_bank`` must
    carry the column of ones.
    """
    f, f_x, cut = settings.frac_bits, feature_frac_bits, _Truncator(rng)
    rows = schedule.train_rows
    batches = [rows[a:b] for a, b in schedule.batch_bounds]
    x_ring = [encode_features(np.hstack([x_grid, x_bank])[idx], f_x, feature_clip)
              for idx in batches]
    label = [encode(0.5 - y[idx], f) for idx in batches]
    k_g, k = x_grid.shape[1], x_grid.shape[1] + x_bank.shape[1]
    decay = np.concatenate([
        decay_constants(settings.learning_rate, settings.l2, k_g, intercept=False),
        decay_constants(settings.learning_rate, settings.l2, x_bank.shape[1], intercept=True)])
    mu = momentum_constant(settings)
    theta, velocity = zeros(k), zeros(k)
    losses: list[float] = []
    for epoch in range(1, settings.epochs + 1):
        total = encode([schedule.n_train * (LOG2 - 0.5)], 2 * f)
        for batch in schedule.order(epoch):
            x, n = x_ring[int(batch)], len(batches[int(batch)])
            d = cut(x @ theta, f_x + 2) + label[int(batch)]
            total = total + np.array([2], dtype=np.uint64) * dot(d, d)
            grad = cut(d @ x, f_x + gradient_shift(n))
            velocity = cut(mu * velocity + step_constant(settings.learning_rate, n) * grad
                           + decay * theta, STEP_FRAC_BITS)
            theta = theta - velocity
        losses.append(float(decode(total, 2 * f)[0]) / schedule.n_train)
        if judge(losses, settings.tolerance).outcome is not Outcome.CONTINUE:
            break  # where the coordinator stops the federated job
    weights = decode(theta, f)
    return SharedTwin(weights[:k_g], weights[k_g:], losses, cut.expected, cut.wraps)
