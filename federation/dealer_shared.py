"""The dealer of correlated randomness for mode ``shared``.

Mode ``shared`` runs five products per iteration, all dealt here (docs/design.md, "Training,
mode shared"; names from ``crypto.correlated``):

- ``fwd_grid``, ``fwd_bank``: X_owner <theta_owner> (``transpose=False``); the vector
  holder masks its share of the owner's weights, its correction has one entry per row.
- ``bwd_grid``, ``bwd_bank``: X_owner^T <d>; the holder masks its share of the residual,
  its correction has one entry per column of the owner's matrix.
- ``sq_loss``: the dot-product triple for sum <d>_G . <d>_B of the epoch loss.

The dealer holds the two seeds it sent (seed_G to the grid, seed_B to the bank), expands
the same M, m, c_0, a, b the parties expand, and ships only corrections c_1 = M m - c_0
(or M^T m - c_0, a.b - c_0), one epoch at a time, each to the vector holder. It refuses to
deal any vector-mask label twice, so a mask m is never used for two products. It never
receives a masked value.
Assumes: the dealer colludes with neither party (docs/design.md, "Dealer").
"""

from __future__ import annotations

import numpy as np

from crypto import correlated
from crypto.correlated import SQUARE, mask_label
from crypto.ring import Ring, matmul
from federation.dealer import MaskingDealer
from federation.protocol.messages import Role, peer_of
from federation.protocol.products import BACKWARD_PRODUCT, FORWARD_PRODUCT
from federation.protocol.schedule import Schedule


class SharedDealer(MaskingDealer):
    """Corrections for every product of mode ``shared``; same interface as ``Dealer``."""

    def __init__(self, seeds: dict[Role, bytes], schedule: Schedule,
                 n_columns: dict[Role, int]) -> None:
        super().__init__(seeds, schedule, n_columns)
        self._labels: set[tuple[Role, str]] = set()

    def _claim(self, holder: Role, label: str) -> None:
        """The reuse guard: one vector-mask label of one seed is dealt at most once."""
        if (holder, label) in self._labels:
            raise ValueError(f"vector mask {label!r} of the {holder}'s seed was already dealt")
        self._labels.add((holder, label))

    def _product(self, owner: Role, epoch: int, forward: bool) -> Ring:
        """c_1 of one product for every iteration of ``epoch``, padded to the widest batch
        (with zeros), all iterations in one stacked product."""
        s, holder = self._schedule, peer_of(owner)
        product = (FORWARD_PRODUCT if forward else BACKWARD_PRODUCT)[owner]
        self._claim(holder, mask_label("m", product, epoch))
        k = self._k[owner]
        vec_width, out_width = (k, s.width) if forward else (s.width, k)
        m = correlated.vector_masks(self._seeds[holder], product, epoch, s.n_batches, vec_width)
        c_0 = correlated.product_c0(self._seeds[owner], product, epoch, s.n_batches, out_width)
        order = np.asarray(s.order(epoch), dtype=np.intp)
        by_batch = np.empty_like(m)
        by_batch[order] = m  # row b: the mask of the iteration that uses batch b
        stack = self._mask_stack(owner)  # rows past a batch's size are 0
        if forward:  # M m (M: n x k); past n, the padding the parties never read is 0
            out = matmul(stack, by_batch[:, :, None])[order, :, 0] - c_0
            out[~self._valid(epoch)] = 0
            return out
        return matmul(by_batch[:, None, :], stack)[order, 0, :] - c_0  # M^T m

    def _square(self, epoch: int) -> Ring:
        s = self._schedule
        self._claim(Role.GRID, mask_label("a", SQUARE, epoch))
        self._claim(Role.BANK, mask_label("b", SQUARE, epoch))
        a = correlated.dot_first_masks(self._seeds[Role.GRID], SQUARE, epoch, s.n_batches,
                                       s.width)
        b = correlated.dot_second_masks(self._seeds[Role.BANK], SQUARE, epoch, s.n_batches,
                                        s.width)
        c_0 = correlated.dot_c0(self._seeds[Role.GRID], SQUARE, epoch, s.n_batches)
        products = np.where(self._valid(epoch), a * b, np.uint64(0))  # a . b over each batch
        return np.sum(products, axis=1, dtype=np.uint64) - c_0

    def corrections(self, role: Role, epoch: int) -> dict[str, Ring]:
        """The c_1 values ``role`` needs for ``epoch``; each (role, epoch) is dealt once.

        ``role`` holds the vector of the peer's two products, so it gets their
        corrections: forward ones of shape (iterations, widest batch), backward ones of
        shape (iterations, the peer's columns). The bank also gets the loss triple's.
        """
        if role not in (Role.GRID, Role.BANK):
            raise ValueError(f"{role} is not a party")
        self._claim_epoch(role, epoch)
        owner = peer_of(role)
        out = {FORWARD_PRODUCT[owner]: self._product(owner, epoch, forward=True),
               BACKWARD_PRODUCT[owner]: self._product(owner, epoch, forward=False)}
        if role is Role.BANK:
            out[SQUARE] = self._square(epoch)
        return out
