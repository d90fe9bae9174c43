"""Histogram gradient boosting, the parts both the federated bank and its plaintext twin
run: fixed-point gradients, split search over per-bin sums, leaf values, the tree arrays.

Logistic loss, raw score u: g = sigma(u) - y, h = sigma(u)(1 - sigma(u)), quantized to
integers with f fraction bits (``quantize``). Every per-bin sum is then an exact integer,
so the federated histograms (opened from the ring) and the twin's equal bit for bit,
and so do gains, splits and leaf values.

A histogram of one party has shape (features, slots, 2): per feature ``slots`` bins
(value bins, then the missing bin last), per bin the sums of g and h. A split "after
slot b" sends value bins 0..b left and the rest (larger values and missing) right.
Gain (XGBoost / scikit-learn):
    1/2 [G_L^2 / (H_L + l2) + G_R^2 / (H_R + l2) - G^2 / (H + l2)],
valid if both sides have hessian >= min_child_weight and the gain is > 0. Ties go to the
first candidate in the order (bank features, then grid features; feature; slot).
Leaf value: -learning_rate * G / (H + l2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import numpy.typing as npt

Float = npt.NDArray[np.float64]
Signed = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TreeParams:
    trees: int = 50
    depth: int = 5
    learning_rate: float = 0.1
    l2: float = 1.0
    min_child_weight: float = 1.0
    subsample: float = 1.0
    early_stopping_rounds: int = 10
    frac_bits: int = 16
    seed: int = 42


class Owner(IntEnum):
    """What a tree node is, in the bank's tree arrays."""

    ABSENT = 0
    LEAF = 1
    BANK = 2
    GRID = 3


def sigmoid(u: Float) -> Float:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * u)), dtype=np.float64)


def base_score(y: Float) -> float:
    """The log-odds of the training labels' mean (the model before any tree)."""
    p = float(np.clip(np.mean(y), 1e-12, 1 - 1e-12))
    return float(np.log(p / (1 - p)))


def quantize(raw: Float, y: Float, frac_bits: int) -> tuple[Signed, Signed]:
    """Fixed-point g and h of the logistic loss: round(g 2^f), round(h 2^f)."""
    p = sigmoid(raw)
    scale = float(2**frac_bits)
    g = np.rint((p - y) * scale).astype(np.int64)
    h = np.rint(p * (1 - p) * scale).astype(np.int64)
    return g, h


def log_loss(y: Float, raw: Float) -> float:
    """Mean logistic loss of raw scores (NaN for no rows)."""
    if len(y) == 0:
        return float("nan")
    return float(np.mean(np.logaddexp(0.0, raw) - y * raw))


@dataclass(frozen=True)
class Split:
    owner: Owner
    feature: int
    slot: int
    gain: float


def _candidates(hist: Signed, total: tuple[int, int], params: TreeParams,
                scale: float) -> Float:
    """Gain of every split "after slot b" (features x value slots - 1); -inf if invalid."""
    k, slots = hist.shape[0], hist.shape[1]
    if k == 0 or slots < 2:
        return np.zeros((k, 0), dtype=np.float64)
    cum = np.cumsum(hist[:, : slots - 1, :], axis=1)  # value slots only; missing goes right
    g_l, h_l = cum[..., 0] / scale, cum[..., 1] / scale
    g, h = total[0] / scale, total[1] / scale
    g_r, h_r = g - g_l, h - h_l
    lam = params.l2
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = 0.5 * (g_l**2 / (h_l + lam) + g_r**2 / (h_r + lam) - g**2 / (h + lam))
    ok = (h_l >= params.min_child_weight) & (h_r >= params.min_child_weight) & (gain > 0)
    return np.where(ok & np.isfinite(gain), gain, -np.inf)


def best_split(hist_bank: Signed, hist_grid: Signed, total: tuple[int, int],
               params: TreeParams) -> Split | None:
    """The best valid split of one node over both parties' histograms, or None."""
    scale = float(2**params.frac_bits)
    best: Split | None = None
    for owner, hist in ((Owner.BANK, hist_bank), (Owner.GRID, hist_grid)):
        gains = _candidates(hist, total, params, scale)
        if gains.size == 0:
            continue
        flat = int(np.argmax(gains))
        gain = float(gains.flat[flat])
        if gain == -np.inf or (best is not None and gain <= best.gain):
            continue
        feature, slot = divmod(flat, gains.shape[1])
        best = Split(owner, feature, slot, gain)
    return best


def leaf_value(total: tuple[int, int], params: TreeParams) -> float:
    scale = float(2**params.frac_bits)
    return -params.learning_rate * (total[0] / scale) / (total[1] / scale + params.l2)


@dataclass
class Tree:
    """One tree in heap order (children of node i: 2i + 1 left, 2i + 2 right), as the bank
    holds it: grid splits carry the grid's feature index and slot but no threshold."""

    depth: int
    owner: npt.NDArray[np.int8] = field(init=False)
    feature: npt.NDArray[np.int32] = field(init=False)
    slot: npt.NDArray[np.int32] = field(init=False)
    threshold: Float = field(init=False)  # bank splits: x <= threshold goes left
    value: Float = field(init=False)
    gain: Float = field(init=False)
    cover: Float = field(init=False)  # sum of h in the node (training sample)
    count: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        size = 2 ** (self.depth + 1) - 1
        self.owner = np.zeros(size, dtype=np.int8)
        self.feature = np.full(size, -1, dtype=np.int32)
        self.slot = np.full(size, -1, dtype=np.int32)
        self.threshold = np.full(size, np.nan)
        self.value = np.zeros(size)
        self.gain = np.zeros(size)
        self.cover = np.zeros(size)
        self.count = np.zeros(size, dtype=np.int64)

    def nodes(self, owner: Owner) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.owner == owner)]

    def same_structure(self, other: Tree) -> bool:
        """Same splits (owner, feature, slot) and the same leaves, node by node."""
        return (self.depth == other.depth and np.array_equal(self.owner, other.owner)
                and np.array_equal(self.feature, other.feature)
                and np.array_equal(self.slot, other.slot))


def route(tree: Tree, bank_left: dict[int, npt.NDArray[np.bool_]],
          grid_left: dict[int, npt.NDArray[np.bool_]], n: int) -> npt.NDArray[np.int64]:
    """The leaf of each of n rows, given each split node's "goes left" bits for all rows."""
    node = np.zeros(n, dtype=np.int64)
    for _ in range(tree.depth):
        kind = tree.owner[node]
        split = (kind == Owner.BANK) | (kind == Owner.GRID)
        if not split.any():
            break
        left = np.zeros(n, dtype=bool)
        for i in np.unique(node[split]):
            rows = node == i
            bits = bank_left[int(i)] if tree.owner[i] == Owner.BANK else grid_left[int(i)]
            left[rows] = bits[rows]
        node = np.where(split, np.where(left, 2 * node + 1, 2 * node + 2), node)
    return node
