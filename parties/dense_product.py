"""The grid's side of the bin product for a dense matrix (``crypto.bin_product``).

The bin product multiplies any grid matrix X (n x k, integers) by a bank matrix V: its
recipe never uses that B is one-hot. Screening uses it with X = the grid's standardized
indicators in fixed point, to open X^T Z_B (cross-party Pearson correlations) to the bank,
with the same masks, dealer (``federation.dealer_bins``) and bank side
(``parties.bin_product.BankBins``) as the one-hot counts:

1. Grid: E = X - M mod 2^l, sent once (in blocks of rows).
2. Bank: F = V - m; grid: z_G = X^T F + c_0 (exact, ``crypto.limbs.matmul_t``).
3. Bank: X^T V = z_G + E^T m + c_1.

Assumes: semi-honest parties, a non-colluding dealer; |X| and |V| small enough that every
sum of n products fits the ring (``ring_bits``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from crypto import bin_product as bp
from crypto.limbs import from_signed, matmul_t, pack, reduce
from crypto.ring import Ring
from federation.protocol.messages import Envelope, Role, Tag
from federation.transport.channel import Channel
from parties.bin_product import (
    STEP_PRODUCT,
    BinSpec,
    _Columns,
    _masked_step,
    _packed,
    masked_chunks,
)


class DenseGrid:
    """The grid's side for a dense integer matrix X (fixed-point values)."""

    def __init__(self, spec: BinSpec, seed: bytes, x: npt.NDArray[np.int64],
                 channel: Channel) -> None:
        if x.shape != (spec.n_rows, spec.width):
            raise ValueError(f"matrix of shape {x.shape}, the spec says "
                             f"{(spec.n_rows, spec.width)}")
        self.spec, self._seed, self._channel = spec, seed, channel
        self._x: Ring = from_signed(x, spec.bits)
        self._c0: dict[str, Ring] = {}
        self._columns = _Columns()

    def send_masked(self, round_: int) -> int:
        """Send E = X - M (once per job), a message per block of rows as the one-hot
        product does (``masked_chunks``); returns the bytes sent."""
        s, sent = self.spec, 0
        for i, (a, b) in enumerate(masked_chunks(s.n_rows)):
            m_rows = bp.matrix_mask_rows(self._seed, s.matrix, (s.n_rows, s.width), s.bits, a, b)
            payload = pack(reduce(self._x[a:b] - m_rows, s.bits), s.bits)
            self._channel.send(Envelope(s.job_id, Tag(round_, _masked_step(i)), Role.GRID,
                                        {"E": payload}))
            sent += int(payload.nbytes)
        return sent

    def open_block(self, block: str, width: int) -> None:
        self._columns.open(block, width)
        self._c0[block] = bp.block_c0(self._seed, block, (self.spec.width, width),
                                      self.spec.bits)

    def answer(self, round_: int, block: str, start: int) -> int:
        """Receive F for columns [start, start + t) of ``block``, return z_G; -> t."""
        s, tag = self.spec, Tag(round_, STEP_PRODUCT)
        got = self._channel.recv(tag, s.timeout).tensors
        raw = got.get("F")
        t = int(raw.shape[1]) if raw is not None and raw.ndim == 3 else 0
        f = _packed(got, "F", (s.n_rows, t), s.bits, Role.BANK)
        self._columns.take(block, start, t)
        c_0 = self._c0[block][:, start:start + t]
        z_g = reduce(matmul_t(self._x, f, s.bits) + c_0, s.bits)
        self._channel.send(Envelope(s.job_id, tag, Role.GRID, {"z": pack(z_g, s.bits)}))
        return t
