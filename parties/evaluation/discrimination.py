"""How well a model ranks bad above good: ROC and AUC (Gini = 2 AUC - 1), the KS curve and
its threshold, and the classification counts at a threshold (a row is flagged bad when
``p >= threshold``). Sort-based and vectorised; metrics needing both classes raise
``ValueError`` for single-class ``y``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from parties.evaluation.checks import (
    FloatArray,
    SortedScores,
    checked,
    require_both_classes,
    sort_scores,
)


@dataclass(frozen=True, slots=True)
class RocCurve:
    """Receiver operating characteristic, one point per distinct predicted probability.

    Attributes
    ----------
    thresholds : FloatArray
        Decreasing; ``thresholds[0] = inf`` (nobody flagged), then each distinct value of ``p``.
    fpr : FloatArray
        Share of goods with ``p >= threshold``; increases from 0 to 1.
    tpr : FloatArray
        Share of bads with ``p >= threshold``; increases from 0 to 1.
    """

    thresholds: FloatArray
    fpr: FloatArray
    tpr: FloatArray


@dataclass(frozen=True, slots=True)
class KsCurve:
    """Kolmogorov-Smirnov separation between the score distributions of bads and goods.

    Attributes
    ----------
    thresholds : FloatArray
        Distinct values of ``p``, decreasing.
    cum_bad : FloatArray
        Share of bads with ``p >= threshold`` (the true-positive rate).
    cum_good : FloatArray
        Share of goods with ``p >= threshold`` (the false-positive rate).
    ks : float
        ``max |cum_bad - cum_good|``, in [0, 1].
    ks_threshold : float
        The threshold where that maximum is reached (the highest one, if several are).
    """

    thresholds: FloatArray
    cum_bad: FloatArray
    cum_good: FloatArray
    ks: float
    ks_threshold: float


def auc_sorted(s: SortedScores) -> float:
    # Mann-Whitney U with average ranks: a tied (bad, good) pair counts one half.
    n = s.p.shape[0]
    ends = np.concatenate((s.starts[1:], [n]))
    block_rank = (s.starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.repeat(block_rank, ends - s.starts)
    rank_sum = float(ranks @ s.y)
    u = rank_sum - s.n_pos * (s.n_pos + 1) / 2.0
    return u / (s.n_pos * s.n_neg)


def roc_sorted(s: SortedScores) -> RocCurve:
    # Bads with p >= v = all bads minus those before v's tie block in ascending order.
    cum_pos = np.concatenate(([0.0], np.cumsum(s.y)))
    pos_below = cum_pos[s.starts]
    neg_below = s.starts - pos_below
    tp = (s.n_pos - pos_below)[::-1]
    fp = (s.n_neg - neg_below)[::-1]
    thresholds = np.concatenate(([np.inf], s.p[s.starts][::-1]))
    tpr = np.concatenate(([0.0], tp / s.n_pos))
    fpr = np.concatenate(([0.0], fp / s.n_neg))
    return RocCurve(thresholds=thresholds, fpr=fpr, tpr=tpr)


def ks_sorted(s: SortedScores) -> KsCurve:
    roc = roc_sorted(s)
    # Drop the (inf, 0, 0) point so that a constant score reports its own value, not inf.
    thresholds, cum_bad, cum_good = roc.thresholds[1:], roc.tpr[1:], roc.fpr[1:]
    gap = np.abs(cum_bad - cum_good)
    best = int(np.argmax(gap))
    return KsCurve(
        thresholds=thresholds,
        cum_bad=cum_bad,
        cum_good=cum_good,
        ks=float(gap[best]),
        ks_threshold=float(thresholds[best]),
    )


def roc_curve(y: npt.ArrayLike, p: npt.ArrayLike) -> RocCurve:
    """ROC curve with one point per distinct probability, ties handled as one point.

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad.
    p : array_like
        Predicted probability of bad.

    Returns
    -------
    RocCurve
        Starts at (0, 0) with threshold ``inf`` and ends at (1, 1).

    Raises
    ------
    ValueError
        For invalid inputs or single-class ``y``.
    """
    labels, probs = checked(y, p)
    require_both_classes(labels, "ROC")
    return roc_sorted(sort_scores(labels, probs))


def roc_auc(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Area under the ROC curve, by the Mann-Whitney U statistic with average ranks.

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad.
    p : array_like
        Predicted probability of bad.

    Returns
    -------
    float
        P(p_bad > p_good) + P(p_bad = p_good) / 2, in [0, 1].

    Raises
    ------
    ValueError
        For invalid inputs or single-class ``y`` (where AUC is undefined).
    """
    labels, probs = checked(y, p)
    require_both_classes(labels, "AUC")
    return auc_sorted(sort_scores(labels, probs))


def ks_curve(y: npt.ArrayLike, p: npt.ArrayLike) -> KsCurve:
    """Cumulative shares of bads and goods above each threshold, and the KS statistic.

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad.
    p : array_like
        Predicted probability of bad.

    Returns
    -------
    KsCurve
        Equal to the two-sample KS statistic of ``p`` among bads versus goods.

    Raises
    ------
    ValueError
        For invalid inputs or single-class ``y``.
    """
    labels, probs = checked(y, p)
    require_both_classes(labels, "KS")
    return ks_sorted(sort_scores(labels, probs))


def classification_at(
    y: npt.ArrayLike, p: npt.ArrayLike, threshold: float = 0.5
) -> dict[str, float]:
    """Accuracy, precision, recall and F1 with rows flagged bad when ``p >= threshold``.

    Precision is reported as 0 when nobody is flagged, and F1 as 0 when precision and recall
    are both 0 (scikit-learn's ``zero_division=0``).

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad.
    p : array_like
        Predicted probability of bad.
    threshold : float, default 0.5
        Cut-off in [0, 1]; the paper's default is 0.5.

    Returns
    -------
    dict[str, float]
        Keys ``accuracy``, ``precision``, ``recall``, ``f1``, ``flagged``.

    Raises
    ------
    ValueError
        For invalid inputs or a threshold outside [0, 1]. Recall needs at least one bad.
    """
    labels, probs = checked(y, p)
    return classification(labels, probs, threshold)


def classification(y: FloatArray, p: FloatArray, threshold: float) -> dict[str, float]:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    flagged = p >= threshold
    bad = y == 1.0
    tp = int(np.count_nonzero(flagged & bad))
    n_flagged = int(np.count_nonzero(flagged))
    n_bad = int(np.count_nonzero(bad))
    if n_bad == 0:
        raise ValueError("recall needs at least one positive label, got none")
    correct = int(np.count_nonzero(flagged == bad))
    precision = tp / n_flagged if n_flagged else 0.0
    recall = tp / n_bad
    f1 = 2.0 * precision * recall / (precision + recall) if tp else 0.0
    return {
        "accuracy": correct / y.shape[0],
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "flagged": float(n_flagged),
    }
