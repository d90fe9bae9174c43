"""The bin product: the grid's one-hot bin matrix B (n x K, 0/1) times a bank matrix V
(n x t), opened to the bank only. The one secure product of the design, in Z_2^l.

The dealer expands from its seeds: M (n x K, uniform) for the grid's matrix, once per
job; per block of columns, m (n x W) for the bank and c_0 (K x W) for the grid; it ships
only c_1 = M^T m - c_0 to the bank. Every column of m and c_0 serves one product column.

1. Grid: E = B - M, sent to the bank once per job (and reused by every product on B).
2. Bank: F = V - m (fresh columns of m for every product), sent to the grid.
3. Grid: z_G = B^T F + c_0, sent to the bank.
4. Bank: z_B = E^T m + c_1, then B^T V = z_G + z_B.

Check: B^T F + c_0 + (B - M)^T m + M^T m - c_0 = B^T (F + m) = B^T V. This is the
design's z_P = M^T F + c_0 plus E^T F, a term both parties know, moved to the grid: B is
0/1 with one 1 per row and column block, so B^T F is a sparse product, and z_B does not
depend on V, so the bank computes it ahead of time. What each party receives is the same
as in the design's form (E; F; a value masked by c_0).

A second, smaller product decides which of a tree node's rows go left on a grid split
without showing the grid the node: the grid's bit vector L (x <= threshold) ANDed with
the bank's membership bits a, over Z_2 with the same recipe (``and_*``): E = L ^ M,
F = a ^ m, z_G = (L & F) ^ c_0, z_B = (E & m) ^ c_1 with c_1 = (M & m) ^ c_0; the bank
opens L & a = z_G ^ z_B and learns L only on its node's rows.

Assumes: semi-honest parties; a dealer that colludes with neither and never sees E, F
(they travel party to party); masks from ``crypto.prg``; a fresh label per block.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from crypto.limbs import (
    Limbs,
    LimbSource,
    RowSource,
    Signed,
    chunk_rows,
    limb_count,
    limb_width,
    matmul_t,
    matmul_t_limbs,
    pack_words,
    reduce,
    reduce_words,
    split_limbs,
    to_signed,
    word_dtype,
)
from crypto.limbs import (
    Words as RingWords,
)
from crypto.prg import expand, expand_words
from crypto.ring import Ring

Positions = npt.NDArray[np.int64]
Words = npt.NDArray[np.uint64]


# -- masks expanded from seeds (dealer and party expand the same ones) -----------------
# Every mask is read from the keystream in words of ``word_dtype(bits)`` (4 bytes per
# element up to 32 bits, else 8) and reduced mod 2^l; all three nodes call these.
def mask_words(seed: bytes, label: str, shape: tuple[int, int], bits: int, start: int,
               stop: int, out: RingWords | None = None) -> RingWords:
    """Rows [start, stop) of the n x k mask under ``label``, uniform mod 2^l, as words
    (written into ``out`` if given, as ``crypto.prg.expand_words`` does)."""
    return reduce_words(expand_words(seed, label, shape, word_dtype(bits), start, stop, out),
                        bits)


def matrix_mask(seed: bytes, matrix: str, shape: tuple[int, int], bits: int) -> Ring:
    """M for the grid's one-hot matrix ``matrix`` (grid's seed): uniform mod 2^l."""
    return matrix_mask_rows(seed, matrix, shape, bits, 0, shape[0])


def vector_mask(seed: bytes, block: str, shape: tuple[int, int], bits: int) -> Ring:
    """m of one block of product columns (bank's seed)."""
    return mask_words(seed, f"bins/m/{block}", shape, bits, 0, shape[0]).astype(
        np.uint64, copy=False)


def block_c0(seed: bytes, block: str, shape: tuple[int, int], bits: int) -> Ring:
    """c_0 of one block of product columns (grid's seed)."""
    return mask_words(seed, f"bins/c0/{block}", shape, bits, 0, shape[0]).astype(
        np.uint64, copy=False)


def matrix_mask_words(seed: bytes, matrix: str, shape: tuple[int, int], bits: int,
                      start: int, stop: int, out: RingWords | None = None) -> RingWords:
    """Rows [start, stop) of ``matrix_mask`` as words: the same M, a block of rows at a time
    (into ``out``, a reused buffer, if given)."""
    return mask_words(seed, f"bins/M/{matrix}", shape, bits, start, stop, out)


def matrix_mask_rows(seed: bytes, matrix: str, shape: tuple[int, int], bits: int,
                     start: int, stop: int) -> Ring:
    """Rows [start, stop) of ``matrix_mask``."""
    return matrix_mask_words(seed, matrix, shape, bits, start, stop).astype(
        np.uint64, copy=False)


def block_mask_words(seed: bytes, blocks: list[tuple[str, int]], n: int, bits: int
                     ) -> Callable[[int, int], RingWords]:
    """Rows of the blocks' m side by side (as ``vector_mask`` expands each block), as words."""
    def rows(start: int, stop: int) -> RingWords:
        return np.hstack([mask_words(seed, f"bins/m/{name}", (n, width), bits, start, stop)
                          for name, width in blocks])

    return rows


def block_mask_rows(seed: bytes, blocks: list[tuple[str, int]], n: int, bits: int
                    ) -> RowSource:
    """``block_mask_words`` as ring elements."""
    words = block_mask_words(seed, blocks, n, bits)
    return lambda start, stop: words(start, stop).astype(np.uint64, copy=False)


def correction(m_mat: Ring, m_vec: Ring, c_0: Ring, bits: int) -> Ring:
    """Dealer: c_1 = M^T m - c_0 mod 2^l, the only value it sends per block."""
    return reduce(matmul_t(m_mat, m_vec, bits) - c_0, bits)


def correction_from_seeds(seeds: tuple[bytes, bytes], matrix: str, shape: tuple[int, int],
                          blocks: list[tuple[str, int]], bits: int,
                          m_limbs: LimbSource | None = None) -> Ring:
    """Dealer: ``correction`` of several blocks side by side, with m expanded a block of rows
    at a time from the bank's seed, and M likewise from the grid's (or given as its limbs,
    ``m_limbs``, when the dealer keeps them between batches)."""
    grid, bank = seeds
    n, width = shape
    c_0 = np.hstack([block_c0(grid, name, (width, w), bits) for name, w in blocks])

    vectors = block_mask_words(bank, blocks, n, bits)
    if m_limbs is not None:
        product = matmul_t_limbs(m_limbs, lambda s, e: split_limbs(vectors(s, e), bits), n,
                                 bits)
        return reduce(product - c_0, bits)
    # M a block of rows at a time, into buffers reused by every block (``bank_partial``)
    block = 8192
    words = np.empty(min(block, n) * width, dtype=word_dtype(bits))
    floats = np.empty(min(chunk_rows(bits), n) * width, dtype=np.float64)
    total = np.zeros(c_0.shape, dtype=np.uint64)
    for start in range(0, n, block):
        stop = min(start + block, n)
        m_rows = matrix_mask_words(grid, matrix, shape, bits, start, stop, words)
        total += bank_partial(m_rows, vectors(start, stop), bits, floats)
    return reduce(total - c_0, bits)


# -- grid ------------------------------------------------------------------------------
def onehot(positions: Positions, width: int) -> sp.csr_matrix:
    """B as a sparse 0/1 ``uint64`` matrix from each row's one-hot positions (n x k).

    CSR, so that B^T is CSC: its product with a dense F runs ~10x faster than CSR B^T's.
    """
    n, k = positions.shape
    if positions.size and (positions.min() < 0 or positions.max() >= width):
        raise ValueError(f"one-hot positions must be in [0, {width})")
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    ones = np.ones(n * k, dtype=np.uint64)
    return sp.csr_matrix((ones, (rows, positions.ravel())), shape=(n, width))


def mask_onehot(positions: Positions, m_mat: Ring, bits: int) -> Ring:
    """Grid: E = B - M mod 2^l, without building B densely."""
    return _minus_mask(positions, np.array(m_mat, dtype=np.uint64), bits)


def mask_onehot_packed(positions: Positions, m_words: RingWords, bits: int
                       ) -> npt.NDArray[np.uint8]:
    """Grid: E = B - M mod 2^l for a block of rows, packed for the wire (``pack_words``).

    ``m_words`` (from ``matrix_mask_words``) is overwritten: E is built in its memory."""
    return pack_words(_minus_mask(positions, m_words, bits), bits)


def _minus_mask(positions: Positions, m: RingWords, bits: int) -> RingWords:
    # In place, in m's word type: -M, plus one at each row's one-hot positions (distinct
    # within a row, so a plain fancy-index add is exact), reduced mod 2^l.
    n, k = positions.shape
    if m.shape[0] != n:
        raise ValueError(f"mask has {m.shape[0]} rows, B has {n}")
    np.negative(m, out=m)
    flat = (np.arange(n, dtype=np.int64) * m.shape[1])[:, None] + positions
    m.reshape(-1)[flat.ravel()] += m.dtype.type(1)
    return reduce_words(m, bits)


def grid_reply(b: sp.csr_matrix, f: Ring, c_0: Ring, bits: int) -> Ring:
    """Grid: z_G = B^T F + c_0 mod 2^l (a sparse product; uint64 sums wrap mod 2^64)."""
    if f.shape[0] != b.shape[0] or c_0.shape != (b.shape[1], f.shape[1]):
        raise ValueError(f"shapes B {b.shape}, F {f.shape}, c_0 {c_0.shape} do not fit")
    return reduce(np.asarray(b.T @ f, dtype=np.uint64) + c_0, bits)


# -- bank ------------------------------------------------------------------------------
def mask_values(v: Signed, m_vec: Ring, bits: int) -> Ring:
    """Bank: F = V - m mod 2^l for integer (fixed-point) values V."""
    if v.shape != m_vec.shape:
        raise ValueError(f"values {v.shape} and mask {m_vec.shape} differ in shape")
    return reduce(np.asarray(v, dtype=np.int64).view(np.uint64) - m_vec, bits)


def bank_offset(e: Ring, m_vec: Ring, c_1: Ring, bits: int) -> Ring:
    """Bank: z_B = E^T m + c_1 mod 2^l (no V in it: computed ahead of the product)."""
    return reduce(matmul_t(e, m_vec, bits) + c_1, bits)


def bank_offset_rows(e: LimbSource, m_vec: RowSource, n: int, c_1: Ring, bits: int) -> Ring:
    """``bank_offset`` with E as a limb source (split once, used for every block) and m
    as a row source, a block of rows at a time."""
    return reduce(matmul_t_limbs(e, lambda s, t: split_limbs(m_vec(s, t), bits), n, bits)
                  + c_1, bits)


def bank_partial(e: RingWords, m_vec: RingWords, bits: int,
                 scratch: npt.NDArray[np.float64] | None = None) -> Ring:
    """Bank: E^T m mod 2^l over a block of rows; z_B is the sum over all blocks plus c_1,
    so E can be used as it arrives and never kept (a matrix of a single product).

    ``scratch``: a reused 1-d float64 buffer of at least ``chunk_rows(bits)`` rows of E;
    with one limb (rings up to 20 bits) E's rows are widened into it, not into fresh memory."""
    n, k = e.shape
    if scratch is None or limb_count(bits) != 1 or scratch.size < min(n, chunk_rows(bits)) * k:
        return matmul_t(e, m_vec, bits)

    def e_limbs(start: int, stop: int) -> Limbs:
        rows = scratch[:(stop - start) * k].reshape(stop - start, k)
        rows[...] = e[start:stop]  # exact: l <= 20 bits
        return (rows,)  # consumed before the next block overwrites it

    return matmul_t_limbs(e_limbs, lambda start, stop: split_limbs(m_vec[start:stop], bits),
                          n, bits)


def limbs32(x: RingWords, bits: int) -> tuple[npt.NDArray[np.float32], ...]:
    """E's limbs as float32 (exact: at most 24 bits each), to keep E split once in at most
    the memory of one uint64 array and widen a block of rows to float64 per product."""
    if limb_width(bits) > 24:
        raise ValueError(f"a {bits}-bit ring has limbs wider than float32's 24-bit mantissa")
    return tuple(limb.astype(np.float32) for limb in split_limbs(x, bits))


def bank_open(z_g: Ring, z_b: Ring, bits: int) -> Signed:
    """Bank: B^T V = z_G + z_B, as signed integers."""
    return to_signed(z_g + z_b, bits)


# -- the AND of a grid bit vector with bank bits, over Z_2 (words of 64 bits) ------------
def pack_bits(bits: npt.NDArray[np.bool_]) -> Words:
    """Boolean arrays (..., n) as little-endian 64-bit words (..., ceil(n / 64))."""
    b = np.asarray(bits, dtype=bool)
    n = b.shape[-1]
    padded = np.zeros((*b.shape[:-1], -(-n // 64) * 64), dtype=bool)
    padded[..., :n] = b
    packed = np.packbits(padded, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64)


def unpack_bits(words: Words, n: int) -> npt.NDArray[np.bool_]:
    """Inverse of ``pack_bits``."""
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.unpackbits(raw, axis=-1, count=n, bitorder="little").astype(bool)


def bit_mask(seed: bytes, label: str, rows: int, n: int) -> Words:
    """Uniform words for ``rows`` bit vectors of length n (bits past n are zero)."""
    words = expand(seed, f"bits/{label}", (rows, -(-n // 64))).copy()
    if n % 64:
        words[:, -1] &= np.uint64((1 << (n % 64)) - 1)
    return words


def and_grid_masks(seed: bytes, label: str, rows: int, n: int) -> tuple[Words, Words]:
    """The grid's M and c_0 of ``rows`` ANDs under ``label`` (grid's seed)."""
    return bit_mask(seed, f"M/{label}", rows, n), bit_mask(seed, f"c0/{label}", rows, n)


def and_bank_mask(seed: bytes, label: str, rows: int, n: int) -> Words:
    """The bank's m of ``rows`` ANDs under ``label`` (bank's seed)."""
    return bit_mask(seed, f"m/{label}", rows, n)


def and_correction(m_grid: Words, m_bank: Words, c_0: Words) -> Words:
    """Dealer: c_1 = (M & m) ^ c_0."""
    return (m_grid & m_bank) ^ c_0


def and_mask(x: Words, mask: Words) -> Words:
    """Either party: E = L ^ M (grid) or F = a ^ m (bank)."""
    return x ^ mask


def and_grid_reply(left: Words, f: Words, c_0: Words) -> Words:
    """Grid: z_G = (L & F) ^ c_0."""
    return (left & f) ^ c_0


def and_bank_open(e: Words, m_bank: Words, c_1: Words, z_g: Words) -> Words:
    """Bank: L & a = z_G ^ (E & m) ^ c_1."""
    return z_g ^ (e & m_bank) ^ c_1
