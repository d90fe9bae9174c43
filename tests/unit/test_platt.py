"""Platt scaling of the bank's logits: the fit against a general optimizer, and its edges."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from parties.evaluation.calibration import log_loss
from parties.evaluation.platt import Platt, fit_platt


def _sample(n: int, slope: float, intercept: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(slope * u + intercept)))).astype(float)
    return u, y


@pytest.mark.parametrize("slope,intercept,seed", [(1.6, 0.3, 1), (0.5, -2.0, 2), (4.0, 1.0, 3)])
def test_fit_is_the_minimum_of_platts_objective(slope: float, intercept: float,
                                               seed: int) -> None:
    u, y = _sample(3000, slope, intercept, seed)
    got = fit_platt(u, y)
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def objective(w: np.ndarray) -> float:
        z = w[0] * u + w[1]
        return float(np.sum(np.logaddexp(0.0, z) - t * z))

    ref = minimize(objective, [0.0, 0.0], method="BFGS", options={"gtol": 1e-9}).x
    assert got.slope == pytest.approx(ref[0], abs=1e-5)
    assert got.intercept == pytest.approx(ref[1], abs=1e-5)
    assert got.slope == pytest.approx(slope, rel=0.15)  # and near the truth


def test_taylor_sized_logits_are_rescaled_and_log_loss_falls() -> None:
    u, y = _sample(5000, 1.0, -1.5, 4)
    shrunk = 0.6 * u - 0.4  # the shape a Taylor-loss fit leaves: logits too small, offset
    before = log_loss(y, 1.0 / (1.0 + np.exp(-shrunk)))
    platt = fit_platt(shrunk, y)
    after = log_loss(y, platt.probability(shrunk))
    assert after < before - 0.005
    assert platt.slope == pytest.approx(1 / 0.6, rel=0.1)


def test_separable_logits_still_have_a_finite_fit() -> None:
    u = np.array([-3.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0])
    y = (u > 0).astype(float)
    platt = fit_platt(u, y)
    assert np.isfinite(platt.slope) and 0 < platt.slope < 50
    p = platt.probability(u)
    assert ((p > 0.5) == (y == 1)).all() and (p > 0).all() and (p < 1).all()


def test_identity_changes_nothing_and_round_trips() -> None:
    u = np.linspace(-5, 5, 11)
    np.testing.assert_allclose(Platt().probability(u), 1 / (1 + np.exp(-u)))
    platt = Platt(1.5, -0.25)
    assert Platt(**platt.as_dict()) == platt


@pytest.mark.parametrize("u,y,fragment", [
    ([0.1, 0.2], [0, 0], "both classes"),
    ([0.1, np.nan], [0, 1], "finite"),
    ([0.1, 0.2], [0, 2], "0 or 1"),
    ([0.1], [0, 1], "one logit per label"),
])
def test_bad_input_is_refused(u: list[float], y: list[float], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        fit_platt(u, y)
