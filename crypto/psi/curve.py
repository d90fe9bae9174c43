"""Hashing IDs onto Curve25519 u-coordinates, and checking received u-coordinates.

Two hashes, both domain-separated by ``TAG || len(domain) || domain`` so no ID can trade
bytes with the domain (the domain names the job or serving epoch):

``hash_to_u`` (ECDH PSI of a job): SHA-256 straight to a u-coordinate.
    ``u = SHA-256(prefix || utf8(id))`` with the top bit cleared. About half of all
    u-coordinates lie on Curve25519, the others on its quadratic twist, and X25519 is
    defined on both: the Montgomery ladder uses u only, so for a clamped key k it computes
    ``[k]P`` on whichever of the two curves holds u, and ``X(a, X(b, u)) = X(b, X(a, u))``
    on both. Why this is sound: Curve25519 is twist-secure -- its twist has order 4 * l'
    with l' a 253-bit prime, so discrete logarithms and Diffie-Hellman problems are as
    hard on the twist as on the curve (order 8 * l), and clamping (a multiple of 8) wipes
    the small cofactor part on both. A blinded ID ``[a]H(id)`` is then a pseudorandom
    element of the prime-order subgroup of the curve or of the twist, and which of the two
    it is is a public function of the ID: the only thing a peer learns beyond the
    intersection is that bit for each of the other side's points, i.e. (the points being
    shuffled) how many of its non-matching IDs hash to the twist, a Binomial(n, 1/2) count.
    Cost: ~1 us per ID, against ~86 us for ``hash_to_points``.

``hash_to_points`` (serving epochs, where a request may carry a single ID, and the bank
unblinds answers): a random oracle onto the prime-order subgroup of the curve itself.
    ``h = SHA-512(prefix || utf8(id))``; ``E = from_uniform(h[:32]) + from_uniform(h[32:])``
    on Ed25519 (libsodium: Elligator 2, cofactor cleared, as ristretto255's ``from_hash``);
    ``u = (1 + y) / (1 - y) mod p`` for E's y, inverted in one batch. No twist bit leaks,
    and every point has order l, so an unblinding scalar modulo l exists.

Assumes: IDs are normalised by the caller (compared as exact UTF-8 strings). The
Montgomery conversion runs in Python integers, not in constant time: no local timing
adversary on the party's machine. Pure functions; errors name indices, never IDs.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from crypto.psi.errors import PsiError, domain_prefix, encode_ids, first_duplicate
from crypto.psi.x25519 import POINT_BYTES, Points, as_points

# PyNaCl's cffi module has no type stubs; import it by name so that mypy --strict passes
# with or without --ignore-missing-imports.
_sodium = importlib.import_module("nacl._sodium")
ffi: Any = _sodium.ffi
lib: Any = _sodium.lib

P = 2**255 - 19
_MASK255 = (1 << 255) - 1
TAG_U = b"gridcredit/psi/v2/sha256-to-x25519\x00"
TAG_CURVE = b"gridcredit/psi/v1/hash-to-curve25519\x00"


def check_unique(ids: Sequence[str]) -> None:
    """Raise ``PsiError`` naming the first repeated ID's index, if any."""
    dup = first_duplicate(ids)
    if dup is not None:
        raise PsiError("duplicate ID (IDs must be unique)", dup)


def hash_to_u(ids: Sequence[str], domain: bytes) -> Points:
    """SHA-256 of each domain-tagged ID as a u-coordinate (top bit cleared).

    Parameters
    ----------
    ids : sequence of str
        Unique IDs.
    domain : bytes
        Non-empty domain separation tag naming the job.

    Returns
    -------
    Points
        Shape (len(ids), 32); on the curve or its twist (see the module docstring).

    Raises
    ------
    PsiError
        Bad domain, a non-string or a duplicate ID (naming its index).
    """
    prefix = domain_prefix(TAG_U, domain)
    check_unique(ids)
    sha = hashlib.sha256
    raw = b"".join([sha(prefix + x).digest() for x in encode_ids(ids)])
    u = np.frombuffer(raw, dtype=np.uint8).reshape(len(ids), POINT_BYTES).copy()
    u[:, 31] &= 0x7F
    return u


def _batch_inverse(x: list[int]) -> list[int]:
    """Inverses mod p of nonzero field elements with one exponentiation (Montgomery's trick)."""
    prefix = [1] * (len(x) + 1)
    acc = 1
    for i, v in enumerate(x):
        acc = acc * v % P
        prefix[i + 1] = acc
    inv = pow(acc, -1, P)
    out = [0] * len(x)
    for i in range(len(x) - 1, -1, -1):
        out[i] = prefix[i] * inv % P
        inv = inv * x[i] % P
    return out


def hash_to_points(ids: Sequence[str], domain: bytes) -> Points:
    """Hash IDs to Curve25519 points of prime order l, as Montgomery u-coordinates.

    1. ``h = SHA-512(TAG || len(domain) as 2 bytes || domain || utf8(id))``.
    2. ``E = from_uniform(h[:32]) + from_uniform(h[32:])`` on Ed25519 (libsodium).
    3. ``u = (1 + y) / (1 - y) mod p`` for E's y-coordinate, inverted in one batch.

    Raises
    ------
    PsiError
        Bad domain, a non-string or duplicate ID (naming its index), or an ID that hashes
        to the neutral element (probability 2^-252).
    """
    prefix = hashlib.sha512(domain_prefix(TAG_CURVE, domain))
    check_unique(ids)
    encoded = encode_ids(ids)
    n = len(encoded)
    e1 = ffi.new("unsigned char[32]")
    e2 = ffi.new("unsigned char[32]")
    ed = ffi.new("unsigned char[]", POINT_BYTES * n)
    from_uniform = lib.crypto_core_ed25519_from_uniform
    add = lib.crypto_core_ed25519_add
    for i, x in enumerate(encoded):
        h = prefix.copy()
        h.update(x)
        d = h.digest()
        from_uniform(e1, d)  # reads d[:32]
        from_uniform(e2, d[32:])
        if add(ed + POINT_BYTES * i, e1, e2) != 0:
            raise PsiError("hash to curve failed", i)  # libsodium contract
    raw = ffi.buffer(ed)[:]
    ys = [
        int.from_bytes(raw[j : j + POINT_BYTES], "little") & _MASK255
        for j in range(0, POINT_BYTES * n, POINT_BYTES)
    ]
    dens = [(1 - y) % P for y in ys]
    for i, den in enumerate(dens):
        if den == 0:
            raise PsiError("ID hashes to the neutral element", i)
    us = [(1 + y) * inv % P for y, inv in zip(ys, _batch_inverse(dens))]
    data = b"".join(v.to_bytes(POINT_BYTES, "little") for v in us)
    return np.frombuffer(data, dtype=np.uint8).reshape(n, POINT_BYTES).copy()


def first_noncanonical(points: Points) -> int | None:
    """Index of the first row that is not a canonical u-coordinate (< 2^255 - 19), or None."""
    top = points[:, 31]
    bad = top >= 0x80
    # u >= p with the top bit clear means u = 2^255 - 19 + t for t in 0..18:
    # bytes 1..30 are 0xff, byte 31 is 0x7f and byte 0 is >= 0xed.
    bad |= (top == 0x7F) & (points[:, 1:31] == 0xFF).all(axis=1) & (points[:, 0] >= 0xED)
    hits = np.flatnonzero(bad)
    return int(hits[0]) if hits.size else None


def check_received(points: npt.ArrayLike) -> Points:
    """Shape (n, 32) ``uint8`` and every row canonical, as a peer must send.

    Raises
    ------
    PsiError
        Naming the first bad row.
    """
    pts = as_points(points)
    bad = first_noncanonical(pts)
    if bad is not None:
        raise PsiError("invalid point (not a canonical u-coordinate)", bad)
    return pts


def points_to_bytes(points: npt.ArrayLike) -> bytes:
    """Serialise points as the concatenation of their 32-byte rows."""
    return as_points(points).tobytes()


def points_from_bytes(data: bytes) -> Points:
    """Parse the concatenation of 32-byte rows (not yet validated: ``reblind`` does that).

    Raises
    ------
    PsiError
        If the length is not a multiple of 32.
    """
    if len(data) % POINT_BYTES:
        raise PsiError(f"expected a multiple of {POINT_BYTES} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, POINT_BYTES).copy()
