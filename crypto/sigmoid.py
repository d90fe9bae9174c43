"""The logistic function, its first-order Taylor form, and the residual shares of mode
``local``.

sigma~(u) = 1/2 + u/4 is the training approximation (source patent; FATE hetero-LR).
The residual d = sigma~(u) - y with u = u_G + u_B is born additively shared: the grid's
share is u_G/4 and the bank's is u_B/4 + 1/2 - y, each encoded in the ring. The Taylor
loss log 2 - y~u/2 + u^2/8 (y~ = 2y - 1) splits into local sums and one cross term
u_G . (u_B/4 - y~/2). Scoring always uses the exact ``sigmoid``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from crypto.ring import Ring, encode

Float = npt.NDArray[np.float64]
LOG2 = math.log(2.0)


def sigmoid(u: Float) -> Float:
    """The exact logistic function, stable for large |u|."""
    out = np.empty_like(u, dtype=np.float64)
    pos = u >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-u[pos]))
    e = np.exp(u[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def sigmoid_taylor(u: Float) -> Float:
    """Plaintext twin of the training approximation: 1/2 + u/4 (not clipped)."""
    return 0.5 + u / 4.0


def residual_share_features(u: Float, frac_bits: int) -> Ring:
    """The feature-only party's share of d: enc(u/4)."""
    return encode(u / 4.0, frac_bits)


def residual_share_label(u: Float, y: Float, frac_bits: int) -> Ring:
    """The label holder's share of d: enc(u/4 + 1/2 - y)."""
    return encode(u / 4.0 + 0.5 - y, frac_bits)


def loss_cross_vector(u: Float, y: Float) -> Float:
    """The label holder's side of the cross term: u_B/4 - y~/2."""
    return u / 4.0 - (2.0 * y - 1.0) / 2.0


def loss_local_features(u: Float) -> float:
    """The feature-only party's local part of the batch Taylor loss: sum u_G^2 / 8."""
    return float(np.dot(u, u)) / 8.0


def loss_local_label(u: Float, y: Float) -> float:
    """The label holder's local part: sum(log 2 - y~ u_B / 2 + u_B^2 / 8)."""
    return float(np.sum(LOG2 - (2.0 * y - 1.0) * u / 2.0 + u * u / 8.0))


def taylor_loss(u: Float, y: Float) -> float:
    """Plaintext twin: sum of log 2 - y~u/2 + u^2/8 over the batch."""
    return float(np.sum(LOG2 - (2.0 * y - 1.0) * u / 2.0 + u * u / 8.0))
