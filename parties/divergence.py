"""A party's own check, in mode ``local``, that training stays inside the fixed-point range.

Each party computes its partial logits u_own = X_own theta_own in float and encodes what
derives from them at f or 2f fraction bits (docs/design.md, "Arithmetic"). The epoch's opened
loss is a 2f-bit sum; with S_own = sum of u_own^2 over the epoch's rows so far, both parties'
parts of it are bounded by Cauchy-Schwarz:

    |grid part| + |bank part| + |cross term| <= S/2 + n log 2 + sqrt(n S)

when S_G, S_B <= S over n rows. Keeping that below half the room, 2^(62 - 2f), gives the
largest S a party may reach, ``square_limit``; a party past it stops the job before encoding,
since its values would wrap silently (or not encode at all). At f = 16 over 24,000 rows that is
an RMS logit of about 300, where a trained credit model has 1 to 3. The coordinator judges the
opened loss itself (``federation.protocol.convergence``); in mode ``shared`` no party sees a
plaintext magnitude until the end, so that judgement is the check there.
Assumes: both parties apply the same limit (it depends only on public numbers).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from federation.protocol.errors import TrainingDiverged
from federation.protocol.messages import Role


def square_limit(frac_bits: int, n_rows: int) -> float:
    """The largest sum of u_own^2 over an epoch of ``n_rows`` rows that keeps every 2f-bit
    sum of the epoch below 2^(62 - 2f), if the peer keeps to it too."""
    room = 2.0 ** (62 - 2 * frac_bits) - math.log(2.0) * n_rows
    if room <= 0:
        return 0.0
    # S/2 + sqrt(n) sqrt(S) = room, a quadratic in sqrt(S).
    return (math.sqrt(n_rows + 2.0 * room) - math.sqrt(n_rows)) ** 2


class LogitGuard:
    """Adds up this party's sum of u_own^2 over an epoch and stops training past the limit."""

    def __init__(self, role: Role, frac_bits: int, n_rows: int, learning_rate: float) -> None:
        self.role, self.frac_bits, self.learning_rate = role, frac_bits, learning_rate
        self.limit = square_limit(frac_bits, n_rows)
        self.epoch, self.rows, self.squares = 0, 0, 0.0

    def start(self, epoch: int) -> None:
        self.epoch, self.rows, self.squares = epoch, 0, 0.0

    def add(self, u: npt.NDArray[np.float64], what: str = "partial logits") -> None:
        """Count one batch of logits; raise ``TrainingDiverged`` past the limit."""
        self.rows += int(u.shape[0])
        self.squares += float(np.dot(u, u))
        if math.isfinite(self.squares) and self.squares <= self.limit:
            return
        rms = math.sqrt(self.squares / max(self.rows, 1))
        raise TrainingDiverged(
            f"training diverged: in epoch {self.epoch} the {self.role}'s {what} reached "
            f"an RMS of {rms:.3g} over {self.rows} rows, beyond what fixed point with "
            f"{self.frac_bits} fraction bits holds; stopped with no model: try a smaller "
            f"--learning-rate (now {self.learning_rate:g})")
