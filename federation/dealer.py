"""The dealer of correlated randomness for the secure products of mode ``local``.

It holds the two seeds it sent (seed_G to the grid, seed_B to the bank), expands the
same masks the parties expand, and computes the only values it ever ships after the
seeds: the corrections c_1 = M^T m - c_0 of each gradient product and a.b - c_0 of each
loss dot product, one epoch at a time. It never receives a masked value.
Assumes: the dealer colludes with neither party (docs/design.md, "Dealer").
"""

from __future__ import annotations

import numpy as np

from crypto import correlated
from crypto.beaver import dot_correction, product_correction
from crypto.ring import Ring, matvec
from federation.protocol.messages import Role
from federation.protocol.products import GRAD, LOSS
from federation.protocol.schedule import Schedule


class MaskingDealer:
    """What every dealer shares: the seeds, the schedule, and each batch's matrix mask M
    (expanded once, bound to that batch of that owner's matrix for the whole job)."""

    def __init__(self, seeds: dict[Role, bytes], schedule: Schedule,
                 n_columns: dict[Role, int]) -> None:
        self._seeds = seeds
        self._schedule = schedule
        self._k = n_columns
        self._matrix_masks: dict[tuple[Role, int], Ring] = {}
        self._dealt: set[tuple[Role, int]] = set()

    def _matrix_mask(self, owner: Role, batch: int) -> Ring:
        key = (owner, batch)
        if key not in self._matrix_masks:
            shape = (self._schedule.batch_size_of(batch), self._k[owner])
            self._matrix_masks[key] = correlated.matrix_mask(self._seeds[owner], owner.value,
                                                             batch, shape)
        return self._matrix_masks[key]

    def _claim_epoch(self, role: Role, epoch: int) -> None:
        """Each (role, epoch) is dealt once: a second request would reuse its masks."""
        if (role, epoch) in self._dealt:
            raise ValueError(f"corrections for {role}, epoch {epoch} were already dealt")
        self._dealt.add((role, epoch))


class Dealer(MaskingDealer):
    """Mode ``local``: the two gradient products and the loss dot product."""

    def _product_corrections(self, owner: Role, holder: Role, epoch: int) -> Ring:
        s = self._schedule
        product, k = GRAD[owner], self._k[owner]
        m = correlated.vector_masks(self._seeds[holder], product, epoch, s.n_batches, s.width)
        c_0 = correlated.product_c0(self._seeds[owner], product, epoch, s.n_batches, k)
        out = np.empty((s.n_batches, k), dtype=np.uint64)
        for t, batch in enumerate(s.order(epoch)):
            b = s.batch_size_of(int(batch))
            out[t] = product_correction(self._matrix_mask(owner, int(batch)), m[t, :b], c_0[t])
        return out

    def _loss_corrections(self, epoch: int) -> Ring:
        s = self._schedule
        a = correlated.dot_first_masks(self._seeds[Role.GRID], LOSS, epoch, s.n_batches, s.width)
        b = correlated.dot_second_masks(self._seeds[Role.BANK], LOSS, epoch, s.n_batches, s.width)
        c_0 = correlated.dot_c0(self._seeds[Role.GRID], LOSS, epoch, s.n_batches)
        out = np.empty(s.n_batches, dtype=np.uint64)
        for t, batch in enumerate(s.order(epoch)):
            n = s.batch_size_of(int(batch))
            out[t] = dot_correction(a[t, :n], b[t, :n], c_0[t : t + 1])[0]
        return out

    def corrections(self, role: Role, epoch: int) -> dict[str, Ring]:
        """The c_1 values ``role`` needs for ``epoch``; each (role, epoch) is dealt once."""
        self._claim_epoch(role, epoch)
        if role is Role.GRID:
            return {GRAD[Role.BANK]: self._product_corrections(Role.BANK, Role.GRID, epoch)}
        return {
            GRAD[Role.GRID]: self._product_corrections(Role.GRID, Role.BANK, epoch),
            LOSS: self._loss_corrections(epoch),
        }


def joint_correction(seeds: dict[Role, bytes], holder: Role, purpose: str, n: int,
                     n_columns: dict[Role, int]) -> Ring:
    """c_1 = M_owner m - c_0 of a joint forward pass over n rows (``parties.joint``), for
    the holder of a share of the other party's weight block."""
    owner = Role.BANK if holder is Role.GRID else Role.GRID
    m_mat = correlated.joint_matrix_mask(seeds[owner], owner.value, purpose,
                                         (n, n_columns[owner]))
    m_vec = correlated.joint_vector_mask(seeds[holder], owner.value, purpose, n_columns[owner])
    c_0 = correlated.joint_c0(seeds[owner], owner.value, purpose, n)
    return np.asarray(matvec(m_mat, m_vec) - c_0, dtype=np.uint64)
