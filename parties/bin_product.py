"""Each party's side of the bin product over a ``Channel`` (``crypto.bin_product``).

The grid (``GridBins``) sends E = B - M once, then answers each product: it receives
F = V - m and returns z_G = B^T F + c_0. The bank (``BankBins``) receives E once,
prepares each block of product columns ahead of use (z_B = E^T m + c_1, with the
dealer's c_1, on a background thread if it likes), and multiplies: it sends F for the
next unused columns of a block and opens B^T V = z_G + z_B. Only the bank learns B^T V.

A block is a named set of W mask columns; products take columns of it in increasing
order (columns may be skipped, never used twice: ``ProtocolAbort`` otherwise). Both
sides expand a block's masks with the same shape, so a column means the same mask on
both sides and at the dealer. Ring elements travel packed (ceil(l / 8) bytes each,
``crypto.limbs.pack``).
Assumes: semi-honest parties, an authenticated channel, a non-colluding dealer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crypto import bin_product as bp
from crypto.limbs import (
    Limbs,
    Signed,
    elementwise_bytes,
    pack,
    reduce,
    unpack,
    unpack_words,
    word_dtype,
)
from crypto.ring import Ring
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import Envelope, Role, Tag
from federation.transport.channel import Channel

STEP_MASKED = "bins-masked"
STEP_PRODUCT = "bins-product"
MASKED_ROWS = 8192  # rows of E per message: bounds both sides' buffers, not the traffic


def masked_chunks(n_rows: int) -> list[tuple[int, int]]:
    """[start, stop) of each message of E (both sides derive the same from n_rows)."""
    return [(a, min(a + MASKED_ROWS, n_rows)) for a in range(0, max(n_rows, 1), MASKED_ROWS)]


def _masked_step(i: int) -> str:
    return f"{STEP_MASKED}/{i}"


@dataclass(frozen=True)
class BinSpec:
    """What both parties (and the dealer) agree on: the matrix, its size, the ring."""

    job_id: str
    matrix: str
    n_rows: int
    width: int
    bits: int
    timeout: float


def _packed(got: dict[str, npt.NDArray[np.generic]], name: str, shape: tuple[int, ...],
            bits: int, sender: Role) -> Ring:
    arr = got.get(name)
    want = (*shape, elementwise_bytes(bits))
    if arr is None or arr.dtype != np.uint8 or arr.shape != want:
        what = "nothing" if arr is None else f"{arr.dtype} {arr.shape}"
        raise ProtocolAbort(f"{sender} sent {what} as {name!r}; expected uint8 {want}")
    return unpack(np.asarray(arr, dtype=np.uint8), bits)


class _Columns:
    """The reuse guard: which columns of each block have been used."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}
        self._width: dict[str, int] = {}

    def open(self, block: str, width: int) -> None:
        self.unopened(block)
        self._width[block], self._next[block] = width, 0

    def unopened(self, block: str) -> None:
        if block in self._width:
            raise ProtocolAbort(f"bin-product block {block!r} was already opened")

    def take(self, block: str, start: int, count: int) -> None:
        if block not in self._width:
            raise ProtocolAbort(f"bin-product block {block!r} is not prepared")
        if start < self._next[block] or start + count > self._width[block]:
            raise ProtocolAbort(
                f"bin-product block {block!r}: columns [{start}, {start + count}) requested, "
                f"next free is {self._next[block]} of {self._width[block]}")
        self._next[block] = start + count

    def width(self, block: str) -> int:
        return self._width[block]


class GridBins:
    """The grid's side: owner of the one-hot matrix B."""

    def __init__(self, spec: BinSpec, seed: bytes, positions: npt.NDArray[np.int64],
                 channel: Channel) -> None:
        if positions.shape[0] != spec.n_rows:
            raise ValueError(f"{positions.shape[0]} rows of codes, the spec says {spec.n_rows}")
        self.spec, self._seed, self._channel = spec, seed, channel
        self._positions = positions
        self._b = bp.onehot(positions, spec.width)
        self._c0: dict[str, Ring] = {}
        self._columns = _Columns()

    def send_masked(self, round_: int) -> int:
        """Send E = B - M (once per job), a message per block of rows; returns the bytes."""
        s, sent = self.spec, 0
        scratch = np.empty(min(MASKED_ROWS, s.n_rows) * s.width, dtype=word_dtype(s.bits))
        for i, (a, b) in enumerate(masked_chunks(s.n_rows)):
            m_rows = bp.matrix_mask_words(self._seed, s.matrix, (s.n_rows, s.width), s.bits,
                                          a, b, scratch)  # one buffer for every block
            payload = bp.mask_onehot_packed(self._positions[a:b], m_rows, s.bits)
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
        z_g = bp.grid_reply(self._b, f, np.ascontiguousarray(c_0), s.bits)
        self._channel.send(Envelope(s.job_id, tag, Role.GRID, {"z": pack(z_g, s.bits)}))
        return t

    def close_block(self, block: str) -> None:
        self._c0.pop(block, None)


class BankBins:
    """The bank's side: holder of the values V; the only party that sees B^T V."""

    def __init__(self, spec: BinSpec, seed: bytes, channel: Channel) -> None:
        self.spec, self._seed, self._channel = spec, seed, channel
        # E split once into its limbs, as float32 (exact), as it arrives
        self._e: tuple[npt.NDArray[np.float32], ...] | None = None
        self._partial: dict[str, Ring] = {}  # E^T m of blocks computed as E arrived
        self._m: tuple[str, Ring] | None = None  # the block in use (m is re-expanded)
        self._offset: dict[str, Ring] = {}
        self._columns = _Columns()
        self._lock = threading.Lock()

    def receive_masked(self, round_: int, blocks: list[tuple[str, int]] | None = None) -> None:
        """Receive E. Without ``blocks`` it is kept as its limbs (float32, at most 8 bytes per
        element in all), so that every later product widens a block of rows instead of
        splitting E again. With ``blocks`` (name, width), the matrix serves only those
        blocks: E^T m of each is summed up message by message as E arrives, and E is not
        kept (``prepare`` then only adds the dealer's c_1)."""
        s = self.spec
        kept: list[npt.NDArray[np.float32]] | None = None
        partial = None
        masks = None if blocks is None else bp.block_mask_words(self._seed, blocks, s.n_rows,
                                                                s.bits)
        # buffers reused by every message (fresh pages for each would cost more than the maths)
        rows = min(MASKED_ROWS, s.n_rows) * s.width
        words = np.empty(rows if masks is not None else 0, dtype=np.uint32)
        scratch = np.empty(rows if masks is not None else 0, dtype=np.float64)
        for i, (a, b) in enumerate(masked_chunks(s.n_rows)):
            got = self._channel.recv(Tag(round_, _masked_step(i)), s.timeout).tensors
            arr = got.get("E")
            want = (b - a, s.width, elementwise_bytes(s.bits))
            if arr is None or arr.dtype != np.uint8 or arr.shape != want:
                what = "nothing" if arr is None else f"{arr.dtype} {arr.shape}"
                raise ProtocolAbort(f"{Role.GRID} sent {what} as rows {a}..{b} of E; "
                                    f"expected uint8 {want}")
            e = unpack_words(np.asarray(arr, dtype=np.uint8), s.bits, words)
            if masks is not None:
                part = bp.bank_partial(e, masks(a, b), s.bits, scratch)
                partial = part if partial is None else partial + part
                continue
            limbs = bp.limbs32(e, s.bits)
            if kept is None:
                kept = [np.empty((s.n_rows, s.width), dtype=np.float32) for _ in limbs]
            for store, limb in zip(kept, limbs):
                store[a:b] = limb
        if blocks is not None and partial is not None:
            start = 0
            for name, width in blocks:
                self._partial[name] = partial[:, start:start + width]
                start += width
        elif kept is not None:
            self._e = tuple(kept)

    def _e_limbs(self, start: int, stop: int) -> Limbs:
        if self._e is None:
            raise ProtocolAbort("bank: the grid's masked bin matrix has not arrived")
        return tuple(limb[start:stop].astype(np.float64) for limb in self._e)

    def prepare(self, blocks: list[tuple[str, int, Ring]]) -> None:
        """z_B = E^T m + c_1 for each (block, width, c_1 from the dealer), in one product
        (E^T m of blocks named when E arrived is ready: only c_1 is added).

        Safe to call from a background thread while ``multiply`` runs on other blocks.
        """
        s = self.spec
        for name, width, c_1 in blocks:
            with self._lock:
                self._columns.unopened(name)
            if c_1.shape != (s.width, width):
                raise ProtocolAbort(f"the dealer sent c_1 of shape {c_1.shape} for block "
                                    f"{name!r}; expected {(s.width, width)}")
        ready = {name: reduce(self._partial.pop(name) + c_1, s.bits)
                 for name, _, c_1 in blocks if name in self._partial}
        rest = [b for b in blocks if b[0] not in ready]
        if rest and self._e is None:
            raise ProtocolAbort("bank: the grid's masked bin matrix has not arrived")
        if rest:
            widths = [(name, w) for name, w, _ in rest]
            offsets = bp.bank_offset_rows(self._e_limbs, bp.block_mask_rows(
                self._seed, widths, s.n_rows, s.bits), s.n_rows,
                np.hstack([c for _, _, c in rest]), s.bits)
            start = 0
            for name, width in widths:
                ready[name] = offsets[:, start:start + width]
                start += width
        with self._lock:
            for name, width, _ in blocks:
                self._columns.open(name, width)
                self._offset[name] = ready[name]

    def prepared(self, block: str) -> bool:
        with self._lock:
            return block in self._offset

    def _mask(self, block: str) -> Ring:
        """The block's m, expanded again when a product first uses it (not kept per block)."""
        if self._m is None or self._m[0] != block:
            width = self._columns.width(block)
            self._m = (block, bp.vector_mask(self._seed, block, (self.spec.n_rows, width),
                                             self.spec.bits))
        return self._m[1]

    def multiply(self, round_: int, block: str, start: int, v: Signed) -> Signed:
        """B^T V for integer values V (n x t), with columns [start, start + t) of ``block``."""
        s, tag = self.spec, Tag(round_, STEP_PRODUCT)
        with self._lock:
            self._columns.take(block, start, v.shape[1])
            offset = self._offset[block]
        m = self._mask(block)
        if v.shape[0] != s.n_rows:
            raise ValueError(f"values have {v.shape[0]} rows, the matrix has {s.n_rows}")
        t = v.shape[1]
        f = bp.mask_values(v, np.ascontiguousarray(m[:, start:start + t]), s.bits)
        self._channel.send(Envelope(s.job_id, tag, Role.BANK, {"F": pack(f, s.bits)}))
        got = self._channel.recv(tag, s.timeout).tensors
        z_g = _packed(got, "z", (s.width, t), s.bits, Role.GRID)
        return bp.bank_open(z_g, offset[:, start:start + t], s.bits)

    def release(self, block: str) -> None:
        """Forget a used block's masks (its columns stay used)."""
        with self._lock:
            self._offset.pop(block, None)
            if self._m is not None and self._m[0] == block:
                self._m = None
