"""X25519 (RFC 7748) of one key with many points, without the GIL.

Two implementations compute the same function; the tests compare both with OpenSSL's:

* ``crypto/psi/_x25519x4.c``, built at install when a C compiler is present, and used when
  the CPU has AVX2: four Montgomery ladders at once, one 64-bit lane of each AVX2
  register per point. It takes about half libsodium's time per point on this project's EPYC
  machines (``bench/psi_speed.py`` prints both; bench/RESULTS.md has the figures).
* libsodium's ``crypto_scalarmult``, one call per point through cffi: the system's
  (``libsodium.so.23``, Debian's build dispatches to its AVX "sandy2x" ladder) if it loads,
  else the one bundled with PyNaCl (portable C, ~2x slower).

Both release the GIL while they run, so threads of one process keep both cores busy (the
``cryptography`` package holds the GIL during X25519, which forced worker processes).
Setting ``GRIDCREDIT_X25519=libsodium`` keeps libsodium even where the kernel loads (for
comparing the two, and as a way out should the kernel ever be in doubt).

Assumes: keys are 32 secret bytes (clamped by X25519 itself: cofactor 8, bit 254);
points are 32-byte u-coordinates. A point of small order gives the all-zero result,
which both refuse: reported as ``PsiError`` with the row index.
"""

from __future__ import annotations

import importlib
import os
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


def _load_kernel() -> Any | None:
    """The four-way AVX2 kernel, or None (not built, no AVX2, or libsodium asked for)."""
    if os.environ.get("GRIDCREDIT_X25519", "").strip().lower() == "libsodium":
        return None
    try:
        kernel = importlib.import_module("crypto.psi._x25519x4")
    except ImportError:
        return None
    return kernel if kernel.available() else None


_ffi, _lib, _SODIUM = _load()
_KERNEL = _load_kernel()
BACKEND = ("four-way AVX2 kernel (crypto/psi/_x25519x4.c)" if _KERNEL is not None
           else _SODIUM)
"""Which implementation ``multiply`` and ``multiply_each`` use (shown by the benchmarks)."""


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


def multiply(key: bytes, points: npt.ArrayLike, *, what: str = "invalid point",
             libsodium: bool = False) -> Points:
    """``X25519(key, u)`` for every row ``u``, in order.

    Parameters
    ----------
    key : bytes
        32 secret bytes.
    points : array_like
        (n, 32) ``uint8`` u-coordinates (the top bit is ignored, RFC 7748).
    what : str
        How a small-order row is named in the error.
    libsodium : bool
        Use libsodium even where the kernel loads (the benchmarks compare the two).

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
    return _run(key, False, as_points(points), what, libsodium)


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
    return _run(k, True, src, what, False)


def _run(keys: bytes | Points, per_row: bool, src: Points, what: str,
         libsodium: bool) -> Points:
    """X25519 of every row of ``src``: one key, or one key per row; small order refused."""
    out = np.empty_like(src)
    if not len(src):
        return out
    # Fewer than four rows would leave kernel lanes idle: one libsodium call each is quicker
    # (a single-ID score request, say).
    if _KERNEL is not None and not libsodium and len(src) >= 4:
        bad = _KERNEL.multiply(keys, src, out, per_row)
        if bad >= 0:
            raise PsiError(f"{what} (small order)", bad)
        return out
    f = _lib.crypto_scalarmult
    kb = _ffi.from_buffer("unsigned char[]", keys)
    s = _ffi.from_buffer("unsigned char[]", src)
    d = _ffi.from_buffer("unsigned char[]", out, require_writable=True)
    for j in range(0, POINT_BYTES * len(src), POINT_BYTES):
        if f(d + j, kb + (j if per_row else 0), s + j) != 0:
            raise PsiError(f"{what} (small order)", j // POINT_BYTES)
    return out
