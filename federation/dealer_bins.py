"""The dealer's side of the bin product (``crypto.bin_product``).

``BinDealer`` holds the grid's matrix mask M, expanded once from the grid's seed, and
computes the only values it ships: for each block of product columns, c_1 = M^T m - c_0
(m from the bank's seed, c_0 from the grid's), to the bank; and for the AND of a grid
bit vector with bank bits, c_1 = (M & m) ^ c_0. It refuses to deal a block twice, so no
mask column serves two products. It never receives a masked value.
Assumes: the dealer colludes with neither party (docs/design.md, "Dealer").
"""

from __future__ import annotations

import numpy as np

from crypto import bin_product as bp
from crypto.ring import Ring
from federation.protocol.messages import Role


class BinDealer:
    """Corrections for the bin products on one one-hot matrix of the grid."""

    def __init__(self, seeds: dict[Role, bytes], matrix: str, n_rows: int, width: int,
                 bits: int) -> None:
        self._seeds, self._n, self._width, self._bits = seeds, n_rows, width, bits
        self._matrix = matrix
        self._m_mat: Ring | None = None
        self._dealt: set[str] = set()

    def _claim(self, label: str) -> None:
        if label in self._dealt:
            raise ValueError(f"bin-product masks {label!r} were already dealt")
        self._dealt.add(label)

    def _mask(self) -> Ring:
        if self._m_mat is None:  # expanded on first use: ~8 bytes per row and slot
            self._m_mat = bp.matrix_mask(self._seeds[Role.GRID], self._matrix,
                                         (self._n, self._width), self._bits)
        return self._m_mat

    def corrections(self, blocks: list[tuple[str, int]]) -> Ring:
        """c_1 of each (block, width), side by side: width x sum(widths), one product."""
        for name, _ in blocks:
            self._claim(name)
        if not blocks:
            return np.zeros((self._width, 0), dtype=np.uint64)
        m_vec = np.hstack([bp.vector_mask(self._seeds[Role.BANK], name, (self._n, w),
                                          self._bits) for name, w in blocks])
        c_0 = np.hstack([bp.block_c0(self._seeds[Role.GRID], name, (self._width, w),
                                     self._bits) for name, w in blocks])
        return bp.correction(self._mask(), m_vec, c_0, self._bits)

    def and_corrections(self, label: str, rows: int, n: int) -> Ring:
        """c_1 words of ``rows`` ANDs of n-bit vectors under ``label``."""
        self._claim(f"and/{label}")
        m_grid, c_0 = bp.and_grid_masks(self._seeds[Role.GRID], label, rows, n)
        m_bank = bp.and_bank_mask(self._seeds[Role.BANK], label, rows, n)
        return bp.and_correction(m_grid, m_bank, c_0)

