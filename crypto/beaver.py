"""The one secure product: a plaintext matrix of one party times a shared vector.

P holds a matrix X (b x k) and a share s_P; Q holds s_Q, with s = s_P + s_Q. The dealer
gives P a mask matrix M and c_0, and Q a mask vector m and c_1, with
c_0 + c_1 = M^T m (mod 2^64).

1. P sends E = X - M to Q, once per matrix (M is never used with another matrix).
2. Q sends F = s_Q - m (m is fresh for every product).
3. P holds z_P = M^T F + c_0; Q holds z_Q = E^T s_Q + c_1.
4. z_P + z_Q = X^T s_Q. P adds X^T s_P locally to get a sharing of X^T s.

The same with X instead of X^T gives X s_Q (``transpose=False``). The dot-product
triple (a, b, c_0 + c_1 = a.b) multiplies two vectors held by different parties.
Assumes: semi-honest parties; the dealer does not collude with either party and never
sees E, F or e, f (they travel party to party).
"""

from __future__ import annotations

from crypto.ring import Ring, dot, matvec, rmatvec


def _apply(x: Ring, v: Ring, transpose: bool) -> Ring:
    return rmatvec(x, v) if transpose else matvec(x, v)


def product_correction(m_mat: Ring, m_vec: Ring, c_0: Ring, transpose: bool = True) -> Ring:
    """Dealer: c_1 = M^T m - c_0 (or M m - c_0), the only value sent per product."""
    return _apply(m_mat, m_vec, transpose) - c_0


def mask_matrix(x: Ring, m_mat: Ring) -> Ring:
    """P: E = X - M."""
    return x - m_mat


def mask_vector(s_q: Ring, m_vec: Ring) -> Ring:
    """Q: F = s_Q - m."""
    return s_q - m_vec


def combine_matrix_side(m_mat: Ring, f: Ring, c_0: Ring, transpose: bool = True) -> Ring:
    """P: z_P = M^T F + c_0."""
    return _apply(m_mat, f, transpose) + c_0


def combine_vector_side(e: Ring, s_q: Ring, c_1: Ring, transpose: bool = True) -> Ring:
    """Q: z_Q = E^T s_Q + c_1."""
    return _apply(e, s_q, transpose) + c_1


def dot_correction(a: Ring, b: Ring, c_0: Ring) -> Ring:
    """Dealer: c_1 = a.b - c_0 for the dot-product triple."""
    return dot(a, b) - c_0


def dot_mask(x: Ring, mask: Ring) -> Ring:
    """Either party: e = u - a (first party) or f = v - b (second party)."""
    return x - mask


def dot_combine_first(a: Ring, e: Ring, f: Ring, c_0: Ring) -> Ring:
    """First party (holds u and a): z_0 = (a + e).f + c_0 = u.f + c_0."""
    return dot(a + e, f) + c_0


def dot_combine_second(e: Ring, b: Ring, c_1: Ring) -> Ring:
    """Second party (holds v and b): z_1 = e.b + c_1. Then z_0 + z_1 = u.v."""
    return dot(e, b) + c_1
