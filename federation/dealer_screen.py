"""The dealer of a screening job: corrections of its two bin products, dealt once.

The counts product is the grid's one-hot bin matrix (aligned rows x slots) times the bank's
three 0/1 columns; the Pearson product is the grid's fixed-point standardized indicators
(training rows x indicators) times the bank's. Both use ``BinDealer``; the bank receives
both c_1 in one reply, the grid nothing (its masks come from its seed). The dealer starts
computing them as soon as it knows the sizes (the aligned barrier), on a worker thread, so
its dense product M^T m runs while the grid masks its matrix.
Assumes: the dealer colludes with neither party; sizes come from both parties' reports.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from crypto.ring import Ring
from federation.dealer_bins import BinDealer
from federation.protocol.messages import (
    Role,
)
from federation.protocol.products import (
    SCREEN_COUNT_COLUMNS,
    SCREEN_COUNTS_BLOCK,
    SCREEN_COUNTS_MATRIX,
    SCREEN_PEARSON_BLOCK,
    SCREEN_PEARSON_MATRIX,
)


@dataclass(frozen=True)
class ScreenSizes:
    """Everything the dealer needs: public sizes the parties agree on."""

    rows: int
    train_rows: int
    width: int  # grid's one-hot slots
    grid_columns: int
    bank_columns: int
    count_bits: int
    pearson_bits: int


def agree_sizes(n: int, reported: dict[Role, dict[str, float]]) -> ScreenSizes:
    """The screening sizes from both parties' reports at the aligned barrier.

    Raises
    ------
    ValueError
        The parties report different or no training rows or bit widths.
    """
    agreed = {}
    for key in ("train_rows", "count_bits", "pearson_bits"):
        values = {role: int(r.get(key, -1)) for role, r in reported.items()}
        if len(set(values.values())) != 1 or min(values.values()) < 1:
            raise ValueError(f"parties report different or no {key}: {values}")
        agreed[key] = values[Role.GRID]
    grid, bank = reported[Role.GRID], reported[Role.BANK]
    return ScreenSizes(n, agreed["train_rows"], int(grid.get("width", 0)),
                       int(grid.get("columns", 0)), int(bank.get("columns", 0)),
                       agreed["count_bits"], agreed["pearson_bits"])


class ScreenDealer:
    def __init__(self, seeds: dict[Role, bytes], sizes: ScreenSizes) -> None:
        self._seeds, self.sizes = seeds, sizes
        self._dealt = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="screen-dealer")
        self._ahead: Future[dict[str, Ring]] | None = None

    def start(self) -> None:
        """Begin computing the corrections (before the bank asks)."""
        if self._ahead is None:
            self._ahead = self._pool.submit(self._compute)

    def corrections(self) -> dict[str, Ring]:
        """The bank's c_1 of both products; a second request is refused (mask reuse)."""
        if self._dealt:
            raise ValueError("screening corrections were already dealt")
        self._dealt = True
        self.start()
        if self._ahead is None:  # pragma: no cover - start() sets it
            raise ValueError("screening corrections were not computed")
        try:
            return self._ahead.result()
        finally:
            self._ahead = None
            self._pool.shutdown(wait=False)

    def _compute(self) -> dict[str, Ring]:
        s = self.sizes
        # One request per matrix: its mask is never kept whole (keep=False).
        counts = BinDealer(self._seeds, SCREEN_COUNTS_MATRIX, s.rows, s.width, s.count_bits,
                           keep=False)
        pearson = BinDealer(self._seeds, SCREEN_PEARSON_MATRIX, s.train_rows, s.grid_columns,
                            s.pearson_bits, keep=False)
        return {
            SCREEN_COUNTS_BLOCK: counts.corrections([(SCREEN_COUNTS_BLOCK,
                                                      SCREEN_COUNT_COLUMNS)]),
            SCREEN_PEARSON_BLOCK: pearson.corrections([(SCREEN_PEARSON_BLOCK,
                                                        s.bank_columns)]),
        }
