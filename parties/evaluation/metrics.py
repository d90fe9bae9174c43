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


This module is the one import for callers: :func:`evaluate` and every public metric, which
live by concern in :mod:`.checks`, :mod:`.discrimination`, :mod:`.calibration` and
:mod:`.goodness_of_fit`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from parties.evaluation.calibration import (
    HL_GROUPS,
    brier_score,
    calibration_by_decile,
    calibration_sorted,
    hosmer_lemeshow,
    hosmer_lemeshow_table,
    log_loss,
)
from parties.evaluation.checks import (
    EPS,
    FloatArray,
    check_labels,
    check_probabilities,
    checked,
    require_both_classes,
    sort_scores,
)
from parties.evaluation.discrimination import (
    auc_sorted,
    classification,
    classification_at,
    ks_curve,
    ks_sorted,
    roc_auc,
    roc_curve,
)
from parties.evaluation.goodness_of_fit import (
    chi2_survival,
    likelihood_ratio_test,
    neg_log_likelihood,
    null_neg_log_likelihood,
    pseudo_r2,
    pseudo_r2_from,
)

__all__ = [
    "EPS", "FloatArray", "HL_GROUPS", "brier_score", "calibration_by_decile", "check_labels",
    "check_probabilities", "chi2_survival", "classification_at", "evaluate", "hosmer_lemeshow",
    "ks_curve", "likelihood_ratio_test", "log_loss", "pseudo_r2", "roc_auc", "roc_curve",
]



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
    labels, probs = checked(y, p)
    require_both_classes(labels, "evaluate")
    s = sort_scores(labels, probs)
    n = labels.shape[0]
    auc = auc_sorted(s)
    ks = ks_sorted(s)
    table = calibration_sorted(s, HL_GROUPS)
    hl, hl_p = hosmer_lemeshow_table(table)
    nll = neg_log_likelihood(labels, probs)
    null_nll = null_neg_log_likelihood(n, s.n_pos)
    cox_snell, nagelkerke = pseudo_r2_from(n, nll, null_nll)
    return {
        "n": float(n),
        "positives": float(s.n_pos),
        "base_rate": s.n_pos / n,
        "threshold": float(threshold),
        "auc": auc,
        "gini": 2.0 * auc - 1.0,
        "ks": ks.ks,
        "ks_threshold": ks.ks_threshold,
        **classification(labels, probs, threshold),
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
