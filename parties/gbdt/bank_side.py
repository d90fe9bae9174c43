"""The grid's features as the bank sees them during federated boosting.

``FederatedGrid`` is the bank's ``GridSide``: per tree level one bin product (the bank's
(g, h) columns of the level's nodes, masked for all training rows, against the grid's
one-hot matrix; per-bin sums open to the bank only), and per level with grid splits one
AND exchange (the bank's membership bits of each split node, masked for all rows, ANDed
with the grid's "x <= threshold" bits; the bank learns the node's rows that go left,
the grid learns neither the node nor the answer).

The dealer's corrections come in batches of trees; a background thread fetches the next
batch and computes its z_B = E^T m + c_1 (the costly dense product, independent of the
data) while the current trees grow.
Assumes: semi-honest parties, an authenticated channel, a non-colluding dealer.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from crypto import bin_product as bp
from crypto.bin_product import Words
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import DealRequest, Envelope, Role, Tag
from federation.protocol.tree_schedule import (
    MASKED_ROUND,
    MATRIX,
    STEP_ROUTE,
    Rounds,
    TreeSchedule,
)
from federation.transport.channel import Channel, CoordinatorLink
from parties.bin_product import BankBins, BinSpec
from parties.gbdt.core import Signed
from parties.gbdt.grower import Bool, GridSplit

log = logging.getLogger(__name__)


class FederatedGrid:
    def __init__(self, job_id: str, schedule: TreeSchedule, seed: bytes, channel: Channel,
                 coordinator: CoordinatorLink, timeout: float) -> None:
        s = self.schedule = schedule
        self.job_id, self._seed, self._channel = job_id, seed, channel
        self._coordinator, self._timeout = coordinator, timeout
        self.bins = BankBins(BinSpec(job_id, MATRIX, s.n_train, s.width, s.bits, timeout),
                             seed, channel)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tree-deal")
        self._batches: dict[int, Future[dict[int, Words]]] = {}
        self._route_c1: dict[int, Words] = {}
        self._rounds = Rounds()

    def setup(self) -> None:
        """Receive the grid's E once, and start preparing the first batch of trees."""
        self.bins.receive_masked(MASKED_ROUND)
        self._ahead(1)

    def _ahead(self, batch: int) -> None:
        if batch <= self.schedule.n_batches and batch not in self._batches:
            self._batches[batch] = self._pool.submit(self._prepare, batch)

    def _prepare(self, batch: int) -> dict[int, Words]:
        s = self.schedule
        got = self._coordinator.deal(DealRequest(self.job_id, Role.BANK, batch)).corrections
        trees = s.trees_in(batch)
        w, r = s.block_width, s.route_rows_per_tree
        bins, route = got.get("bins"), got.get("route")
        words = -(-s.n_rows // 64)
        if bins is None or bins.shape != (s.width, w * len(trees)):
            raise ProtocolAbort(f"the dealer sent bin corrections of shape "
                                f"{None if bins is None else bins.shape}; expected "
                                f"{(s.width, w * len(trees))}")
        if route is None or route.shape != (r * len(trees), words):
            raise ProtocolAbort("the dealer sent routing corrections of the wrong shape")
        self.bins.prepare([(s.block(t), w, np.ascontiguousarray(bins[:, i * w:(i + 1) * w]))
                           for i, t in enumerate(trees)])
        return {t: route[i * r:(i + 1) * r] for i, t in enumerate(trees)}

    def _tree_ready(self, tree: int) -> None:
        if tree in self._route_c1:
            return
        batch = self.schedule.batch_of(tree)
        self._ahead(batch)
        self._route_c1.update(self._batches.pop(batch).result())
        self._ahead(batch + 1)  # the next batch's dense product overlaps this batch's trees

    def histograms(self, tree: int, level: int, v: Signed) -> Signed:
        self._tree_ready(tree)
        s = self.schedule
        start, most = s.level_columns(level)
        if v.shape[1] > most:
            raise ValueError(f"level {level} has at most {most} product columns, got "
                             f"{v.shape[1]}")
        return self.bins.multiply(self._rounds.next(), s.block(tree), start, v)

    def route(self, tree: int, level: int, splits: list[GridSplit], members: Bool,
              more: bool) -> Bool:
        s = self.schedule
        first = 2**level - 1
        label, rows = s.route_label(tree, level), s.route_rows(level)
        nodes = np.array([sp.node for sp in splits], dtype=np.int64)
        if nodes.size and (nodes.min() < first or nodes.max() >= first + rows):
            raise ValueError(f"nodes {nodes.tolist()} are not on level {level}")
        m = bp.and_bank_mask(self._seed, label, rows, s.n_rows)[nodes - first]
        payload: dict[str, npt.NDArray[np.generic]] = {
            "nodes": nodes,
            "features": np.array([sp.feature for sp in splits], dtype=np.int64),
            "slots": np.array([sp.slot for sp in splits], dtype=np.int64),
            "F": bp.and_mask(bp.pack_bits(members), m),
            "more": np.array([int(more)], dtype=np.int64),
        }
        tag = Tag(self._rounds.next(), STEP_ROUTE)
        self._channel.send(Envelope(self.job_id, tag, Role.BANK, payload))
        got = self._channel.recv(tag, self._timeout).tensors
        words = (len(splits), -(-s.n_rows // 64))
        for name in ("E", "z"):
            arr = got.get(name)
            if arr is None or arr.dtype != np.uint64 or arr.shape != words:
                raise ProtocolAbort(f"grid sent a malformed routing answer {name!r}; "
                                    f"expected uint64 {words}")
        c_1 = self._route_c1[tree][nodes]
        opened = bp.and_bank_open(np.asarray(got["E"], dtype=np.uint64), m, c_1,
                                  np.asarray(got["z"], dtype=np.uint64))
        if not more:
            self._finish(tree)
        return bp.unpack_bits(opened, s.n_rows).reshape(len(splits), s.n_rows)

    def _finish(self, tree: int) -> None:
        self.bins.release(self.schedule.block(tree))
        self._route_c1.pop(tree, None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
