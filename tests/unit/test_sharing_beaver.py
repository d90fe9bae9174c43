"""crypto.sharing and crypto.beaver: additive shares and the one secure product.

Both parties run in one process. Masks come from ``crypto.correlated`` under each party's
dealer seed, corrections from ``beaver.product_correction`` / ``dot_correction``, exactly
as the dealer and the parties derive them; results are checked against Python ints.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import beaver, correlated
from crypto.prg import RingRng
from crypto.ring import Ring, decode, encode, rmatvec
from crypto.sharing import reconstruct, share
from crypto.sigmoid import residual_share_features, residual_share_label

MOD = 2**64
SEED_P = b"P" * 32  # matrix owner's dealer seed
SEED_Q = b"Q" * 32  # vector holder's dealer seed


def ints(a: Ring) -> list[int]:
    return [int(v) for v in np.asarray(a).ravel()]


def ref_product(x: Ring, v: Ring, transpose: bool) -> list[int]:
    """X^T v (or X v) on Python ints, mod 2^64."""
    rows = [ints(r) for r in (x.T if transpose else x)]
    vec = ints(v)
    return [sum(a * b for a, b in zip(r, vec)) % MOD for r in rows]


def random_ring(seed: int, shape: tuple[int, ...]) -> Ring:
    return np.random.default_rng(seed).integers(0, MOD, size=shape, dtype=np.uint64)


def bit_sigmas(words: Ring) -> float:
    """Largest per-bit deviation from 1/2, in binomial standard deviations."""
    n = words.size
    ones = ((words.ravel()[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).sum(0)
    return float(np.max(np.abs(ones - n / 2))) / (n * 0.25) ** 0.5


# -- sharing ---------------------------------------------------------------------------


@given(st.lists(st.integers(min_value=0, max_value=MOD - 1), min_size=1, max_size=40),
       st.binary(min_size=16, max_size=32))
@settings(max_examples=100, deadline=None)
def test_reconstruct_of_share_is_identity(values: list[int], seed: bytes) -> None:
    x = np.array(values, dtype=np.uint64)
    x_0, x_1 = share(x, RingRng(seed))
    assert x_0.shape == x_1.shape == x.shape
    assert ints(reconstruct(x_0, x_1)) == values


def test_share_round_trips_fixed_point_matrix() -> None:
    x = np.random.default_rng(0).normal(0, 10, (5, 4))
    x_0, x_1 = share(encode(x), RingRng(b"s" * 32))
    assert np.array_equal(decode(reconstruct(x_0, x_1)), decode(encode(x)))


@pytest.mark.parametrize("secret", [0, 1, 2**63, MOD - 1])
def test_each_share_alone_is_uniform_whatever_the_secret(secret: int) -> None:
    x = np.full(10**5, secret, dtype=np.uint64)
    x_0, x_1 = share(x, RingRng(b"u" * 32))
    assert bit_sigmas(x_0) < 5
    assert bit_sigmas(x_1) < 5
    assert not (x_1 == x).any() and not (x_0 == x).any()


def test_shares_from_one_rng_are_fresh_each_call() -> None:
    rng = RingRng(b"f" * 32)
    x = np.zeros(16, dtype=np.uint64)
    (a, _), (b, _) = share(x, rng), share(x, rng)
    assert not (a == b).any()


def test_reconstruct_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        reconstruct(np.zeros(3, dtype=np.uint64), np.zeros(4, dtype=np.uint64))


# -- the secure product ----------------------------------------------------------------


def run_product(x: Ring, s_q: Ring, transpose: bool, *, epoch: int = 1, t: int = 0,
                n_iter: int = 3, c_1_shift: int = 0) -> tuple[Ring, Ring]:
    """Both sides of P's X^T s_Q (or X s_Q) with dealer masks; returns (z_P, z_Q)."""
    b, k = x.shape
    out_len, in_len = (k, b) if transpose else (b, k)
    m_mat = correlated.matrix_mask(SEED_P, "grid", 0, (b, k))
    m_vec = correlated.vector_masks(SEED_Q, "prod", epoch, n_iter, in_len + 2)[t, :in_len]
    c_0 = correlated.product_c0(SEED_P, "prod", epoch, n_iter, out_len)[t]
    c_1 = beaver.product_correction(m_mat, m_vec, c_0, transpose) + np.uint64(c_1_shift)
    e = beaver.mask_matrix(x, m_mat)      # P -> Q, once per batch
    f = beaver.mask_vector(s_q, m_vec)    # Q -> P, fresh per product
    z_p = beaver.combine_matrix_side(m_mat, f, c_0, transpose)
    z_q = beaver.combine_vector_side(e, s_q, c_1, transpose)
    return z_p, z_q


@pytest.mark.parametrize("transpose", [True, False], ids=["XT_s", "X_s"])
@pytest.mark.parametrize("shape", [(9, 4), (1, 3), (6, 1)])
def test_beaver_matvec_matches_plaintext_mod_2_64(transpose: bool,
                                                  shape: tuple[int, int]) -> None:
    x = random_ring(1, shape)
    s_q = random_ring(2, (shape[0] if transpose else shape[1],))
    z_p, z_q = run_product(x, s_q, transpose)
    assert ints(reconstruct(z_p, z_q)) == ref_product(x, s_q, transpose)


def test_beaver_matvec_transmitted_values_are_masked() -> None:
    x = np.zeros((50, 3), dtype=np.uint64)
    s_q = np.zeros(50, dtype=np.uint64)
    b, k = x.shape
    e = beaver.mask_matrix(x, correlated.matrix_mask(SEED_P, "grid", 0, (b, k)))
    f = beaver.mask_vector(s_q, correlated.vector_masks(SEED_Q, "prod", 1, 1, b)[0])
    assert not (e == 0).any() and not (f == 0).any()


def test_beaver_matvec_with_wrong_correction_is_off() -> None:
    x, s_q = random_ring(3, (8, 3)), random_ring(4, (8,))
    z_p, z_q = run_product(x, s_q, True, c_1_shift=1)
    want = ref_product(x, s_q, True)
    assert ints(reconstruct(z_p, z_q)) == [(w + 1) % MOD for w in want]


def test_beaver_matvec_with_other_iterations_vector_mask_fails() -> None:
    """Q masking with iteration 1's m while the dealer corrected iteration 0's."""
    x, s_q = random_ring(5, (8, 3)), random_ring(6, (8,))
    b, k = x.shape
    m_mat = correlated.matrix_mask(SEED_P, "grid", 0, (b, k))
    masks = correlated.vector_masks(SEED_Q, "prod", 1, 2, b)
    c_0 = correlated.product_c0(SEED_P, "prod", 1, 2, k)[0]
    c_1 = beaver.product_correction(m_mat, masks[0], c_0)
    z_p = beaver.combine_matrix_side(m_mat, beaver.mask_vector(s_q, masks[1]), c_0)
    z_q = beaver.combine_vector_side(beaver.mask_matrix(x, m_mat), s_q, c_1)
    assert ints(reconstruct(z_p, z_q)) != ref_product(x, s_q, True)


@pytest.mark.parametrize("owner", ["grid", "bank"])
def test_cross_term_protocol_reconstructs_xt_d_exactly(owner: str) -> None:
    """docs/design.md mode local: the owner gets X^T d with d = d_G + d_B born shared.

    The owner adds X^T d_own locally to z_P; the peer sends z_Q. The sum is exactly
    X_ring^T (d_G + d_B) mod 2^64, and decoding with 2f bits matches float X^T d
    within the quantization bound sum_i |x_ij| 2^-f + |d_i| 2^-(f+1) + 2^-(2f+1).
    """
    f, b = 16, 40
    rng = np.random.default_rng(11)
    k = 4 if owner == "grid" else 3
    x = rng.normal(0, 1.5, (b, k))
    if owner == "bank":
        x = np.hstack([x, np.ones((b, 1))])
        k += 1
    u_g, u_b = rng.normal(0, 2, b), rng.normal(0, 2, b)
    y = rng.integers(0, 2, b).astype(np.float64)
    d_g, d_b = residual_share_features(u_g, f), residual_share_label(u_b, y, f)
    d_own, d_peer = (d_g, d_b) if owner == "grid" else (d_b, d_g)

    x_ring = encode(x, f)
    z_p, z_q = run_product(x_ring, d_peer, True)
    total = rmatvec(x_ring, d_own) + z_p + z_q

    assert ints(total) == ref_product(x_ring, d_g + d_b, True)
    d = 0.5 + (u_g + u_b) / 4.0 - y
    bound = (np.abs(x).sum(0) * 2.0**-f + np.abs(d).sum() * 2.0 ** -(f + 1)
             + b * 2.0 ** -(2 * f + 1) + 1e-9)
    assert np.all(np.abs(decode(total, 2 * f) - x.T @ d) <= bound)


def test_cross_term_bound_is_tight_enough_to_catch_a_dropped_share() -> None:
    """Negative control for the test above: forgetting the local X^T d_own is caught."""
    f, b = 16, 40
    rng = np.random.default_rng(12)
    x = rng.normal(0, 1.5, (b, 3))
    u_g, u_b = rng.normal(0, 2, b), rng.normal(0, 2, b)
    y = rng.integers(0, 2, b).astype(np.float64)
    x_ring = encode(x, f)
    z_p, z_q = run_product(x_ring, residual_share_label(u_b, y, f), True)
    d = 0.5 + (u_g + u_b) / 4.0 - y
    bound = np.abs(x).sum(0) * 2.0**-f + np.abs(d).sum() * 2.0 ** -(f + 1) + 1e-9
    assert np.any(np.abs(decode(z_p + z_q, 2 * f) - x.T @ d) > bound)


# -- the dot-product triple ------------------------------------------------------------


def run_dot(u: Ring, v: Ring, c_1_shift: int = 0) -> Ring:
    n = u.size
    a = correlated.dot_first_masks(SEED_P, "loss", 1, 2, n)[1]
    b = correlated.dot_second_masks(SEED_Q, "loss", 1, 2, n)[1]
    c_0 = correlated.dot_c0(SEED_P, "loss", 1, 2)[1:2]
    c_1 = beaver.dot_correction(a, b, c_0) + np.uint64(c_1_shift)
    e, f = beaver.dot_mask(u, a), beaver.dot_mask(v, b)  # swapped party to party
    z_0 = beaver.dot_combine_first(a, e, f, c_0)
    z_1 = beaver.dot_combine_second(e, b, c_1)
    assert z_0.shape == z_1.shape == (1,)
    return reconstruct(z_0, z_1)


@pytest.mark.parametrize("n", [1, 7, 64])
def test_dot_triple_reconstructs_u_dot_v_mod_2_64(n: int) -> None:
    u, v = random_ring(20 + n, (n,)), random_ring(40 + n, (n,))
    want = sum(a * b for a, b in zip(ints(u), ints(v))) % MOD
    assert ints(run_dot(u, v)) == [want]


def test_dot_triple_on_fixed_point_gives_loss_cross_term() -> None:
    rng = np.random.default_rng(9)
    u_g, w = rng.normal(0, 2, 30), rng.normal(0, 2, 30)
    got = decode(run_dot(encode(u_g), encode(w)), 32)[0]
    assert abs(got - float(u_g @ w)) < 30 * 4 * 2.0**-16


def test_dot_triple_with_wrong_c1_breaks() -> None:
    u, v = random_ring(1, (10,)), random_ring(2, (10,))
    want = sum(a * b for a, b in zip(ints(u), ints(v))) % MOD
    assert ints(run_dot(u, v, c_1_shift=12345)) == [(want + 12345) % MOD]
    assert ints(run_dot(u, v, c_1_shift=12345)) != [want]
