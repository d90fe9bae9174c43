"""parties.evaluation.metrics: against scikit-learn / scipy, brute force and hand-computed cases."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics as skm

from parties.evaluation import metrics as m

FloatArray = npt.NDArray[np.float64]


@st.composite
def labelled_scores(draw: st.DrawFn, ties: bool = False) -> tuple[FloatArray, FloatArray]:
    """1-D labels with both classes and probabilities; with ties=True, p has few distinct values."""
    n = draw(st.integers(min_value=2, max_value=60))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    y[0], y[1] = 0, 1
    if ties:
        levels = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0])
        p = draw(st.lists(levels, min_size=n, max_size=n))
    else:
        unit = st.floats(min_value=1e-6, max_value=1 - 1e-6, allow_nan=False)
        p = draw(st.lists(unit, min_size=n, max_size=n))
    return np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)


def synthetic(n: int, seed: int = 0) -> tuple[FloatArray, FloatArray]:
    """Labels drawn from the probabilities of a logistic model, so the model is calibrated."""
    rng = np.random.default_rng(seed)
    p = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) - 1.5)))
    return (rng.random(n) < p).astype(np.float64), p


def brute_force_ks(y: FloatArray, p: FloatArray) -> float:
    """max over every candidate threshold t of |P(p >= t | bad) - P(p >= t | good)|."""
    best = 0.0
    for t in np.unique(p):
        flagged = p >= t
        tpr = flagged[y == 1].mean()
        fpr = flagged[y == 0].mean()
        best = max(best, abs(tpr - fpr))
    return float(best)


# --- discrimination --------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(labelled_scores())
def test_auc_matches_sklearn_on_random_scores(data: tuple[FloatArray, FloatArray]) -> None:
    y, p = data
    assert m.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(labelled_scores(ties=True))
def test_auc_with_ties_counts_tied_pairs_as_one_half(data: tuple[FloatArray, FloatArray]) -> None:
    y, p = data
    pos, neg = p[y == 1], p[y == 0]
    diff = pos[:, None] - neg[None, :]
    pairwise = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert m.roc_auc(y, p) == pytest.approx(pairwise, abs=1e-12)
    assert m.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)


def test_auc_of_all_tied_scores_is_one_half() -> None:
    assert m.roc_auc([0, 1, 0, 1, 1], [0.3] * 5) == 0.5


@settings(max_examples=100, deadline=None)
@given(labelled_scores(ties=True))
def test_roc_curve_matches_sklearn_points(data: tuple[FloatArray, FloatArray]) -> None:
    y, p = data
    fpr, tpr, thr = skm.roc_curve(y, p, drop_intermediate=False)
    roc = m.roc_curve(y, p)
    np.testing.assert_allclose(roc.fpr, fpr)
    np.testing.assert_allclose(roc.tpr, tpr)
    np.testing.assert_array_equal(roc.thresholds[1:], thr[1:])
    assert roc.thresholds[0] == np.inf


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's p-value, not the statistic
@settings(max_examples=200, deadline=None)
@given(st.one_of(labelled_scores(), labelled_scores(ties=True)))
def test_ks_matches_brute_force_max_over_thresholds(data: tuple[FloatArray, FloatArray]) -> None:
    y, p = data
    curve = m.ks_curve(y, p)
    assert curve.ks == pytest.approx(brute_force_ks(y, p), abs=1e-12)
    assert curve.ks == pytest.approx(
        stats.ks_2samp(p[y == 1], p[y == 0], method="asymp").statistic, abs=1e-12
    )
    # The reported threshold attains the maximum under the rule "flag when p >= threshold".
    flagged = p >= curve.ks_threshold
    gap = abs(flagged[y == 1].mean() - flagged[y == 0].mean())
    assert gap == pytest.approx(curve.ks, abs=1e-12)


def test_ks_threshold_on_a_hand_case() -> None:
    # Flag p >= 0.6: bads 2/2 flagged, goods 1/4 flagged -> KS = 0.75, the maximum.
    y = [0, 0, 0, 1, 0, 1]
    p = [0.1, 0.2, 0.3, 0.6, 0.7, 0.9]
    curve = m.ks_curve(y, p)
    assert curve.ks == pytest.approx(0.75)
    assert curve.ks_threshold == 0.6


def test_ks_threshold_is_the_highest_of_equal_maxima() -> None:
    # p >= .4 flags 1/2 bads, 0 goods; p >= .2 flags 2/2 bads, 1/2 goods: both gaps are 1/2.
    curve = m.ks_curve([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4])
    assert curve.ks == pytest.approx(0.5)
    assert curve.ks_threshold == 0.4


# --- classification at a threshold ----------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(labelled_scores(ties=True), st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.75, 1.0]))
def test_classification_matches_sklearn(data: tuple[FloatArray, FloatArray], t: float) -> None:
    y, p = data
    pred = (p >= t).astype(np.float64)
    got = m.classification_at(y, p, t)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, zero_division=0))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0))
    assert got["flagged"] == pred.sum()


# --- probabilistic losses -------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(labelled_scores())
def test_log_loss_and_brier_match_sklearn(data: tuple[FloatArray, FloatArray]) -> None:
    y, p = data
    assert m.log_loss(y, p) == pytest.approx(skm.log_loss(y, p), rel=1e-12)
    assert m.brier_score(y, p) == pytest.approx(skm.brier_score_loss(y, p), rel=1e-12, abs=1e-15)


def test_log_loss_clips_certain_wrong_predictions() -> None:
    # One certain, wrong prediction costs -ln(EPS) ~ 34.5 nats instead of infinity.
    loss = m.log_loss([1, 0], [0.0, 0.0])
    assert loss == pytest.approx(-math.log(m.EPS) / 2.0, rel=1e-6)
    assert math.isfinite(m.evaluate([1, 0, 1, 0], [0.0, 1.0, 0.9, 0.2])["log_loss"])


@settings(max_examples=100, deadline=None)
@given(labelled_scores(ties=True))
def test_minus_2ll_is_twice_n_log_loss(data: tuple[FloatArray, FloatArray]) -> None:
    y, p = data
    if len(np.unique(p)) < 3:
        return  # evaluate needs 3 Hosmer-Lemeshow groups; tested separately
    report = m.evaluate(y, p)
    n = len(y)
    assert report["minus_2_log_likelihood"] == pytest.approx(2 * n * m.log_loss(y, p), rel=1e-12)
    assert report["minus_2_log_likelihood"] == pytest.approx(
        2 * n * skm.log_loss(y, np.clip(p, m.EPS, 1 - m.EPS)), rel=1e-9
    )


# --- Hosmer-Lemeshow ------------------------------------------------------------------------

# Ten groups of two rows (20 rows): each group's p pair, labels, and its term
# (O - E)^2 / (n pi (1 - pi)) with n = 2, pi = mean of the pair, E = 2 pi:
#   g1  (.05, .15) pi .10 y (0,0) O 0 E 0.2  (0.2)^2 / (2*.1*.9)  = .04/.18  = 2/9
#   g2  (.18, .22) pi .20 y (0,0) O 0 E 0.4  (0.4)^2 / (2*.2*.8)  = .16/.32  = 1/2
#   g3  (.28, .32) pi .30 y (0,1) O 1 E 0.6  (0.4)^2 / (2*.3*.7)  = .16/.42  = 8/21
#   g4  (.38, .42) pi .40 y (1,0) O 1 E 0.8  (0.2)^2 / (2*.4*.6)  = .04/.48  = 1/12
#   g5  (.48, .52) pi .50 y (0,1) O 1 E 1.0  0                              = 0
#   g6  (.58, .62) pi .60 y (1,0) O 1 E 1.2  (0.2)^2 / .48        = .04/.48  = 1/12
#   g7  (.68, .72) pi .70 y (1,1) O 2 E 1.4  (0.6)^2 / .42        = .36/.42  = 6/7
#   g8  (.78, .82) pi .80 y (1,1) O 2 E 1.6  (0.4)^2 / .32        = .16/.32  = 1/2
#   g9  (.88, .92) pi .90 y (0,1) O 1 E 1.8  (0.8)^2 / .18        = .64/.18  = 32/9
#   g10 (.94, .98) pi .96 y (1,1) O 2 E 1.92 (0.08)^2 / (2*.96*.04) = .0064/.0768 = 1/12
# H = 34/9 + 1 + 1/4 + 26/21 = (952 + 252 + 63 + 312) / 252 = 1579/252 = 6.26587..., df = 10 - 2.
HL_P = [.05, .15, .18, .22, .28, .32, .38, .42, .48, .52,
        .58, .62, .68, .72, .78, .82, .88, .92, .94, .98]  # fmt: skip
HL_Y = [0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1]
HL_STATISTIC = 1579 / 252


def test_hosmer_lemeshow_hand_computed_ten_groups() -> None:
    rng = np.random.default_rng(3)
    order = rng.permutation(20)  # row order must not matter
    y, p = np.asarray(HL_Y)[order], np.asarray(HL_P)[order]
    statistic, p_value = m.hosmer_lemeshow(y, p)
    assert statistic == pytest.approx(HL_STATISTIC, rel=1e-12)
    assert p_value == pytest.approx(stats.chi2.sf(HL_STATISTIC, 8), rel=1e-10)
    report = m.evaluate(y, p)
    assert report["hosmer_lemeshow"] == pytest.approx(HL_STATISTIC, rel=1e-12)
    assert report["hosmer_lemeshow_p"] == pytest.approx(stats.chi2.sf(HL_STATISTIC, 8), rel=1e-10)
    assert report["hosmer_lemeshow_groups"] == 10


def test_calibration_by_decile_reports_the_hl_groups() -> None:
    table = m.calibration_by_decile(HL_Y, HL_P)
    np.testing.assert_array_equal(table.count, [2] * 10)
    np.testing.assert_allclose(
        table.mean_predicted, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.96]
    )
    np.testing.assert_allclose(table.observed_rate, [0, 0, 0.5, 0.5, 0.5, 0.5, 1, 1, 0.5, 1])
    np.testing.assert_allclose(table.lower, HL_P[0::2])
    np.testing.assert_allclose(table.upper, HL_P[1::2])


def test_calibration_groups_are_equal_sized_and_keep_ties_together() -> None:
    y, p = synthetic(10_007, seed=1)
    table = m.calibration_by_decile(y, p)
    assert table.count.sum() == 10_007
    assert set(table.count.tolist()) <= {1000.0, 1001.0}
    assert (table.upper[:-1] < table.lower[1:]).all()
    # Heavy ties: 3 distinct values can only make 3 groups, and no value is split.
    tied = np.repeat([0.1, 0.5, 0.9], [50, 30, 20])
    table = m.calibration_by_decile(np.tile([0.0, 1.0], 50), tied)
    np.testing.assert_array_equal(table.count, [50, 30, 20])


def test_hosmer_lemeshow_is_small_for_a_calibrated_model_and_large_for_a_shifted_one() -> None:
    y, p = synthetic(50_000, seed=2)
    _, p_good = m.hosmer_lemeshow(y, p)
    _, p_bad = m.hosmer_lemeshow(y, np.clip(p * 1.3, 0, 1))
    assert p_good > 0.01
    assert p_bad < 1e-6


def test_hosmer_lemeshow_needs_three_groups() -> None:
    with pytest.raises(ValueError, match="at least 3 groups"):
        m.hosmer_lemeshow([0, 1, 0, 1], [0.2, 0.2, 0.7, 0.7])


@pytest.mark.parametrize("df", [1, 2, 3, 8, 9, 30, 31])
@pytest.mark.parametrize("x", [0.0, 1e-4, 0.5, 3.0, 8.0, 25.0, 120.0, 900.0])
def test_chi2_survival_matches_scipy(x: float, df: int) -> None:
    assert m.chi2_survival(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-10, abs=1e-300)


# --- likelihood-ratio statistics (Table 2) --------------------------------------------------

# Case A: y = (1, 0, 1, 0), p = (.8, .2, .6, .4), n = 4, base rate 1/2.
#   L  = .8 * .8 * .6 * .6 = .2304          -2LL  = -2 ln .2304 = 2.93588
#   L0 = (1/2)^4 = 1/16                     -2LL0 = 8 ln 2      = 5.54518
#   chi2 = -2LL0 - (-2LL) = 2 ln(.2304 * 16) = 2 ln 3.6864      = 2.60930
#   Cox-Snell  = 1 - (L0 / L)^(2/n) = 1 - (1 / 3.6864)^(1/2) = 1 - 1/1.92 = 23/48
#   max        = 1 - L0^(2/n) = 1 - (1/16)^(1/2) = 3/4
#   Nagelkerke = (23/48) / (3/4) = 23/36
# Case B: y = (1, 0, 0, 0), p = (.5, .5, .25, .25), base rate 1/4.
#   L  = .5 * .5 * .75 * .75 = 9/64;  L0 = (1/4) * (3/4)^3 = 27/256
#   Cox-Snell  = 1 - ((27/256) / (9/64))^(1/2) = 1 - (3/4)^(1/2)   = 0.1339746
#   max        = 1 - (27/256)^(1/2) = 1 - 3 sqrt(3) / 16           = 0.6752404
#   Nagelkerke = 0.1339746 / 0.6752404                               = 0.1984105
PSEUDO_R2_CASES = [
    ([1, 0, 1, 0], [0.8, 0.2, 0.6, 0.4], 0.2304, 1 / 16, 23 / 48, 23 / 36),
    (
        [1, 0, 0, 0],
        [0.5, 0.5, 0.25, 0.25],
        9 / 64,
        27 / 256,
        1 - math.sqrt(3) / 2,
        (1 - math.sqrt(3) / 2) / (1 - 3 * math.sqrt(3) / 16),
    ),
]


@pytest.mark.parametrize(("y", "p", "lik", "lik0", "cox_snell", "nagelkerke"), PSEUDO_R2_CASES)
def test_pseudo_r2_and_model_chi2_hand_computed(
    y: list[int], p: list[float], lik: float, lik0: float, cox_snell: float, nagelkerke: float
) -> None:
    got_cs, got_nk = m.pseudo_r2(y, p)
    assert got_cs == pytest.approx(cox_snell, rel=1e-12)
    assert got_nk == pytest.approx(nagelkerke, rel=1e-12)
    chi2, p_value = m.likelihood_ratio_test(y, p, df=1)
    assert chi2 == pytest.approx(2 * math.log(lik / lik0), rel=1e-12)
    assert p_value == pytest.approx(stats.chi2.sf(chi2, 1), rel=1e-10)


def test_evaluate_reports_table_2_quantities_for_case_a() -> None:
    # Case A above; its four distinct probabilities form four Hosmer-Lemeshow groups (df 2).
    report = m.evaluate([1, 0, 1, 0], [0.8, 0.2, 0.6, 0.4])
    assert report["minus_2_log_likelihood"] == pytest.approx(-2 * math.log(0.2304), rel=1e-12)
    assert report["null_minus_2_log_likelihood"] == pytest.approx(8 * math.log(2), rel=1e-12)
    assert report["model_chi2"] == pytest.approx(2 * math.log(3.6864), rel=1e-12)
    assert report["cox_snell_r2"] == pytest.approx(23 / 48, rel=1e-12)
    assert report["nagelkerke_r2"] == pytest.approx(23 / 36, rel=1e-12)


def test_perfect_separation_has_nagelkerke_near_one_and_base_rate_model_zero() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 1, 0.0])
    assert m.pseudo_r2(y, y)[1] == pytest.approx(1.0, abs=1e-12)
    cs, nk = m.pseudo_r2(y, np.full(8, y.mean()))
    assert cs == pytest.approx(0.0, abs=1e-12)
    assert nk == pytest.approx(0.0, abs=1e-12)


# --- evaluate -------------------------------------------------------------------------------

REQUIRED_KEYS = {
    "n", "positives", "auc", "gini", "ks", "ks_threshold", "accuracy", "precision", "recall",
    "f1", "log_loss", "brier", "hosmer_lemeshow", "hosmer_lemeshow_p", "minus_2_log_likelihood",
    "cox_snell_r2", "nagelkerke_r2",
}  # fmt: skip


def test_evaluate_is_consistent_with_the_single_metric_functions() -> None:
    y, p = synthetic(5_000, seed=4)
    report = m.evaluate(y, p, threshold=0.3)
    assert REQUIRED_KEYS <= report.keys()
    assert all(isinstance(v, float) for v in report.values())
    assert report["n"] == 5_000
    assert report["positives"] == y.sum()
    assert report["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert report["gini"] == pytest.approx(2 * report["auc"] - 1)
    assert report["ks"] == pytest.approx(m.ks_curve(y, p).ks)
    assert report["ks_threshold"] == m.ks_curve(y, p).ks_threshold
    assert report["log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-12)
    assert report["brier"] == pytest.approx(skm.brier_score_loss(y, p), rel=1e-12)
    assert report["recall"] == pytest.approx(skm.recall_score(y, p >= 0.3))
    assert report["precision"] == pytest.approx(skm.precision_score(y, p >= 0.3))
    cs, nk = m.pseudo_r2(y, p)
    assert (report["cox_snell_r2"], report["nagelkerke_r2"]) == (cs, nk)


def test_evaluate_one_million_rows_is_fast() -> None:
    y, p = synthetic(1_000_000, seed=5)
    start = time.perf_counter()
    report = m.evaluate(y, p)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"evaluate took {elapsed:.2f} s on 1M rows"
    assert report["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-10)


# --- input validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], "must be 0 or 1"),
        ([0, 1, 0.5], [0.1, 0.2, 0.3], "must be 0 or 1"),
        (["a", "b"], [0.1, 0.2], "numeric"),
        ([0, 1, 1], [0.1, 0.2], "length mismatch"),
        ([], [], "empty"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
        ([0, 1], [0.1, float("nan")], "finite"),
        ([0, 1], [0.1, 1.5], r"\[0, 1\]"),
        ([0, 1], [-0.1, 0.5], r"\[0, 1\]"),
    ],
)
def test_invalid_inputs_raise_value_error(y: object, p: object, message: str) -> None:
    functions: tuple[Callable[..., object], ...] = (
        m.roc_auc, m.ks_curve, m.log_loss, m.brier_score, m.evaluate, m.calibration_by_decile
    )  # fmt: skip
    for fn in functions:
        with pytest.raises(ValueError, match=message):
            fn(y, p)


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [1, 1, 1, 1]])
def test_single_class_raises_where_metric_is_undefined(labels: list[int]) -> None:
    p = [0.1, 0.4, 0.6, 0.9]
    functions: tuple[Callable[..., object], ...] = (
        m.roc_auc, m.roc_curve, m.ks_curve, m.pseudo_r2, m.evaluate
    )  # fmt: skip
    for fn in functions:
        with pytest.raises(ValueError, match="both classes"):
            fn(labels, p)
    # Losses stay defined on one class.
    assert math.isfinite(m.log_loss(labels, p))
    assert math.isfinite(m.brier_score(labels, p))


def test_bad_threshold_and_df_raise() -> None:
    with pytest.raises(ValueError, match="threshold"):
        m.evaluate(HL_Y, HL_P, threshold=1.5)
    with pytest.raises(ValueError, match="df"):
        m.likelihood_ratio_test(HL_Y, HL_P, df=0)
    with pytest.raises(ValueError, match="degrees of freedom"):
        m.chi2_survival(1.0, 0)
