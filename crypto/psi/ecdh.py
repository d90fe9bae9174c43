"""ECDH private set intersection (``--psi ecdh``): blind, re-blind, then match.

Recipe for one job (docs/design.md, "One training job", step 2), run by both parties G and B:

1. Each side draws a fresh key ``k = new_key()`` and hashes its IDs to u-coordinates
   ``H(id)`` under a domain that names the job (``curve.hash_to_u``).
2. It blinds them, ``X25519(k, H(id))``, shuffles them with a secret permutation and sends
   them (``blind``, ``matching.shuffle``).
3. It checks the peer's points, raises them to its own key and sends them back in
   received order (``reblind``).
4. It un-shuffles what comes back: now it holds ``kG*kB*H(id)`` for each of its own IDs
   (``matching.unshuffle``) and for each peer point (step 3).
5. The intersection is the set of doubly-blinded values both lists contain; both sides
   order it by the sorted doubly-blinded bytes, so their rows line up (``matching.intersect``).

Both exponentiations are X25519 (RFC 7748), which commute on u-coordinates:
``X(b, X(a, u)) = X(a, X(b, u))``, on the curve and on its twist alike (see ``curve``).
Clamping multiplies every key by the cofactor 8, so a torsion component sent by a peer
is erased; a point of small order gives the all-zero result, which is refused. A received
point must be a canonical u-coordinate; points on the twist are accepted: honest ones
occur (``hash_to_u`` lands there half the time), and twist security means answering one
leaks nothing about the key.

Why SHA-256 straight to u, and the four-way kernel in threads. Per-ID CPU on this 2-core
EPYC VM (the machine is shared and its speed drifts by up to 1.5x within a day, so each
figure is the best of several alternating runs in one session):

=================================================  =========  ==============================
operation                                          us / call  used?
=================================================  =========  ==============================
SHA-256 of the domain-tagged ID (``hash_to_u``)          1.1  yes, once per own ID
``hash_to_points`` (2 x Elligator 2, add, to u)           86  no (was: once per own ID)
X25519, four-way AVX2 kernel, GIL released             17-22  yes, per own ID and per peer
                                                                point, in threads
X25519, system libsodium via cffi, GIL released        35-47  where the kernel is not built
                                                                or the CPU has no AVX2
X25519, ``cryptography`` (OpenSSL), GIL held           47-57  no: needs worker processes
X25519, PyNaCl's bundled libsodium                        79  only if no system libsodium
=================================================  =========  ==============================

One party thus spends ~40 us of CPU per ID (two X25519 calls and a hash) instead of ~180
(hash-to-curve, then two X25519 calls in OpenSSL): the curve is still >= 95 % of the work.
The kernel (``x25519``, ``_x25519x4.c``) runs four Montgomery ladders at once, one per
64-bit lane of the AVX2 registers; it gives libsodium's bytes on every tested input.
What SHA-256-to-u costs in privacy is one public bit per blinded point (curve or twist),
see ``curve``; the README's "What each party learns" states it for ``--psi ecdh``.

Assumes: two semi-honest parties; IDs normalised by the caller and unique within each list
(duplicates are refused: they would show the peer which blinded points repeat); the domain
names the job, so hashes of different jobs are unrelated; keys are fresh per job and never
leave their party. Pure functions: no I/O, no logging, no module state (keys come from
``secrets``). Error messages name indices, never ID values.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import numpy.typing as npt

from crypto.psi.curve import check_received, hash_to_u
from crypto.psi.errors import KEY_BYTES, check_key
from crypto.psi.x25519 import Points, multiply


def new_key() -> bytes:
    """Draw a fresh X25519 key for one PSI job.

    Returns
    -------
    bytes
        32 random bytes from ``secrets``.  X25519 clamps them when used (cofactor 8 and
        bit 254), which leaves 251 bits of secret.
    """
    return secrets.token_bytes(KEY_BYTES)


def reblind(points: npt.ArrayLike, key: bytes) -> Points:
    """Check points and raise each to ``key`` with X25519, keeping their order.

    1. Shape (n, 32) ``uint8``; every row a canonical u-coordinate.
    2. ``X25519(key, u)`` per row; an all-zero result means u had small order: refused.

    Parameters
    ----------
    points : array_like
        The peer's blinded points, as received (or one's own hashed points).
    key : bytes
        This party's 32-byte job key.

    Returns
    -------
    Points
        ``key * point`` for each row, same order.

    Raises
    ------
    PsiError
        Bad key, bad shape, or an invalid point; ``index`` is the first bad row.
    """
    check_key(key)
    return multiply(key, check_received(points))


def blind(ids: Sequence[str], key: bytes, domain: bytes) -> Points:
    """Hash IDs to u-coordinates and raise them to ``key``: ``X25519(key, H(id))``.

    Parameters
    ----------
    ids : sequence of str
        Unique IDs.
    key : bytes
        This party's 32-byte job key.
    domain : bytes
        Domain separation tag naming the job.

    Returns
    -------
    Points
        Shape (len(ids), 32), in the order of ``ids`` (shuffle before sending).

    Raises
    ------
    PsiError
        As ``curve.hash_to_u``, or an ID hashing to a point of small order (2^-250).
    """
    check_key(key)
    return multiply(key, hash_to_u(ids, domain), what="ID hashes to a point")
