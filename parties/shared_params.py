"""The public fixed-point parameters of mode ``shared``: constants, checks, the wrap bound.

Pure functions of the job's settings and sizes (both parties compute the same numbers):
the step, decay and momentum constants at ``STEP_FRAC_BITS``, the features' encoding, the
settings mode ``shared`` accepts, and :class:`WrapBudget`, the reported upper bound on the
expected number of truncation wraps (docs/design.md, "Training, mode shared").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crypto.ring import Ring, encode
from crypto.sigmoid import LOG2
from federation.protocol.errors import ConfigError
from federation.protocol.messages import (
    Optimizer,
    Role,
    TrainSettings,
)

Float = npt.NDArray[np.float64]
Tensors = dict[str, npt.NDArray[np.generic]]

REVEAL_CHOICES = ("own", "none")
DEFAULT_FEATURE_FRAC_BITS = 8
DEFAULT_FEATURE_CLIP = 8.0
# f_C: fraction bits of the public step constants. The update's truncated value is the step
# V at f + f_C bits; 20 keeps lr l2 to 3 significant digits at lr l2 ~ 1e-4 and a wrap of
# a step of size 0.1 at p ~ 2^-29.
STEP_FRAC_BITS = 20
PARTY_INDEX = {Role.GRID: 0, Role.BANK: 1}
TWO = np.array([2], dtype=np.uint64)
FOUR = np.array([4], dtype=np.uint64)


def gradient_shift(n: int) -> int:
    """a = floor(log2 n): X^T d is divided by 2^a in its truncation, the rest by C_g."""
    return n.bit_length() - 1


def step_constant(learning_rate: float, n: int) -> Ring:
    """C_g = round(lr 2^a / n 2^f_C), so C_g (X^T d / 2^a) = lr X^T d / n at f + f_C bits."""
    return encode([learning_rate * 2.0 ** gradient_shift(n) / n], STEP_FRAC_BITS)


def decay_constants(learning_rate: float, l2: float, k: int, intercept: bool) -> Ring:
    """C_l2 = round(lr l2 2^f_C) per weight; 0 for the intercept (the bank's last)."""
    c = np.full(k, learning_rate * l2)
    if intercept:
        c[-1] = 0.0
    return encode(c, STEP_FRAC_BITS)


def momentum_constant(settings: TrainSettings) -> Ring:
    """C_mu = round(mu 2^f_C) for momentum, 0 for SGD."""
    mu = settings.momentum if settings.optimizer is Optimizer.MOMENTUM else 0.0
    return encode([mu], STEP_FRAC_BITS)


def encode_features(x: Float, frac_bits: int, clip: float) -> Ring:
    """Clip to [-clip, clip] and encode with the features' own (few) fraction bits."""
    return encode(np.clip(x, -clip, clip), frac_bits)


def wrap_probability(x: Ring) -> Float:
    """docs/design.md: a uniformly shared x truncates wrongly with probability |x| / 2^64."""
    return np.abs(np.asarray(x, dtype=np.uint64).view(np.int64).astype(np.float64)) / 2.0**64


def check_shared_settings(settings: TrainSettings, f_x: int, clip: float, reveal: str) -> None:
    """Refuse what mode ``shared`` does not do, with the option's name."""
    if settings.optimizer not in (Optimizer.SGD, Optimizer.MOMENTUM):
        raise ConfigError(f"mode shared supports optimizer sgd or momentum, got "
                          f"{settings.optimizer.value}")
    if settings.l1 != 0.0:
        raise ConfigError(f"mode shared supports L2 only, got l1 = {settings.l1:g}")
    if reveal not in REVEAL_CHOICES:
        raise ConfigError(f"reveal weights must be one of {REVEAL_CHOICES}, got {reveal!r}")
    if not 1 <= f_x <= 24:
        raise ConfigError(f"feature fraction bits must be in [1, 24], got {f_x}")
    if not clip >= 1.0:
        raise ConfigError(f"feature clip must be >= 1 (the intercept column is 1), got {clip}")
    if not 8 <= settings.frac_bits <= 28 or settings.frac_bits + max(f_x, STEP_FRAC_BITS) > 48:
        raise ConfigError(f"frac bits {settings.frac_bits} with feature frac bits {f_x}: need "
                          f"8 <= f <= 28 and f + max(f_x, {STEP_FRAC_BITS}) <= 48")


@dataclass
class WrapBudget:
    """An upper bound on the expected number of truncation wraps, from public numbers.

    The parties never see a truncated value x, but each epoch's opened Taylor loss bounds
    them: S = sum d^2 = (L - n (log 2 - 1/2)) / 2, sum |d| <= sqrt(n S) (Cauchy-Schwarz),
    |u| <= 4 |d| + 2, sum_j |X_j^T d| <= k clip sum |d|. The steps V_t = mu V_t-1 + D_t with
    |D_t| <= lr |X^T d| / n + lr l2 |theta_t| and |theta_t| <= the sum of earlier |V| give
    sum_t |V_t| <= (mu |V_0| + sum_t |D_t|) / (1 - mu). Each truncated element adds
    |x| 2^bits / 2^64 (docs/design.md). Both parties compute the same number.
    """

    frac_bits: int
    feature_frac_bits: int
    clip: float
    n_columns: int  # both parties' columns, the intercept included
    learning_rate: float
    l2: float
    momentum: float
    smallest_batch: int
    total: float = 0.0
    _steps_before: float = 0.0  # sum of |V|_1 over earlier epochs: bounds |theta|_1
    _velocity: float = 0.0  # bound on |V|_1 carried into the next epoch

    def add_epoch(self, mean_loss: float, n_rows: int, n_iter: int) -> float:
        """Add one epoch from its opened mean loss; returns the run's bound so far."""
        squares = max(0.0, (mean_loss * n_rows - n_rows * (LOG2 - 0.5)) / 2.0)
        abs_d = math.sqrt(n_rows * squares)
        forward = 4.0 * abs_d + 2.0 * n_rows
        backward = self.n_columns * self.clip * abs_d
        decay = self.learning_rate * self.l2 * n_iter
        gradient = self.learning_rate / self.smallest_batch * backward
        room = 1.0 - self.momentum - decay
        steps = math.inf if room <= 0 else (
            self.momentum * self._velocity + gradient + decay * self._steps_before) / room
        drives = gradient + decay * (self._steps_before + steps)
        self._velocity = self.momentum ** n_iter * self._velocity + drives
        self._steps_before += steps
        wide = 2.0 ** (self.frac_bits + self.feature_frac_bits - 64)
        self.total += (forward + backward) * wide + steps * 2.0 ** (
            self.frac_bits + STEP_FRAC_BITS - 64)
        return self.total
