"""The public schedule of a tree job, shared by both parties and the dealer.

Everything here follows from public numbers (row counts, the grid's one-hot width, the
hyper-parameters): the ring width of the bin products, the mask blocks and their column
ranges, the AND labels of grid splits, the message rounds, how trees are grouped into
dealing batches, and the early-stopping rule the coordinator applies to the validation
losses the bank reports.

Per tree, level d (0 .. depth-1) uses columns [start_d, start_d + 2^max(d,1)) of the
tree's block of 2^depth mask columns: level 0 has one node (g and h: 2 columns), level
d >= 1 at most 2^(d-1) directly computed nodes (the smaller child of each pair; its
sibling comes from the parent by subtraction), 2 columns each.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import cached_property

from crypto.limbs import ring_bits

MATRIX = "gbdt"
STEP_TREE = "tree"          # the per-tree barrier at the coordinator
STEP_ROUTE = "gbdt-route"   # bank <-> grid: the AND of a grid split with a node's rows
STEP_SCORE = "gbdt-score"   # grid -> bank: its split bits for the rows being scored
MASKED_ROUND = 1


@dataclass(frozen=True)
class TreeSchedule:
    n_train: int     # rows of the grid's one-hot matrix B (training rows)
    n_rows: int      # aligned rows that are routed through the trees (train + validation)
    width: int       # the grid's one-hot width: features x (bins + 1)
    depth: int
    trees: int
    frac_bits: int
    batch: int = 8   # most trees per dealing batch (one dealer product, one bank product)

    def __post_init__(self) -> None:
        if self.n_train < 1 or self.n_rows < self.n_train:
            raise ValueError(f"need 1 <= training rows <= rows, got {self.n_train}, "
                             f"{self.n_rows}")
        if not 1 <= self.depth <= 12 or self.trees < 1 or self.batch < 1:
            raise ValueError(f"depth must be in [1, 12] and trees >= 1, got {self.depth}, "
                             f"{self.trees}")

    @property
    def bits(self) -> int:
        """Ring width: sums of n_train values with |v| <= 2^frac_bits (|g| <= 1, h <= 1/4)."""
        return ring_bits(self.n_train, self.frac_bits + 1)

    @property
    def block_width(self) -> int:
        return int(2**self.depth)

    @staticmethod
    def block(tree: int) -> str:
        return f"{MATRIX}/tree={tree}"

    @staticmethod
    def level_columns(level: int) -> tuple[int, int]:
        """(first column, most columns) of ``level`` in a tree's block."""
        if level == 0:
            return 0, 2
        return 2**level, 2**level

    @staticmethod
    def route_label(tree: int, level: int) -> str:
        return f"{STEP_ROUTE}/tree={tree}/level={level}"

    @staticmethod
    def route_rows(level: int) -> int:
        """AND slots of a level: one per node position (node id - (2^level - 1))."""
        return int(2**level)

    @property
    def route_rows_per_tree(self) -> int:
        return int(2**self.depth - 1)

    @cached_property
    def _batch_starts(self) -> list[int]:
        """Batches of 1, 2, 4, ... trees up to ``batch``: the first tree waits for one
        tree's dense product only, later ones are prepared while earlier trees grow."""
        starts, start, size = [], 0, 1
        while start < self.trees:
            starts.append(start)
            start, size = start + size, min(2 * size, self.batch)
        return starts

    @property
    def n_batches(self) -> int:
        return len(self._batch_starts)

    def batch_of(self, tree: int) -> int:
        """The 1-based dealing batch of a 0-based tree."""
        return bisect.bisect_right(self._batch_starts, tree)

    def trees_in(self, batch: int) -> range:
        if not 1 <= batch <= self.n_batches:
            raise ValueError(f"dealing batch {batch} outside 1..{self.n_batches}")
        stop = self._batch_starts[batch] if batch < self.n_batches else self.trees
        return range(self._batch_starts[batch - 1], stop)



class Rounds:
    """The round of each party-to-party exchange: consecutive, from the masked matrix on.

    A tree grows as many levels as it needs (both parties learn when it stops, from the
    routing exchange), so rounds are counted, not computed from (tree, level): a formula
    would skip the rounds of levels never grown, and the receiving inbox refuses a round
    more than two ahead of its own.
    """

    def __init__(self) -> None:
        self._last = MASKED_ROUND

    def next(self) -> int:
        self._last += 1
        return self._last


def early_stop(validation_losses: list[float], rounds: int, trees: int) -> tuple[bool, int]:
    """(stop now, trees to keep) after each tree, from the validation losses so far.

    Stop after ``trees`` trees, or when the last ``rounds`` trees brought no improvement
    on the best loss (``rounds`` 0, or no validation rows (NaN losses): never early).
    Keep the trees up to the best validation loss.
    """
    done = len(validation_losses)
    finite = [v for v in validation_losses if math.isfinite(v)]
    if rounds <= 0 or len(finite) != done or done == 0:
        return done >= trees, done
    best = min(range(done), key=lambda i: (validation_losses[i], i)) + 1
    stop = done >= trees or done - best >= rounds
    return stop, best
