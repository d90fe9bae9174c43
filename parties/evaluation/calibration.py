"""Whether predicted probabilities are right as probabilities: observed vs predicted bad rate
by decile of risk, the Hosmer-Lemeshow test (10 groups), log-loss and the Brier score. Log
terms clip ``p`` to ``[EPS, 1 - EPS]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from parties.evaluation.checks import EPS, FloatArray, SortedScores, checked, sort_scores
from parties.evaluation.goodness_of_fit import chi2_survival, neg_log_likelihood

HL_GROUPS = 10
"""Number of Hosmer-Lemeshow groups ("deciles of risk")."""


@dataclass(frozen=True, slots=True)
class CalibrationTable:
    """The Hosmer-Lemeshow groups, ordered by increasing predicted probability.

    Attributes
    ----------
    count : FloatArray
        Rows per group.
    mean_predicted : FloatArray
        Mean of ``p`` per group.
    observed_rate : FloatArray
        Share of ``y = 1`` per group.
    lower, upper : FloatArray
        Smallest and largest ``p`` per group.
    """

    count: FloatArray
    mean_predicted: FloatArray
    observed_rate: FloatArray
    lower: FloatArray
    upper: FloatArray


def group_ids(p_sorted: FloatArray, groups: int) -> npt.NDArray[np.intp]:
    # Equal-count groups by sorted position, but a tie block never straddles two groups: the
    # cut values are the order statistics at n*k/groups and ties go to the lower group. Groups
    # that end up empty (many ties) are dropped by the caller, which lowers the df.
    n = p_sorted.shape[0]
    cut_pos = np.ceil(np.arange(1, groups) * n / groups).astype(np.intp) - 1
    cuts = p_sorted[np.clip(cut_pos, 0, n - 1)]
    return np.searchsorted(cuts, p_sorted, side="left").astype(np.intp)


def calibration_sorted(s: SortedScores, groups: int) -> CalibrationTable:
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    ids = group_ids(s.p, groups)
    count = np.bincount(ids, minlength=groups).astype(np.float64)
    sum_p = np.bincount(ids, weights=s.p, minlength=groups)
    sum_y = np.bincount(ids, weights=s.y, minlength=groups)
    keep = count > 0
    # ids are non-decreasing along s.p, so a group's first and last rows are its min and max.
    first = np.searchsorted(ids, np.arange(groups), side="left")
    last = np.searchsorted(ids, np.arange(groups), side="right") - 1
    return CalibrationTable(
        count=count[keep],
        mean_predicted=sum_p[keep] / count[keep],
        observed_rate=sum_y[keep] / count[keep],
        lower=s.p[first[keep]],
        upper=s.p[last[keep]],
    )


def hosmer_lemeshow_table(table: CalibrationTable) -> tuple[float, float]:
    g = table.count.shape[0]
    if g < 3:
        raise ValueError(
            f"Hosmer-Lemeshow needs at least 3 groups of distinct probabilities "
            f"(df = groups - 2), got {g}"
        )
    observed = table.observed_rate * table.count
    expected = table.mean_predicted * table.count
    # Clip the group mean like the log terms: a group predicted at exactly 0 or 1 that is
    # contradicted by its labels then contributes a huge term instead of a division by zero.
    pi = np.clip(table.mean_predicted, EPS, 1.0 - EPS)
    statistic = float(np.sum((observed - expected) ** 2 / (table.count * pi * (1.0 - pi))))
    return statistic, chi2_survival(statistic, g - 2)


def calibration_by_decile(
    y: npt.ArrayLike, p: npt.ArrayLike, groups: int = HL_GROUPS
) -> CalibrationTable:
    """Group rows into deciles of predicted risk: the Hosmer-Lemeshow groups.

    Groups have equal counts (within one row) by sorted ``p``; rows with equal ``p`` always
    share a group, so with heavy ties some groups are empty and are left out.

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad.
    p : array_like
        Predicted probability of bad.
    groups : int, default 10
        Number of groups to aim for.

    Returns
    -------
    CalibrationTable
        Per non-empty group: count, mean predicted, observed rate, min and max ``p``.

    Raises
    ------
    ValueError
        For invalid inputs or ``groups < 1``.
    """
    labels, probs = checked(y, p)
    return calibration_sorted(sort_scores(labels, probs), groups)


def hosmer_lemeshow(
    y: npt.ArrayLike, p: npt.ArrayLike, groups: int = HL_GROUPS
) -> tuple[float, float]:
    """Hosmer-Lemeshow goodness-of-fit statistic and its p-value.

    ``H = sum_g (O_g - E_g)^2 / (n_g * pi_g * (1 - pi_g))`` over the groups of
    :func:`calibration_by_decile`, with ``O_g`` observed bads, ``E_g = n_g * pi_g`` expected
    bads and ``pi_g`` the group's mean ``p``; the p-value is the chi^2 survival function with
    ``groups - 2`` degrees of freedom. A large p-value (the paper's "sig") means no evidence
    of misfit.

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad.
    p : array_like
        Predicted probability of bad.
    groups : int, default 10
        Number of groups to aim for.

    Returns
    -------
    tuple[float, float]
        ``(statistic, p_value)``.

    Raises
    ------
    ValueError
        For invalid inputs, or fewer than 3 non-empty groups (e.g. a constant ``p``).
    """
    return hosmer_lemeshow_table(calibration_by_decile(y, p, groups))


def log_loss(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Mean negative log-likelihood (binary cross-entropy), ``p`` clipped to [EPS, 1 - EPS].

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad.
    p : array_like
        Predicted probability of bad.

    Returns
    -------
    float
        ``-mean(y ln p + (1 - y) ln(1 - p))`` in nats.

    Raises
    ------
    ValueError
        For invalid inputs.
    """
    labels, probs = checked(y, p)
    return neg_log_likelihood(labels, probs) / len(labels)


def brier_score(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Mean squared difference between predicted probability and outcome.

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad.
    p : array_like
        Predicted probability of bad.

    Returns
    -------
    float
        ``mean((p - y)^2)``, in [0, 1].

    Raises
    ------
    ValueError
        For invalid inputs.
    """
    labels, probs = checked(y, p)
    return float(np.mean((probs - labels) ** 2))
