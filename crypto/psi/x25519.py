"""X25519 (RFC 7748) of one key with many points, through libsodium, without the GIL.

Every PSI exponentiation is one call of libsodium's ``crypto_scalarmult`` per point.
cffi releases the GIL around each call, so threads of one process keep both cores busy
(the ``cryptography`` package holds the GIL during X25519, which forced worker processes).
Which libsodium: the system's (``libsodium.so.23``, Debian's build dispatches to the AVX2
"sandy2x" ladder, 43-47 us per call on this machine's 2.4 GHz EPYC) if it loads, else the
one bundled with PyNaCl (portable C, ~79 us). Both compute the same function; the tests
compare them with OpenSSL's X25519.

Assumes: keys are 32 secret bytes (clamped by X25519 itself: cofactor 8, bit 254);
points are 32-byte u-coordinates. A point of small order gives the all-zero result,
which libsodium refuses (return -1): reported as ``PsiError`` with the row index.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt

from crypto.psi.errors import PsiError, check_key

POINT_BYTES = 32

Points = npt.NDArray[np.uint8]
"""Points as a C-contiguous ``uint8`` array of shape (n, 32): one u-coordinate per row."""

_CDEF = """
int sodium_init(void);
int crypto_scalarmult(unsigned char *q, const unsigned char *n, const unsigned char *p);
"""
_SYSTEM_NAMES = ("libsodium.so.23", "libsodium.so.26", "libsodium.so", "libsodium.dylib")


def _load() -> tuple[Any, Any, str]:
    """(ffi, lib, name) of the fastest libsodium that loads."""
    # cffi and PyNaCl's cffi module ship no type stubs; import them by name so mypy
    # --strict passes with or without --ignore-missing-imports.
    cffi = importlib.import_module("cffi")
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    for name in _SYSTEM_NAMES:
        try:
            lib = ffi.dlopen(name)
        except OSError:
            continue
        if lib.sodium_init() >= 0:
            return ffi, lib, name
    sodium = importlib.import_module("nacl._sodium")
    return sodium.ffi, sodium.lib, "PyNaCl's bundled libsodium"


_ffi, _lib, BACKEND = _load()


def as_points(points: npt.ArrayLike) -> Points:
    """Check shape and dtype, and return a C-contiguous (n, 32) ``uint8`` array.

    Raises
    ------
    PsiError
        If the array is not (n, 32) ``uint8``.
    """
    a = np.asarray(points)
    if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != POINT_BYTES:
        raise PsiError(f"expected (n, {POINT_BYTES}) uint8 points, got {a.shape} {a.dtype}")
    return np.ascontiguousarray(a)


def multiply(key: bytes, points: npt.ArrayLike, *, what: str = "invalid point") -> Points:
    """``X25519(key, u)`` for every row ``u``, in order.

    Parameters
    ----------
    key : bytes
        32 secret bytes.
    points : array_like
        (n, 32) ``uint8`` u-coordinates (libsodium ignores the top bit).
    what : str
        How a small-order row is named in the error.

    Returns
    -------
    Points
        Shape (n, 32): canonical u-coordinates (< 2^255 - 19).

    Raises
    ------
    PsiError
        Bad key or shape, or a row of small order (``"<what> (small order) at index i"``).
    """
    check_key(key)
    src = as_points(points)
    out = np.empty_like(src)
    if not len(src):
        return out
    f = _lib.crypto_scalarmult
    s = _ffi.from_buffer("unsigned char[]", src)
    d = _ffi.from_buffer("unsigned char[]", out, require_writable=True)
    for j in range(0, POINT_BYTES * len(src), POINT_BYTES):
        if f(d + j, key, s + j) != 0:
            raise PsiError(f"{what} (small order)", j // POINT_BYTES)
    return out


def multiply_each(keys: npt.ArrayLike, points: npt.ArrayLike, *,
                  what: str = "invalid point") -> Points:
    """``X25519(keys[i], points[i])`` for every row i: one key per point.

    Parameters
    ----------
    keys : array_like
        (n, 32) ``uint8``: one secret key per row.
    points : array_like
        (n, 32) ``uint8`` u-coordinates.
    what : str
        How a small-order row is named in the error.

    Raises
    ------
    PsiError
        Bad shapes, different row counts, or a row of small order (with its index).
    """
    k = as_points(keys)
    src = as_points(points)
    if len(k) != len(src):
        raise PsiError(f"{len(k)} keys for {len(src)} points")
    out = np.empty_like(src)
    if not len(src):
        return out
    f = _lib.crypto_scalarmult
    kb = _ffi.from_buffer("unsigned char[]", k)
    s = _ffi.from_buffer("unsigned char[]", src)
    d = _ffi.from_buffer("unsigned char[]", out, require_writable=True)
    for j in range(0, POINT_BYTES * len(src), POINT_BYTES):
        if f(d + j, kb + j, s + j) != 0:
            raise PsiError(f"{what} (small order)", j // POINT_BYTES)
    return out
