"""The dealer of correlated randomness for the secure products of mode ``local``.

It holds the two seeds it sent (seed_G to the grid, seed_B to the bank), expands the
same masks the parties expand, and computes the only values it ever ships after the
seeds: the corrections c_1 = M^T m - c_0 of each gradient product and a.b - c_0 of each
loss dot product, one epoch at a time. It never receives a masked value.
Assumes: the dealer colludes with neither party (docs/design.md, "Dealer").
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

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
        self._stacks: dict[Role, Ring] = {}
        self._dealt: set[tuple[Role, int]] = set()

    def _matrix_mask(self, owner: Role, batch: int) -> Ring:
        """M of one batch: a view into ``_mask_stack``."""
        return self._mask_stack(owner)[batch, :self._schedule.batch_size_of(batch)]

    def _mask_stack(self, owner: Role) -> Ring:
        """Every batch's M of ``owner``, (batches, widest batch, columns); the rows past a
        shorter batch's size are 0, so a product over the whole stack at once equals the
        per-batch products (expanded once per job)."""
        if owner not in self._stacks:
            s = self._schedule
            stack = np.zeros((s.n_batches, s.width, self._k[owner]), dtype=np.uint64)
            for batch in range(s.n_batches):
                n = s.batch_size_of(batch)
                stack[batch, :n] = correlated.matrix_mask(self._seeds[owner], owner.value,
                                                          batch, (n, self._k[owner]))
            self._stacks[owner] = stack
        return self._stacks[owner]

    def _valid(self, epoch: int) -> npt.NDArray[np.bool_]:
        """(iterations, widest batch): True where iteration t's batch has a row."""
        s = self._schedule
        sizes = np.array([s.batch_size_of(int(b)) for b in s.order(epoch)])
        return np.arange(s.width)[None, :] < sizes[:, None]

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
