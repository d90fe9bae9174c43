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
