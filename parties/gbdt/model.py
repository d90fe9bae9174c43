"""Each party's own part of a boosted model, its file, its importance and its scoring.

The bank's file holds the trees: every node's kind (leaf, bank split, grid split), its
own splits' features and thresholds, the grid splits' feature index and bin slot (never
a grid threshold), leaf values, gains, covers, and the base score. The grid's file holds
only its splits: per (tree, node), its feature and threshold. Neither can score alone:
for the rows being scored the grid answers "x <= threshold" at each of its splits and
the bank walks the trees (``GbdtBankModel.raw``).
Files are written atomically; a file of the other party or of another model is refused.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from federation.protocol.errors import InputDataError
from federation.protocol.messages import Role
from parties.gbdt.core import Owner, Tree, route
from parties.gbdt.grid_side import GridNode
from parties.model import PartyModel, atomic_write_text

Float = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]
KIND = {Owner.LEAF: "leaf", Owner.BANK: "bank", Owner.GRID: "grid"}
OWNER = {v: k for k, v in KIND.items()}


def _threshold(value: float) -> float | str:
    return "inf" if math.isinf(value) else value


def left_of(x: Float, threshold: float) -> Bool:
    """"x <= threshold" with missing values (NaN) going right, as in training."""
    with np.errstate(invalid="ignore"):
        return np.asarray(~np.isnan(x) & (x <= threshold), dtype=bool)


def tree_to_json(tree: Tree) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    for i in np.flatnonzero(tree.owner != Owner.ABSENT):
        kind = Owner(int(tree.owner[i]))
        node: dict[str, Any] = {"id": int(i), "kind": KIND[kind], "cover": float(tree.cover[i]),
                                "count": int(tree.count[i])}
        if kind is Owner.LEAF:
            node["value"] = float(tree.value[i])
        else:
            node.update(feature=int(tree.feature[i]), slot=int(tree.slot[i]),
                        gain=float(tree.gain[i]))
            if kind is Owner.BANK:
                node["threshold"] = _threshold(float(tree.threshold[i]))
        nodes.append(node)
    return nodes


def tree_from_json(depth: int, nodes: list[dict[str, Any]]) -> Tree:
    tree = Tree(depth)
    for node in nodes:
        i = int(node["id"])
        kind = OWNER[str(node["kind"])]
        tree.owner[i], tree.cover[i], tree.count[i] = kind, node["cover"], node["count"]
        if kind is Owner.LEAF:
            tree.value[i] = float(node["value"])
        else:
            tree.feature[i], tree.slot[i] = int(node["feature"]), int(node["slot"])
            tree.gain[i] = float(node["gain"])
            if kind is Owner.BANK:
                tree.threshold[i] = float(node["threshold"])
    return tree


def _check(raw: dict[str, Any], path: Path, role: Role) -> None:
    if raw.get("model") != "gbdt":
        raise InputDataError(f"{path}: not a gbdt model file")
    if raw.get("role") != role.value:
        raise InputDataError(f"{path}: model of the {raw.get('role')}, this node is the {role}")


@dataclass(frozen=True)
class GbdtBankModel:
    job_id: str
    features: list[str]
    base_score: float
    depth: int
    trees: list[Tree]
    grid_features: int
    settings: dict[str, Any]

    def importance(self) -> dict[str, list[dict[str, Any]]]:
        """Gain and split count per feature, the bank's by name, the grid's by index."""
        out: dict[str, list[dict[str, Any]]] = {}
        for owner, names in ((Owner.BANK, self.features),
                             (Owner.GRID, [f"grid#{j}" for j in range(self.grid_features)])):
            gain, splits = np.zeros(len(names)), np.zeros(len(names), dtype=np.int64)
            for tree in self.trees:
                for i in tree.nodes(owner):
                    gain[tree.feature[i]] += tree.gain[i]
                    splits[tree.feature[i]] += 1
            out[KIND[owner]] = sorted(
                ({"feature": n, "index": j, "gain": float(gain[j]), "splits": int(splits[j])}
                 for j, n in enumerate(names)), key=lambda r: (-r["gain"], r["index"]))
        return out

    def grid_nodes(self) -> set[tuple[int, int]]:
        return {(t, i) for t, tree in enumerate(self.trees) for i in tree.nodes(Owner.GRID)}

    def raw(self, x: Float, grid_left: dict[tuple[int, int], Bool]) -> Float:
        """Raw scores of rows with the bank's features ``x`` and the grid's answers."""
        n = x.shape[0]
        total = np.full(n, self.base_score)
        for t, tree in enumerate(self.trees):
            bank_left = {i: left_of(x[:, tree.feature[i]], float(tree.threshold[i]))
                         for i in tree.nodes(Owner.BANK)}
            grid = {i: grid_left[(t, i)] for i in tree.nodes(Owner.GRID)}
            total = total + tree.value[route(tree, bank_left, grid, n)]
        return total

    def save(self, path: Path) -> None:
        body = {"role": Role.BANK.value, "model": "gbdt", "job_id": self.job_id,
                "features": self.features, "base_score": self.base_score,
                "depth": self.depth, "grid_features": self.grid_features,
                "settings": self.settings, "importance": self.importance(),
                "trees": [tree_to_json(t) for t in self.trees]}
        atomic_write_text(path, json.dumps(body, indent=1) + "\n")

    @staticmethod
    def load(path: Path) -> GbdtBankModel:
        raw = read_json(path)
        _check(raw, path, Role.BANK)
        try:
            depth = int(raw["depth"])
            return GbdtBankModel(str(raw["job_id"]), list(raw["features"]),
                                 float(raw["base_score"]), depth,
                                 [tree_from_json(depth, t) for t in raw["trees"]],
                                 int(raw["grid_features"]), dict(raw["settings"]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InputDataError(f"{path}: malformed gbdt model ({exc})") from exc


@dataclass(frozen=True)
class GbdtGridModel:
    job_id: str
    features: list[str]
    splits: list[GridNode]

    def left_bits(self, x: Float) -> tuple[npt.NDArray[np.int64], Bool]:
        """(tree, node) of each split and "x <= threshold" of every row there."""
        nodes = np.array([[s.tree, s.node] for s in self.splits], dtype=np.int64)
        bits = np.array([left_of(x[:, s.feature], s.threshold) for s in self.splits],
                        dtype=bool).reshape(len(self.splits), x.shape[0])
        return nodes.reshape(-1, 2), bits

    def importance(self) -> list[dict[str, Any]]:
        counts = np.bincount([s.feature for s in self.splits], minlength=len(self.features))
        return sorted(({"feature": f, "index": j, "splits": int(counts[j])}
                       for j, f in enumerate(self.features)),
                      key=lambda r: (-r["splits"], r["index"]))

    def save(self, path: Path) -> None:
        body = {"role": Role.GRID.value, "model": "gbdt", "job_id": self.job_id,
                "features": self.features, "importance": self.importance(),
                "splits": [{"tree": s.tree, "node": s.node, "feature": self.features[s.feature],
                            "slot": s.slot, "threshold": _threshold(s.threshold)}
                           for s in self.splits]}
        atomic_write_text(path, json.dumps(body, indent=1) + "\n")

    @staticmethod
    def load(path: Path) -> GbdtGridModel:
        raw = read_json(path)
        _check(raw, path, Role.GRID)
        try:
            features = list(raw["features"])
            index = {f: j for j, f in enumerate(features)}
            splits = [GridNode(int(s["tree"]), int(s["node"]), index[s["feature"]],
                               int(s["slot"]), float(s["threshold"])) for s in raw["splits"]]
            return GbdtGridModel(str(raw["job_id"]), features, splits)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputDataError(f"{path}: malformed gbdt model ({exc})") from exc


def read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{path}: not a gridcredit model file ({exc})") from exc
    if not isinstance(raw, dict):
        raise InputDataError(f"{path}: not a gridcredit model file")
    return raw


def is_gbdt(path: Path) -> bool:
    """Whether ``path`` holds a boosted model (any other file: logistic regression)."""
    return read_json(path).get("model") == "gbdt"


TreeModel = GbdtBankModel | GbdtGridModel


def load_model(path: Path, role: Role) -> PartyModel | TreeModel:
    """A party's model file of either kind: boosted trees or logistic regression."""
    if not is_gbdt(path):
        return PartyModel.load(path, role)
    return GbdtBankModel.load(path) if role is Role.BANK else GbdtGridModel.load(path)
