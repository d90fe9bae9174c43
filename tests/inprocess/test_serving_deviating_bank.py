"""Serving against a bank that deviates: the grid decides the matches itself, and bounds use.

``GridServing`` driven directly (no gRPC) by an honest ``BankServing`` and by hand-made
messages a deviating bank could send: positions it names, keys of points that matched
nothing, the grid's own table values as points. The grid must answer none of them. Then the
quotas (rows per session, requests and opens per minute) with a fake clock.
"""

from __future__ import annotations

import numpy as np
import pytest

from crypto import psi
from crypto.psi import oprf
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import Envelope, Role, Tag
from parties.evaluation.scorecard import Scorecard
from parties.outputs import NO_GRID_RECORD
from parties.serving import STEP_BLINDED, STEP_ROWS, UnknownSession, epoch_domain
from parties.serving_bank import BankServing
from parties.serving_grid import GridServing
from parties.serving_limits import QuotaExceeded, Quotas

GRID_IDS = [f"e{i}" for i in range(60)]
U_GRID = np.linspace(-2, 2, 60)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _bank(grid: GridServing, ids: list[str]) -> BankServing:
    bank = BankServing(ids, np.zeros(len(ids)), Scorecard())
    bank.accept_points(grid.open(bank.open_request()))
    return bank


def _rows(session: str, r: int, index: np.ndarray, keys: np.ndarray) -> Envelope:
    return Envelope(session, Tag(r, STEP_ROWS), Role.BANK,
                    {"index": np.asarray(index, np.int64), "keys": np.asarray(keys, np.uint8)})


def test_a_bank_naming_rows_its_request_did_not_match_gets_nothing() -> None:
    """The earlier attack: a request matching 0 rows, then every position of the table."""
    grid = GridServing(GRID_IDS, U_GRID)
    strangers = [f"x{i}" for i in range(60)]  # held by the bank, unknown to the grid
    bank = _bank(grid, strangers)
    plan, blinded = bank.blinded_request(strangers)
    assert blinded is not None
    assert bank.rows_request(plan, grid.step(blinded)) is None  # honestly: no match
    # Deviating: reveal every point's key and claim all of them (the old flow sent positions).
    attack = _rows(plan.session, plan.round, np.arange(60), plan.unblind)
    with pytest.raises(ProtocolAbort, match="60 revealed point.*match no grid row"):
        grid.step(attack)
    with pytest.raises(ProtocolAbort, match="no such open request"):
        grid.step(attack)  # once per request, even refused


def test_positions_alone_are_refused() -> None:
    """Before the fix the grid answered u_G of these 60 positions for 60 unmatched points."""
    grid = GridServing(GRID_IDS, U_GRID)
    strangers = [f"x{i}" for i in range(60)]
    bank = _bank(grid, strangers)
    plan, blinded = bank.blinded_request(strangers)
    assert blinded is not None
    grid.step(blinded)
    old_style = Envelope(plan.session, Tag(plan.round, STEP_ROWS), Role.BANK,
                         {"rows": np.arange(60, dtype=np.int64)})
    with pytest.raises(ProtocolAbort, match="'index'"):
        grid.step(old_style)


def test_the_grids_own_table_values_sent_as_points_match_nothing() -> None:
    """The bank holds F_k(id) of every grid row; without k or the ID no key makes it match."""
    grid = GridServing(GRID_IDS, U_GRID)
    bank = _bank(grid, ["x1"])
    assert bank._state is not None
    table = bank._state.table[:10]
    _, unblind = oprf.blinding_pairs(10)
    session = bank.session
    grid.step(Envelope(session, Tag(1, STEP_BLINDED), Role.BANK, {"points": table}))
    with pytest.raises(ProtocolAbort, match="match no grid row"):
        grid.step(_rows(session, 1, np.arange(10), unblind))


def test_one_unmatched_claim_among_true_matches_sends_nothing() -> None:
    grid = GridServing(GRID_IDS, U_GRID)
    bank = _bank(grid, ["e1", "e2", "x3"])
    plan, blinded = bank.blinded_request(["e1", "e2", "x3"])
    assert blinded is not None
    honest = bank.rows_request(plan, grid.step(blinded))
    assert honest is not None and len(honest.tensors["index"]) == 2
    with pytest.raises(ProtocolAbort, match="1 revealed point"):
        grid.step(_rows(plan.session, plan.round, np.arange(3), plan.unblind))


def test_an_honest_bank_gets_exactly_its_matches_whatever_the_order() -> None:
    grid = GridServing(GRID_IDS, U_GRID)
    asked = ["e5", "x1", "e50", "e7", "x2"]
    bank = _bank(grid, asked)
    plan, blinded = bank.blinded_request(asked)
    assert blinded is not None
    rows = bank.rows_request(plan, grid.step(blinded))
    assert rows is not None and len(rows.tensors["index"]) == 3
    results = bank.results(plan, grid.step(rows))
    want = {x: 1 / (1 + np.exp(-U_GRID[int(x[1:])])) for x in ("e5", "e50", "e7")}
    for r in results:
        if r.id in want:
            assert r.probability == pytest.approx(want[r.id], abs=1e-15)
        else:
            assert r.status == NO_GRID_RECORD


def test_revealed_keys_open_only_the_matched_points() -> None:
    """What the grid gets: s_i of the matches give H(id) of its own rows; the rest stay blind."""
    grid = GridServing(GRID_IDS, U_GRID)
    bank = _bank(grid, ["e9", "x9"])
    plan, blinded = bank.blinded_request(["e9", "x9"])
    assert blinded is not None
    rows = bank.rows_request(plan, grid.step(blinded))
    assert rows is not None
    (i,) = rows.tensors["index"].tolist()
    opened = psi.as_points(blinded.tensors["points"][[i]])
    from crypto.psi.x25519 import multiply_each
    domain = epoch_domain(plan.state.epoch)
    assert bytes(multiply_each(rows.tensors["keys"], opened)[0]) == \
        bytes(psi.hash_to_points(["e9"], domain)[0])
    assert plan.sent[i] == "e9"


def test_rows_per_session_quota() -> None:
    grid = GridServing(GRID_IDS, U_GRID, quotas=Quotas(rows_per_session=3))
    ids = [f"e{i}" for i in range(10)]
    bank = _bank(grid, ids)

    def ask(wanted: list[str]) -> Envelope:
        plan, blinded = bank.blinded_request(wanted)
        assert blinded is not None
        rows = bank.rows_request(plan, grid.step(blinded))
        assert rows is not None
        return grid.step(rows)

    with pytest.raises(QuotaExceeded, match=r"asks for 4 rows; a session may score at most 3 "
                       r"\(grid --max-rows-per-session 3\)"):
        ask(ids[:4])
    assert len(ask(ids[:2]).tensors["u"]) == 2
    with pytest.raises(UnknownSession, match="would pass its 3 rows.*open a new one"):
        ask(ids[2:4])
    assert bank.session not in grid.open_sessions()
    bank.accept_points(grid.open(bank.open_request()))  # a new session scores again
    assert len(ask(ids[2:5]).tensors["u"]) == 3
    with pytest.raises(UnknownSession, match="has scored its 3 rows"):
        ask(ids[5:6])


def test_requests_per_minute_quota() -> None:
    clock = Clock()
    grid = GridServing(GRID_IDS, U_GRID, clock=clock, quotas=Quotas(requests_per_minute=2))
    bank = _bank(grid, ["e1"])
    for _ in range(2):
        plan, blinded = bank.blinded_request(["e1"])
        assert blinded is not None
        grid.step(blinded)
    plan, blinded = bank.blinded_request(["e1"])
    assert blinded is not None
    with pytest.raises(QuotaExceeded) as err:
        grid.step(blinded)
    assert str(err.value) == ("the grid refused: more than 2 requests in the last minute "
                              "(grid --max-requests-per-minute 2); try again later")
    clock.now += 61.0
    plan, blinded = bank.blinded_request(["e1"])
    assert blinded is not None
    grid.step(blinded)


def test_a_flood_of_session_opens_is_refused_before_any_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    grid = GridServing(GRID_IDS, U_GRID, clock=clock, rotate_seconds=1.0,
                       quotas=Quotas(opens_per_minute=3))
    built: list[int] = []
    real = oprf.table
    monkeypatch.setattr(oprf, "table", lambda p: built.append(len(p)) or real(p))
    for _ in range(3):
        grid.open(BankServing.open_request(), "bank")
        clock.now += 2.0  # every open would start a new key epoch: a pass over all rows
    assert len(built) == 3
    with pytest.raises(QuotaExceeded, match=r"more than 3 session opens by bank in the last "
                       r"minute \(grid --max-opens-per-minute 3\)"):
        grid.open(BankServing.open_request(), "bank")
    assert len(built) == 3  # refused before blinding anything
    grid.open(BankServing.open_request(), "client:other")  # counted per caller
    clock.now += 61.0
    grid.open(BankServing.open_request(), "bank")


def test_quotas_must_be_positive() -> None:
    with pytest.raises(ValueError, match="--max-opens-per-minute must be at least 1"):
        Quotas(opens_per_minute=0)
