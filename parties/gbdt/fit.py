"""Federated boosting, one function per party: binning, the exchanges, the result.

Both parties bin their own features on the training rows (equal frequency, ``bins``
value bins and a missing bin per feature, fixed width), then the bank grows the trees
(``parties.gbdt.grower``) with ``FederatedGrid`` standing in for the grid, while the grid
answers (``parties.gbdt.grid_side``). After each tree the bank reports its training and
validation loss to the coordinator, which decides continue / stop (early stopping) for
both and says how many trees to keep.
Assumes: semi-honest parties, an authenticated channel, a non-colluding dealer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import Decision, Role, SyncRequest, TrainSettings
from federation.protocol.schedule import Schedule
from federation.protocol.tree_schedule import STEP_TREE, TreeSchedule
from federation.transport.channel import Channel, CoordinatorLink
from parties.binning import BinnedMatrix, bin_matrix
from parties.gbdt.bank_side import FederatedGrid
from parties.gbdt.core import TreeParams
from parties.gbdt.grid_side import GridResult, GridTrees
from parties.gbdt.grower import BoostData, Boosted, boost

Float = npt.NDArray[np.float64]


def tree_params(s: TrainSettings) -> TreeParams:
    return TreeParams(trees=s.trees, depth=s.depth, learning_rate=s.learning_rate, l2=s.l2,
                      min_child_weight=s.min_child_weight, subsample=s.subsample,
                      early_stopping_rounds=s.early_stopping_rounds, frac_bits=s.frac_bits,
                      seed=s.seed)


def tree_schedule(s: TrainSettings, schedule: Schedule, grid_width: int) -> TreeSchedule:
    return TreeSchedule(schedule.n_train, schedule.n_rows, grid_width, s.depth, s.trees,
                        s.frac_bits)


@dataclass
class BankBoost:
    boosted: Boosted
    binned: BinnedMatrix
    seconds: float
    time_split: dict[str, float] = field(default_factory=dict)


def fit_bank(job_id: str, settings: TrainSettings, schedule: Schedule, grid_width: int,
             seed: bytes, x: Float, y: Float, channel: Channel,
             coordinator: CoordinatorLink) -> BankBoost:
    """The bank's side: grows every tree; returns the trees and its binned features."""
    start = time.perf_counter()
    slots = settings.bins + 1
    if grid_width % slots:
        raise ProtocolAbort(f"the grid's one-hot width {grid_width} is not a multiple of "
                            f"bins + 1 = {slots}")
    binned = bin_matrix(x, schedule.train_rows, settings.bins, fixed_width=True)
    ts = tree_schedule(settings, schedule, grid_width)
    grid = FederatedGrid(job_id, ts, seed, channel, coordinator, settings.deadline_seconds)
    data = BoostData(binned, y, schedule.train_rows, schedule.validation_rows,
                     grid_width // slots, slots)

    def on_tree(tree: int, train_loss: float, validation_loss: float) -> tuple[bool, int]:
        reply = coordinator.sync(SyncRequest(job_id, Role.BANK, tree + 1, STEP_TREE, {
            "train_loss": train_loss, "validation_loss": validation_loss}))
        if reply.decision is Decision.ABORT:
            raise ProtocolAbort(f"coordinator stopped the job: {reply.reason}")
        return reply.decision is Decision.STOP, int(reply.values.get("keep", tree + 1))

    try:
        grid.setup()
        setup = time.perf_counter() - start
        boosted = boost(data, grid, tree_params(settings), on_tree, binned.edges)
    finally:
        grid.close()
    seconds = time.perf_counter() - start
    return BankBoost(boosted, binned, seconds, {"setup": setup, "trees": seconds - setup})


@dataclass
class GridBoost:
    result: GridResult
    binned: BinnedMatrix
    seconds: float


def fit_grid(job_id: str, settings: TrainSettings, schedule: Schedule, seed: bytes, x: Float,
             channel: Channel, coordinator: CoordinatorLink) -> GridBoost:
    """The grid's side: answers every product and routing request; keeps its splits."""
    start = time.perf_counter()
    binned = bin_matrix(x, schedule.train_rows, settings.bins, fixed_width=True)
    ts = tree_schedule(settings, schedule, binned.width)
    trees = GridTrees(job_id, ts, seed, channel, coordinator, binned, schedule.train_rows,
                      settings.deadline_seconds)
    result = trees.run()
    return GridBoost(result, binned, time.perf_counter() - start)
