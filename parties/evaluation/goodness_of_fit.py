"""Likelihood-based goodness of fit of the source paper's Table 2: -2 log likelihood, the model
chi-square against the null model that predicts the base rate for every row (with its
p-value), and the Cox-Snell and Nagelkerke R^2. On held-out data the model need not beat the
null model, so these can be negative there.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from parties.evaluation.checks import EPS, FloatArray, checked, require_both_classes


def chi2_survival(x: float, df: int) -> float:
    """Upper tail ``P(X >= x)`` of the chi-square distribution with integer ``df``.

    Closed form of the regularised upper incomplete gamma function ``Q(df / 2, x / 2)``, so the
    module needs no scipy: for even ``df`` a finite Poisson sum, for odd ``df`` ``erfc`` plus a
    finite sum. Terms are formed in log space and underflow to 0 for huge ``x``.

    Parameters
    ----------
    x : float
        The statistic; ``x <= 0`` gives 1.
    df : int
        Degrees of freedom, at least 1.

    Returns
    -------
    float
        The p-value, in [0, 1].

    Raises
    ------
    ValueError
        If ``df < 1`` or ``x`` is nan.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if math.isnan(x):
        raise ValueError("chi-square statistic is nan")
    if x <= 0.0:
        return 1.0
    h = x / 2.0
    log_h = math.log(h)
    if df % 2 == 0:
        total = sum(math.exp(-h + i * log_h - math.lgamma(i + 1.0)) for i in range(df // 2))
    else:
        total = math.erfc(math.sqrt(h)) + sum(
            math.exp(-h + (i + 0.5) * log_h - math.lgamma(i + 1.5)) for i in range((df - 1) // 2)
        )
    return min(1.0, total)


def neg_log_likelihood(y: FloatArray, p: FloatArray) -> float:
    q = np.clip(p, EPS, 1.0 - EPS)
    # Select rather than multiply, so a clipped 0 * log(...) never contributes.
    return -float(np.sum(np.where(y == 1.0, np.log(q), np.log1p(-q))))


def null_neg_log_likelihood(n: int, positives: int) -> float:
    # Intercept-only model: every row predicted at the base rate; 0 * ln 0 = 0.
    rate = positives / n
    total = 0.0
    if positives:
        total -= positives * np.log(rate)
    if n - positives:
        total -= (n - positives) * np.log1p(-rate)
    return float(total)


def likelihood_ratio_test(y: npt.ArrayLike, p: npt.ArrayLike, df: int) -> tuple[float, float]:
    """Model chi-square against the base-rate model (Table 2's "Chi-Square") and its p-value.

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad.
    p : array_like
        Predicted probability of bad.
    df : int
        Degrees of freedom: the number of coefficients besides the intercept (15 + 15 features
        in the federated model give 30).

    Returns
    -------
    tuple[float, float]
        ``(chi2, p_value)`` with ``chi2 = -2LL(null) - (-2LL(model))``.

    Raises
    ------
    ValueError
        For invalid inputs or ``df < 1``.
    """
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    labels, probs = checked(y, p)
    chi2 = 2.0 * (
        null_neg_log_likelihood(labels.shape[0], int(labels.sum()))
        - neg_log_likelihood(labels, probs)
    )
    return chi2, chi2_survival(chi2, df)


def pseudo_r2(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[float, float]:
    """Cox-Snell and Nagelkerke R^2 against the base-rate model.

    With ``D = -2 ln L`` of the model and ``D0`` of the null model on ``n`` rows:
    ``R2_CS = 1 - exp((D - D0) / n)`` and ``R2_N = R2_CS / (1 - exp(-D0 / n))``, the latter
    rescaling Cox-Snell so that a perfect model scores 1.

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad.
    p : array_like
        Predicted probability of bad.

    Returns
    -------
    tuple[float, float]
        ``(cox_snell, nagelkerke)``.

    Raises
    ------
    ValueError
        For invalid inputs or single-class ``y`` (where ``D0 = 0`` and Nagelkerke is 0 / 0).
    """
    labels, probs = checked(y, p)
    require_both_classes(labels, "Nagelkerke R^2")
    n = labels.shape[0]
    return pseudo_r2_from(
        n, neg_log_likelihood(labels, probs), null_neg_log_likelihood(n, int(labels.sum()))
    )


def pseudo_r2_from(n: int, nll: float, null_nll: float) -> tuple[float, float]:
    # -expm1(x) = 1 - exp(x), accurate when the model barely differs from the null.
    cox_snell = float(-np.expm1(2.0 * (nll - null_nll) / n))
    return cox_snell, cox_snell / float(-np.expm1(-2.0 * null_nll / n))
