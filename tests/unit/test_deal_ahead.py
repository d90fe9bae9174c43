"""parties.deal_ahead: corrections fetched one epoch ahead, each epoch asked for once."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import DealReply, DealRequest, Role
from parties.deal_ahead import DealAhead


class Dealer:
    """Records the requests; refuses the epoch named in ``refuse``."""

    def __init__(self, refuse: int = 0) -> None:
        self.asked: list[int] = []
        self.refuse = refuse
        self.lock = threading.Lock()

    def deal(self, req: DealRequest) -> DealReply:
        with self.lock:
            self.asked.append(req.epoch)
        if req.epoch == self.refuse:
            raise ProtocolAbort(f"epoch {req.epoch} refused")
        return DealReply({"c": np.full(2, req.epoch, dtype=np.uint64)})


def test_each_epoch_is_fetched_once_and_the_next_one_ahead() -> None:
    dealer = Dealer()
    with DealAhead(dealer, "job", Role.GRID, last_epoch=3) as deals:  # type: ignore[arg-type]
        for epoch in (1, 2, 3):
            assert int(deals.get(epoch).corrections["c"][0]) == epoch
    assert sorted(dealer.asked) == [1, 2, 3]  # none twice, none past the last epoch


def test_a_refused_deal_surfaces_where_the_epoch_is_needed() -> None:
    dealer = Dealer(refuse=1)
    with DealAhead(dealer, "job", Role.GRID, last_epoch=2) as deals:  # type: ignore[arg-type]
        with pytest.raises(ProtocolAbort, match="epoch 1 refused"):
            deals.get(1)
