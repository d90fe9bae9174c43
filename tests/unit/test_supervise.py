"""``supervise`` never waits for a frozen node until the job timeout."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field

import pytest

from federation.processes import NodeFailed, supervise


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
