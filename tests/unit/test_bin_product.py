"""crypto.limbs and crypto.bin_product: exact ring products through float limbs, packing,
and the bin product opened to the bank equal to the plaintext per-bin sums.

References are computed on Python ints (which never wrap) reduced mod 2^l.
"""

from __future__ import annotations

import numpy as np
import pytest

from crypto import bin_product as bp
from crypto.limbs import (
    MAX_BITS,
    chunk_rows,
    elementwise_bytes,
    from_signed,
    matmul_t,
    pack,
    pack_words,
    reduce,
    ring_bits,
    to_signed,
    unpack,
    unpack_words,
    word_dtype,
)
from crypto.prg import new_seed
from parties.binning import bin_matrix


def uniform(seed: int, shape: tuple[int, ...], bits: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**bits, size=shape, dtype=np.uint64)


def reference_matmul_t(a: np.ndarray, b: np.ndarray, bits: int) -> list[list[int]]:
    ao, bo = a.astype(object), b.astype(object)
    return [[int(sum(ao[:, i] * bo[:, j])) % 2**bits for j in range(b.shape[1])]
            for i in range(a.shape[1])]


@pytest.mark.parametrize(("bits", "n"), [(2, 50), (17, 300), (34, 8192 + 37), (40, 9000),
                                         (43, 2100), (MAX_BITS, 100)])
def test_matmul_t_is_exact_mod_2_l(bits: int, n: int) -> None:
    a = uniform(bits, (n, 3), bits)
    b = uniform(bits + 1, (n, 2), bits)
    # the worst case for the float partial sums: every entry at its maximum
    a[:40] = 2**bits - 1
    b[:40] = 2**bits - 1
    got = matmul_t(a, b, bits)
    assert got.dtype == np.uint64
    assert [[int(v) for v in row] for row in got] == reference_matmul_t(a, b, bits)


def test_matmul_t_refuses_mismatched_shapes_and_widths() -> None:
    with pytest.raises(ValueError, match="cannot multiply"):
        matmul_t(np.zeros((3, 2), np.uint64), np.zeros((4, 2), np.uint64), 20)
    with pytest.raises(ValueError, match="ring width"):
        matmul_t(np.zeros((3, 2), np.uint64), np.zeros((3, 2), np.uint64), 64)


def test_ring_bits_holds_the_largest_signed_sum() -> None:
    bits = ring_bits(64_000, 17)
    assert bits == 16 + 17 + 1
    worst = 64_000 * 2**17
    assert worst < 2 ** (bits - 1)
    assert to_signed(from_signed(np.array([-worst, worst]), bits), bits).tolist() == [-worst,
                                                                                        worst]
    with pytest.raises(ValueError, match="at most"):
        ring_bits(10**9, 30)


@pytest.mark.parametrize("bits", [2, 8, 9, 34, 40, 48])
def test_pack_round_trips_with_ceil_l_over_8_bytes(bits: int) -> None:
    x = uniform(7, (5, 4), bits)
    p = pack(x, bits)
    assert p.dtype == np.uint8 and p.shape == (5, 4, elementwise_bytes(bits))
    assert np.array_equal(unpack(p, bits), x)
    with pytest.raises(ValueError, match="packed"):
        unpack(p[..., :-1] if elementwise_bytes(bits) > 1 else p.astype(np.uint16), bits)


def test_reduce_and_signed_views() -> None:
    assert reduce(np.array([2**40 + 5], dtype=np.uint64), 40).tolist() == [5]
    assert to_signed(np.array([2**39, 2**39 - 1], dtype=np.uint64), 40).tolist() == [
        -(2**39), 2**39 - 1]


def _binned(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes with heavy ties and missing values, in the fixed-width layout."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[:, 1] = np.round(x[:, 1])  # ties
    x[:, 2] = np.where(rng.random(n) < 0.6, 0.0, x[:, 2])  # a tie spanning many shares
    x[rng.random((n, 4)) < 0.15] = np.nan  # missing values in every column
    b = bin_matrix(x, np.arange(n), 8, fixed_width=True)
    return b.flat_index(), b.one_hot(np.int64), b.width


def _run_product(positions: np.ndarray, width: int, v: np.ndarray, bits: int) -> np.ndarray:
    """Grid, bank and dealer in one process, following the recipe step by step."""
    n, t = v.shape
    seed_g, seed_b = new_seed(), new_seed()
    m_mat = bp.matrix_mask(seed_g, "test", (n, width), bits)          # grid and dealer
    m_vec = bp.vector_mask(seed_b, "block-1", (n, t), bits)           # bank and dealer
    c_0 = bp.block_c0(seed_g, "block-1", (width, t), bits)            # grid and dealer
    c_1 = bp.correction(m_mat, m_vec, c_0, bits)                       # dealer -> bank
    e = bp.mask_onehot(positions, m_mat, bits)                         # grid -> bank
    f = bp.mask_values(v, m_vec, bits)                                 # bank -> grid
    z_g = bp.grid_reply(bp.onehot(positions, width), f, c_0, bits)    # grid -> bank
    z_b = bp.bank_offset(e, m_vec, c_1, bits)                          # bank, ahead of V
    return bp.bank_open(z_g, z_b, bits)


def test_bin_product_equals_plaintext_per_bin_sums_exactly() -> None:
    n = 3000
    positions, onehot, width = _binned(11, n)
    rng = np.random.default_rng(12)
    frac = 16
    g = np.rint((rng.random(n) * 2 - 1) * 2**frac).astype(np.int64)
    g[:5] = 2**frac  # extremes
    h = np.rint(rng.random(n) * 0.25 * 2**frac).astype(np.int64)
    v = np.stack([g, h, g * (rng.random(n) < 0.3), np.zeros(n, np.int64)], axis=1)
    bits = ring_bits(n, frac + 1)
    got = _run_product(positions, width, v, bits)
    expected = onehot.astype(object).T @ v.astype(object)
    assert got.dtype == np.int64
    assert got.tolist() == expected.tolist()
    assert np.count_nonzero(onehot.sum(axis=0) == 0) > 0  # empty slots give exact zeros


def test_bin_product_of_labels_for_screening() -> None:
    n = 500
    positions, onehot, width = _binned(13, n)
    y = (np.random.default_rng(14).random((n, 1)) < 0.2).astype(np.int64)
    got = _run_product(positions, width, y, ring_bits(n, 1))
    assert got.tolist() == (onehot.T @ y).tolist()


def test_mask_onehot_hides_b_behind_a_uniform_mask() -> None:
    positions, onehot, width = _binned(15, 200)
    bits = 20
    m_mat = bp.matrix_mask(new_seed(), "x", (200, width), bits)
    e = bp.mask_onehot(positions, m_mat, bits)
    assert np.array_equal(reduce(e + m_mat, bits), onehot.astype(np.uint64))
    with pytest.raises(ValueError, match="positions"):
        bp.onehot(positions, width - 1)


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000])
def test_and_of_grid_bits_and_bank_bits_opens_only_the_and(n: int) -> None:
    rng = np.random.default_rng(n)
    left = rng.random((3, n)) < 0.5
    member = rng.random((3, n)) < 0.3
    seed_g, seed_b = new_seed(), new_seed()
    m_g = bp.bit_mask(seed_g, "M/t=1", 3, n)
    m_b = bp.bit_mask(seed_b, "m/t=1", 3, n)
    c_0 = bp.bit_mask(seed_g, "c0/t=1", 3, n)
    c_1 = bp.and_correction(m_g, m_b, c_0)
    lw, aw = bp.pack_bits(left), bp.pack_bits(member)
    e = bp.and_mask(lw, m_g)
    f = bp.and_mask(aw, m_b)
    z_g = bp.and_grid_reply(lw, f, c_0)
    opened = bp.unpack_bits(bp.and_bank_open(e, m_b, c_1, z_g), n)
    assert np.array_equal(opened, left & member)
    assert np.array_equal(bp.unpack_bits(lw, n), left)


@pytest.mark.parametrize("bits", [9, 17, 19, 24, 30, 34, 48])
@pytest.mark.parametrize("shape", [(1, 2), (5, 3), (8, 7), (301, 11)])
def test_words_pack_to_the_same_bytes_and_back(bits: int, shape: tuple[int, int]) -> None:
    x = uniform(bits + shape[0], shape, bits)
    w = x.astype(word_dtype(bits))
    p = pack_words(w.copy(), bits)
    assert np.array_equal(p, pack(x, bits))
    buffer = np.zeros(x.size + 5, dtype=np.uint32)
    for out in (None, buffer):
        back = unpack_words(p, bits, out)
        assert back.dtype == word_dtype(bits) and np.array_equal(back, x)
    dirty = p.copy()
    dirty[..., -1] = 0xFF  # bits at or above l are dropped
    assert np.array_equal(unpack_words(dirty, bits), unpack(dirty, bits))


@pytest.mark.parametrize("bits", [12, 19, 20, 21, 34, 48])
def test_bank_partial_with_a_reused_buffer_is_exact(bits: int) -> None:
    n, k, t = 5000, 7, 3
    e = uniform(1, (n, k), bits).astype(word_dtype(bits))
    m = uniform(2, (n, t), bits).astype(word_dtype(bits))
    e[:40], m[:40] = 2**bits - 1, 2**bits - 1
    want = reference_matmul_t(e.astype(np.uint64), m.astype(np.uint64), bits)
    scratch = np.full(chunk_rows(bits) * k, np.nan)
    for buffer in (None, scratch):
        got = bp.bank_partial(e, m, bits, buffer)
        assert [[int(v) for v in row] for row in got] == want


@pytest.mark.parametrize("bits", [19, 34])
def test_dealer_correction_from_seeds_block_by_block_equals_the_whole(bits: int) -> None:
    seeds, n, width = (new_seed(), new_seed()), 8192 + 300, 6
    blocks = [("b1", 2), ("b2", 3)]
    m_mat = bp.matrix_mask(seeds[0], "m", (n, width), bits)
    m_vec = np.hstack([bp.vector_mask(seeds[1], b, (n, w), bits) for b, w in blocks])
    c_0 = np.hstack([bp.block_c0(seeds[0], b, (width, w), bits) for b, w in blocks])
    want = bp.correction(m_mat, m_vec, c_0, bits)
    assert np.array_equal(bp.correction_from_seeds(seeds, "m", (n, width), blocks, bits), want)
