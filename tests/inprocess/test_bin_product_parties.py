"""The bin product between two party threads over an in-memory channel, with the dealer:
per-bin sums opened to the bank equal the plaintext sums exactly (ties, missing bins,
empty slots), over several blocks and products; misuse is refused."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

from crypto.limbs import ring_bits
from crypto.prg import new_seed
from federation.dealer_bins import BinDealer
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import Role
from federation.transport.channel import InMemoryChannel
from parties.bin_product import BankBins, BinSpec, GridBins
from parties.binning import bin_matrix

JOB = "bins-test"


def _grid_matrix(n: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    x[:, 0] = np.round(x[:, 0] * 2)  # ties
    x[:, 3] = np.where(rng.random(n) < 0.5, 1.0, x[:, 3])  # one value holds half the rows
    x[rng.random((n, 5)) < 0.1] = np.nan
    x[:, 4] = np.nan  # a column with no value at all
    return bin_matrix(x, np.arange(n), 10, fixed_width=True)


def _both(grid: Callable[[], None], bank: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def run(fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in (grid, bank)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]


def _setup(n: int, frac: int = 16):
    binned = _grid_matrix(n)
    seeds = {Role.GRID: new_seed(), Role.BANK: new_seed()}
    spec = BinSpec(JOB, "gbdt", n, binned.width, ring_bits(n, frac + 1), timeout=20)
    grid_ch, bank_ch = InMemoryChannel.pair(JOB)
    dealer = BinDealer(seeds, spec.matrix, n, spec.width, spec.bits)
    grid = GridBins(spec, seeds[Role.GRID], binned.flat_index(), grid_ch)
    bank = BankBins(spec, seeds[Role.BANK], bank_ch)
    return binned, dealer, grid, bank, (grid_ch, bank_ch)


@pytest.mark.parametrize("chunked", [False, True])
def test_per_bin_sums_equal_plaintext_over_blocks_and_products(
        chunked: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if chunked:  # E in several messages, ring products over several row blocks
        import crypto.limbs
        import parties.bin_product

        monkeypatch.setattr(parties.bin_product, "MASKED_ROWS", 700)
        monkeypatch.setattr(crypto.limbs, "_CHUNK_ROWS", 600)
    n = 2500
    binned, dealer, grid, bank, _ = _setup(n)
    rng = np.random.default_rng(9)
    blocks = [("tree=1", 6), ("tree=2", 6)]
    products = [("tree=1", 0, 2), ("tree=1", 2, 4), ("tree=2", 0, 6)]
    values = [rng.integers(-(2**16), 2**16 + 1, size=(n, t)).astype(np.int64)
              for _, _, t in products]
    opened: list[np.ndarray] = []

    def grid_side() -> None:
        grid.send_masked(1)
        for name, width in blocks:
            grid.open_block(name, width)
        for r, (name, start, _) in enumerate(products):
            grid.answer(2 + r, name, start)

    def bank_side() -> None:
        bank.receive_masked(1)
        c_1 = dealer.corrections(blocks)
        bank.prepare([(blocks[0][0], 6, c_1[:, :6]), (blocks[1][0], 6, c_1[:, 6:])])
        for r, ((name, start, _), v) in enumerate(zip(products, values)):
            opened.append(bank.multiply(2 + r, name, start, v))

    _both(grid_side, bank_side)
    onehot = binned.one_hot(np.int64).astype(object)
    for v, got in zip(values, opened):
        assert got.tolist() == (onehot.T @ v.astype(object)).tolist()
    # missing-value slots and empty slots are part of the exact result
    assert opened[0][binned.offsets[4] + binned.missing_slot(4)].tolist() == \
        values[0].sum(axis=0).tolist()


def test_a_block_is_dealt_once_and_its_columns_used_once() -> None:
    n = 300
    _, dealer, grid, bank, _ = _setup(n)
    dealer.corrections([("b", 2)])
    with pytest.raises(ValueError, match="already dealt"):
        dealer.corrections([("b", 2)])
    grid.open_block("b", 2)
    with pytest.raises(ProtocolAbort, match="already opened"):
        grid.open_block("b", 2)
    bank_ch = _setup(n)[4][1]
    other = BankBins(bank.spec, new_seed(), bank_ch)
    with pytest.raises(ProtocolAbort, match="has not arrived"):
        other.prepare([("b", 2, np.zeros((bank.spec.width, 2), np.uint64))])


def test_reused_columns_and_malformed_messages_are_refused() -> None:
    n = 400
    _, dealer, grid, bank, (grid_ch, bank_ch) = _setup(n)
    v = np.ones((n, 2), dtype=np.int64)

    def grid_side() -> None:
        grid.send_masked(1)
        grid.open_block("b", 4)
        grid.answer(2, "b", 0)

    def bank_side() -> None:
        bank.receive_masked(1)
        bank.prepare([("b", 4, dealer.corrections([("b", 4)]))])
        bank.multiply(2, "b", 0, v)

    _both(grid_side, bank_side)
    with pytest.raises(ProtocolAbort, match="next free is 2"):
        bank.multiply(3, "b", 0, v)
    with pytest.raises(ProtocolAbort, match="c_1 of shape"):
        bank.prepare([("c", 2, np.zeros((3, 2), np.uint64))])
    # a grid that gets F of the wrong width aborts with one line
    from federation.protocol.messages import Envelope, Tag

    bank_ch.send(Envelope(JOB, Tag(3, "bins-product"), Role.BANK,
                          {"F": np.zeros((n - 1, 2, 5), np.uint8)}))
    with pytest.raises(ProtocolAbort, match="expected uint8"):
        grid.answer(3, "b", 2)
