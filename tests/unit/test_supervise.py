"""``supervise`` never waits for a frozen node until the job timeout."""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field

import pytest

from federation import processes
from federation.processes import LOWEST_PRIORITY, NodeFailed, past_fit, supervise


@dataclass
class FakeNode:
    """A node whose exit code is scripted: ``code`` after ``exits_after`` seconds."""

    name: str
    exits_after: float | None
    code: int = 0
    started: float = field(default_factory=time.monotonic)
    events: queue.Queue[dict[str, object]] = field(default_factory=queue.Queue)
    stopped: bool = False

    def returncode(self) -> int | None:
        if self.exits_after is None or time.monotonic() - self.started < self.exits_after:
            return None
        return self.code

    def reason(self) -> str:
        return "boom"

    def stop(self) -> None:
        self.stopped = True


def test_a_node_frozen_after_the_others_finished_fails_the_job_naming_it() -> None:
    nodes = [FakeNode("coordinator", 0.0), FakeNode("grid", None), FakeNode("bank", 0.1)]
    started = time.monotonic()
    with pytest.raises(NodeFailed, match=r"^grid did not exit within 0.5 s after "
                                         r"coordinator, bank finished"):
        supervise(nodes, 60.0, lambda e: None, nodes[0], linger=0.5)  # type: ignore[arg-type]
    assert time.monotonic() - started < 30 and all(n.stopped for n in nodes)


def test_nodes_finishing_close_together_are_a_success() -> None:
    nodes = [FakeNode("coordinator", 0.0), FakeNode("grid", 0.2), FakeNode("bank", 0.1)]
    supervise(nodes, 60.0, lambda e: None, nodes[0], linger=5.0)  # type: ignore[arg-type]


@dataclass
class SaysNode(FakeNode):
    """A node that exited (or froze) with its own last error line."""

    says: str = ""

    def reason(self) -> str:
        return self.says


GRID_GONE = ("coordinator: job j failed: grid failed: stopped answering at 127.0.0.1:9 "
             "(DEADLINE_EXCEEDED); the node is gone")
COORDINATOR_GONE = ("bank: the coordinator at 127.0.0.1:8 stopped answering (UNAVAILABLE); "
                    "it is gone or frozen")


@pytest.mark.parametrize("coordinator_code,blamed", [
    (1, "coordinator failed (exit 1): coordinator: job j failed: grid failed"),  # it said why
    (-9, "bank failed (exit 143): bank: the coordinator"),  # killed: the bank's word is first
])
def test_a_party_that_lost_its_coordinator_is_not_the_root_cause_if_the_coordinator_said_why(
        monkeypatch: pytest.MonkeyPatch, coordinator_code: int, blamed: str) -> None:
    monkeypatch.setattr(processes, "SETTLE_SECONDS", 0.2)
    nodes = [SaysNode("coordinator", 0.0, coordinator_code, says=GRID_GONE),
             SaysNode("grid", None, says="frozen, no line"),  # SIGSTOPped
             SaysNode("bank", 0.0, 143, says=COORDINATOR_GONE)]
    with pytest.raises(NodeFailed) as info:
        supervise(nodes, 60.0, lambda e: None, nodes[0], linger=5.0)  # type: ignore[arg-type]
    assert str(info.value).startswith(blamed), info.value


@dataclass
class GatedNode(FakeNode):
    """A node that exits (0) once ``gate`` is set."""

    gate: threading.Event = field(default_factory=threading.Event)

    def returncode(self) -> int | None:
        return 0 if self.gate.is_set() else None


def test_meanwhile_waits_for_its_event_runs_at_low_priority_and_is_waited_for() -> None:
    """``simulate``'s own work (importing the report's libraries) must not take a core from
    the fit: it starts at the first event past the fit, on a thread of the lowest priority,
    and the job is only over once it is done."""
    gate = threading.Event()
    nodes = [GatedNode(name, None, gate=gate) for name in ("coordinator", "grid", "bank")]
    marks: dict[str, float] = {}

    def work() -> None:
        marks["work"] = time.monotonic()
        marks["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        gate.set()  # the nodes exit now; supervise must still wait for this work
        time.sleep(0.3)
        marks["work done"] = time.monotonic()

    def publish() -> None:
        time.sleep(0.2)
        nodes[0].events.put({"event": "stage", "stage": "fit"})
        time.sleep(0.2)
        marks["evaluate"] = time.monotonic()
        nodes[0].events.put({"event": "stage", "stage": "evaluate"})

    threading.Thread(target=publish, daemon=True).start()
    seen: list[object] = []
    supervise(nodes, 60.0, lambda e: seen.append(e["stage"]), nodes[0],  # type: ignore[arg-type]
              linger=5.0, meanwhile=work, meanwhile_from=past_fit)
    returned = time.monotonic()
    assert seen == ["fit", "evaluate"]
    assert marks["work"] >= marks["evaluate"]  # not before the job is past its fit
    assert returned >= marks["work done"]
    assert marks["nice"] == LOWEST_PRIORITY


def test_meanwhile_errors_reach_the_caller() -> None:
    nodes = [FakeNode("coordinator", 0.1), FakeNode("grid", 0.1), FakeNode("bank", 0.1)]

    def work() -> None:
        raise ImportError("no sklearn")

    with pytest.raises(ImportError, match="no sklearn"):
        supervise(nodes, 60.0, lambda e: None, nodes[0], linger=5.0,  # type: ignore[arg-type]
                  meanwhile=work, meanwhile_from=past_fit)


def test_past_fit() -> None:
    assert past_fit({"event": "stage", "stage": "evaluate"})
    assert past_fit({"event": "stage", "stage": "done"})
    assert not past_fit({"event": "stage", "stage": "fit"})
    assert not past_fit({"event": "epoch", "epoch": 1, "loss": 0.6})
