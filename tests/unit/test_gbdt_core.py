"""parties.gbdt.core and federation.protocol.tree_schedule: the pure parts of boosting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from federation.protocol.tree_schedule import Rounds, TreeSchedule, early_stop
from parties.gbdt.core import (
    Owner,
    Tree,
    TreeParams,
    best_split,
    leaf_value,
    log_loss,
    quantize,
    route,
)

P = TreeParams(l2=1.0, min_child_weight=0.0, frac_bits=0)


def _hist(g: list[list[int]], h: list[list[int]]) -> np.ndarray:
    return np.stack([np.array(g), np.array(h)], axis=-1).astype(np.int64)


def test_best_split_finds_the_separating_slot_and_missing_goes_right() -> None:
    # one feature, slots: 3 value bins + missing; negative g left of slot 1
    hist = _hist([[-10, -10, 10, 10]], [[5, 5, 5, 5]])
    split = best_split(hist, np.zeros((0, 4, 2), np.int64), (0, 20), P)
    assert split is not None and (split.owner, split.feature, split.slot) == (Owner.BANK, 0, 1)
    expected = 0.5 * (20**2 / 11 + 20**2 / 11 - 0)
    assert split.gain == pytest.approx(expected)


def test_ties_go_to_the_bank_then_the_lower_feature_and_slot() -> None:
    same = _hist([[-5, 5, 0], [-5, 5, 0]], [[3, 3, 0], [3, 3, 0]])
    split = best_split(same, same.copy(), (0, 6), P)
    assert split is not None and (split.owner, split.feature, split.slot) == (Owner.BANK, 0, 0)
    better_grid = _hist([[-6, 6, 0]], [[3, 3, 0]])
    split = best_split(same, better_grid, (0, 6), P)
    assert split is not None and split.owner is Owner.GRID


def test_no_split_without_gain_or_below_min_child_weight() -> None:
    flat = _hist([[1, 1, 0]], [[2, 2, 0]])
    assert best_split(flat, np.zeros((0, 3, 2), np.int64), (2, 4), P) is None
    hist = _hist([[-10, 10, 0]], [[1, 5, 0]])
    strict = TreeParams(l2=1.0, min_child_weight=2.0, frac_bits=0)
    assert best_split(hist, np.zeros((0, 3, 2), np.int64), (0, 6), strict) is None


def test_leaf_value_and_quantized_gradients() -> None:
    p = TreeParams(learning_rate=0.5, l2=1.0, frac_bits=4)
    assert leaf_value((-32, 16), p) == pytest.approx(-0.5 * (-2.0) / (1.0 + 1.0))
    g, h = quantize(np.array([0.0, 50.0, -50.0]), np.array([1.0, 0.0, 1.0]), 16)
    assert g.tolist() == [-(2**15), 2**16, -(2**16)]
    assert h.tolist()[0] == 2**14 and h.max() <= 2**14
    assert log_loss(np.array([1.0]), np.array([0.0])) == pytest.approx(math.log(2))


def test_route_follows_each_split_to_its_leaf() -> None:
    tree = Tree(2)
    tree.owner[[0, 1, 2, 3, 4]] = [Owner.BANK, Owner.GRID, Owner.LEAF, Owner.LEAF, Owner.LEAF]
    bank = {0: np.array([True, True, False])}
    grid = {1: np.array([True, False, True])}
    assert route(tree, bank, grid, 3).tolist() == [3, 4, 2]


def test_level_columns_tile_the_block_without_overlap() -> None:
    for depth in range(1, 8):
        s = TreeSchedule(100, 120, 33, depth, 3, 16)
        used = np.zeros(s.block_width, dtype=int)
        for level in range(depth):
            start, most = s.level_columns(level)
            used[start:start + most] += 1
        assert used.tolist() == [1] * s.block_width
        assert sum(s.route_rows(d) for d in range(depth)) == s.route_rows_per_tree
    s = TreeSchedule(64_000, 80_000, 480, 5, 50, 16)
    assert s.bits == 34 and s.n_batches == 9 and list(s.trees_in(9)) == [47, 48, 49]
    assert [len(s.trees_in(b)) for b in range(1, 10)] == [1, 2, 4, 8, 8, 8, 8, 8, 3]
    assert all(s.batch_of(t) == b for b in range(1, 10) for t in s.trees_in(b))
    rounds = Rounds()
    assert [rounds.next() for _ in range(3)] == [2, 3, 4]  # after the masked matrix's 1


def test_early_stop_rule() -> None:
    assert early_stop([0.5, 0.4, 0.45, 0.46], rounds=2, trees=10) == (True, 2)
    assert early_stop([0.5, 0.4, 0.45], rounds=2, trees=10) == (False, 2)
    assert early_stop([0.5, 0.4], rounds=0, trees=2) == (True, 2)
    assert early_stop([math.nan, math.nan], rounds=2, trees=3) == (False, 2)
    assert early_stop([0.3, 0.3, 0.3], rounds=2, trees=10) == (True, 1)
