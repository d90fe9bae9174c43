"""Which aligned rows train and validate, how they are cut into batches, and in what order.

Both parties and the dealer derive the same schedule from public numbers (row count,
validation fraction, batch size, seed). Nothing here is secret: the split and the
batch order are known to the coordinator too, so numpy's seeded generator is fine.
Batches are a fixed partition of the training rows; their order is reshuffled every
epoch (docs/design.md, mode ``local``). Every batch has at least ``min_batch`` rows: a
remainder shorter than that is folded into the previous batch, because a party's per-batch
gradient X_own^T d pins the peer's residuals down when the batch is not much larger than
its column count (:func:`min_batch_size`, :func:`check_batches`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from federation.protocol.errors import ProtocolAbort

Index = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Schedule:
    n_rows: int
    validation_fraction: float
    batch_size: int
    seed: int
    min_batch: int = 1  # no batch below this (min_batch_size of the job's column counts)

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"validation fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch size must be positive, got {self.batch_size}")
        if self.n_train < 1:
            raise ValueError(
                f"no training rows: {self.n_rows} aligned rows, "
                f"validation fraction {self.validation_fraction}"
            )
        if self.batch_size < self.min_batch:
            raise ValueError(f"batch size {self.batch_size} is below the minimum batch "
                             f"{self.min_batch}; per-batch gradients could reveal labels")
        if self.n_train < self.min_batch:
            raise ValueError(f"the training split has {self.n_train} rows, fewer than the "
                             f"minimum batch {self.min_batch}; per-batch gradients could "
                             "reveal labels")

    @cached_property
    def _permutation(self) -> Index:
        return np.random.default_rng([self.seed, 0x5EED]).permutation(self.n_rows).astype(np.int64)

    @property
    def n_validation(self) -> int:
        return int(round(self.n_rows * self.validation_fraction))

    @property
    def n_train(self) -> int:
        return self.n_rows - self.n_validation

    @cached_property
    def train_rows(self) -> Index:
        """Aligned-row indices of the training split, in batch-partition order."""
        return self._permutation[self.n_validation :]

    @cached_property
    def validation_rows(self) -> Index:
        return np.sort(self._permutation[: self.n_validation])

    @cached_property
    def batch_bounds(self) -> list[tuple[int, int]]:
        """[start, stop) of each batch as positions into ``train_rows``: consecutive
        batches of ``batch_size`` rows, the last one taking the remainder if that is
        shorter than ``min_batch`` (so it has between min_batch and
        batch_size + min_batch - 1 rows)."""
        starts = range(0, self.n_train, self.batch_size)
        bounds = [(s, min(s + self.batch_size, self.n_train)) for s in starts]
        if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < self.min_batch:
            bounds.pop()
            bounds[-1] = (bounds[-1][0], self.n_train)
        return bounds

    @property
    def n_batches(self) -> int:
        return len(self.batch_bounds)

    @property
    def width(self) -> int:
        """The largest batch, the row width of an epoch's vector masks."""
        return max(stop - start for start, stop in self.batch_bounds)

    def batch_size_of(self, batch: int) -> int:
        start, stop = self.batch_bounds[batch]
        return stop - start

    def order(self, epoch: int) -> Index:
        """The batch order of ``epoch`` (1-based)."""
        rng = np.random.default_rng([self.seed, 0x0DE5, epoch])
        return rng.permutation(self.n_batches).astype(np.int64)


def min_batch_size(n_columns: Iterable[int]) -> int:
    """docs/design.md: a batch must be at least 4x the larger party's column count (the
    bank's count includes its intercept column)."""
    return 4 * max(n_columns)


def check_batches(schedule: Schedule, who: str, n_columns: Iterable[int]) -> None:
    """A party's own check, whatever the coordinator decided: every batch it will compute
    a gradient on has at least :func:`min_batch_size` rows for the columns it sees (its
    own and the peer's masked matrix). Raises ``ProtocolAbort`` naming the shortest batch.
    """
    columns = list(n_columns)
    need = min_batch_size(columns)
    sizes = [stop - start for start, stop in schedule.batch_bounds]
    short = min(range(len(sizes)), key=sizes.__getitem__)
    if sizes[short] < need:
        raise ProtocolAbort(
            f"{who}: batch {short + 1} of {len(sizes)} has {sizes[short]} rows, below the "
            f"minimum batch {need} (4x the larger party's {max(columns)} columns); per-batch "
            "gradients could reveal labels, so this party refuses to train")
