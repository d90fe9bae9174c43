"""The ring Z_2^l for l <= 48, with exact products through float64 BLAS.

numpy has no BLAS for integer matrix products (``uint64`` matmul runs ~50x slower than
``float64``). A product whose exact value fits in the 53-bit mantissa of a float64 is
computed exactly by BLAS, so each ring element x < 2^l is split into two limbs of
w = ceil(l / 2) bits, x = lo + 2^w hi, and

    a^T b = lo_a^T lo_b + 2^w (lo_a^T hi_b + hi_a^T lo_b)   (mod 2^l; 2^(2w) = 0 mod 2^l)

is three float64 products, each over a chunk of rows short enough that no partial sum
reaches 2^53 (each term is below 2^(2w)), added up as integers. The ring width l is
chosen per job from what the opened results must hold (``ring_bits``), which keeps both
the arithmetic and the messages (``pack``: ceil(l / 8) bytes per element) small.

Elements are stored as ``uint64`` arrays with values in [0, 2^l). Assumes: inputs are
already reduced mod 2^l (``reduce``); no numpy scalars (they warn on overflow).
"""

from __future__ import annotations

from collections.abc import Callable

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
Limbs = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
# Rows [start, stop) already split into (lo, hi) limbs of ceil(l / 2) bits, as float64.
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


def limb_width(bits: int) -> int:
    """w = ceil(l / 2), the bits of each of the two limbs."""
    return (bits + 1) // 2


def split_limbs(x: Ring, bits: int) -> Limbs:
    """x = lo + 2^w hi with lo, hi < 2^w, as float64 (exact: w <= 24)."""
    _check_bits(bits)
    return _limbs(x, limb_width(bits))


def _limbs(x: Ring, w: int) -> Limbs:
    lo = np.empty(x.shape, dtype=np.float64)
    hi = np.empty(x.shape, dtype=np.float64)
    part = np.bitwise_and(x, np.uint64((1 << w) - 1))
    lo[...] = part
    np.right_shift(x, np.uint64(w), out=part)
    hi[...] = part
    return lo, hi


def _exact(prod: npt.NDArray[np.float64]) -> Ring:
    # Every entry is an integer in [0, 2^53): the conversion is exact.
    return prod.astype(np.uint64)


def matmul_t(a: Ring, b: Ring, bits: int) -> Ring:
    """a^T b mod 2^l for a (n x k) and b (n x t) with entries in [0, 2^l).

    1. w = ceil(l / 2); split both operands into limbs lo, hi (below 2^w).
    2. Per chunk of r rows (r * 2^(2w) <= 2^53): float64 products lo^T lo, lo^T hi, hi^T lo.
    3. Accumulate as uint64 integers; result = LL + 2^w (LH + HL) mod 2^l.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"cannot multiply {a.shape}^T by {b.shape}")
    return matmul_t_rows(lambda s, e: a[s:e], lambda s, e: b[s:e], a.shape[0], bits)


def matmul_t_rows(a: RowSource, b: RowSource, n_rows: int, bits: int) -> Ring:
    """``matmul_t`` of two n_rows-row operands given as row sources, a chunk at a time."""
    w = limb_width(bits)
    return matmul_t_limbs(lambda s, e: _limbs(a(s, e), w), lambda s, e: _limbs(b(s, e), w),
                          n_rows, bits)


def matmul_t_limbs(a: LimbSource, b: LimbSource, n_rows: int, bits: int) -> Ring:
    """``matmul_t`` of two operands given as limb sources (e.g. a matrix split once and kept
    as its limbs, used for many products)."""
    _check_bits(bits)
    w = limb_width(bits)
    rows = max(1, min(_CHUNK_ROWS, 1 << (_MANTISSA - 2 * w)))
    low = cross = None
    for start in range(0, max(n_rows, 1), rows):
        stop = min(start + rows, n_rows)
        (a_lo, a_hi), (b_lo, b_hi) = a(start, stop), b(start, stop)
        if a_lo.shape[0] != stop - start or b_lo.shape[0] != stop - start:
            raise ValueError(f"row sources gave {a_lo.shape[0]} and {b_lo.shape[0]} rows "
                             f"for rows [{start}, {stop})")
        if low is None or cross is None:
            low = np.zeros((a_lo.shape[1], b_lo.shape[1]), dtype=np.uint64)
            cross = np.zeros_like(low)
        low += _exact(a_lo.T @ b_lo)
        cross += _exact(a_lo.T @ b_hi)
        cross += _exact(a_hi.T @ b_lo)
    if low is None or cross is None:  # pragma: no cover - the loop runs at least once
        raise ValueError("no rows")
    return reduce(low + np.left_shift(cross, np.uint64(w)), bits)


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
