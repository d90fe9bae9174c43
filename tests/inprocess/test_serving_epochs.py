"""Serving's key epochs: the grid blinds its rows once per epoch, not once per session.

``GridServing`` and ``BankServing`` driven directly (no gRPC), with a fake clock.
"""

from __future__ import annotations

import numpy as np
import pytest

from crypto.psi import oprf
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import Envelope
from parties.evaluation.scorecard import Scorecard
from parties.serving_bank import BankServing
from parties.serving_grid import GridServing

GRID_IDS = [f"e{i}" for i in range(60)]
U_GRID = np.linspace(-2, 2, 60)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def open_session(grid: GridServing) -> BankServing:
    bank = BankServing([f"e{i}" for i in range(30, 80)], np.full(50, 0.25), Scorecard())
    bank.accept_points(grid.open(bank.open_request()))
    return bank


def score(grid: GridServing, bank: BankServing, ids: list[str]) -> list[float]:
    plan, blinded = bank.blinded_request(ids)
    assert blinded is not None
    rows = bank.rows_request(plan, grid.step(blinded))
    return [r.probability for r in bank.results(plan, None if rows is None else grid.step(rows))]


def test_sessions_of_one_epoch_share_one_table_and_a_later_open_rotates(
        monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []
    real = oprf.table

    def counting(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        built.append(len(points))
        return real(points)

    monkeypatch.setattr(oprf, "table", counting)
    clock = Clock()
    grid = GridServing(GRID_IDS, U_GRID, rotate_seconds=3600.0, clock=clock)
    first, second = open_session(grid), open_session(grid)
    assert built == [60]  # one epoch, two sessions
    assert first._state is not None and second._state is not None
    np.testing.assert_array_equal(first._state.table, second._state.table)
    clock.now += 3601.0
    third = open_session(grid)
    assert built == [60, 60] and third._state is not None
    assert third._state.epoch != first._state.epoch
    assert not set(map(bytes, third._state.table)) & set(map(bytes, first._state.table))
    want = 1 / (1 + np.exp(-(0.25 + U_GRID[45])))
    for bank in (first, third):  # the old epoch's session still scores, with its own key
        p = score(grid, bank, ["e45", "e70", "e45"])
        assert p[0] == pytest.approx(want, abs=1e-15) and np.isnan(p[1]) and p[2] == p[0]


def test_a_bank_refuses_a_table_out_of_order_or_without_an_epoch() -> None:
    grid = GridServing(GRID_IDS, U_GRID)
    bank = BankServing(["e1"], np.zeros(1), Scorecard())
    reply = grid.open(bank.open_request())
    pts = reply.tensors["points"].copy()
    pts[[3, 4]] = pts[[4, 3]]
    bad = Envelope(reply.job_id, reply.tag, reply.sender, {**reply.tensors, "points": pts})
    with pytest.raises(ProtocolAbort, match="table is invalid.*at index 4"):
        bank.accept_points(bad)
    short = Envelope(reply.job_id, reply.tag, reply.sender,
                     {**reply.tensors, "epoch": np.zeros(3, np.uint8)})
    with pytest.raises(ProtocolAbort, match="epoch id has 3 bytes"):
        bank.accept_points(short)
