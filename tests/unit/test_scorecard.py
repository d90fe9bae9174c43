"""Tests for parties.evaluation.scorecard: the base-odds / PDO scaling and the score-band tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parties.evaluation.scorecard import Scorecard, band_of, band_table, points

cards = st.builds(
    Scorecard,
    base_score=st.floats(min_value=200, max_value=1000),
    base_odds=st.floats(min_value=0.5, max_value=500),
    pdo=st.floats(min_value=5, max_value=80),
)
odds = st.floats(min_value=1e-3, max_value=1e4)


def p_of_good_odds(odds_good: float) -> float:
    """Default probability whose good:bad odds are ``odds_good``: p = 1 / (1 + odds)."""
    return 1.0 / (1.0 + odds_good)


def test_default_card_is_600_at_50_to_1_with_pdo_20() -> None:
    card = Scorecard()
    assert (card.base_score, card.base_odds, card.pdo) == (600.0, 50.0, 20.0)
    # factor = 20 / ln 2 = 28.8539; offset = 600 - 28.8539 * ln 50 = 487.1229
    assert card.factor == pytest.approx(28.85390081777927)
    assert card.offset == pytest.approx(487.1228762045055)
    got = points([1 / 51, 1 / 101, 1 / 26, 0.5])
    np.testing.assert_allclose(got, [600.0, 620.0, 580.0, card.offset], rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(cards)
def test_points_at_base_odds_equal_base_score(card: Scorecard) -> None:
    assert card.points(p_of_good_odds(card.base_odds)) == pytest.approx(card.base_score)


@settings(max_examples=200, deadline=None)
@given(cards, odds)
def test_doubling_good_odds_adds_pdo_points(card: Scorecard, o: float) -> None:
    single, double = card.points([p_of_good_odds(o), p_of_good_odds(2 * o)])
    assert double - single == pytest.approx(card.pdo, rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(cards, st.lists(st.floats(min_value=1e-9, max_value=1 - 1e-9), min_size=1, max_size=30))
def test_probability_inverts_points(card: Scorecard, p: list[float]) -> None:
    np.testing.assert_allclose(card.probability(card.points(p)), p, rtol=1e-6)


def test_higher_score_means_lower_risk_and_extremes_are_finite() -> None:
    p = np.array([0.0, 1e-6, 0.01, 0.2, 0.5, 0.9, 1.0])
    s = points(p)
    assert np.isfinite(s).all()
    assert (np.diff(s) < 0).all()
    assert s[0] == pytest.approx(600 + 20 / math.log(2) * (math.log(1e15) - math.log(50)), rel=1e-6)


def test_points_keep_the_input_shape() -> None:
    assert Scorecard().points(np.full((2, 3), 0.1)).shape == (2, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pdo": 0.0}, "pdo"),
        ({"pdo": -20.0}, "pdo"),
        ({"base_odds": 0.0}, "base_odds"),
        ({"base_score": math.nan}, "finite"),
        ({"base_odds": math.inf}, "finite"),
    ],
)
def test_invalid_card_raises(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Scorecard(**kwargs)


@pytest.mark.parametrize("p", [[0.2, 1.2], [-0.1], [math.nan]])
def test_invalid_probabilities_raise(p: list[float]) -> None:
    with pytest.raises(ValueError, match="probabilities"):
        points(p)


def test_band_of_uses_20_point_bands_aligned_to_multiples_of_20() -> None:
    labels = band_of([600.0, 619.99, 620.0, -3.5, 587.0])
    assert labels.tolist() == ["[600, 620)", "[600, 620)", "[620, 640)", "[-20, 0)", "[580, 600)"]


def test_band_of_with_user_edges_and_open_ends() -> None:
    labels = band_of([450.0, 500.0, 650.0, 700.0], [-math.inf, 500, 700, math.inf])
    assert labels.tolist() == ["[-inf, 500)", "[500, 700)", "[500, 700)", "[700, inf)"]


def test_band_table_counts_bads_per_band() -> None:
    # Bands [580,600): rows 590, 595 -> 2 rows, 1 bad; [600,620): none; [620,640): 3 rows, 0 bad.
    y = [1, 0, 0, 0, 0]
    s = [590.0, 595.0, 620.0, 625.0, 639.0]
    table = band_table(y, s)
    assert table.labels == ("[580, 600)", "[600, 620)", "[620, 640)")
    np.testing.assert_array_equal(table.lower, [580, 600, 620])
    np.testing.assert_array_equal(table.upper, [600, 620, 640])
    np.testing.assert_array_equal(table.count, [2, 0, 3])
    np.testing.assert_array_equal(table.bad, [1, 0, 0])
    np.testing.assert_allclose(table.bad_rate, [0.5, math.nan, 0.0])
    np.testing.assert_allclose(table.share, [0.4, 0.0, 0.6])


def test_band_table_with_user_edges_and_width() -> None:
    y = [1, 1, 0, 0, 1, 0]
    s = [400.0, 480.0, 500.0, 560.0, 610.0, 700.0]
    table = band_table(y, s, [-math.inf, 500, 600, math.inf])
    np.testing.assert_array_equal(table.count, [2, 2, 2])
    np.testing.assert_array_equal(table.bad, [2, 0, 1])
    assert band_table(y, s, width=100).labels == (
        "[400, 500)", "[500, 600)", "[600, 700)", "[700, 800)"
    )  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.floats(min_value=-500, max_value=1500)),
        min_size=1,
        max_size=200,
    )
)
@example([(0, -5e-324)])  # found in CI: -5e-324 / 20 rounds to -0.0, below the first edge
@example([(1, 20.0), (0, 19.999999999999996), (0, -20.0)])
def test_band_table_agrees_with_band_of(rows: list[tuple[int, float]]) -> None:
    y = np.array([r[0] for r in rows], dtype=float)
    s = np.array([r[1] for r in rows])
    table = band_table(y, s)
    labels = band_of(s)
    assert table.count.sum() == len(rows)
    assert table.bad.sum() == y.sum()
    for label, count, bad in zip(table.labels, table.count, table.bad, strict=True):
        assert count == (labels == label).sum()
        assert bad == y[labels == label].sum()
    assert (np.diff(table.lower) == 20).all()


def test_band_errors() -> None:
    with pytest.raises(ValueError, match="outside the bands"):
        band_of([450.0, 800.0], [400, 500, 600])
    with pytest.raises(ValueError, match="strictly increasing"):
        band_of([450.0], [500, 400])
    with pytest.raises(ValueError, match="length mismatch"):
        band_table([0, 1], [600.0])
    with pytest.raises(ValueError, match="0 or 1"):
        band_table([0, 2], [600.0, 610.0])
    with pytest.raises(ValueError, match="finite"):
        band_of([math.inf])
    with pytest.raises(ValueError, match="width"):
        band_of([600.0], width=0.0)
