"""Tests for crypto.psi.oprf: the unbalanced PSI of serving, both roles in one process."""

from __future__ import annotations

import numpy as np
import pytest

from crypto import psi
from crypto.psi import oprf
from crypto.psi.errors import PsiError

DOMAIN = b"epoch-1"


def ids(start: int, stop: int) -> list[str]:
    return [f"91330{i:07d}" for i in range(start, stop)]


def test_blinding_pairs_are_clamped_inverses_mod_l() -> None:
    seen = set()
    for _ in range(50):
        r, s = oprf.blinding_pair()
        a, b = int.from_bytes(r, "little"), int.from_bytes(s, "little")
        for x in (a, b):
            assert oprf.clamp(x) == x  # X25519 uses them as they are
        assert a * b % oprf.L == 1
        seen.add(r)
    assert len(seen) == 50


def test_unblinded_answers_are_the_prf_the_table_holds() -> None:
    k = psi.new_key()
    grid = ids(0, 300)
    table, perm = oprf.table(oprf.blind(grid, k, DOMAIN))  # X25519(k, H(id)) = F_k(id)
    oprf.check_table(table)
    asked = ["91330" + "0000005", "nope", grid[299], grid[42], "91330" + "9999999"]
    r, s = oprf.blinding_pair()
    answer = psi.reblind(oprf.blind(asked, r, DOMAIN), k)  # the grid's step
    pos = oprf.lookup(table, oprf.unblind(answer, s))
    assert [grid[perm[p]] if p >= 0 else None for p in pos] == [
        grid[5], None, grid[299], grid[42], None]


def test_the_grid_cannot_link_two_requests_for_one_id() -> None:
    one = ["913300000001"]
    a = oprf.blind(one, oprf.blinding_pair()[0], DOMAIN)
    b = oprf.blind(one, oprf.blinding_pair()[0], DOMAIN)
    assert not np.array_equal(a, b)


def test_another_epoch_key_matches_nothing() -> None:
    grid = ids(0, 50)
    table, _ = oprf.table(oprf.blind(grid, psi.new_key(), DOMAIN))
    r, s = oprf.blinding_pair()
    answer = psi.reblind(oprf.blind(grid[:10], r, DOMAIN), psi.new_key())
    assert (oprf.lookup(table, oprf.unblind(answer, s)) == -1).all()


def test_a_table_must_strictly_ascend() -> None:
    table, _ = oprf.table(oprf.blind(ids(0, 20), psi.new_key(), DOMAIN))
    swapped = table.copy()
    swapped[[7, 8]] = swapped[[8, 7]]
    with pytest.raises(PsiError, match="do not strictly ascend at index 8$"):
        oprf.check_table(swapped)
    repeated = table.copy()
    repeated[12] = repeated[11]
    with pytest.raises(PsiError, match="at index 12$"):
        oprf.check_table(repeated)
    tie = table[:3].copy()
    tie[1, :8] = tie[0, :8]  # equal first word: the order is decided further on
    tie[1, 8:] = 255
    tie[0, 8:] = 0
    tie[2] = 255
    oprf.check_table(tie)
    assert oprf.first_not_ascending(tie[[1, 0, 2]]) == 1


def test_lookup_handles_empty_inputs_and_values_past_the_end() -> None:
    table, _ = oprf.table(oprf.blind(ids(0, 5), psi.new_key(), DOMAIN))
    assert oprf.lookup(table, np.zeros((0, 32), np.uint8)).shape == (0,)
    assert oprf.lookup(table[:0], table).tolist() == [-1] * 5
    assert oprf.lookup(table, np.full((1, 32), 255, np.uint8)).tolist() == [-1]


def test_batched_blinding_pairs_are_independent_clamped_inverses() -> None:
    r, s = oprf.blinding_pairs(300)
    assert r.shape == s.shape == (300, 32) and r.dtype == s.dtype == np.uint8
    a = [int.from_bytes(bytes(x), "little") for x in r]
    b = [int.from_bytes(bytes(x), "little") for x in s]
    assert all(oprf.clamp(x) == x for x in a + b)
    assert all(x * y % oprf.L == 1 for x, y in zip(a, b, strict=True))
    assert len(set(a)) == 300
    assert oprf.blinding_pairs(0)[0].shape == (0, 32)


def test_per_id_keys_let_the_grid_check_exactly_the_revealed_matches() -> None:
    """Step 5: X25519(s_i, Q_i) of a revealed match is in the grid's table; a wrong key or a
    point the bank did not blind from an ID is not."""
    from crypto.psi.x25519 import multiply_each

    k = psi.new_key()
    grid = ids(0, 100)
    table, perm = oprf.table(oprf.blind(grid, k, DOMAIN))
    asked = [grid[7], "stranger", grid[70]]
    r, s = oprf.blinding_pairs(3)
    points = multiply_each(r, psi.hash_to_points(asked, DOMAIN))
    answers = psi.reblind(points, k)
    pos = oprf.check_revealed(table, answers[[0, 2]], s[[0, 2]])
    assert [grid[perm[p]] for p in pos] == [grid[7], grid[70]]
    assert oprf.check_revealed(table, answers[[1]], s[[1]]).tolist() == [-1]
    assert oprf.check_revealed(table, answers[[0]], s[[2]]).tolist() == [-1]  # another's key
    assert oprf.check_revealed(table, psi.reblind(table[:5], k), s[[0] * 5]).tolist() == [-1] * 5
    with pytest.raises(PsiError, match="2 keys for 3 points"):
        multiply_each(s[:2], answers)
