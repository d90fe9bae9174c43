"""federation.protocol.schedule: the train/validation split, the batch partition and order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from federation.protocol.errors import ProtocolAbort
from federation.protocol.schedule import Schedule, check_batches, min_batch_size


@given(n=st.integers(2, 500), frac=st.floats(0.0, 0.9), batch=st.integers(1, 64),
       seed=st.integers(0, 2**31))
@settings(max_examples=150, deadline=None)
def test_train_and_validation_cover_every_row_exactly_once(n: int, frac: float, batch: int,
                                                           seed: int) -> None:
    try:
        s = Schedule(n, frac, batch, seed)
    except ValueError:
        assert n - round(n * frac) < 1
        return
    rows = np.concatenate([s.train_rows, s.validation_rows])
    assert sorted(rows.tolist()) == list(range(n))
    assert len(s.validation_rows) == s.n_validation == round(n * frac)
    assert len(s.train_rows) == s.n_train == n - s.n_validation


@given(n=st.integers(1, 300), batch=st.integers(1, 80))
@settings(max_examples=150, deadline=None)
def test_batch_bounds_partition_train_positions(n: int, batch: int) -> None:
    s = Schedule(n, 0.0, batch, 3)
    covered = [i for a, b in s.batch_bounds for i in range(a, b)]
    assert covered == list(range(s.n_train))
    assert all(s.batch_size_of(j) == batch for j in range(s.n_batches - 1))
    assert 1 <= s.batch_size_of(s.n_batches - 1) <= batch
    assert s.width == max(s.batch_size_of(j) for j in range(s.n_batches))


def test_last_batch_is_smaller_when_rows_do_not_divide() -> None:
    s = Schedule(100, 0.0, 30, 1)
    assert s.batch_bounds == [(0, 30), (30, 60), (60, 90), (90, 100)]
    assert s.batch_size_of(3) == 10 and s.width == 30


def test_width_is_train_size_when_batch_exceeds_it() -> None:
    s = Schedule(10, 0.0, 256, 1)
    assert s.n_batches == 1 and s.width == 10


def test_split_is_shuffled_not_a_prefix() -> None:
    s = Schedule(1000, 0.2, 50, 9)
    assert s.validation_rows.tolist() != list(range(200))
    assert s.validation_rows.tolist() == sorted(s.validation_rows.tolist())


def test_order_is_a_permutation_per_epoch_and_changes_between_epochs() -> None:
    s = Schedule(1000, 0.2, 40, 5)
    orders = [s.order(e).tolist() for e in range(1, 6)]
    assert all(sorted(o) == list(range(s.n_batches)) for o in orders)
    assert len({tuple(o) for o in orders}) == 5


def test_equal_seeds_give_identical_schedules_other_seeds_differ() -> None:
    a, b, c = Schedule(500, 0.25, 32, 11), Schedule(500, 0.25, 32, 11), Schedule(500, 0.25, 32, 12)
    assert np.array_equal(a.train_rows, b.train_rows)
    assert np.array_equal(a.validation_rows, b.validation_rows)
    assert all(np.array_equal(a.order(e), b.order(e)) for e in (1, 2, 3))
    assert not np.array_equal(a.train_rows, c.train_rows)
    assert not np.array_equal(a.order(1), c.order(1))


@pytest.mark.parametrize("frac", [-0.1, 1.0, 1.5, float("nan")])
def test_invalid_validation_fraction_refused(frac: float) -> None:
    with pytest.raises(ValueError, match="validation fraction"):
        Schedule(100, frac, 10, 1)


@pytest.mark.parametrize("batch", [0, -5])
def test_non_positive_batch_size_refused(batch: int) -> None:
    with pytest.raises(ValueError, match="batch size"):
        Schedule(100, 0.2, batch, 1)


@pytest.mark.parametrize(("n", "frac"), [(0, 0.0), (1, 0.9), (3, 0.99)])
def test_no_training_rows_refused(n: int, frac: float) -> None:
    with pytest.raises(ValueError, match="no training rows"):
        Schedule(n, frac, 10, 1)


# -- the minimum batch (issue 9, item 1): the partition's last batch is no exception ------
@given(n=st.integers(1, 2_000), batch=st.integers(1, 300), k=st.integers(1, 40),
       frac=st.sampled_from([0.0, 0.2, 0.3]))
@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@example(n=161, batch=16, k=4, frac=0.0)  # n mod b = 1: today's tail of one row
@example(n=3204, batch=16, k=4, frac=0.0)  # a tail of k_G rows
@example(n=40, batch=16, k=4, frac=0.0)  # a tail of 8 rows, 2 batches become 1 of 40
def test_every_batch_has_at_least_the_minimum_for_any_n_b_k(n: int, batch: int, k: int,
                                                            frac: float) -> None:
    need = min_batch_size([k, 2])
    try:
        s = Schedule(n, frac, batch, 3, need)
    except ValueError as exc:
        assert batch < need or n - round(n * frac) < need, exc
        return
    sizes = [s.batch_size_of(j) for j in range(s.n_batches)]
    assert min(sizes) >= need
    assert [i for a, b in s.batch_bounds for i in range(a, b)] == list(range(s.n_train))
    assert all(size == batch for size in sizes[:-1])  # only the last batch can differ
    assert sizes[-1] < batch + need and s.width == max(sizes)
    check_batches(s, "grid", [k, 2])  # what each party checks passes


@pytest.mark.parametrize(("n", "batch", "need"), [(100, 30, 10), (3200, 16, 16), (64, 64, 4)])
def test_a_tail_of_at_least_the_minimum_keeps_todays_partition(n: int, batch: int,
                                                               need: int) -> None:
    today, now = Schedule(n, 0.0, batch, 1), Schedule(n, 0.0, batch, 1, need)
    assert now.batch_bounds == today.batch_bounds and now.width == today.width
    assert np.array_equal(now.order(2), today.order(2))


def test_a_short_tail_is_folded_into_the_previous_batch() -> None:
    s = Schedule(161, 0.0, 16, 1, 16)
    assert s.n_batches == 10 and s.batch_bounds[-1] == (144, 161) and s.width == 17
    assert np.array_equal(s.train_rows, Schedule(161, 0.0, 16, 1).train_rows)


@pytest.mark.parametrize(("n", "batch", "need", "match"), [
    (100, 8, 16, "batch size 8 is below the minimum batch 16"),
    (12, 64, 16, "the training split has 12 rows, fewer than the minimum batch 16")])
def test_a_schedule_that_cannot_meet_the_minimum_is_refused(n: int, batch: int, need: int,
                                                            match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Schedule(n, 0.0, batch, 1, need)


def test_a_party_refuses_a_partition_with_a_short_batch_in_one_line() -> None:
    """Today's partition (no minimum) of 161 rows by 16 ends in a batch of one row."""
    with pytest.raises(ProtocolAbort) as info:
        check_batches(Schedule(161, 0.0, 16, 1), "bank", [4, 3])
    assert str(info.value) == (
        "bank: batch 11 of 11 has 1 rows, below the minimum batch 16 (4x the larger party's "
        "4 columns); per-batch gradients could reveal labels, so this party refuses to train")
