"""The ring Z_2^l for l <= 48, with exact products through float64 BLAS.

numpy has no BLAS for integer matrix products (``uint64`` matmul runs ~50x slower than
``float64``). A product whose exact value fits in the 53-bit mantissa of a float64 is
computed exactly by BLAS, so each ring element x < 2^l is split into L limbs of
w = ceil(l / L) bits, x = sum_i 2^(w i) x_i, with L the fewest limbs for which a chunk of
4096 rows of limb products stays below 2^53 (``limb_count``: L = 1 up to 20 bits, 2 up to
40, 3 up to 48), and

    a^T b = sum over i + j < L of 2^(w (i + j)) a_i^T b_j   (mod 2^l; 2^(w L) = 0 mod 2^l)

is L (L + 1) / 2 float64 products (1, 3 or 6), each over a chunk of rows short enough that
no partial sum reaches 2^53 (each term is below 2^(2w)), added up as integers. The ring
width l is chosen per job from what the opened results must hold (``ring_bits``), which
keeps both the arithmetic and the messages (``pack``: ceil(l / 8) bytes per element) small.

Elements are stored as ``uint64`` arrays with values in [0, 2^l); where speed matters, as
the narrowest machine words that hold l bits (``word_dtype``: ``uint32`` up to 32 bits),
which halve the memory traffic and pack to the same bytes (``pack_words``). Assumes:
inputs are already reduced mod 2^l (``reduce``); no numpy scalars (they warn on overflow).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from crypto.ring import Ring

MAX_BITS = 48
_MANTISSA = 53
_CHUNK_ROWS = 4096  # bounds the float64 temporaries (a chunk of each operand, two limbs)
Signed = npt.NDArray[np.int64]
# Rows [start, stop) of a matrix, produced on demand (e.g. from a PRG or a packed buffer),
# so a product never holds a whole operand in memory.
RowSource = Callable[[int, int], Ring]
Words = npt.NDArray[np.unsignedinteger[Any]]
Limbs = tuple[npt.NDArray[np.float64], ...]
# Rows [start, stop) already split into the L limbs of w bits (low first), as float64.
LimbSource = Callable[[int, int], Limbs]


def ring_bits(n_rows: int, value_bits: int) -> int:
    """The ring width l such that any sum of ``n_rows`` values with |v| <= 2^value_bits
    decodes without wrapping as a signed number: bit_length(n) + value_bits + 1."""
    if n_rows < 1 or value_bits < 0:
        raise ValueError(f"need n_rows >= 1 and value_bits >= 0, got {n_rows}, {value_bits}")
    bits = int(n_rows).bit_length() + value_bits + 1
    if bits > MAX_BITS:
        raise ValueError(f"{n_rows} rows of {value_bits}-bit values need a {bits}-bit ring; "
                         f"the limb products support at most {MAX_BITS}")
    return max(bits, 2)


def _mask(bits: int) -> np.uint64:
    return np.uint64((1 << bits) - 1)


def _check_bits(bits: int) -> None:
    if not 2 <= bits <= MAX_BITS:
        raise ValueError(f"ring width must be in [2, {MAX_BITS}] bits, got {bits}")


def reduce(x: Ring, bits: int) -> Ring:
    """x mod 2^l."""
    _check_bits(bits)
    return np.bitwise_and(np.asarray(x, dtype=np.uint64), _mask(bits))


def from_signed(v: npt.ArrayLike, bits: int) -> Ring:
    """Signed integers as ring elements (two's complement mod 2^l)."""
    a = np.asarray(v)
    if a.dtype.kind not in "iu":
        raise TypeError(f"expected integers, got dtype {a.dtype}")
    return reduce(a.astype(np.int64).view(np.uint64), bits)


def to_signed(x: Ring, bits: int) -> Signed:
    """Ring elements as signed integers in [-2^(l-1), 2^(l-1))."""
    r = reduce(x, bits).view(np.int64)
    return np.where(r >= (1 << (bits - 1)), r - (1 << bits), r).astype(np.int64)


def limb_count(bits: int) -> int:
    """L, the limbs per element: the fewest with 2w + 12 <= 53 (4096-row chunks) for
    w = ceil(l / L)."""
    _check_bits(bits)
    return 1 if bits <= 20 else 2 if bits <= 40 else 3


def limb_width(bits: int) -> int:
    """w = ceil(l / L), the bits of each limb."""
    count = limb_count(bits)
    return (bits + count - 1) // count


def chunk_rows(bits: int) -> int:
    """Rows per float64 product: at most 4096, and few enough that no sum reaches 2^53."""
    return max(1, min(_CHUNK_ROWS, 1 << (_MANTISSA - 2 * limb_width(bits))))


def split_limbs(x: Words, bits: int) -> Limbs:
    """x = sum_i 2^(w i) x_i with x_i < 2^w, as float64 (exact: w <= 20)."""
    return _limbs(x, limb_width(bits), limb_count(bits))


def _to_float(x: Words) -> npt.NDArray[np.float64]:
    # Values are below 2^48: the signed view converts the same, and numpy converts signed
    # integers to float several times faster than uint64.
    signed = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}[x.dtype.itemsize]
    return x.view(signed).astype(np.float64) if x.dtype.itemsize == 8 else x.astype(np.float64)


def _limbs(x: Words, w: int, count: int) -> Limbs:
    if count == 1:
        return (_to_float(x),)
    out = []
    low = x.dtype.type((1 << w) - 1)
    part = np.empty_like(x)
    for i in range(count):
        np.right_shift(x, x.dtype.type(w * i), out=part)
        if i < count - 1:
            np.bitwise_and(part, low, out=part)
        out.append(_to_float(part))
    return tuple(out)


def _exact(prod: npt.NDArray[np.float64]) -> Ring:
    # Every entry is an integer in [0, 2^53): the conversion is exact.
    return prod.astype(np.uint64)


def matmul_t(a: Ring, b: Ring, bits: int) -> Ring:
    """a^T b mod 2^l for a (n x k) and b (n x t) with entries in [0, 2^l).

    1. w = ceil(l / L); split both operands into L limbs (below 2^w).
    2. Per chunk of r rows (r * 2^(2w) <= 2^53): float64 products a_i^T b_j, i + j < L.
    3. Accumulate as uint64 integers; result = sum 2^(w (i + j)) a_i^T b_j mod 2^l.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"cannot multiply {a.shape}^T by {b.shape}")
    return matmul_t_rows(lambda s, e: a[s:e], lambda s, e: b[s:e], a.shape[0], bits)


def matmul_t_rows(a: RowSource, b: RowSource, n_rows: int, bits: int) -> Ring:
    """``matmul_t`` of two n_rows-row operands given as row sources, a chunk at a time."""
    return matmul_t_limbs(lambda s, e: split_limbs(a(s, e), bits),
                          lambda s, e: split_limbs(b(s, e), bits), n_rows, bits)


def matmul_t_limbs(a: LimbSource, b: LimbSource, n_rows: int, bits: int) -> Ring:
    """``matmul_t`` of two operands given as limb sources (e.g. a matrix split once and kept
    as its limbs, used for many products)."""
    count, w, rows = limb_count(bits), limb_width(bits), chunk_rows(bits)
    terms: list[Ring] | None = None  # terms[d]: the sum of a_i^T b_j over i + j = d
    for start in range(0, max(n_rows, 1), rows):
        stop = min(start + rows, n_rows)
        a_limbs, b_limbs = a(start, stop), b(start, stop)
        if a_limbs[0].shape[0] != stop - start or b_limbs[0].shape[0] != stop - start:
            raise ValueError(f"row sources gave {a_limbs[0].shape[0]} and "
                             f"{b_limbs[0].shape[0]} rows for rows [{start}, {stop})")
        if terms is None:
            shape = (a_limbs[0].shape[1], b_limbs[0].shape[1])
            terms = [np.zeros(shape, dtype=np.uint64) for _ in range(count)]
        for i in range(count):
            for j in range(count - i):
                terms[i + j] += _exact(a_limbs[i].T @ b_limbs[j])
    if terms is None:  # pragma: no cover - the loop runs at least once
        raise ValueError("no rows")
    total = terms[0]
    for d in range(1, count):
        total += np.left_shift(terms[d], np.uint64(w * d))
    return reduce(total, bits)


def elementwise_bytes(bits: int) -> int:
    """Bytes per ring element on the wire."""
    _check_bits(bits)
    return (bits + 7) // 8


def _top_byte_mask(bits: int) -> np.uint8:
    rest = bits - 8 * (elementwise_bytes(bits) - 1)
    return np.uint8((1 << rest) - 1)


def pack(x: Ring, bits: int) -> npt.NDArray[np.uint8]:
    """Ring elements as their low ceil(l / 8) little-endian bytes: shape (*x.shape, nbytes).

    Bits at or above l are dropped, so the bytes are those of x mod 2^l.
    """
    nbytes = elementwise_bytes(bits)
    le = np.ascontiguousarray(x, dtype="<u8")
    out = np.empty((*le.shape, nbytes), dtype=np.uint8)
    np.copyto(out, le.view(np.uint8).reshape(*le.shape, 8)[..., :nbytes])
    out[..., nbytes - 1] &= _top_byte_mask(bits)
    return out


def unpack(p: npt.NDArray[np.uint8], bits: int) -> Ring:
    """Inverse of ``pack``; bits above l are dropped (reduced mod 2^l)."""
    nbytes = elementwise_bytes(bits)
    if p.dtype != np.uint8 or p.ndim < 1 or p.shape[-1] != nbytes:
        raise ValueError(f"expected packed uint8 (..., {nbytes}), got {p.dtype} {p.shape}")
    out = np.zeros(p.shape[:-1], dtype="<u8")
    view = out.view(np.uint8).reshape(*p.shape[:-1], 8)
    view[..., :nbytes] = p
    view[..., nbytes - 1] &= _top_byte_mask(bits)
    return out.astype(np.uint64, copy=False)


def word_dtype(bits: int) -> type[np.unsignedinteger[Any]]:
    """The narrowest machine word holding l bits: ``uint32`` up to 32 bits, else ``uint64``."""
    _check_bits(bits)
    return np.uint32 if bits <= 32 else np.uint64


def reduce_words(x: Words, bits: int) -> Words:
    """x mod 2^l in place, keeping x's word type."""
    _check_bits(bits)
    np.bitwise_and(x, x.dtype.type((1 << bits) - 1), out=x)
    return x


def pack_words(x: Words, bits: int) -> npt.NDArray[np.uint8]:
    """``pack`` of words already reduced mod 2^l, as ``uint32`` or ``uint64``: the same bytes.

    Three-byte elements from ``uint32`` words (rings of 17 to 24 bits) are packed four at a
    time into three words by shifts, several times faster than a strided byte copy.
    """
    nbytes = elementwise_bytes(bits)
    if x.dtype != np.uint32 or nbytes != 3:
        return pack(x.astype(np.uint64), bits)
    flat = np.ascontiguousarray(x, dtype="<u4").reshape(-1)
    quads = -(-flat.size // 4)
    if flat.size % 4:
        flat = np.concatenate([flat, np.zeros(4 * quads - flat.size, dtype="<u4")])
    a, b, c, d = (flat[i::4] for i in range(4))
    out = np.empty((quads, 3), dtype="<u4")
    tmp = np.empty(quads, dtype="<u4")
    np.left_shift(b, np.uint32(24), out=tmp)
    np.bitwise_or(a, tmp, out=out[:, 0])
    np.right_shift(b, np.uint32(8), out=tmp)
    np.left_shift(c, np.uint32(16), out=out[:, 1])
    np.bitwise_or(out[:, 1], tmp, out=out[:, 1])
    np.right_shift(c, np.uint32(16), out=tmp)
    np.left_shift(d, np.uint32(8), out=out[:, 2])
    np.bitwise_or(out[:, 2], tmp, out=out[:, 2])
    return out.view(np.uint8).reshape(-1)[:3 * x.size].reshape(*x.shape, 3)


def unpack_words(p: npt.NDArray[np.uint8], bits: int,
                 out: npt.NDArray[np.uint32] | None = None) -> Words:
    """``unpack`` into words of ``word_dtype(bits)`` (bits above l dropped).

    Three-byte elements into ``uint32``: element i is the 4-byte little-endian word at byte
    3i (a strided view, no copy) with its top byte, the next element's first, masked off;
    written into ``out`` (a reused 1-d buffer, its first elements) if it is large enough.
    """
    nbytes = elementwise_bytes(bits)
    if word_dtype(bits) is not np.uint32 or nbytes != 3 or p.dtype != np.uint8 \
            or p.ndim < 1 or p.shape[-1] != 3 or p.size < 6:
        return unpack(p, bits).astype(word_dtype(bits), copy=False)
    flat = np.ascontiguousarray(p).reshape(-1)
    count = flat.size // 3
    top = np.uint32((1 << bits) - 1)
    fits = out is not None and out.dtype == np.uint32 and out.ndim == 1 \
        and out.size >= count and out.flags.c_contiguous
    out = out[:count] if out is not None and fits else np.empty(count, dtype=np.uint32)
    # the first count - 1 elements: their 4-byte reads stay inside the buffer
    words = np.ndarray((count - 1,), dtype="<u4", buffer=flat, strides=(3,))
    np.bitwise_and(words, top, out=out[:-1])
    last = flat[-3:].astype(np.uint32)
    out[-1:] = (last[0] | last[1] << np.uint32(8) | last[2] << np.uint32(16)) & top
    return out.reshape(p.shape[:-1])
