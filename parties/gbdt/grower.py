"""Growing one tree level by level, and boosting trees, as the label holder (the bank).

The bank holds its own binned features, the labels and the raw scores; everything about
the grid's features comes through a ``GridSide``:

- ``histograms(tree, level, v)``: per-bin sums B_G^T V of the grid's one-hot matrix over
  the training rows, for V = the (g, h) columns of the level's directly computed nodes.
  The federated side opens them by the bin product (a whole level in one exchange); the
  plaintext twin adds them up in the clear.
- ``route(tree, level, splits, members)``: for each grid split, which of the node's rows
  (``members``, over all aligned rows) go left. Federated: the AND product, so the grid
  sees neither the node nor the answer; twin: in the clear.

Sibling subtraction: of each pair of children only the one with fewer sampled training
rows is computed; the other is the parent minus it (exact: integer sums). All rows, the
validation ones too, are routed, so the bank knows every row's leaf without scoring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from parties.binning import BinnedMatrix
from parties.gbdt.core import (
    Owner,
    Signed,
    Split,
    Tree,
    TreeParams,
    base_score,
    best_split,
    leaf_value,
    log_loss,
    quantize,
)

Bool = npt.NDArray[np.bool_]
Float = npt.NDArray[np.float64]
Index = npt.NDArray[np.int64]


@dataclass(frozen=True)
class GridSplit:
    node: int
    feature: int
    slot: int


class GridSide(Protocol):
    def histograms(self, tree: int, level: int, v: Signed) -> Signed: ...

    def route(self, tree: int, level: int, splits: list[GridSplit], members: Bool,
              more: bool) -> Bool:
        """``more``: whether the tree grows another level after this one."""
        ...


class TrainHistogram:
    """B^T V over the training rows of a binned matrix, exactly (sparse float64 product of
    integer values; exact while sums stay below 2^53)."""

    def __init__(self, binned: BinnedMatrix) -> None:
        n, k = binned.codes.shape
        rows = np.repeat(np.arange(n, dtype=np.int64), k)
        ones = np.ones(n * k, dtype=np.float64)
        # B^T of a CSR B is CSC: its product with a dense V runs ~10x faster than a CSR B^T
        self._b = sp.csr_matrix((ones, (rows, binned.flat_index().ravel())),
                                shape=(n, binned.width))
        self.k, self.slots = k, int(binned.slots[0]) if k else 0

    def __call__(self, v: Signed) -> Signed:
        out: Signed = np.rint(self._b.T @ v.astype(np.float64)).astype(np.int64)
        return out


@dataclass
class BoostData:
    """The bank's view: its binned features over all aligned rows, labels, the split."""

    bank: BinnedMatrix        # all aligned rows, fixed width
    y: Float                  # labels of all aligned rows
    train_rows: Index         # aligned-row positions of the training rows, in B's row order
    validation_rows: Index
    grid_features: int
    grid_slots: int           # bins + 1, the same fixed width for both parties' columns
    _hist: TrainHistogram = field(init=False)

    def __post_init__(self) -> None:
        self._hist = TrainHistogram(self.bank.take(self.train_rows))

    def bank_histograms(self, v: Signed) -> Signed:
        return self._hist(v)


def _as_nodes(flat: Signed, k: int, slots: int, count: int) -> list[Signed]:
    """(k * slots, 2 * count) sums -> one (k, slots, 2) histogram per node."""
    cube = flat.reshape(k, slots, count, 2)
    return [np.ascontiguousarray(cube[:, :, i, :]) for i in range(count)]


def _left_bits(bank: BinnedMatrix, feature: int, slot: int) -> Bool:
    codes = bank.codes[:, feature]
    return np.asarray((codes <= slot) & (codes != bank.missing_slot(feature)), dtype=bool)


def grow_tree(index: int, data: BoostData, g: Signed, h: Signed, sample: Bool,
              grid: GridSide, params: TreeParams, bank_edges: tuple[Float, ...]
              ) -> tuple[Tree, Index]:
    """One tree; returns it and the leaf (heap id) of every aligned row.

    ``g``, ``h``: fixed-point gradients of the training rows (zero outside ``sample``).
    """
    n_rows, train = len(data.y), data.train_rows
    tree = Tree(params.depth)
    node_of = np.zeros(n_rows, dtype=np.int64)
    level, request = [0], [0]
    parents: dict[int, tuple[Signed, Signed]] = {}
    node_totals: dict[int, tuple[int, int]] = {}
    for depth in range(params.depth):
        in_train = node_of[train]
        counts = {s: int(np.count_nonzero((in_train == s) & sample)) for s in level}
        v = np.zeros((len(train), 2 * len(request)), dtype=np.int64)
        for i, s in enumerate(request):
            rows = in_train == s
            v[rows, 2 * i], v[rows, 2 * i + 1] = g[rows], h[rows]
        flat_b = data.bank_histograms(v)
        flat_g = grid.histograms(index, depth, v)
        hists = dict(zip(request, zip(
            _as_nodes(flat_b, data.bank.n_columns, data.grid_slots, len(request)),
            _as_nodes(flat_g, data.grid_features, data.grid_slots, len(request)))))
        totals = {s: (int(v[:, 2 * i].sum()), int(v[:, 2 * i + 1].sum()))
                  for i, s in enumerate(request)}
        for s in level:
            if s not in hists:  # the larger sibling: parent minus the computed one
                parent, sibling = parents[(s - 1) // 2], hists[s + 1 if s % 2 else s - 1]
                hists[s] = (parent[0] - sibling[0], parent[1] - sibling[1])
                st = totals[s + 1 if s % 2 else s - 1]
                pt = node_totals[(s - 1) // 2]
                totals[s] = (pt[0] - st[0], pt[1] - st[1])
        splits: dict[int, Split] = {}
        for s in level:
            tree.count[s], node_totals[s] = counts[s], totals[s]
            tree.cover[s] = totals[s][1] / 2**params.frac_bits
            split = best_split(hists[s][0], hists[s][1], totals[s], params) \
                if counts[s] >= 2 else None
            if split is None:
                tree.owner[s], tree.value[s] = Owner.LEAF, leaf_value(totals[s], params)
            else:
                splits[s] = split
        more = bool(splits) and depth < params.depth - 1
        _apply_splits(index, depth, tree, splits, data, grid, node_of, bank_edges, more)
        parents = {s: hists[s] for s in splits}
        level = [c for s in splits for c in (2 * s + 1, 2 * s + 2)]
        request = []
        for s in splits:
            left, right = 2 * s + 1, 2 * s + 2
            n_left = int(np.count_nonzero((node_of[train] == left) & sample))
            request.append(left if 2 * n_left <= counts[s] else right)
        if not level:
            break
    if level:  # nodes at full depth: leaves from their totals
        in_train = node_of[train]
        for s in level:
            rows = (in_train == s) & sample
            total = (int(g[rows].sum()), int(h[rows].sum()))
            tree.count[s] = int(np.count_nonzero(rows))
            tree.cover[s] = total[1] / 2**params.frac_bits
            tree.owner[s], tree.value[s] = Owner.LEAF, leaf_value(total, params)
    return tree, node_of


def _apply_splits(index: int, depth: int, tree: Tree, splits: dict[int, Split],
                  data: BoostData, grid: GridSide, node_of: Index,
                  bank_edges: tuple[Float, ...], more: bool) -> None:
    """Record the level's splits and move every row of a split node to its child."""
    grid_splits = [GridSplit(s, sp_.feature, sp_.slot) for s, sp_ in splits.items()
                   if sp_.owner is Owner.GRID]
    members = np.stack([node_of == gs.node for gs in grid_splits]) if grid_splits else \
        np.zeros((0, len(node_of)), dtype=bool)
    grid_left = grid.route(index, depth, grid_splits, members, more)
    if grid_left.shape != members.shape or (grid_left & ~members).any():
        raise ValueError("the grid's routing answer does not fit the nodes asked about")
    left_of = {gs.node: grid_left[i] for i, gs in enumerate(grid_splits)}
    for s, split in splits.items():
        tree.owner[s], tree.feature[s], tree.slot[s] = split.owner, split.feature, split.slot
        tree.gain[s] = split.gain
        member = node_of == s
        if split.owner is Owner.BANK:
            edges = bank_edges[split.feature]
            tree.threshold[s] = edges[split.slot] if split.slot < len(edges) else np.inf
            left = _left_bits(data.bank, split.feature, split.slot) & member
        else:
            left = left_of[s]
        node_of[left] = 2 * s + 1
        node_of[member & ~left] = 2 * s + 2


@dataclass
class Boosted:
    """What boosting leaves the bank with."""

    base: float
    trees: list[Tree]
    contributions: list[Float]  # per tree, the leaf value of every aligned row
    train_losses: list[float]
    validation_losses: list[float]

    def raw(self, n_trees: int | None = None) -> Float:
        used = self.contributions[: len(self.trees) if n_trees is None else n_trees]
        return np.asarray(self.base + np.sum(used, axis=0) if used else
                          np.full(len(self.contributions[0]) if self.contributions else 0,
                                  self.base), dtype=np.float64)


TreeDone = Callable[[int, float, float], tuple[bool, int]]


def sample_rows(n_train: int, tree: int, params: TreeParams) -> Bool:
    """The tree's subsample of the training rows (public seed; the grid never sees it)."""
    if params.subsample >= 1.0:
        return np.ones(n_train, dtype=bool)
    rng = np.random.default_rng([params.seed, 0x5AB5, tree])
    keep = max(2, int(round(params.subsample * n_train)))
    mask = np.zeros(n_train, dtype=bool)
    mask[rng.choice(n_train, size=min(keep, n_train), replace=False)] = True
    return mask


def boost(data: BoostData, grid: GridSide, params: TreeParams, on_tree: TreeDone,
          bank_edges: tuple[Float, ...]) -> Boosted:
    """Boost until ``on_tree(tree, train_loss, validation_loss)`` says stop; keep the trees
    it says to keep (early stopping on the validation loss)."""
    train, valid = data.train_rows, data.validation_rows
    y_train = data.y[train]
    base = base_score(y_train)
    raw = np.full(len(data.y), base)
    out = Boosted(base, [], [], [], [])
    for index in range(params.trees):
        g, h = quantize(raw[train], y_train, params.frac_bits)
        sample = sample_rows(len(train), index, params)
        g, h = g * sample, h * sample
        tree, leaf = grow_tree(index, data, g, h, sample, grid, params, bank_edges)
        contribution = tree.value[leaf]
        raw = raw + contribution
        out.trees.append(tree)
        out.contributions.append(contribution)
        out.train_losses.append(log_loss(y_train, raw[train]))
        out.validation_losses.append(log_loss(data.y[valid], raw[valid]))
        stop, keep = on_tree(index, out.train_losses[-1], out.validation_losses[-1])
        if stop:
            del out.trees[keep:], out.contributions[keep:]
            break
    return out
