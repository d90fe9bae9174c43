"""The plaintext twin of federated boosting: the same bins, gradients, split search and
early stopping, with the grid's histograms and routing computed in the clear.

The federated trees must equal the twin's (same splits, same leaf values: both sum the
same integers). The twin is also the bank-only model (no grid features), and a
reference for tests. It runs in one process and reads both parties' features: it exists
for tests and simulations, never in a deployed node.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from federation.protocol.tree_schedule import early_stop
from parties.binning import BinnedMatrix, bin_matrix
from parties.gbdt.core import Signed, TreeParams
from parties.gbdt.grower import (
    BoostData,
    Boosted,
    GridSplit,
    TrainHistogram,
    TreeDone,
    boost,
)

Bool = npt.NDArray[np.bool_]
Float = npt.NDArray[np.float64]
Index = npt.NDArray[np.int64]


class PlainGrid:
    """The grid's side in the clear (its binned features over all aligned rows)."""

    def __init__(self, grid: BinnedMatrix, train_rows: Index) -> None:
        self._grid = grid
        self._hist = TrainHistogram(grid.take(train_rows))

    def histograms(self, tree: int, level: int, v: Signed) -> Signed:
        return self._hist(v)

    def route(self, tree: int, level: int, splits: list[GridSplit], members: Bool,
              more: bool) -> Bool:
        out = np.zeros_like(members)
        for i, s in enumerate(splits):
            codes = self._grid.codes[:, s.feature]
            out[i] = (codes <= s.slot) & (codes != self._grid.missing_slot(s.feature)) \
                & members[i]
        return out


def early_stopper(params: TreeParams) -> TreeDone:
    """``on_tree`` for ``boost`` applying the coordinator's rule locally."""
    losses: list[float] = []

    def on_tree(tree: int, train_loss: float, validation_loss: float) -> tuple[bool, int]:
        losses.append(validation_loss)
        return early_stop(losses, params.early_stopping_rounds, params.trees)

    return on_tree


def fit_twin(x_grid: Float, x_bank: Float, y: Float, train_rows: Index,
             validation_rows: Index, params: TreeParams, bins: int
             ) -> tuple[Boosted, BinnedMatrix, BinnedMatrix]:
    """Boost on both parties' features in the clear; binning on the training rows.

    ``x_grid`` may have no columns (the bank-only model).
    """
    grid = bin_matrix(x_grid, train_rows, bins, fixed_width=True)
    bank = bin_matrix(x_bank, train_rows, bins, fixed_width=True)
    data = BoostData(bank, y, train_rows, validation_rows, grid.n_columns, bins + 1)
    stopper = early_stopper(params)
    boosted = boost(data, PlainGrid(grid, train_rows), params, stopper, bank.edges)
    return boosted, grid, bank
