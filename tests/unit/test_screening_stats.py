"""Screening statistics: hand-computed cases, then brute force on random counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from parties.evaluation.screening.binstats import (
    bin_stats,
    ks_auc,
    merge_counts,
    monotone_groups,
    monotone_merge,
    trend,
    woe_iv,
)
from parties.evaluation.screening.redundancy import correlation, standardize, vif, vif_filter
from parties.evaluation.screening.stability import psi

# Three bins of 10 rows with 1, 2 and 7 bads: 10 bads, 20 goods; +0.5 on every count.
COUNT = np.array([10, 10, 10])
BAD = np.array([1, 2, 7])
BAD_SHARE = (1.5 / 11.5, 2.5 / 11.5, 7.5 / 11.5)
GOOD_SHARE = (9.5 / 21.5, 8.5 / 21.5, 3.5 / 21.5)


def test_woe_and_iv_match_the_hand_computation() -> None:
    woe, iv = woe_iv(COUNT, BAD)
    expected = [math.log(b / g) for b, g in zip(BAD_SHARE, GOOD_SHARE)]
    assert woe == pytest.approx(expected, rel=1e-12)
    assert iv == pytest.approx(sum((b - g) * w for b, g, w in
                                   zip(BAD_SHARE, GOOD_SHARE, expected)), rel=1e-12)
    assert woe[0] == pytest.approx(-1.220121, abs=1e-6)  # ln(0.130435 / 0.441860)


def test_empty_bins_get_no_woe_and_do_not_count_in_the_smoothing() -> None:
    woe, iv = woe_iv(np.array([10, 0, 10, 10]), np.array([1, 0, 2, 7]))
    assert math.isnan(woe[1])
    assert iv == pytest.approx(woe_iv(COUNT, BAD)[1], rel=1e-12)


def test_ks_and_auc_of_the_binned_indicator_by_hand() -> None:
    # Bad rates 0.1 < 0.2 < 0.7. AUC: (1*4.5 + 2*(9+4) + 7*(17+1.5)) / (10*20) = 0.8.
    # Cumulative bad 0.1, 0.3, 1.0 against good 0.45, 0.85, 1.0: KS = 0.55.
    ks, auc = ks_auc(COUNT, BAD)
    assert auc == pytest.approx(0.8, abs=1e-15)
    assert ks == pytest.approx(0.55, abs=1e-15)


def test_auc_ranks_by_bad_rate_whatever_the_bin_order_and_pools_equal_rates() -> None:
    # The same bins in another order give the same AUC; two bins of equal rate are one level.
    assert ks_auc(COUNT[::-1], BAD[::-1]) == ks_auc(COUNT, BAD)
    ks, auc = ks_auc(np.array([10, 20, 10]), np.array([2, 4, 7]))
    y = np.r_[np.ones(2), np.zeros(8), np.ones(4), np.zeros(16), np.ones(7), np.zeros(3)]
    score = np.r_[np.full(10, 0.2), np.full(20, 0.2), np.full(10, 0.7)]
    assert auc == pytest.approx(roc_auc_score(y, score), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=8))
def test_ks_and_auc_equal_brute_force_on_the_expanded_rows(bins: list[tuple[int, int]]) -> None:
    bad = np.array([b for b, _ in bins])
    good = np.array([g for _, g in bins])
    if bad.sum() == 0 or good.sum() == 0:
        return
    count = bad + good
    ks, auc = ks_auc(count, bad)
    rate = np.divide(bad, count, out=np.zeros(len(bins)), where=count > 0)
    y = np.concatenate([np.r_[np.ones(b), np.zeros(g)] for b, g in bins])
    score = np.concatenate([np.full(b + g, r) for (b, g), r in zip(bins, rate)])
    assert auc == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    levels = np.unique(score)
    cum_bad = np.array([np.sum((score <= t) & (y == 1)) for t in levels]) / y.sum()
    cum_good = np.array([np.sum((score <= t) & (y == 0)) for t in levels]) / (1 - y).sum()
    assert ks == pytest.approx(np.max(np.abs(cum_bad - cum_good)), abs=1e-12)


def test_trend_of_the_bad_rate() -> None:
    assert trend(COUNT, BAD) == "increasing"
    assert trend(COUNT[::-1], BAD[::-1]) == "decreasing"
    assert trend(np.array([10, 20]), np.array([1, 2])) == "constant"
    assert trend(np.array([10, 10, 10]), np.array([1, 3, 2])) == "none"
    # An empty bin is skipped, not read as a rate of 0.
    assert trend(np.array([10, 0, 10]), np.array([1, 0, 3])) == "increasing"


def test_bin_stats_reads_the_missing_bin_apart_from_the_trend() -> None:
    # Last bin missing: 5 rows of 45 (11.1 %); its high rate does not break the trend.
    s = bin_stats(np.array([10, 10, 10, 15]), np.array([1, 2, 7, 1]), missing_bin=True)
    assert s.missing_rate == pytest.approx(15 / 45)
    assert s.trend == "increasing" and s.monotone
    assert s.iv == pytest.approx(woe_iv(np.array([10, 10, 10, 15]), np.array([1, 2, 7, 1]))[1])
    no_missing = bin_stats(COUNT, BAD, missing_bin=False)
    assert no_missing.missing_rate == 0.0


def test_monotone_groups_pool_adjacent_violators() -> None:
    count, bad = np.array([10, 10, 10, 10]), np.array([1, 3, 2, 5])  # 0.1 0.3 0.2 0.5
    assert monotone_groups(count, bad, increasing=True) == [[0], [1, 2], [3]]
    # Decreasing: everything pools into one bin (rates pooled 0.2, then 0.275).
    assert monotone_groups(count, bad, increasing=False) == [[0, 1, 2, 3]]
    merged = merge_counts(count, bad, [[0], [1, 2], [3]])
    assert merged[0].tolist() == [10, 20, 10] and merged[1].tolist() == [1, 5, 5]
    # The direction with the larger IV wins; the missing bin (last) stays alone.
    with_missing_count, with_missing_bad = np.r_[count, 7], np.r_[bad, 6]
    assert monotone_merge(with_missing_count, with_missing_bad, missing_bin=True) == [
        [0], [1, 2], [3], [4]]
    assert trend(*merge_counts(count, bad, [[0], [1, 2], [3]])) == "increasing"


def test_monotone_groups_fold_empty_bins_into_a_neighbour() -> None:
    groups = monotone_groups(np.array([0, 10, 0, 10]), np.array([0, 1, 0, 4]), True)
    assert groups == [[0, 1, 2], [3]]


def test_counts_are_checked() -> None:
    with pytest.raises(ValueError, match="bin 1: bad count 5 outside"):
        woe_iv(np.array([3, 4]), np.array([1, 5]))
    with pytest.raises(ValueError, match="both classes"):
        woe_iv(np.array([3, 4]), np.array([0, 0]))
    with pytest.raises(ValueError, match="integers"):
        ks_auc(np.array([3.0, 4.0]), np.array([1, 2]))


def test_psi_by_hand_and_its_symmetry_and_zero() -> None:
    e, a = np.array([50, 50]), np.array([30, 70])
    es = (50.5 / 101, 50.5 / 101)
    as_ = (30.5 / 101, 70.5 / 101)
    expected = sum((x - y) * math.log(x / y) for x, y in zip(as_, es))
    assert psi(e, a) == pytest.approx(expected, rel=1e-12)
    assert psi(e, a) == pytest.approx(psi(a, e), rel=1e-12)
    assert psi(np.array([300, 700, 0]), np.array([3000, 7000, 0])) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="rows in both"):
        psi(np.array([0, 0]), np.array([1, 2]))


def test_standardize_imputes_the_mean_and_correlation_is_pearson() -> None:
    x = np.array([[1.0, 2.0], [2.0, np.nan], [3.0, 6.0], [4.0, 8.0]])
    z = standardize(x)
    assert z[1, 1] == pytest.approx(0.0)  # missing -> the mean of 2, 6, 8
    imputed = np.array([2.0, 16 / 3, 6.0, 8.0])
    r = correlation(z, z)
    assert r[0, 1] == pytest.approx(np.corrcoef(x[:, 0], imputed)[0, 1], rel=1e-12)
    assert np.diag(r) == pytest.approx([1.0, 1.0])
    assert standardize(np.array([[5.0], [5.0]])).tolist() == [[0.0], [0.0]]


def test_vif_by_hand_and_the_filter() -> None:
    assert vif([[1.0, 0.5], [0.5, 1.0]]) == pytest.approx([4 / 3, 4 / 3])
    assert np.isinf(vif([[1.0, 1.0], [1.0, 1.0]])).all()
    # Columns a, b nearly equal (rho 0.99: VIF 50.25), c independent: b goes (last of the
    # tied pair), then nothing is above 10.
    r = np.array([[1.0, 0.99, 0.0], [0.99, 1.0, 0.0], [0.0, 0.0, 1.0]])
    kept, dropped = vif_filter(r, ["a", "b", "c"], 10.0)
    assert kept == ["a", "c"]
    assert list(dropped.values()) == [pytest.approx(1 / (1 - 0.99**2))]
