"""Unbalanced PSI for serving: the grid's table is blinded once per key epoch, not per session.

An oblivious PRF ``F_k(id) = X25519(k, H(id))``, with ``H = curve.hash_to_points`` (a random
oracle onto the prime-order subgroup, order l) and k the grid's epoch key:

Once per key epoch (the grid, ``table``)

1. Draw k; compute ``F_k(id)`` for all N rows and sort the values (position j = rank); the
   sorted list is the table every session of the epoch receives. Sorting the values of a PRF
   whose key the bank does not hold shows no more than a shuffle would.

Per request (``blinding_pair``, ``blind``, ``unblind``, ``lookup``)

2. The bank draws r (and s = r^-1 mod l, both in X25519's clamped form) and sends
   ``X25519(r, H(y))`` for its requested IDs y.
3. The grid answers ``X25519(k, .)`` of each point, in order (``ecdh.reblind``).
4. The bank unblinds with s: ``X25519(s, X25519(k, X25519(r, H(y)))) = F_k(y)`` because H(y)
   has order l, and looks the values up in the table (``lookup``): a hit gives the position.

Why s exists in clamped form: X25519 clamps every key to ``2^254 + 8 t`` with
``0 <= t < 2^251``; on a point of order l it multiplies by the key modulo l. For s we need
``2^254 + 8 t = r^-1 (mod l)``, i.e. ``t = (r^-1 - 2^254) / 8 mod l``, which is below 2^251
for about half of all r: ``blinding_pair`` draws r until it is (2 tries on average).

What it reveals. The bank: the grid's row count, and for each requested ID whether the grid
holds it (as before); within one epoch every session gets the same table, so the bank sees
that the grid's rows did not change; testing a guessed ID still needs the grid's answer
(the table alone is pseudorandom without k). The grid: request sizes and, as before, which
of its rows are scored; r is fresh per request, so unlike a per-session key the grid can no
longer link two requests for the same ID. Key rotation (a new epoch) makes old tables
useless.

Assumes: semi-honest parties (a bank could query IDs it does not hold; the grid counts
requests); k never leaves the grid; r and s never leave the bank. Pure functions, no I/O;
keys come from ``secrets``. The conversion in ``hash_to_points`` is not constant time.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from crypto.psi.curve import hash_to_points
from crypto.psi.errors import PsiError
from crypto.psi.matching import Permutation, byte_order
from crypto.psi.x25519 import POINT_BYTES, Points, as_points, multiply

L = 2**252 + 27742317777372353535851937790883648493  # order of the prime subgroup
_EIGHTH = pow(8, -1, L)


def clamp(x: int) -> int:
    """X25519's clamping of a 256-bit integer: clear bits 0-2 and 255, set bit 254."""
    return (x & ((1 << 254) - 8)) | (1 << 254)


def blinding_pair() -> tuple[bytes, bytes]:
    """(r, s), both clamped X25519 keys, with ``s * r = 1 (mod l)``, from ``secrets``."""
    for _ in range(256):  # fails to find one with probability 2^-256
        r = clamp(int.from_bytes(secrets.token_bytes(32), "little"))
        t = (pow(r, -1, L) - (1 << 254)) * _EIGHTH % L
        if t < 1 << 251:
            return r.to_bytes(32, "little"), ((1 << 254) + 8 * t).to_bytes(32, "little")
    raise PsiError("no invertible blinding key found")  # pragma: no cover


def blind(ids: Sequence[str], r: bytes, domain: bytes) -> Points:
    """``X25519(r, H(y))`` per requested ID (step 2)."""
    return multiply(r, hash_to_points(ids, domain), what="ID hashes to a point")


def unblind(points: npt.ArrayLike, s: bytes) -> Points:
    """``X25519(s, .)`` per answered point (step 4): ``F_k(y)`` for honest answers."""
    return multiply(s, as_points(points))


def table(points: npt.ArrayLike) -> tuple[Points, Permutation]:
    """Sort ``F_k(id)`` of every row (step 1): (sorted values, perm), value j is row perm[j]."""
    pts = as_points(points)
    order = byte_order(pts)
    return pts[order], order


def first_not_ascending(rows: npt.NDArray[np.uint8]) -> int | None:
    """Index of the first row not strictly above its predecessor (memcmp order), or None."""
    if len(rows) < 2:
        return None
    w = np.ascontiguousarray(rows).view(">u8").astype(np.uint64)
    diff = w[1:] != w[:-1]
    col = np.argmax(diff, axis=1)
    i = np.arange(len(col))
    ok = diff.any(axis=1) & (w[1:][i, col] > w[:-1][i, col])
    bad = np.flatnonzero(~ok)
    return int(bad[0]) + 1 if bad.size else None


def check_table(points: npt.ArrayLike) -> Points:
    """A received table: (n, 32) ``uint8``, strictly ascending (so no value repeats).

    Raises
    ------
    PsiError
        Naming the first row that is not above its predecessor.
    """
    pts = as_points(points)
    bad = first_not_ascending(pts)
    if bad is not None:
        raise PsiError("table values do not strictly ascend", bad)
    return pts


def lookup(sorted_table: Points, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Position of each value in the sorted table, or -1 where it is absent."""
    vals = as_points(values)
    out = np.full(len(vals), -1, dtype=np.int64)
    if not len(vals) or not len(sorted_table):
        return out
    keys = sorted_table.view(f"V{POINT_BYTES}").ravel()
    want = vals.view(f"V{POINT_BYTES}").ravel()
    pos = np.searchsorted(keys, want)
    inside = pos < len(keys)
    hit = np.zeros(len(vals), dtype=bool)
    hit[inside] = keys[pos[inside]] == want[inside]
    out[hit] = pos[hit]
    return out
