"""Correlated randomness expanded from the dealer's seeds.

The dealer sends each party one 32-byte seed; masks are expanded from it under labels,
so the dealer and the party derive identical M, m, c_0, a, b without shipping them.
Only the corrections c_1 travel. Labels name the owner, the purpose, the batch or the
epoch, so no mask is ever reused for a different secret: a matrix mask is bound to one
batch of one party's matrix for the whole job, and row t of an epoch's vector masks to
iteration t of that epoch only. Vector masks are expanded a whole epoch at a time
(one AES-CTR stream per epoch and purpose) with rows padded to the largest batch.
Assumes: seeds are fresh per job (``crypto.prg.new_seed``) and known only to the dealer
and the seed's party.
"""

from __future__ import annotations

from crypto.prg import expand
from crypto.ring import Ring


def matrix_mask(seed: bytes, owner: str, batch: int, shape: tuple[int, int]) -> Ring:
    """M for ``owner``'s matrix of batch ``batch`` (from the owner's seed)."""
    return expand(seed, f"M/{owner}/batch={batch}", shape)


def vector_masks(seed: bytes, product: str, epoch: int, n_iter: int, width: int) -> Ring:
    """m of the vector holder, one row per iteration of ``epoch`` (holder's seed)."""
    return expand(seed, f"m/{product}/epoch={epoch}", (n_iter, width))


def product_c0(seed: bytes, product: str, epoch: int, n_iter: int, k: int) -> Ring:
    """c_0 of the matrix owner, one row per iteration of ``epoch`` (owner's seed)."""
    return expand(seed, f"c0/{product}/epoch={epoch}", (n_iter, k))


def dot_first_masks(seed: bytes, product: str, epoch: int, n_iter: int, width: int) -> Ring:
    """a of the dot-product triples, one row per iteration (first party's seed)."""
    return expand(seed, f"a/{product}/epoch={epoch}", (n_iter, width))


def dot_second_masks(seed: bytes, product: str, epoch: int, n_iter: int, width: int) -> Ring:
    """b of the dot-product triples, one row per iteration (second party's seed)."""
    return expand(seed, f"b/{product}/epoch={epoch}", (n_iter, width))


def dot_c0(seed: bytes, product: str, epoch: int, n_iter: int) -> Ring:
    """c_0 of the dot-product triples, one per iteration (first party's seed)."""
    return expand(seed, f"dc0/{product}/epoch={epoch}", n_iter)


# -- mode ``shared`` --------------------------------------------------------------------
# Its products are named "<kind>_<owner>" after the matrix owner's role value: "fwd_grid"
# is X_G theta_G (transpose=False), "bwd_bank" is X_B^T d, and so on. SQUARE names the
# dot-product triple of the epoch loss (first party grid, second party bank).
FORWARD = "fwd"
BACKWARD = "bwd"
SQUARE = "sq_loss"


def product_name(kind: str, owner: str) -> str:
    """The label part naming one product of mode ``shared``, e.g. ``fwd_grid``."""
    return f"{kind}_{owner}"


def mask_label(kind: str, product: str, epoch: int) -> str:
    """The PRG label of an epoch's vector masks: ``kind`` is "m", "a" or "b".

    The same labels ``vector_masks``, ``dot_first_masks`` and ``dot_second_masks`` expand;
    the dealer records them to refuse dealing one vector mask twice.
    """
    return f"{kind}/{product}/epoch={epoch}"


def joint_matrix_mask(seed: bytes, owner: str, purpose: str, shape: tuple[int, int]) -> Ring:
    """M for ``owner``'s rows in a joint forward pass (``purpose``: evaluate or score)."""
    return expand(seed, f"Mj/{owner}/{purpose}", shape)


def joint_vector_mask(seed: bytes, block: str, purpose: str, size: int) -> Ring:
    """m of the holder of a share of ``block``'s weights, for that joint forward pass."""
    return expand(seed, f"mj/{block}/{purpose}", size)


def joint_c0(seed: bytes, owner: str, purpose: str, n: int) -> Ring:
    """c_0 of the matrix owner, one per row, for that joint forward pass."""
    return expand(seed, f"cj/{owner}/{purpose}", n)
