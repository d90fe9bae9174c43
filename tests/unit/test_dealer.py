"""federation.dealer: the corrections c_1 of one epoch, recomputed from the two seeds.

The reference below expands M, m, c_0, a, b with ``crypto.correlated`` under the same
labels the parties use and computes M^T m - c_0 and a.b - c_0 on Python ints, so the
dealer's own ring code is not trusted to check itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from crypto import beaver, correlated
from crypto.ring import Ring
from federation.dealer import Dealer
from federation.protocol.messages import Role
from federation.protocol.products import GRAD, LOSS
from federation.protocol.schedule import Schedule

MOD = 2**64
SEEDS = {Role.GRID: b"g" * 32, Role.BANK: b"b" * 32}
COLUMNS = {Role.GRID: 3, Role.BANK: 5}
# 103 rows, 21 validate, 82 train: five batches of 16 and a last batch of 2.
SCHEDULE = Schedule(n_rows=103, validation_fraction=0.2, batch_size=16, seed=7)


def ints(a: Ring) -> list[int]:
    return [int(v) for v in np.asarray(a).ravel()]


def ref_product_c1(owner: Role, holder: Role, epoch: int) -> list[list[int]]:
    s, k, product = SCHEDULE, COLUMNS[owner], GRAD[owner]
    m = correlated.vector_masks(SEEDS[holder], product, epoch, s.n_batches, s.width)
    c_0 = correlated.product_c0(SEEDS[owner], product, epoch, s.n_batches, k)
    rows = []
    for t, batch in enumerate(s.order(epoch)):
        n = s.batch_size_of(int(batch))
        mat = correlated.matrix_mask(SEEDS[owner], owner.value, int(batch), (n, k))
        col = [ints(mat[:, j]) for j in range(k)]
        vec = ints(m[t, :n])
        rows.append([(sum(a * b for a, b in zip(col[j], vec)) - int(c_0[t, j])) % MOD
                     for j in range(k)])
    return rows


def ref_loss_c1(epoch: int) -> list[int]:
    s = SCHEDULE
    a = correlated.dot_first_masks(SEEDS[Role.GRID], LOSS, epoch, s.n_batches, s.width)
    b = correlated.dot_second_masks(SEEDS[Role.BANK], LOSS, epoch, s.n_batches, s.width)
    c_0 = correlated.dot_c0(SEEDS[Role.GRID], LOSS, epoch, s.n_batches)
    out = []
    for t, batch in enumerate(s.order(epoch)):
        n = s.batch_size_of(int(batch))
        out.append((sum(x * y for x, y in zip(ints(a[t, :n]), ints(b[t, :n])))
                     - int(c_0[t])) % MOD)
    return out


def new_dealer() -> Dealer:
    return Dealer(SEEDS, SCHEDULE, COLUMNS)


def test_schedule_fixture_has_a_short_last_batch() -> None:
    assert SCHEDULE.n_batches == 6
    assert [SCHEDULE.batch_size_of(j) for j in range(6)] == [16] * 5 + [2]


@pytest.mark.parametrize("epoch", [1, 2, 3])
def test_grid_corrections_equal_mt_m_minus_c0_for_every_iteration(epoch: int) -> None:
    got = new_dealer().corrections(Role.GRID, epoch)
    assert set(got) == {GRAD[Role.BANK]}  # the grid receives no "loss" correction
    c_1 = got[GRAD[Role.BANK]]
    assert c_1.dtype == np.uint64 and c_1.shape == (SCHEDULE.n_batches, COLUMNS[Role.BANK])
    assert [ints(r) for r in c_1] == ref_product_c1(Role.BANK, Role.GRID, epoch)


@pytest.mark.parametrize("epoch", [1, 2, 3])
def test_bank_corrections_equal_mt_m_minus_c0_and_ab_minus_c0(epoch: int) -> None:
    got = new_dealer().corrections(Role.BANK, epoch)
    assert set(got) == {GRAD[Role.GRID], LOSS}
    c_1 = got[GRAD[Role.GRID]]
    assert c_1.shape == (SCHEDULE.n_batches, COLUMNS[Role.GRID])
    assert [ints(r) for r in c_1] == ref_product_c1(Role.GRID, Role.BANK, epoch)
    assert got[LOSS].shape == (SCHEDULE.n_batches,) and got[LOSS].dtype == np.uint64
    assert ints(got[LOSS]) == ref_loss_c1(epoch)


def test_corrections_follow_the_epochs_batch_order() -> None:
    """Epochs shuffle batches differently, so their correction rows differ."""
    d = new_dealer()
    e1, e2 = d.corrections(Role.BANK, 1), d.corrections(Role.BANK, 2)
    assert not np.array_equal(SCHEDULE.order(1), SCHEDULE.order(2))
    assert not (e1[GRAD[Role.GRID]] == e2[GRAD[Role.GRID]]).any()


def test_last_batch_uses_its_own_short_mask_not_the_padded_width() -> None:
    epoch = 1
    t = int(np.flatnonzero(SCHEDULE.order(epoch) == SCHEDULE.n_batches - 1)[0])
    got = new_dealer().corrections(Role.GRID, epoch)[GRAD[Role.BANK]][t]
    k = COLUMNS[Role.BANK]
    m = correlated.vector_masks(SEEDS[Role.GRID], GRAD[Role.BANK], epoch, SCHEDULE.n_batches,
                                SCHEDULE.width)[t]
    c_0 = correlated.product_c0(SEEDS[Role.BANK], GRAD[Role.BANK], epoch, SCHEDULE.n_batches,
                                k)[t]
    short = correlated.matrix_mask(SEEDS[Role.BANK], "bank", SCHEDULE.n_batches - 1, (2, k))
    padded = correlated.matrix_mask(SEEDS[Role.BANK], "bank", SCHEDULE.n_batches - 1,
                                    (SCHEDULE.width, k))
    assert (got == beaver.product_correction(short, m[:2], c_0)).all()
    assert not (got == beaver.product_correction(padded, m, c_0)).all()


@pytest.mark.parametrize("owner", [Role.GRID, Role.BANK])
def test_dealt_corrections_make_each_iterations_product_exact(owner: Role) -> None:
    """End to end: party-side masks + the dealer's c_1 give X^T s_Q for every t."""
    holder = Role.BANK if owner is Role.GRID else Role.GRID
    epoch, k, s = 2, COLUMNS[owner], SCHEDULE
    c_1 = new_dealer().corrections(holder, epoch)[GRAD[owner]]
    m = correlated.vector_masks(SEEDS[holder], GRAD[owner], epoch, s.n_batches, s.width)
    c_0 = correlated.product_c0(SEEDS[owner], GRAD[owner], epoch, s.n_batches, k)
    rng = np.random.default_rng(1)
    for t, batch in enumerate(s.order(epoch)):
        n = s.batch_size_of(int(batch))
        x = rng.integers(0, MOD, (n, k), dtype=np.uint64)
        s_q = rng.integers(0, MOD, n, dtype=np.uint64)
        mat = correlated.matrix_mask(SEEDS[owner], owner.value, int(batch), (n, k))
        z_p = beaver.combine_matrix_side(mat, beaver.mask_vector(s_q, m[t, :n]), c_0[t])
        z_q = beaver.combine_vector_side(beaver.mask_matrix(x, mat), s_q, c_1[t])
        want = [sum(int(x[i, j]) * int(s_q[i]) for i in range(n)) % MOD for j in range(k)]
        assert ints(z_p + z_q) == want, f"iteration {t} (batch {batch})"


@pytest.mark.parametrize("role", [Role.GRID, Role.BANK])
def test_role_epoch_cannot_be_dealt_twice(role: Role) -> None:
    d = new_dealer()
    d.corrections(role, 1)
    with pytest.raises(ValueError, match="already dealt"):
        d.corrections(role, 1)
    d.corrections(role, 2)  # another epoch is fine
    d.corrections(Role.GRID if role is Role.BANK else Role.BANK, 1)  # and the other role


def test_dealer_is_deterministic_given_the_seeds() -> None:
    a, b = new_dealer().corrections(Role.BANK, 1), new_dealer().corrections(Role.BANK, 1)
    assert all((a[name] == b[name]).all() for name in a)
    other = Dealer({Role.GRID: b"x" * 32, Role.BANK: SEEDS[Role.BANK]}, SCHEDULE, COLUMNS)
    assert not (other.corrections(Role.BANK, 1)[LOSS] == a[LOSS]).any()
