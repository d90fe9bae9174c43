"""When training stops: convergence and divergence from the opened epoch losses alone.

The sequences are mean epoch losses of real runs of the plaintext twin of mode shared
(batch 256, SGD, L2 1e-3) on the bundled FATE data and the synthetic demo.
"""

from __future__ import annotations

import math

import pytest

from federation.protocol.convergence import CEILING, FLOOR, WINDOW, Outcome, judge

# default_credit at learning rate 0.15: flat after epoch 2, jitter about 1e-4 (the old rule,
# |L_e - L_e-1| < 1e-5, never fired in 60 epochs).
DEFAULT_CREDIT = [0.52292, 0.49601, 0.49591, 0.49580, 0.49575, 0.49586, 0.49596, 0.49594,
                  0.49571, 0.49567, 0.49595, 0.49573]
# the synthetic demo (3,000 enterprises) at 0.15: still falling for a dozen epochs.
DEMO = [0.59313, 0.49103, 0.44548, 0.42034, 0.40677, 0.39960, 0.39529, 0.39268, 0.39153,
        0.39074]
# default_credit at learning rate 1: noisy, but not diverging (validation AUC 0.70).
NOISY = [0.51253, 0.50851, 0.50340, 0.50472, 0.50489, 0.50951, 0.50725, 0.51270, 0.50446,
         0.50812]


def first_stop(losses: list[float], tolerance: float = 1e-3) -> tuple[int, Outcome] | None:
    for e in range(1, len(losses) + 1):
        verdict = judge(losses[:e], tolerance)
        if verdict.outcome is not Outcome.CONTINUE:
            return e, verdict.outcome
    return None


def test_a_flat_jittering_loss_converges_where_the_absolute_rule_never_did() -> None:
    assert all(abs(a - b) >= 1e-5 for a, b in zip(DEFAULT_CREDIT, DEFAULT_CREDIT[1:]))
    assert first_stop(DEFAULT_CREDIT) == (7, Outcome.CONVERGED)
    reason = judge(DEFAULT_CREDIT[:7], 1e-3).reason
    assert reason.startswith("converged at epoch 7") and "tolerance 0.100%" in reason


def test_a_falling_loss_goes_on() -> None:
    assert first_stop(DEMO) is None


def test_tolerance_zero_never_stops_early() -> None:
    assert first_stop(DEFAULT_CREDIT * 3, tolerance=0.0) is None


def test_noise_at_a_large_step_is_not_divergence() -> None:
    assert first_stop(NOISY, tolerance=0.0) is None


@pytest.mark.parametrize("losses,fragment", [
    ([0.6, math.nan], "loss is nan: fixed-point values overflowed"),
    ([0.6, math.inf], "loss is inf"),
    ([75108.78, -18609.37], "rose to 7.511e+04"),  # default_credit at 1.5, epoch 1 already
    ([0.52, -18609.37], "below the Taylor loss's minimum 0.1931: fixed-point values overflowed"),
    ([FLOOR - 0.01], "below the Taylor loss's minimum"),
    ([1.39449, 36.84284], "epoch 1 loss rose to 1.394, more than twice"),  # breast at 1
])
def test_overflow_and_overshoot_are_divergence_at_once(losses: list[float],
                                                      fragment: str) -> None:
    stop = first_stop(losses)
    assert stop is not None and stop[1] is Outcome.DIVERGED
    assert stop[0] <= len(losses)
    assert fragment in judge(losses[:stop[0]], 1e-3).reason


def test_the_floor_and_ceiling_themselves_are_legal() -> None:
    assert judge([FLOOR], 1e-3).outcome is Outcome.CONTINUE
    assert judge([CEILING], 1e-3).outcome is Outcome.CONTINUE


def test_a_loss_that_rises_and_stays_up_for_a_window_is_divergence() -> None:
    losses = [0.60, 0.50, 0.45] + [0.45 * 1.12 + 0.01 * i for i in range(WINDOW)]
    assert first_stop(losses, tolerance=0.0) == (len(losses), Outcome.DIVERGED)
    reason = judge(losses, 0.0).reason
    assert f"for the last {WINDOW} epochs, more than 10% above" in reason
    # One good epoch inside the window is enough to go on.
    losses[-2] = 0.46
    assert first_stop(losses, tolerance=0.0) is None


def test_epochs_are_numbered_from_a_resumed_start() -> None:
    assert "epoch 12 loss is nan" in judge([0.5, math.nan], 1e-3, first_epoch=11).reason


def test_no_loss_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        judge([], 1e-3)
