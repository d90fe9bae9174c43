"""Private set intersection maths, by concern.

- ``errors``: the error type and the input checks every protocol shares.
- ``x25519``: X25519 of one key with many points (libsodium, GIL released).
- ``curve``: hashing IDs to u-coordinates; checking received ones.
- ``ecdh``: the two-party ECDH protocol's blind and re-blind (``--psi ecdh``).
- ``matching``: secret shuffles, byte order, matching equal rows.
- ``server_aided``: key agreement, PRF tags and the coordinator's match (the default).

The names below are the ECDH protocol's API, as ``from crypto import psi`` callers use it.
"""

from crypto.psi.curve import (
    check_received,
    first_noncanonical,
    hash_to_points,
    hash_to_u,
    points_from_bytes,
    points_to_bytes,
)
from crypto.psi.ecdh import blind, new_key, reblind
from crypto.psi.errors import KEY_BYTES, PsiError, check_domain, check_key, first_duplicate
from crypto.psi.matching import (
    Permutation,
    byte_order,
    intersect,
    invert_permutation,
    random_permutation,
    shuffle,
    unshuffle,
)
from crypto.psi.x25519 import POINT_BYTES, Points, as_points

__all__ = [
    "KEY_BYTES",
    "POINT_BYTES",
    "Permutation",
    "Points",
    "PsiError",
    "as_points",
    "blind",
    "byte_order",
    "check_domain",
    "check_key",
    "check_received",
    "first_duplicate",
    "first_noncanonical",
    "hash_to_points",
    "hash_to_u",
    "intersect",
    "invert_permutation",
    "new_key",
    "points_from_bytes",
    "points_to_bytes",
    "random_permutation",
    "reblind",
    "shuffle",
    "unshuffle",
]
