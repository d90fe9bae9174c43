"""federation.dealer_shared: mode shared's corrections, recomputed from the two seeds.

The references expand M, m, c_0, a, b with ``crypto.correlated`` under the labels the
parties use and compute M m - c_0, M^T m - c_0 and a.b - c_0 on Python ints, so the
dealer's ring code is not trusted to check itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from crypto import beaver, correlated
from crypto.correlated import SQUARE, mask_label
from crypto.prg import expand
from crypto.ring import Ring
from federation.dealer_shared import SharedDealer
from federation.protocol.messages import Role
from federation.protocol.products import BACKWARD_PRODUCT, FORWARD_PRODUCT
from federation.protocol.schedule import Schedule

MOD = 2**64
SEEDS = {Role.GRID: b"g" * 32, Role.BANK: b"b" * 32}
COLUMNS = {Role.GRID: 3, Role.BANK: 5}
# 103 rows, 21 validate, 82 train: five batches of 16 and a last batch of 2.
SCHEDULE = Schedule(n_rows=103, validation_fraction=0.2, batch_size=16, seed=7)
OTHER = {Role.GRID: Role.BANK, Role.BANK: Role.GRID}


def ints(a: Ring) -> list[int]:
    return [int(v) for v in np.asarray(a).ravel()]


def new_dealer() -> SharedDealer:
    return SharedDealer(SEEDS, SCHEDULE, COLUMNS)


def ref_forward_c1(owner: Role, epoch: int) -> list[list[int]]:
    """M m - c_0 per iteration (M is n x k, m has k entries), zero-padded to the width."""
    s, k, product, holder = SCHEDULE, COLUMNS[owner], FORWARD_PRODUCT[owner], OTHER[owner]
    m = correlated.vector_masks(SEEDS[holder], product, epoch, s.n_batches, k)
    c_0 = correlated.product_c0(SEEDS[owner], product, epoch, s.n_batches, s.width)
    rows = []
    for t, batch in enumerate(s.order(epoch)):
        n = s.batch_size_of(int(batch))
        mat = correlated.matrix_mask(SEEDS[owner], owner.value, int(batch), (n, k))
        row = [(sum(int(mat[i, j]) * int(m[t, j]) for j in range(k)) - int(c_0[t, i])) % MOD
               for i in range(n)]
        rows.append(row + [0] * (s.width - n))
    return rows


def ref_backward_c1(owner: Role, epoch: int) -> list[list[int]]:
    """M^T m - c_0 per iteration (m has n entries)."""
    s, k, product, holder = SCHEDULE, COLUMNS[owner], BACKWARD_PRODUCT[owner], OTHER[owner]
    m = correlated.vector_masks(SEEDS[holder], product, epoch, s.n_batches, s.width)
    c_0 = correlated.product_c0(SEEDS[owner], product, epoch, s.n_batches, k)
    rows = []
    for t, batch in enumerate(s.order(epoch)):
        n = s.batch_size_of(int(batch))
        mat = correlated.matrix_mask(SEEDS[owner], owner.value, int(batch), (n, k))
        rows.append([(sum(int(mat[i, j]) * int(m[t, i]) for i in range(n)) - int(c_0[t, j]))
                     % MOD for j in range(k)])
    return rows


def ref_square_c1(epoch: int) -> list[int]:
    s = SCHEDULE
    a = correlated.dot_first_masks(SEEDS[Role.GRID], SQUARE, epoch, s.n_batches, s.width)
    b = correlated.dot_second_masks(SEEDS[Role.BANK], SQUARE, epoch, s.n_batches, s.width)
    c_0 = correlated.dot_c0(SEEDS[Role.GRID], SQUARE, epoch, s.n_batches)
    out = []
    for t, batch in enumerate(s.order(epoch)):
        n = s.batch_size_of(int(batch))
        out.append((sum(x * y for x, y in zip(ints(a[t, :n]), ints(b[t, :n]), strict=True))
                    - int(c_0[t])) % MOD)
    return out


@pytest.mark.parametrize("holder", [Role.GRID, Role.BANK])
def test_each_party_gets_the_corrections_of_the_peers_products_in_their_shapes(
        holder: Role) -> None:
    got = new_dealer().corrections(holder, 1)
    owner = OTHER[holder]
    want = {FORWARD_PRODUCT[owner]: (SCHEDULE.n_batches, SCHEDULE.width),
            BACKWARD_PRODUCT[owner]: (SCHEDULE.n_batches, COLUMNS[owner])}
    if holder is Role.BANK:
        want[SQUARE] = (SCHEDULE.n_batches,)
    assert {name: arr.shape for name, arr in got.items()} == want
    assert all(arr.dtype == np.uint64 for arr in got.values())


@pytest.mark.parametrize("epoch", [1, 2])
@pytest.mark.parametrize("holder", [Role.GRID, Role.BANK])
def test_corrections_equal_the_reference_on_python_ints(holder: Role, epoch: int) -> None:
    got = new_dealer().corrections(holder, epoch)
    owner = OTHER[holder]
    assert [ints(r) for r in got[FORWARD_PRODUCT[owner]]] == ref_forward_c1(owner, epoch)
    assert [ints(r) for r in got[BACKWARD_PRODUCT[owner]]] == ref_backward_c1(owner, epoch)
    if holder is Role.BANK:
        assert ints(got[SQUARE]) == ref_square_c1(epoch)


@pytest.mark.parametrize("owner", [Role.GRID, Role.BANK])
def test_dealt_corrections_make_forward_and_backward_products_exact(owner: Role) -> None:
    """Party-side masks + the dealer's c_1: X s_Q (forward) and X^T s_Q (backward)."""
    holder, epoch, k, s = OTHER[owner], 2, COLUMNS[owner], SCHEDULE
    dealt = new_dealer().corrections(holder, epoch)
    rng = np.random.default_rng(1)
    for forward in (True, False):
        product = (FORWARD_PRODUCT if forward else BACKWARD_PRODUCT)[owner]
        vec, out = (k, s.width) if forward else (s.width, k)
        m = correlated.vector_masks(SEEDS[holder], product, epoch, s.n_batches, vec)
        c_0 = correlated.product_c0(SEEDS[owner], product, epoch, s.n_batches, out)
        for t, batch in enumerate(s.order(epoch)):
            n = s.batch_size_of(int(batch))
            mat = correlated.matrix_mask(SEEDS[owner], owner.value, int(batch), (n, k))
            x = rng.integers(0, MOD, (n, k), dtype=np.uint64)
            size = k if forward else n
            s_q = rng.integers(0, MOD, size, dtype=np.uint64)
            c0_t = c_0[t, :n] if forward else c_0[t]
            c1_t = dealt[product][t, :n] if forward else dealt[product][t]
            z_p = beaver.combine_matrix_side(mat, beaver.mask_vector(s_q, m[t, :size]), c0_t,
                                             transpose=not forward)
            z_q = beaver.combine_vector_side(beaver.mask_matrix(x, mat), s_q, c1_t,
                                             transpose=not forward)
            if forward:
                want = [sum(int(x[i, j]) * int(s_q[j]) for j in range(k)) % MOD for i in range(n)]
            else:
                want = [sum(int(x[i, j]) * int(s_q[i]) for i in range(n)) % MOD for j in range(k)]
            assert ints(z_p + z_q) == want, f"forward={forward}, iteration {t}"


def test_dealt_square_triple_gives_the_dot_product_of_two_shares() -> None:
    epoch, s = 3, SCHEDULE
    c_1 = new_dealer().corrections(Role.BANK, epoch)[SQUARE]
    a = correlated.dot_first_masks(SEEDS[Role.GRID], SQUARE, epoch, s.n_batches, s.width)
    b = correlated.dot_second_masks(SEEDS[Role.BANK], SQUARE, epoch, s.n_batches, s.width)
    c_0 = correlated.dot_c0(SEEDS[Role.GRID], SQUARE, epoch, s.n_batches)
    rng = np.random.default_rng(2)
    for t, batch in enumerate(s.order(epoch)):
        n = s.batch_size_of(int(batch))
        u, v = (rng.integers(0, MOD, n, dtype=np.uint64) for _ in range(2))
        e, f = beaver.dot_mask(u, a[t, :n]), beaver.dot_mask(v, b[t, :n])
        z = (beaver.dot_combine_first(a[t, :n], e, f, c_0[t : t + 1])
             + beaver.dot_combine_second(e, b[t, :n], c_1[t : t + 1]))
        assert ints(z) == [sum(int(p) * int(q) for p, q in zip(u, v, strict=True)) % MOD]


def test_padding_of_short_batches_is_zero_and_their_masks_are_short() -> None:
    epoch = 1
    t = int(np.flatnonzero(SCHEDULE.order(epoch) == SCHEDULE.n_batches - 1)[0])
    got = new_dealer().corrections(Role.GRID, epoch)[FORWARD_PRODUCT[Role.BANK]][t]
    assert ints(got[2:]) == [0] * (SCHEDULE.width - 2)
    assert all(v != 0 for v in ints(got[:2]))


@pytest.mark.parametrize("role", [Role.GRID, Role.BANK])
def test_role_epoch_cannot_be_dealt_twice(role: Role) -> None:
    d = new_dealer()
    d.corrections(role, 1)
    with pytest.raises(ValueError, match="already dealt"):
        d.corrections(role, 1)
    d.corrections(role, 2)
    d.corrections(OTHER[role], 1)


def test_reuse_guard_refuses_a_vector_mask_label_dealt_twice() -> None:
    """Even through an internal path, one m is never dealt for two products."""
    d = new_dealer()
    d._product(Role.GRID, 1, forward=True)
    with pytest.raises(ValueError, match=r"vector mask 'm/fwd_grid/epoch=1' of the bank"):
        d._product(Role.GRID, 1, forward=True)
    with pytest.raises(ValueError, match="already dealt"):
        d.corrections(Role.BANK, 1)  # its forward mask was claimed above
    d._square(1)
    with pytest.raises(ValueError, match=r"'a/sq_loss/epoch=1' of the grid"):
        d._square(1)


def test_reuse_guard_covers_every_label_of_a_whole_job() -> None:
    d = new_dealer()
    for epoch in (1, 2, 3):
        for role in (Role.GRID, Role.BANK):
            d.corrections(role, epoch)
    labels = d._labels
    assert len(labels) == 3 * 6  # 4 products + a and b of the square, per epoch
    assert len({label for _, label in labels}) == len(labels)


def test_mask_labels_are_the_labels_the_parties_expand() -> None:
    s, seed = SCHEDULE, SEEDS[Role.BANK]
    product = FORWARD_PRODUCT[Role.GRID]
    shape = (s.n_batches, s.width)
    assert (expand(seed, mask_label("m", product, 2), shape)
            == correlated.vector_masks(seed, product, 2, *shape)).all()
    assert (expand(seed, mask_label("a", SQUARE, 2), shape)
            == correlated.dot_first_masks(seed, SQUARE, 2, *shape)).all()
    assert (expand(seed, mask_label("b", SQUARE, 2), shape)
            == correlated.dot_second_masks(seed, SQUARE, 2, *shape)).all()


def test_non_party_role_is_refused() -> None:
    with pytest.raises(ValueError, match="not a party"):
        new_dealer().corrections(Role.COORDINATOR, 1)


def test_dealer_is_deterministic_given_the_seeds() -> None:
    a, b = new_dealer().corrections(Role.BANK, 1), new_dealer().corrections(Role.BANK, 1)
    assert all((a[name] == b[name]).all() for name in a)
    other = SharedDealer({Role.GRID: b"x" * 32, Role.BANK: SEEDS[Role.BANK]}, SCHEDULE, COLUMNS)
    assert not (other.corrections(Role.BANK, 1)[SQUARE] == a[SQUARE]).any()
