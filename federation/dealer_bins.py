"""The dealer's side of the bin product (``crypto.bin_product``).

``BinDealer`` holds the grid's matrix mask M, expanded once from the grid's seed, and
computes the only values it ships: for each block of product columns, c_1 = M^T m - c_0
(m from the bank's seed, c_0 from the grid's), to the bank; and for the AND of a grid
bit vector with bank bits, c_1 = (M & m) ^ c_0. It refuses to deal a block twice, so no
mask column serves two products. It never receives a masked value.
Assumes: the dealer colludes with neither party (docs/design.md, "Dealer").
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from crypto import bin_product as bp
from crypto.limbs import Limbs
from crypto.ring import Ring
from federation.protocol.messages import Role
from federation.protocol.tree_schedule import MATRIX, TreeSchedule


class BinDealer:
    """Corrections for the bin products on one one-hot matrix of the grid."""

    def __init__(self, seeds: dict[Role, bytes], matrix: str, n_rows: int, width: int,
                 bits: int, keep: bool = True) -> None:
        self._seeds, self._n, self._width, self._bits = seeds, n_rows, width, bits
        self._matrix, self._keep = matrix, keep
        self._dealt: set[str] = set()
        self._limbs: tuple[npt.NDArray[np.float32], ...] | None = None

    def _claim(self, label: str) -> None:
        if label in self._dealt:
            raise ValueError(f"bin-product masks {label!r} were already dealt")
        self._dealt.add(label)

    def corrections(self, blocks: list[tuple[str, int]]) -> Ring:
        """c_1 of each (block, width), side by side: width x sum(widths), one product.

        With ``keep`` (a matrix of many batches, as a tree job's) M is expanded once and kept
        as its limbs (float32: at most 8 bytes per training row and one-hot slot); without
        (a matrix of one request, as screening's) M and m are expanded a block of rows at a
        time and nothing of the size of M is held."""
        for name, _ in blocks:
            self._claim(name)
        if not blocks:
            return np.zeros((self._width, 0), dtype=np.uint64)
        seeds = (self._seeds[Role.GRID], self._seeds[Role.BANK])
        return bp.correction_from_seeds(seeds, self._matrix, (self._n, self._width), blocks,
                                        self._bits, self._m_limbs if self._keep else None)

    def _m_limbs(self, start: int, stop: int) -> Limbs:
        """Rows of M's limbs, widened to float64; M is expanded and split once, kept as
        float32 limbs (at most 8 bytes per element), since every batch of blocks needs all
        of it."""
        if self._limbs is None:
            kept: list[npt.NDArray[np.float32]] = []
            for a in range(0, self._n, 8192):
                b = min(a + 8192, self._n)
                rows = bp.matrix_mask_words(self._seeds[Role.GRID], self._matrix,
                                            (self._n, self._width), self._bits, a, b)
                limbs = bp.limbs32(rows, self._bits)
                if not kept:
                    kept = [np.empty((self._n, self._width), np.float32) for _ in limbs]
                for store, limb in zip(kept, limbs):
                    store[a:b] = limb
            self._limbs = tuple(kept)
        return tuple(limb[start:stop].astype(np.float64) for limb in self._limbs)

    def and_corrections(self, label: str, rows: int, n: int) -> Ring:
        """c_1 words of ``rows`` ANDs of n-bit vectors under ``label``."""
        self._claim(f"and/{label}")
        m_grid, c_0 = bp.and_grid_masks(self._seeds[Role.GRID], label, rows, n)
        m_bank = bp.and_bank_mask(self._seeds[Role.BANK], label, rows, n)
        return bp.and_correction(m_grid, m_bank, c_0)


class TreeDealer:
    """The dealer of a tree job: per batch of trees, the bin-product corrections of every
    tree's block and the AND corrections of every (tree, level) of grid splits, all for
    the bank (the grid's masks come from its own seed alone).

    Each request starts computing the next batch on a worker thread, so the dealer's
    dense product runs while the bank does its own for the batch just dealt.
    """

    def __init__(self, seeds: dict[Role, bytes], schedule: TreeSchedule) -> None:
        s = self.schedule = schedule
        self._bins = BinDealer(seeds, MATRIX, s.n_train, s.width, s.bits)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tree-dealer")
        self._ahead: dict[int, Future[dict[str, Ring]]] = {}

    def corrections(self, role: Role, batch: int) -> dict[str, Ring]:
        """{"bins": width x (trees x 2^depth), "route": (trees x (2^depth - 1)) x words}."""
        if role is not Role.BANK:
            raise ValueError(f"the {role} needs no corrections in a tree job")
        if not 1 <= batch <= self.schedule.n_batches:
            raise ValueError(f"dealing batch {batch} outside 1..{self.schedule.n_batches}")
        future = self._ahead.pop(batch, None)
        if future is None:
            future = self._pool.submit(self._compute, batch)
        if batch < self.schedule.n_batches and batch + 1 not in self._ahead:
            self._ahead[batch + 1] = self._pool.submit(self._compute, batch + 1)
        return future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _compute(self, batch: int) -> dict[str, Ring]:
        s = self.schedule
        trees = s.trees_in(batch)
        bins = self._bins.corrections([(s.block(t), s.block_width) for t in trees])
        route = [self._bins.and_corrections(s.route_label(t, d), s.route_rows(d), s.n_rows)
                 for t in trees for d in range(s.depth)]
        return {"bins": bins, "route": np.vstack(route)}
