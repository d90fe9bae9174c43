"""The grid's part in federated boosting: it answers, it never decides.

Once per job it sends E = B - M for its one-hot bin matrix over the training rows. Per
tree level it answers one bin product (z_G = B^T F + c_0 for the bank's masked (g, h)
columns) and one routing exchange: for each split the bank put on one of its features
(node id, feature, slot), it computes L = "x <= threshold" over all aligned rows and
answers the AND with the bank's masked membership bits. It keeps, per split node, its
feature and threshold: the bank never learns a grid threshold, only the slot index.
What it sees: E (its own), F and the masked membership bits (uniform), the split
specifications, the coordinator's continue / stop after each tree.
Assumes: semi-honest parties, an authenticated channel, a non-colluding dealer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crypto import bin_product as bp
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import Decision, Envelope, Role, SyncRequest, Tag
from federation.protocol.tree_schedule import (
    MASKED_ROUND,
    MATRIX,
    STEP_ROUTE,
    STEP_TREE,
    Rounds,
    TreeSchedule,
)
from federation.transport.channel import Channel, CoordinatorLink
from parties.bin_product import BinSpec, GridBins
from parties.binning import BinnedMatrix

Index = npt.NDArray[np.int64]


@dataclass(frozen=True)
class GridNode:
    """One split of the grid's: which tree and node, its feature, slot and threshold."""

    tree: int
    node: int
    feature: int
    slot: int
    threshold: float  # x <= threshold goes left (inf: every non-missing value)


@dataclass
class GridResult:
    splits: list[GridNode]
    trees: int
    bytes_masked: int


class GridTrees:
    def __init__(self, job_id: str, schedule: TreeSchedule, seed: bytes, channel: Channel,
                 coordinator: CoordinatorLink, binned: BinnedMatrix, train_rows: Index,
                 timeout: float) -> None:
        s = self.schedule = schedule
        if binned.n_rows != s.n_rows or binned.width != s.width:
            raise ValueError(f"binned matrix {binned.n_rows} x {binned.width} does not fit "
                             f"the schedule ({s.n_rows} x {s.width})")
        self.job_id, self._seed, self._channel = job_id, seed, channel
        self._coordinator, self._timeout = coordinator, timeout
        self._binned = binned
        spec = BinSpec(job_id, MATRIX, s.n_train, s.width, s.bits, timeout)
        self._bins = GridBins(spec, seed, binned.take(train_rows).flat_index(), channel)
        self._splits: list[GridNode] = []
        self._rounds = Rounds()

    def run(self) -> GridResult:
        s = self.schedule
        sent = self._bins.send_masked(MASKED_ROUND)
        trees = s.trees
        for tree in range(s.trees):
            self._bins.open_block(s.block(tree), s.block_width)
            for level in range(s.depth):
                start, _ = s.level_columns(level)
                self._bins.answer(self._rounds.next(), s.block(tree), start)
                if not self._route(tree, level):
                    break
            self._bins.close_block(s.block(tree))
            reply = self._coordinator.sync(SyncRequest(self.job_id, Role.GRID, tree + 1,
                                                       STEP_TREE))
            if reply.decision is Decision.ABORT:
                raise ProtocolAbort(f"coordinator stopped the job: {reply.reason}")
            if reply.decision is Decision.STOP:
                trees = int(reply.values.get("keep", tree + 1))
                break
        kept = [sp for sp in self._splits if sp.tree < trees]
        return GridResult(kept, trees, sent)

    def _route(self, tree: int, level: int) -> bool:
        """Answer one routing exchange; returns whether the tree grows another level."""
        s, b = self.schedule, self._binned
        tag = Tag(self._rounds.next(), STEP_ROUTE)
        got = self._channel.recv(tag, self._timeout).tensors
        nodes, features, slots = (np.asarray(got.get(k, np.zeros(0)), dtype=np.int64)
                                  for k in ("nodes", "features", "slots"))
        count, first, words = len(nodes), 2**level - 1, -(-s.n_rows // 64)
        f, more = got.get("F"), got.get("more")
        if (f is None or f.dtype != np.uint64 or f.shape != (count, words)
                or len(features) != count or len(slots) != count
                or more is None or more.shape != (1,)):
            raise ProtocolAbort(f"bank sent a malformed routing request at tree {tree}, "
                                f"level {level}")
        bad = ((nodes < first) | (nodes >= 2 * first + 1) | (features < 0)
               | (features >= b.n_columns) | (slots < 0) | (slots > b.slots[0] - 2))
        if bad.any() or len(set(nodes.tolist())) != count:
            raise ProtocolAbort(f"bank asked for an impossible split at tree {tree}, level "
                                f"{level}")
        m_grid, c_0 = bp.and_grid_masks(self._seed, s.route_label(tree, level),
                                        s.route_rows(level), s.n_rows)
        left = np.zeros((count, s.n_rows), dtype=bool)
        for i, (feature, slot) in enumerate(zip(features.tolist(), slots.tolist())):
            codes = b.codes[:, feature]
            left[i] = (codes <= slot) & (codes != b.missing_slot(feature))
            edges = b.edges[feature]
            threshold = float(edges[slot]) if slot < len(edges) else float("inf")
            self._splits.append(GridNode(tree, int(nodes[i]), feature, slot, threshold))
        lw, pos = bp.pack_bits(left), nodes - first
        reply: dict[str, npt.NDArray[np.generic]] = {"E": bp.and_mask(lw, m_grid[pos]),
                 "z": bp.and_grid_reply(lw, np.asarray(f, dtype=np.uint64), c_0[pos])}
        self._channel.send(Envelope(self.job_id, tag, Role.GRID, reply))
        return bool(more[0])
