"""The ring Z_2^64 as numpy ``uint64`` arrays, and fixed-point encoding into it.

Assumes: values are numpy arrays (never numpy scalars, which warn on overflow);
``+ - * @`` on ``uint64`` arrays wrap modulo 2^64, which is the ring arithmetic we want.
A real number x is encoded as round(x * 2^f) in two's complement; a product of two
f-bit encodings carries 2f fraction bits and is decoded with ``frac_bits=2 * f``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Ring = npt.NDArray[np.uint64]
Float = npt.NDArray[np.float64]

DEFAULT_FRAC_BITS = 16
# Largest magnitude representable before encoding: keep 2 guard bits below 2^63.
_MAX_ENCODED = 2.0**61


def encode(x: npt.ArrayLike, frac_bits: int = DEFAULT_FRAC_BITS) -> Ring:
    """Encode reals as fixed point in Z_2^64.

    1. Scale by 2^frac_bits and round to the nearest integer (error <= 2^-(f+1)).
    2. Reinterpret the signed integer as ``uint64`` (two's complement).

    Raises
    ------
    ValueError
        If a value is not finite or its scaled magnitude exceeds 2^61.
    """
    a = np.asarray(x, dtype=np.float64)
    scaled = np.rint(np.ldexp(a, frac_bits))
    if not np.all(np.isfinite(scaled)):
        raise ValueError("cannot encode a non-finite value into the ring")
    if scaled.size and float(np.max(np.abs(scaled))) >= _MAX_ENCODED:
        raise ValueError(
            f"value too large for fixed point with {frac_bits} fraction bits: "
            f"max |x| = {float(np.max(np.abs(a))):.3g}, limit {_MAX_ENCODED / 2**frac_bits:.3g}"
        )
    return scaled.astype(np.int64).view(np.uint64)


def decode(v: Ring, frac_bits: int = DEFAULT_FRAC_BITS) -> Float:
    """Decode two's-complement fixed point back to ``float64``."""
    return np.ldexp(np.asarray(v, dtype=np.uint64).view(np.int64).astype(np.float64), -frac_bits)


def to_ring(a: npt.ArrayLike) -> Ring:
    """View an integer array as ring elements (wrapping negative values)."""
    arr = np.asarray(a)
    if arr.dtype == np.uint64:
        return arr
    if arr.dtype.kind not in "iu":
        raise TypeError(f"expected an integer array, got dtype {arr.dtype}")
    return arr.astype(np.int64).view(np.uint64)


def zeros(shape: int | tuple[int, ...]) -> Ring:
    """A ring array of zeros."""
    return np.zeros(shape, dtype=np.uint64)


def matvec(x: Ring, v: Ring) -> Ring:
    """``x @ v`` modulo 2^64 (numpy integer matmul wraps; no BLAS for uint64)."""
    return np.asarray(np.matmul(x, v), dtype=np.uint64)


def rmatvec(x: Ring, v: Ring) -> Ring:
    """``x.T @ v`` modulo 2^64."""
    return np.asarray(np.matmul(v, x), dtype=np.uint64)


def matmul(a: Ring, b: Ring) -> Ring:
    """``a @ b`` modulo 2^64, batched over leading axes like ``np.matmul``."""
    return np.asarray(np.matmul(a, b), dtype=np.uint64)


def dot(a: Ring, b: Ring) -> Ring:
    """Inner product modulo 2^64, returned as a 1-element ring array (never a scalar)."""
    return np.atleast_1d(np.matmul(a.reshape(1, -1), b.reshape(-1, 1)).reshape(1))


def truncate_share(party: int, x_i: Ring, frac_bits: int) -> Ring:
    """Bring one share of a 2f-bit product back to f fraction bits.

    SecureML: local truncation, needs |x| << 2^63. Party 0 shifts its share
    arithmetically; party 1 shifts the negation of its share and negates back, so the
    reconstruction is off by at most one unit in the last place unless the shares wrap
    (probability about |x| / 2^63 per element).
    """
    if party == 0:
        return (x_i.view(np.int64) >> frac_bits).view(np.uint64)
    neg = (np.uint64(0) - x_i).view(np.int64) >> frac_bits
    return np.uint64(0) - neg.view(np.uint64)
