"""Which aligned rows train and validate, how they are cut into batches, and in what order.

Both parties and the dealer derive the same schedule from public numbers (row count,
validation fraction, batch size, seed). Nothing here is secret: the split and the
batch order are known to the coordinator too, so numpy's seeded generator is fine.
Batches are a fixed partition of the training rows; their order is reshuffled every
epoch (docs/design.md, mode ``local``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

Index = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Schedule:
    n_rows: int
    validation_fraction: float
    batch_size: int
    seed: int

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
        """[start, stop) of each batch as positions into ``train_rows``."""
        starts = range(0, self.n_train, self.batch_size)
        return [(s, min(s + self.batch_size, self.n_train)) for s in starts]

    @property
    def n_batches(self) -> int:
        return len(self.batch_bounds)

    @property
    def width(self) -> int:
        """The largest batch, the row width of an epoch's vector masks."""
        return min(self.batch_size, self.n_train)

    def batch_size_of(self, batch: int) -> int:
        start, stop = self.batch_bounds[batch]
        return stop - start

    def order(self, epoch: int) -> Index:
        """The batch order of ``epoch`` (1-based)."""
        rng = np.random.default_rng([self.seed, 0x0DE5, epoch])
        return rng.permutation(self.n_batches).astype(np.int64)
