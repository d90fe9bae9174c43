"""Unbalanced PSI for serving: the grid's table is blinded once per key epoch, not per session.

An oblivious PRF ``F_k(id) = X25519(k, H(id))``, with ``H = curve.hash_to_points`` (a random
oracle onto the prime-order subgroup, order l) and k the grid's epoch key:

Once per key epoch (the grid, ``table``)

1. Draw k; compute ``F_k(id)`` for all N rows and sort the values (position j = rank); the
   sorted list is the table every session of the epoch receives. Sorting the values of a PRF
   whose key the bank does not hold shows no more than a shuffle would.

Per request (``blinding_pairs``, ``lookup``, ``check_revealed``)

2. The bank draws, per requested ID y_i, r_i (and s_i = r_i^-1 mod l, both in X25519's
   clamped form) and sends ``P_i = X25519(r_i, H(y_i))``, in a random order.
3. The grid answers ``Q_i = X25519(k, P_i)`` of each point, in order (``ecdh.reblind``), and
   keeps the Q_i of the request.
4. The bank unblinds each with its s_i: ``X25519(s_i, Q_i) = F_k(y_i)`` because H(y) has order
   l, and looks the values up in the table (``lookup``): a hit gives the position.
5. The bank reveals (i, s_i) for the hits only; the grid recomputes ``X25519(s_i, Q_i)`` and
   looks it up in its own table (``check_revealed``): a row counts as matched only if its
   value comes out. Finding s with ``X25519(s, k P) = F_k(y)`` for a row y without having
   blinded H(y) itself needs k or y, so a bank cannot claim rows its request did not match;
   the s_i of the other IDs stay secret, so their P_i stay uniformly random to the grid.

Why s exists in clamped form: X25519 clamps every key to ``2^254 + 8 t`` with
``0 <= t < 2^251``; on a point of order l it multiplies by the key modulo l. For s we need
``2^254 + 8 t = r^-1 (mod l)``, i.e. ``t = (r^-1 - 2^254) / 8 mod l``, which is below 2^251
for about half of all r: ``blinding_pair`` draws r until it is (2 tries on average).

What it reveals. The bank: the grid's row count, and for each requested ID whether the grid
holds it (as before); within one epoch every session gets the same table, so the bank sees
that the grid's rows did not change; testing a guessed ID still needs the grid's answer
(the table alone is pseudorandom without k). The grid: request sizes and, as before, which
of its rows are scored; r_i is fresh per ID and request, so the grid cannot link two
requests for the same ID. Key rotation (a new epoch) makes old tables
useless. Step 5 shows the grid which of its rows matched (as sending positions did before)
and nothing about the other points.

Assumes: a bank may deviate (it can still ask about IDs it knows but does not hold in its
data, which is what scoring is; the grid counts and bounds requests); k never leaves the
grid; r_i never leaves the bank, s_i only for a matched ID. Pure functions, no I/O; keys
come from ``secrets``. The conversion in ``hash_to_points`` is not constant time.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from crypto.psi.curve import hash_to_points
from crypto.psi.errors import PsiError
from crypto.psi.matching import Permutation, byte_order
from crypto.psi.x25519 import POINT_BYTES, Points, as_points, multiply, multiply_each

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


def blinding_pairs(n: int) -> tuple[Points, Points]:
    """n independent pairs (r_i, s_i) as (n, 32) ``uint8`` arrays, ``s_i * r_i = 1 (mod l)``.

    One r per ID lets the bank reveal s_i of the IDs that matched without revealing the
    blinding of any other (serving step 5). Inverses are batched (Montgomery's trick: one
    modular inversion and three products per candidate); about half the candidates have a
    clamped inverse, as in ``blinding_pair``.
    """
    if n < 0:
        raise PsiError(f"expected n >= 0 blinding pairs, got {n}")
    rs: list[bytes] = []
    ss: list[bytes] = []
    top = 1 << 254
    while len(rs) < n:
        want = 2 * (n - len(rs)) + 8
        raw = secrets.token_bytes(32 * want)
        cand = [clamp(int.from_bytes(raw[32 * i : 32 * i + 32], "little")) for i in range(want)]
        prefix = [1] * (want + 1)
        for i, c in enumerate(cand):
            prefix[i + 1] = prefix[i] * c % L
        inv = pow(prefix[want], -1, L)
        for i in range(want - 1, -1, -1):
            c_inv, inv = inv * prefix[i] % L, inv * cand[i] % L
            t = (c_inv - top) * _EIGHTH % L
            if t < 1 << 251 and len(rs) < n:
                rs.append(cand[i].to_bytes(32, "little"))
                ss.append((top + 8 * t).to_bytes(32, "little"))

    def points(keys: list[bytes]) -> Points:
        return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(n, POINT_BYTES).copy()

    return points(rs), points(ss)


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


def check_revealed(sorted_table: Points, answered: npt.ArrayLike,
                   keys: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Step 5 at the grid: table position of ``X25519(keys[i], answered[i])``, or -1.

    ``answered`` are the grid's own answers Q_i of the revealed points, ``keys`` the bank's s_i.

    Raises
    ------
    PsiError
        Bad shapes, or a result of small order.
    """
    return lookup(sorted_table, multiply_each(keys, answered, what="revealed point"))
