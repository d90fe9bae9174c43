"""parties.binning: equal-frequency edges, ties, the missing bin, the one-hot layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parties.binning import apply_edges, bin_codes, bin_matrix, fit_edges


def test_continuous_column_gets_equal_shares() -> None:
    x = np.random.default_rng(1).normal(size=10_000)
    edges = fit_edges(x, 10)
    assert len(edges) == 9 and np.all(np.diff(edges) > 0)
    counts = np.bincount(bin_codes(x, edges), minlength=11)
    assert counts[:10].min() >= 999 and counts[:10].max() <= 1001 and counts[10] == 0


def test_value_equal_to_an_edge_goes_to_the_lower_bin() -> None:
    edges = np.array([1.0, 2.0])
    codes = bin_codes(np.array([0.5, 1.0, 1.5, 2.0, 2.5]), edges)
    assert codes.tolist() == [0, 0, 1, 1, 2]
    # code <= i is exactly x <= edges[i]
    assert (codes <= 0).tolist() == (np.array([0.5, 1.0, 1.5, 2.0, 2.5]) <= 1.0).tolist()


def test_few_distinct_values_get_one_bin_each() -> None:
    x = np.array([3.0, 1.0, 1.0, 2.0, 3.0, 3.0])
    edges = fit_edges(x, 10)
    assert edges.tolist() == [1.5, 2.5]
    assert bin_codes(x, edges).tolist() == [2, 0, 0, 1, 2, 2]


def test_heavy_ties_never_straddle_an_edge() -> None:
    # 70 % zeros: the first seven shares all end on 0, so they collapse into one bin.
    rng = np.random.default_rng(2)
    x = np.where(rng.random(5000) < 0.7, 0.0, rng.exponential(size=5000))
    edges = fit_edges(x, 10)
    codes = bin_codes(x, edges)
    assert len(set(codes[x == 0.0].tolist())) == 1
    for value in np.unique(x)[:50]:
        assert len(set(codes[x == value].tolist())) == 1
    assert len(edges) <= 9 and len(edges) >= 3


def test_edges_do_not_depend_on_row_order() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 40, size=3000).astype(np.float64)
    perm = rng.permutation(3000)
    assert np.array_equal(fit_edges(x, 16), fit_edges(x[perm], 16))


def test_missing_values_get_the_last_code_and_do_not_move_edges() -> None:
    x = np.array([1.0, np.nan, 2.0, 3.0, np.nan, 4.0])
    edges = fit_edges(x, 4)
    assert np.array_equal(edges, fit_edges(x[~np.isnan(x)], 4))
    codes = bin_codes(x, edges)
    assert codes[1] == codes[4] == len(edges) + 1
    assert codes[~np.isnan(x)].max() == len(edges)


def test_constant_and_all_missing_columns() -> None:
    assert fit_edges(np.full(10, 7.0), 8).size == 0
    assert fit_edges(np.full(10, np.nan), 8).size == 0
    assert bin_codes(np.array([np.nan, 7.0]), np.zeros(0)).tolist() == [1, 0]


def test_bad_bins_and_infinities_are_refused() -> None:
    with pytest.raises(ValueError, match="bins must be"):
        fit_edges(np.arange(5.0), 1)
    with pytest.raises(ValueError, match="infinite"):
        fit_edges(np.array([1.0, np.inf]), 4)


def test_rows_outside_the_training_range_get_the_end_bins() -> None:
    x = np.arange(100, dtype=np.float64)[:, None]
    b = bin_matrix(x, np.arange(10, 90), 4)
    assert b.codes[0, 0] == 0 and b.codes[99, 0] == len(b.edges[0])


def test_default_layout_and_fixed_width_layout() -> None:
    x = np.array([[1.0, 5.0], [2.0, np.nan], [3.0, 5.0], [np.nan, 6.0]])
    b = bin_matrix(x, None, 4)
    assert b.slots.tolist() == [len(b.edges[0]) + 2, len(b.edges[1]) + 2]
    assert b.offsets.tolist() == [0, int(b.slots[0]), b.width]
    assert b.codes[3, 0] == b.missing_slot(0) and b.codes[1, 1] == b.missing_slot(1)
    fixed = bin_matrix(x, None, 4, fixed_width=True)
    assert fixed.slots.tolist() == [5, 5] and fixed.width == 10
    assert fixed.codes[3, 0] == 4 and fixed.codes[1, 1] == 4
    assert np.array_equal(fixed.codes[[0, 2]], b.codes[[0, 2]])


def test_one_hot_has_one_per_block_and_histogram_matches_it() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 3))
    x[rng.random((500, 3)) < 0.1] = np.nan
    b = bin_matrix(x, np.arange(400), 8, fixed_width=True)
    onehot = b.one_hot()
    assert onehot.shape == (500, 27) and np.all(onehot.sum(axis=1) == 3)
    for j in range(3):
        block = onehot[:, b.offsets[j]:b.offsets[j + 1]]
        assert np.all(block.sum(axis=1) == 1)
    v = rng.integers(-1000, 1000, size=(500, 4)).astype(np.float64)
    assert np.array_equal(b.histogram(v), onehot.T @ v)
    assert np.array_equal(b.take(np.arange(100)).codes, b.codes[:100])


def test_apply_edges_refuses_a_width_too_small() -> None:
    with pytest.raises(ValueError, match="slots"):
        apply_edges(np.zeros((2, 1)), (np.array([0.0, 1.0]),), slots=3)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1,
                max_size=200), st.integers(min_value=2, max_value=40))
@settings(max_examples=200, deadline=None)
def test_code_order_matches_value_order(values: list[float], bins: int) -> None:
    x = np.array(values)
    edges = fit_edges(x, bins)
    assert len(edges) <= bins - 1 and np.all(np.diff(edges) > 0)
    codes = bin_codes(x, edges)
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(codes[order]) >= 0)
    for i, e in enumerate(edges):
        assert np.array_equal(codes <= i, x <= e)
