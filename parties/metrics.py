"""Evaluation metrics a bank's credit-risk team expects of a default-probability model.

Arrays in, numbers out: no I/O, no logging, no global state. The set follows Table 2 of the
source paper (model chi-square, Hosmer-Lemeshow significance, -2 log likelihood, Cox-Snell and
Nagelkerke R^2) plus the discrimination and classification metrics of issue 5 (AUC, Gini, KS,
accuracy / precision / recall / F1, log-loss, Brier score).

Assumptions and conventions:

- ``y`` is the label, 1 = bad (overdue repayment), 0 = good; ``p`` is the predicted probability
  that ``y = 1``. Both are 1-D and of equal length; ``p`` is finite and in [0, 1].
- A row is flagged as bad when ``p >= threshold`` (the paper's default threshold is 0.5). The KS
  threshold follows the same rule.
- Log terms use ``p`` clipped to ``[EPS, 1 - EPS]``, so a confident wrong prediction costs
  about 34.5 nats instead of infinity.
- The null model of the likelihood-ratio statistics predicts the base rate ``mean(y)`` for
  every row. On held-out data the model need not beat it, so the model chi-square and the
  R^2 values can be negative there; on the training data of a fitted logistic regression they
  are not.
- Metrics that need both classes (AUC, Gini, KS, the R^2 values) raise ``ValueError`` for
  single-class ``y`` rather than return nan; so does ``evaluate``.
- Everything is vectorised and sort-based: ``evaluate`` sorts once and runs in about a second
  on 1M rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

EPS = 1e-15
"""Clipping bound for ``p`` in log terms (the value scikit-learn used before version 1.5)."""

HL_GROUPS = 10
"""Number of Hosmer-Lemeshow groups ("deciles of risk")."""


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


@dataclass(frozen=True, slots=True)
class _Sorted:
    """Labels and probabilities sorted by increasing ``p``, with tie blocks located."""

    y: FloatArray
    p: FloatArray
    starts: npt.NDArray[np.intp]  # first index of each block of equal p
    n_pos: int
    n_neg: int


def check_labels(y: npt.ArrayLike) -> FloatArray:
    """Validate binary labels and return them as a float64 vector.

    Parameters
    ----------
    y : array_like
        1-D, non-empty, every value exactly 0 or 1 (bool, int or float).

    Returns
    -------
    FloatArray
        A float64 copy of ``y``.

    Raises
    ------
    ValueError
        If ``y`` is not 1-D, is empty, or holds a value other than 0 and 1.
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("labels are empty")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"labels must be numeric 0/1, got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    bad = (out != 0.0) & (out != 1.0)
    if bad.any():
        found = np.unique(out[bad])[:5]
        raise ValueError(f"labels must be 0 or 1, found {found.tolist()}")
    return out


def check_probabilities(p: npt.ArrayLike, n: int) -> FloatArray:
    """Validate predicted probabilities against ``n`` labels and return them as float64.

    Parameters
    ----------
    p : array_like
        1-D, length ``n``, finite, in [0, 1].
    n : int
        Number of labels ``p`` must match.

    Returns
    -------
    FloatArray
        A float64 copy of ``p``.

    Raises
    ------
    ValueError
        On a shape or length mismatch, a nan or infinite value, or a value outside [0, 1].
    """
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"probabilities must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"length mismatch: {n} labels but {arr.shape[0]} probabilities")
    if not np.isfinite(arr).all():
        raise ValueError(f"probabilities must be finite, {int((~np.isfinite(arr)).sum())} are not")
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError(
            f"probabilities must be in [0, 1], got range [{arr.min():.6g}, {arr.max():.6g}]"
        )
    return arr


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


def _checked(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    labels = check_labels(y)
    return labels, check_probabilities(p, labels.shape[0])


def _require_both_classes(y: FloatArray, metric: str) -> None:
    positives = int(y.sum())
    if positives == 0 or positives == y.shape[0]:
        raise ValueError(
            f"{metric} needs both classes in y, got {positives} positives out of {y.shape[0]}"
        )


def _sort(y: FloatArray, p: FloatArray) -> _Sorted:
    # A stable sort makes every result independent of the platform's quicksort choices.
    order = np.argsort(p, kind="stable")
    p_s = p[order]
    y_s = y[order]
    change = np.flatnonzero(np.diff(p_s)) + 1
    starts = np.concatenate(([0], change)).astype(np.intp)
    n_pos = int(y_s.sum())
    return _Sorted(y=y_s, p=p_s, starts=starts, n_pos=n_pos, n_neg=y_s.shape[0] - n_pos)


def _auc_sorted(s: _Sorted) -> float:
    # Mann-Whitney U with average ranks: a tied (bad, good) pair counts one half.
    n = s.p.shape[0]
    ends = np.concatenate((s.starts[1:], [n]))
    block_rank = (s.starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.repeat(block_rank, ends - s.starts)
    rank_sum = float(ranks @ s.y)
    u = rank_sum - s.n_pos * (s.n_pos + 1) / 2.0
    return u / (s.n_pos * s.n_neg)


def _roc_sorted(s: _Sorted) -> RocCurve:
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


def _ks_sorted(s: _Sorted) -> KsCurve:
    roc = _roc_sorted(s)
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


def _group_ids(p_sorted: FloatArray, groups: int) -> npt.NDArray[np.intp]:
    # Equal-count groups by sorted position, but a tie block never straddles two groups: the
    # cut values are the order statistics at n*k/groups and ties go to the lower group. Groups
    # that end up empty (many ties) are dropped by the caller, which lowers the df.
    n = p_sorted.shape[0]
    cut_pos = np.ceil(np.arange(1, groups) * n / groups).astype(np.intp) - 1
    cuts = p_sorted[np.clip(cut_pos, 0, n - 1)]
    return np.searchsorted(cuts, p_sorted, side="left").astype(np.intp)


def _calibration_sorted(s: _Sorted, groups: int) -> CalibrationTable:
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    ids = _group_ids(s.p, groups)
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


def _hosmer_lemeshow_table(table: CalibrationTable) -> tuple[float, float]:
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
    labels, probs = _checked(y, p)
    _require_both_classes(labels, "ROC")
    return _roc_sorted(_sort(labels, probs))


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
    labels, probs = _checked(y, p)
    _require_both_classes(labels, "AUC")
    return _auc_sorted(_sort(labels, probs))


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
    labels, probs = _checked(y, p)
    _require_both_classes(labels, "KS")
    return _ks_sorted(_sort(labels, probs))


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
    labels, probs = _checked(y, p)
    return _calibration_sorted(_sort(labels, probs), groups)


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
    return _hosmer_lemeshow_table(calibration_by_decile(y, p, groups))


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
    labels, probs = _checked(y, p)
    return _neg_log_likelihood(labels, probs) / len(labels)


def _neg_log_likelihood(y: FloatArray, p: FloatArray) -> float:
    q = np.clip(p, EPS, 1.0 - EPS)
    # Select rather than multiply, so a clipped 0 * log(...) never contributes.
    return -float(np.sum(np.where(y == 1.0, np.log(q), np.log1p(-q))))


def _null_neg_log_likelihood(n: int, positives: int) -> float:
    # Intercept-only model: every row predicted at the base rate; 0 * ln 0 = 0.
    rate = positives / n
    total = 0.0
    if positives:
        total -= positives * np.log(rate)
    if n - positives:
        total -= (n - positives) * np.log1p(-rate)
    return float(total)


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
    labels, probs = _checked(y, p)
    return float(np.mean((probs - labels) ** 2))


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
    labels, probs = _checked(y, p)
    chi2 = 2.0 * (
        _null_neg_log_likelihood(labels.shape[0], int(labels.sum()))
        - _neg_log_likelihood(labels, probs)
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
    labels, probs = _checked(y, p)
    _require_both_classes(labels, "Nagelkerke R^2")
    n = labels.shape[0]
    return _pseudo_r2(
        n, _neg_log_likelihood(labels, probs), _null_neg_log_likelihood(n, int(labels.sum()))
    )


def _pseudo_r2(n: int, nll: float, null_nll: float) -> tuple[float, float]:
    # -expm1(x) = 1 - exp(x), accurate when the model barely differs from the null.
    cox_snell = float(-np.expm1(2.0 * (nll - null_nll) / n))
    return cox_snell, cox_snell / float(-np.expm1(-2.0 * null_nll / n))


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
    labels, probs = _checked(y, p)
    return _classification(labels, probs, threshold)


def _classification(y: FloatArray, p: FloatArray, threshold: float) -> dict[str, float]:
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


def evaluate(y: npt.ArrayLike, p: npt.ArrayLike, threshold: float = 0.5) -> dict[str, float]:
    """Every metric of the evaluation report, from one sort of ``p``.

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad; both classes must occur.
    p : array_like
        Predicted probability of bad.
    threshold : float, default 0.5
        Cut-off for the classification metrics (flag when ``p >= threshold``).

    Returns
    -------
    dict[str, float]
        ``n``, ``positives``, ``base_rate``, ``threshold``, ``auc``, ``gini`` (``2 AUC - 1``),
        ``ks``, ``ks_threshold``, ``accuracy``, ``precision``, ``recall``, ``f1``, ``flagged``,
        ``log_loss``, ``brier``, ``hosmer_lemeshow``, ``hosmer_lemeshow_p``,
        ``hosmer_lemeshow_groups``, ``minus_2_log_likelihood``,
        ``null_minus_2_log_likelihood``, ``model_chi2`` (their difference), ``cox_snell_r2``,
        ``nagelkerke_r2``.

    Raises
    ------
    ValueError
        For invalid inputs, single-class ``y``, a threshold outside [0, 1], or fewer than 3
        Hosmer-Lemeshow groups (a constant or nearly constant ``p``).
    """
    labels, probs = _checked(y, p)
    _require_both_classes(labels, "evaluate")
    s = _sort(labels, probs)
    n = labels.shape[0]
    auc = _auc_sorted(s)
    ks = _ks_sorted(s)
    table = _calibration_sorted(s, HL_GROUPS)
    hl, hl_p = _hosmer_lemeshow_table(table)
    nll = _neg_log_likelihood(labels, probs)
    null_nll = _null_neg_log_likelihood(n, s.n_pos)
    cox_snell, nagelkerke = _pseudo_r2(n, nll, null_nll)
    return {
        "n": float(n),
        "positives": float(s.n_pos),
        "base_rate": s.n_pos / n,
        "threshold": float(threshold),
        "auc": auc,
        "gini": 2.0 * auc - 1.0,
        "ks": ks.ks,
        "ks_threshold": ks.ks_threshold,
        **_classification(labels, probs, threshold),
        "log_loss": nll / n,
        "brier": float(np.mean((probs - labels) ** 2)),
        "hosmer_lemeshow": hl,
        "hosmer_lemeshow_p": hl_p,
        "hosmer_lemeshow_groups": float(table.count.shape[0]),
        "minus_2_log_likelihood": 2.0 * nll,
        "null_minus_2_log_likelihood": 2.0 * null_nll,
        "model_chi2": 2.0 * (null_nll - nll),
        "cox_snell_r2": cox_snell,
        "nagelkerke_r2": nagelkerke,
    }
