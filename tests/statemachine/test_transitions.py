"""The party and job state machines: valid transitions listed, every other pair refused.

Invalid = product(Stage, Stage) minus the listed valid ones, and each must raise
``StageError`` without changing the stage (Flower's secaggplus_mod_test pattern). The
coordinator's barrier logic is driven through join / sync / deal with both parties as
threads, every wait bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import StrEnum
from itertools import product
from typing import Any, TypeVar

import numpy as np
import pytest

from crypto.ring import encode
from federation import coordinator as coord
from federation.coordinator import Coordinator
from federation.job_stages import ALLOWED as JOB_ALLOWED
from federation.job_stages import JobStage
from federation.protocol.errors import ProtocolAbort, StageError, VflError
from federation.protocol.messages import (
    DealRequest,
    Decision,
    FailRequest,
    JoinRequest,
    Mode,
    Role,
    SyncReply,
    SyncRequest,
    TrainSettings,
)
from parties.state import ALLOWED as PARTY_ALLOWED
from parties.state import PartyState, Stage

S = Stage
J = JobStage
E = TypeVar("E", bound=StrEnum)

PARTY_VALID = {
    (S.IDLE, S.JOINED), (S.IDLE, S.ABORTED),
    (S.JOINED, S.PSI), (S.JOINED, S.ABORTED),
    (S.PSI, S.ALIGNED), (S.PSI, S.ABORTED),
    (S.ALIGNED, S.TRAINING), (S.ALIGNED, S.SCORING), (S.ALIGNED, S.ABORTED),
    (S.TRAINING, S.EVALUATING), (S.TRAINING, S.ABORTED),
    (S.EVALUATING, S.DONE), (S.EVALUATING, S.ABORTED),
    (S.SCORING, S.DONE), (S.SCORING, S.ABORTED),
    (S.ALIGNED, S.SCREENING), (S.SCREENING, S.DONE), (S.SCREENING, S.ABORTED),
}
PARTY_INVALID = sorted(set(product(Stage, Stage)) - PARTY_VALID)

JOB_VALID = {
    (J.REGISTER, J.ALIGN), (J.REGISTER, J.FAILED),
    (J.ALIGN, J.FIT), (J.ALIGN, J.SCORE), (J.ALIGN, J.FAILED),
    (J.FIT, J.EVALUATE), (J.FIT, J.FAILED),
    (J.EVALUATE, J.DONE), (J.EVALUATE, J.FAILED),
    (J.SCORE, J.DONE), (J.SCORE, J.FAILED),
    (J.ALIGN, J.SCREEN), (J.SCREEN, J.DONE), (J.SCREEN, J.FAILED),
}
JOB_INVALID = sorted(set(product(JobStage, JobStage)) - JOB_VALID)


def pairs(table: dict[E, frozenset[E]]) -> set[tuple[E, E]]:
    return {(a, b) for a, targets in table.items() for b in targets}


def reachable(table: dict[E, frozenset[E]], start: E) -> set[E]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in table[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def ids(pair: tuple[StrEnum, StrEnum]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


# -- table shape -----------------------------------------------------------------------


@pytest.mark.parametrize(("table", "valid", "enum", "start", "done", "fail"), [
    (PARTY_ALLOWED, PARTY_VALID, Stage, S.IDLE, S.DONE, S.ABORTED),
    (JOB_ALLOWED, JOB_VALID, JobStage, J.REGISTER, J.DONE, J.FAILED),
], ids=["party", "job"])
def test_allowed_table_shape(table: dict[Any, frozenset[Any]], valid: set[Any], enum: Any,
                             start: Any, done: Any, fail: Any) -> None:
    assert set(table) == set(enum)                      # every stage has a row
    assert pairs(table) == valid                        # exactly the listed transitions
    assert table[done] == frozenset() and table[fail] == frozenset()  # terminal
    assert all(a != b for a, b in pairs(table))         # no self-loops
    assert reachable(table, start) == set(enum)         # nothing unreachable
    for stage in set(enum) - {done, fail}:
        assert fail in table[stage], f"{stage} cannot fail"
        assert done in reachable(table, stage), f"{stage} cannot finish"


# -- party -----------------------------------------------------------------------------


@pytest.mark.parametrize("pair", sorted(PARTY_VALID), ids=ids)
def test_party_valid_transition_is_allowed(pair: tuple[Stage, Stage]) -> None:
    state = PartyState(Role.BANK, stage=pair[0], round=3)
    state.advance(pair[1])
    assert state.stage is pair[1]


@pytest.mark.parametrize("pair", PARTY_INVALID, ids=ids)
def test_party_invalid_transition_raises_stage_error(pair: tuple[Stage, Stage]) -> None:
    state = PartyState(Role.GRID, stage=pair[0], round=7)
    with pytest.raises(StageError, match=rf"grid: expected .* got .*{pair[1].value}.*round 7"):
        state.advance(pair[1])
    assert state.stage is pair[0]


def test_party_happy_paths_from_idle() -> None:
    for path in ([S.JOINED, S.PSI, S.ALIGNED, S.TRAINING, S.EVALUATING, S.DONE],
                 [S.JOINED, S.PSI, S.ALIGNED, S.SCORING, S.DONE]):
        state = PartyState(Role.GRID)
        assert state.stage is S.IDLE
        for stage in path:
            state.advance(stage)
        assert state.stage is S.DONE


# -- coordinator state machine ---------------------------------------------------------


def new_coordinator(**kw: Any) -> tuple[Coordinator, list[dict[str, object]]]:
    events: list[dict[str, object]] = []
    settings = TrainSettings(**{"epochs": 2, "batch_size": 32, "mode": Mode.LOCAL, **kw})
    return Coordinator("job", settings, barrier_timeout=5.0, on_event=events.append), events


@pytest.mark.parametrize("pair", sorted(JOB_VALID), ids=ids)
def test_coordinator_valid_transition_is_allowed(pair: tuple[JobStage, JobStage]) -> None:
    c, events = new_coordinator()
    c.stage = pair[0]
    c._advance(pair[1])
    assert c.stage is pair[1]
    assert events[-1] == {"event": "stage", "stage": pair[1].value}


@pytest.mark.parametrize("pair", JOB_INVALID, ids=ids)
def test_coordinator_invalid_transition_raises_stage_error(
        pair: tuple[JobStage, JobStage]) -> None:
    c, events = new_coordinator()
    c.stage = pair[0]
    with pytest.raises(StageError, match=rf"job job: expected .* got .*{pair[1].value}"):
        c._advance(pair[1])
    assert c.stage is pair[0] and events == []


# -- coordinator barriers --------------------------------------------------------------

T = TypeVar("T")


def both(call: Callable[[Role], T]) -> dict[Role, T | VflError]:
    """Run call(GRID) and call(BANK) concurrently; each result or exception by role."""
    out: dict[Role, T | VflError] = {}

    def run(role: Role) -> None:
        try:
            out[role] = call(role)
        except VflError as exc:  # the test inspects what was raised
            out[role] = exc

    threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in (Role.GRID,
                                                                             Role.BANK)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(8.0)
    assert not any(t.is_alive() for t in threads), "a barrier did not release"
    return out


def join_both(c: Coordinator, columns: int = 4) -> None:
    got = both(lambda r: c.join(JoinRequest("job", r, f"{r.value}:1", 500, columns)))
    assert all(not isinstance(v, VflError) for v in got.values()), got


def sync_both(c: Coordinator, round_: int, step: str,
              values: Callable[[Role], dict[str, float]] = lambda r: {},
              ring: Callable[[Role], dict[str, int]] = lambda r: {}) -> dict[Role, Any]:
    return both(lambda r: c.sync(SyncRequest("job", r, round_, step, values(r), ring(r))))


def loss_shares(loss_sum: float, frac_bits: int = 16) -> Callable[[Role], dict[str, int]]:
    total = int(encode(np.array([loss_sum]), 2 * frac_bits)[0])
    mask = 0x1234_5678_9ABC_DEF0
    return lambda r: {"loss": (total + mask) % 2**64 if r is Role.GRID else (-mask) % 2**64}


def test_coordinator_runs_register_align_fit_evaluate_done() -> None:
    c, _ = new_coordinator()
    join_both(c)
    assert c.stage is J.ALIGN
    got = sync_both(c, 0, coord.STEP_ALIGNED, lambda r: {"intersection": 200.0})
    assert all(isinstance(v, SyncReply) and v.decision is Decision.CONTINUE for v in got.values())
    assert c.stage is J.FIT and c.intersection_size == 200
    n_train = 200 - round(200 * 0.2)

    deals = both(lambda r: c.deal(DealRequest("job", r, 1)))
    assert set(deals[Role.BANK].corrections) == {"grad_grid", "loss"}  # type: ignore[union-attr]
    assert set(deals[Role.GRID].corrections) == {"grad_bank"}  # type: ignore[union-attr]

    first = sync_both(c, 1, coord.STEP_EPOCH, lambda r: {"delta_sq": 1.0},
                      loss_shares(0.6 * n_train))
    assert first[Role.GRID].decision is Decision.CONTINUE
    assert first[Role.GRID].values["loss"] == pytest.approx(0.6, abs=1e-6)
    assert first[Role.BANK].values["delta_norm"] == pytest.approx(2**0.5)
    second = sync_both(c, 2, coord.STEP_EPOCH, lambda r: {"delta_sq": 0.0},
                       loss_shares(0.5 * n_train))
    assert second[Role.BANK].decision is Decision.STOP  # the last epoch
    assert c.stage is J.EVALUATE
    assert c.losses == pytest.approx([0.6, 0.5], abs=1e-6)
    done = sync_both(c, 3, coord.STEP_EVALUATED)
    assert done[Role.GRID].decision is Decision.STOP and c.stage is J.DONE


def test_coordinator_stops_early_when_converged_with_the_default_settings() -> None:
    c, _ = new_coordinator(epochs=TrainSettings().epochs, tolerance=TrainSettings().tolerance)
    join_both(c)
    sync_both(c, 0, coord.STEP_ALIGNED, lambda r: {"intersection": 100.0})
    flat = [0.52, 0.4960, 0.4959, 0.4958, 0.4957, 0.4959, 0.4960]  # jitter ~1e-4 from epoch 2
    for epoch, loss in enumerate(flat, start=1):
        got = sync_both(c, epoch, coord.STEP_EPOCH, lambda r: {"delta_sq": 0.0},
                        loss_shares(loss * 80))
        stopped = got[Role.GRID].decision is Decision.STOP
        assert stopped == (epoch == len(flat)), epoch
    assert c.stage is J.EVALUATE and c.stop_reason.startswith("converged at epoch 7")


def test_coordinator_says_when_the_epoch_limit_stopped_training() -> None:
    c, _ = new_coordinator(epochs=2, tolerance=1e-3)
    join_both(c)
    sync_both(c, 0, coord.STEP_ALIGNED, lambda r: {"intersection": 100.0})
    for epoch, loss in ((1, 0.6), (2, 0.5)):
        got = sync_both(c, epoch, coord.STEP_EPOCH, lambda r: {"delta_sq": 0.0},
                        loss_shares(loss * 80))
    assert got[Role.BANK].decision is Decision.STOP
    assert c.stop_reason == "reached the epoch limit (2) before converging"


@pytest.mark.parametrize("losses,stopped_at", [([1.39449, 36.84284], 1),  # overshoot
                                               ([0.52, -232.6], 2)])  # overflow
def test_coordinator_fails_the_job_when_training_diverges(losses: list[float],
                                                          stopped_at: int) -> None:
    c, _ = new_coordinator(epochs=20, learning_rate=1.5)
    join_both(c)
    sync_both(c, 0, coord.STEP_ALIGNED, lambda r: {"intersection": 100.0})
    for epoch, loss in enumerate(losses, start=1):
        got = sync_both(c, epoch, coord.STEP_EPOCH, lambda r: {"delta_sq": 0.0},
                        loss_shares(loss * 80))
        if got[Role.GRID].decision is Decision.ABORT:
            break
    assert epoch == stopped_at
    assert all(v.decision is Decision.ABORT for v in got.values())
    assert c.stage is J.FAILED and c.failure == got[Role.BANK].reason
    assert c.failure.startswith("training diverged: the epoch")
    assert c.failure.endswith("stopped with no model: try a smaller --learning-rate (now 1.5)")
    with pytest.raises(ProtocolAbort, match="training diverged"):
        c.sync(SyncRequest("job", Role.GRID, epoch + 1, coord.STEP_EPOCH, {}, {}))


def test_disagreeing_intersection_sizes_fail_the_job() -> None:
    c, _ = new_coordinator()
    join_both(c)
    got = sync_both(c, 0, coord.STEP_ALIGNED,
                    lambda r: {"intersection": 200.0 if r is Role.GRID else 199.0})
    assert all(v.decision is Decision.ABORT for v in got.values())
    assert c.stage is J.FAILED and "disagree" in (c.failure or "")


def test_epoch_report_out_of_order_fails_the_job() -> None:
    c, _ = new_coordinator()
    join_both(c)
    sync_both(c, 0, coord.STEP_ALIGNED, lambda r: {"intersection": 200.0})
    got = sync_both(c, 2, coord.STEP_EPOCH, lambda r: {"delta_sq": 0.0}, loss_shares(1.0))
    assert got[Role.GRID].decision is Decision.ABORT and c.stage is J.FAILED


def test_batch_below_four_times_columns_fails_at_registration() -> None:
    c, _ = new_coordinator(batch_size=15)
    got = both(lambda r: c.join(JoinRequest("job", r, "a:1", 500, 4)))
    assert all(isinstance(v, ProtocolAbort) for v in got.values())
    assert c.stage is J.FAILED and "4x" in (c.failure or "")


def test_deal_before_fit_is_stage_error_and_twice_is_protocol_abort() -> None:
    c, _ = new_coordinator()
    join_both(c)
    with pytest.raises(StageError):
        c.deal(DealRequest("job", Role.GRID, 1))
    sync_both(c, 0, coord.STEP_ALIGNED, lambda r: {"intersection": 200.0})
    c.deal(DealRequest("job", Role.GRID, 1))
    with pytest.raises(ProtocolAbort, match="already dealt"):
        c.deal(DealRequest("job", Role.GRID, 1))
    with pytest.raises(ProtocolAbort, match="epoch 3"):
        c.deal(DealRequest("job", Role.GRID, 3))


def test_barrier_times_out_into_failed_when_a_party_is_missing() -> None:
    c = Coordinator("job", TrainSettings(epochs=2, batch_size=32), barrier_timeout=0.2)
    join_both(c)
    with pytest.raises(ProtocolAbort, match="timed out"):
        c.sync(SyncRequest("job", Role.GRID, 0, coord.STEP_ALIGNED, {"intersection": 5.0}))
    assert c.stage is J.FAILED


def test_other_job_and_double_arrival_are_refused() -> None:
    c, _ = new_coordinator()
    with pytest.raises(ProtocolAbort, match="job 'other'"):
        c.join(JoinRequest("other", Role.GRID, "a:1", 10, 2))
    join_both(c)
    with pytest.raises(ProtocolAbort, match="twice"):
        c.join(JoinRequest("job", Role.GRID, "a:1", 10, 2))


def test_a_failed_job_waits_for_a_late_party_to_hear_the_reason() -> None:
    """The grid fails before the bank (still loading its data) has called at all: the
    coordinator keeps answering until the bank's first call has carried the reason."""
    c, _ = new_coordinator()
    c.fail(FailRequest("job", Role.GRID, "input data invalid"))
    assert not c.wait_told(0.05)  # the bank has not heard it yet
    with pytest.raises(ProtocolAbort, match="grid failed: input data invalid"):
        c.join(JoinRequest("job", Role.BANK, "b:1", 500, 4))
    assert c.wait_told(0.05)


def test_a_party_waiting_at_a_barrier_counts_as_told() -> None:
    c = Coordinator("job", TrainSettings(epochs=2, batch_size=32), barrier_timeout=5.0)
    got: list[BaseException] = []

    def bank_joins() -> None:
        try:
            c.join(JoinRequest("job", Role.BANK, "b:1", 500, 4))
        except ProtocolAbort as exc:
            got.append(exc)

    waiter = threading.Thread(target=bank_joins, daemon=True)
    waiter.start()
    c.fail(FailRequest("job", Role.GRID, "input data invalid"))
    waiter.join(5.0)
    assert got and "grid failed" in str(got[0])
    assert c.wait_told(1.0)
