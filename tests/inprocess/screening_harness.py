"""A whole screening job in one process: the real Coordinator, two real PartyNodes in
threads over ``InMemoryChannel.pair`` (real PSI), every message recorded.

``run_screening`` writes the two parties' tables to CSV, runs the job and returns both
parties' outputs, the messages each party received from its peer and the requests the
coordinator received (with the replies it gave).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from federation.coordinator import Coordinator
from federation.job_stages import JobStage
from federation.protocol.messages import (
    DealReply,
    DealRequest,
    Envelope,
    FailRequest,
    JobPlan,
    JoinRequest,
    MatchReply,
    MatchRequest,
    Role,
    SyncReply,
    SyncRequest,
    Task,
    TrainSettings,
)
from federation.transport.channel import Channel, InMemoryChannel
from parties.node import PartyConfig, PartyNode
from parties.screen_step import ScreenConfig

JOB = "job-screen"


@dataclass
class Recorder:
    """A CoordinatorLink that records every request and reply."""

    coordinator: Coordinator
    role: Role
    requests: list[Any] = field(default_factory=list)
    replies: list[Any] = field(default_factory=list)

    def join(self, req: JoinRequest) -> JobPlan:
        self.requests.append(req)
        return self.coordinator.join(req)

    def sync(self, req: SyncRequest) -> SyncReply:
        self.requests.append(req)
        return self.coordinator.sync(req)

    def match(self, req: MatchRequest) -> MatchReply:
        self.requests.append(req)
        return self.coordinator.match(req)

    def deal(self, req: DealRequest) -> DealReply:
        self.requests.append(req)
        reply = self.coordinator.deal(req)
        self.replies.append(reply)
        return reply

    def fail(self, req: FailRequest) -> None:
        self.requests.append(req)
        self.coordinator.fail(req)


@dataclass
class Screening:
    out: Path
    received: dict[Role, list[Envelope]]
    links: dict[Role, Recorder]
    stage: JobStage
    errors: list[BaseException]

    def json(self, role: Role, name: str) -> dict[str, Any]:
        return dict(json.loads((self.out / role.value / name).read_text(encoding="utf-8")))


def write_table(path: Path, ids: list[str], x: npt.NDArray[np.float64], names: list[str],
                y: npt.NDArray[np.float64] | None = None) -> Path:
    frame = pd.DataFrame(x, columns=names)
    frame.insert(0, "id", ids)
    if y is not None:
        frame.insert(1, "y", y.astype(np.int64))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")  # NaN -> empty cell
    return path


def run_screening(out: Path, grid_csv: Path, bank_csv: Path,
                  grid_cfg: ScreenConfig | None = None, bank_cfg: ScreenConfig | None = None,
                  settings: TrainSettings | None = None) -> Screening:
    s = replace(settings or TrainSettings(), task=Task.SCREEN, deadline_seconds=60.0)
    coordinator = Coordinator(JOB, s, barrier_timeout=120.0)
    grid_end, bank_end = InMemoryChannel.pair(JOB)
    received: dict[Role, list[Envelope]] = {Role.GRID: [], Role.BANK: []}
    for role, end in ((Role.GRID, grid_end), (Role.BANK, bank_end)):
        end.observers.append(
            lambda kind, env, r=role: received[r].append(env) if kind == "received" else None)
    links = {role: Recorder(coordinator, role) for role in (Role.GRID, Role.BANK)}
    ends: dict[Role, Channel] = {Role.GRID: grid_end, Role.BANK: bank_end}
    configs = {Role.GRID: grid_cfg or ScreenConfig(), Role.BANK: bank_cfg or ScreenConfig()}
    errors: list[BaseException] = []

    def party(role: Role, data: Path) -> None:
        cfg = PartyConfig(role, JOB, data, out / role.value, label_column="y",
                          screen=configs[role])
        node = PartyNode(cfg, links[role], lambda _address, r=role: ends[r], f"inproc-{role}")
        try:
            node.run()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=party, args=(Role.GRID, grid_csv)),
               threading.Thread(target=party, args=(Role.BANK, bank_csv))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    stage = coordinator.wait_finished(5.0)
    return Screening(out, received, links, stage, errors)
