"""When training stops: convergence and divergence, judged from the opened epoch losses only.

The coordinator sees one number per epoch, the mean Taylor loss of the training rows,
L = mean(log 2 - y~u/2 + u^2/8) (docs/design.md, "Training, mode local", step 6). Three facts
about it decide (docs/design.md, "One training job", step 4):

- An untrained model (theta = 0) has L = log 2. An epoch loss above ``CEILING`` = 2 log 2 does
  twice as badly as no model at all: the steps overshoot.
- Each row's Taylor loss is at least log 2 - 1/2 (at u = 2 y~). An opened loss below that, or
  one that is not finite, can only come from fixed-point values that wrapped around the ring.
- Gradient steps of a fixed size leave L jittering around its floor (about 1e-4 on 24,000
  rows), so the change between two epochs says little; windows of ``WINDOW`` epochs do.

After epoch e, with losses L_1 .. L_e:

1. Diverged if L_e is not finite, below log 2 - 1/2 or above 2 log 2 (overflow, overshoot).
2. Diverged if every loss of the last ``WINDOW`` epochs is more than ``RISE`` (10 %) above
   the best loss before them: the loss rose and stayed up.
3. Converged if ``tolerance`` > 0, e > ``WINDOW`` and the best loss of the last ``WINDOW``
   epochs improves on the best before them by less than ``tolerance`` (relative).
4. Otherwise go on (the epoch limit is the caller's).

Pure: numbers in, a verdict out; the coordinator and the plaintext twins share it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

LOG2 = math.log(2.0)
FLOOR = LOG2 - 0.5  # the Taylor loss's minimum per row
FLOOR_SLACK = 1e-3  # fixed-point rounding of the opened sum is far below this
CEILING = 2.0 * LOG2
WINDOW = 5
RISE = 0.10


class Outcome(StrEnum):
    CONTINUE = "continue"
    CONVERGED = "converged"
    DIVERGED = "diverged"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the losses so far say, and why, in words for the user."""

    outcome: Outcome
    reason: str = ""


def judge(losses: Sequence[float], tolerance: float, window: int = WINDOW,
          first_epoch: int = 1) -> Verdict:
    """Apply the rules of the module docstring to the mean epoch losses so far.

    Parameters
    ----------
    losses
        Mean Taylor loss per epoch, oldest first (at least one).
    tolerance
        Relative improvement over ``window`` epochs below which training has converged;
        0 never stops early.
    window
        Epochs per window (at least 1).
    first_epoch
        The number of the epoch of ``losses[0]`` (a resumed job's first new epoch), for the
        reason's wording only.
    """
    if not losses or window < 1:
        raise ValueError(f"need at least one loss and a window >= 1, got {len(losses)}, {window}")
    last, e = float(losses[-1]), first_epoch + len(losses) - 1
    if not math.isfinite(last):
        return Verdict(Outcome.DIVERGED, f"the epoch {e} loss is {last}: fixed-point values "
                                         "overflowed")
    if last < FLOOR - FLOOR_SLACK:
        return Verdict(Outcome.DIVERGED, f"the epoch {e} loss {last:.4g} is below the Taylor "
                                         f"loss's minimum {FLOOR:.4f}: fixed-point values "
                                         "overflowed")
    if last > CEILING:
        return Verdict(Outcome.DIVERGED, f"the epoch {e} loss rose to {last:.4g}, more than "
                                         f"twice the untrained model's {LOG2:.4f}")
    if len(losses) <= window:
        return Verdict(Outcome.CONTINUE)
    before, recent = min(losses[:-window]), min(losses[-window:])
    if recent > (1.0 + RISE) * before:
        return Verdict(Outcome.DIVERGED, f"the loss stayed above {recent:.4f} for the last "
                                         f"{window} epochs, more than {RISE:.0%} above the "
                                         f"best earlier epoch's {before:.4f}")
    gain = (before - recent) / before
    if tolerance > 0 and gain < tolerance:
        return Verdict(Outcome.CONVERGED, f"converged at epoch {e}: the best loss of the last "
                                          f"{window} epochs improved by {max(gain, 0.0):.3%}, "
                                          f"less than the tolerance {tolerance:.3%}")
    return Verdict(Outcome.CONTINUE)
