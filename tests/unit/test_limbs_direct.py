"""crypto.limbs.matmul_t on narrow rings (the direct float64 path): exact mod 2^l, also at
the largest values and chunk boundaries where a float64 sum would first lose a bit."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.limbs import matmul_t, reduce


def exact(a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    """a^T b mod 2^l with Python integers."""
    prod = a.astype(object).T @ b.astype(object)
    return np.array([[int(v) % (1 << bits) for v in row] for row in prod], dtype=np.uint64)


@pytest.mark.parametrize("bits", [2, 17, 19, 20, 21, 26])
@pytest.mark.parametrize("rows", [1, 8191, 8192, 8193, 20000])
def test_matmul_t_is_exact_at_the_largest_values(bits: int, rows: int) -> None:
    top = np.uint64((1 << bits) - 1)
    a = np.full((rows, 3), top, dtype=np.uint64)
    b = np.full((rows, 2), top, dtype=np.uint64)
    assert np.array_equal(matmul_t(a, b, bits), exact(a, b, bits))


@pytest.mark.parametrize("bits", [19, 20, 21, 40])
def test_matmul_t_is_exact_on_random_elements(bits: int) -> None:
    rng = np.random.default_rng(bits)
    a = reduce(rng.integers(0, 2**63, (10_000, 5), dtype=np.uint64), bits)
    b = reduce(rng.integers(0, 2**63, (10_000, 3), dtype=np.uint64), bits)
    assert np.array_equal(matmul_t(a, b, bits), exact(a, b, bits))
