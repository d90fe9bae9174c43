"""Two-party additive secret sharing over Z_2^64.

x = x_0 + x_1 mod 2^64 with x_0 uniform, so each share alone is uniform and says
nothing about x. Assumes the randomness comes from a cryptographic ``RingRng``.
"""

from __future__ import annotations

from crypto.prg import RingRng
from crypto.ring import Ring


def share(x: Ring, rng: RingRng) -> tuple[Ring, Ring]:
    """Split ``x`` into two additive shares.

    1. x_0 = uniform ring array of x's shape.
    2. x_1 = x - x_0 (wrapping).
    """
    x_0 = rng.random(x.shape)
    return x_0, x - x_0


def reconstruct(x_0: Ring, x_1: Ring) -> Ring:
    """x = x_0 + x_1 mod 2^64."""
    if x_0.shape != x_1.shape:
        raise ValueError(f"share shapes differ: {x_0.shape} vs {x_1.shape}")
    return x_0 + x_1
