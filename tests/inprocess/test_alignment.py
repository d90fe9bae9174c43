"""Both PSI protocols through the real ``Coordinator`` and ``InMemoryChannel``, in threads.

Server-aided PSI (the default) and ECDH give the same set on the same data, each in one
order on both parties; the coordinator's refusals end the job with a readable reason.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from federation.coordinator import Coordinator, JobStage
from federation.protocol.errors import ConfigError, ProtocolAbort, StageError
from federation.protocol.messages import (
    DealReply,
    DealRequest,
    FailRequest,
    JobPlan,
    JoinRequest,
    MatchReply,
    MatchRequest,
    PsiProtocol,
    Role,
    SyncReply,
    SyncRequest,
    TrainSettings,
)
from federation.transport.channel import InMemoryChannel
from parties.alignment import align
from parties.node import PartyConfig, PartyNode

JOB = "job-align"


def ids(start: int, stop: int) -> list[str]:
    return [f"9133{i:08d}X{i % 7}" for i in range(start, stop)]


def run(grid: list[str], bank: list[str], psi: PsiProtocol) -> tuple[dict[Role, list[str]],
                                                                       Coordinator]:
    coordinator = Coordinator(JOB, TrainSettings(psi=psi, batch_size=64), barrier_timeout=30)
    channels = dict(zip((Role.GRID, Role.BANK), InMemoryChannel.pair(JOB), strict=True))
    out: dict[Role, list[str]] = {}
    errors: list[BaseException] = []

    def party(role: Role, own: list[str]) -> None:
        try:
            coordinator.join(JoinRequest(JOB, role, f"mem://{role}", len(own), 3))
            rows = align(own, channels[role], role, JOB, 10.0, workers=1, protocol=psi,
                         coordinator=coordinator)
            out[role] = [own[i] for i in rows]
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)
            channels[role].abort(str(exc))

    threads = [threading.Thread(target=party, args=a, name=a[0].value)
               for a in ((Role.GRID, grid), (Role.BANK, bank))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return out, coordinator


def test_server_aided_and_ecdh_find_the_same_set_each_in_one_order_on_both_sides() -> None:
    grid = ids(0, 3000)
    bank = ids(2000, 4500)
    rng = np.random.default_rng(3)  # test data order only
    bank = [bank[i] for i in rng.permutation(len(bank))]
    got = {psi: run(grid, bank, psi)[0] for psi in PsiProtocol}
    for rows in got.values():
        assert rows[Role.GRID] == rows[Role.BANK]
        assert len(rows[Role.GRID]) == 1000
    assert set(got[PsiProtocol.SERVER_AIDED][Role.GRID]) == set(got[PsiProtocol.ECDH][Role.GRID])
    assert set(got[PsiProtocol.ECDH][Role.GRID]) == set(grid) & set(bank)


def test_the_coordinator_learns_both_sizes_and_nothing_of_an_ecdh_alignment() -> None:
    _, coordinator = run(ids(0, 50), ids(40, 130), PsiProtocol.SERVER_AIDED)
    assert coordinator.psi.sizes == {"grid": 50, "bank": 90}
    _, coordinator = run(ids(0, 50), ids(40, 130), PsiProtocol.ECDH)
    assert coordinator.psi.sizes == {} and coordinator.psi.seconds is None


def test_unbalanced_and_empty_intersections() -> None:
    rows, _ = run(ids(0, 5000), ids(4995, 5005), PsiProtocol.SERVER_AIDED)
    assert rows[Role.GRID] == rows[Role.BANK] and len(rows[Role.GRID]) == 5
    rows, _ = run(ids(0, 10), ids(10, 20), PsiProtocol.SERVER_AIDED)
    assert rows == {Role.GRID: [], Role.BANK: []}


def joined(psi: PsiProtocol) -> Coordinator:
    c = Coordinator(JOB, TrainSettings(psi=psi, batch_size=64), barrier_timeout=5)
    threads = [threading.Thread(target=c.join, args=(JoinRequest(JOB, r, "x", 5, 3),))
               for r in (Role.GRID, Role.BANK)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert c.stage is JobStage.ALIGN
    return c


def tags(n: int, seed: int) -> Any:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 16), dtype=np.uint8)


def test_repeated_tags_fail_the_job_naming_the_party_and_index() -> None:
    c = joined(PsiProtocol.SERVER_AIDED)
    t = tags(10, 1)
    bad = np.concatenate([t, t[2:3]])
    errors: list[str] = []

    def send(role: Role, x: Any) -> None:
        try:
            c.match(MatchRequest(JOB, role, x))
        except ProtocolAbort as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=send, args=a) for a in ((Role.GRID, t), (Role.BANK, bad))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert len(errors) == 2 and c.stage is JobStage.FAILED
    assert c.failure == "server-aided PSI: repeated bank's tag at index 10"


def test_tags_are_refused_in_an_ecdh_job_twice_or_outside_alignment() -> None:
    with pytest.raises(ProtocolAbort, match="aligns with --psi ecdh"):
        joined(PsiProtocol.ECDH).match(MatchRequest(JOB, Role.GRID, tags(3, 1)))
    fresh = Coordinator(JOB, TrainSettings(batch_size=64))
    with pytest.raises(StageError, match="in stage register"):
        fresh.match(MatchRequest(JOB, Role.GRID, tags(3, 1)))
    c = joined(PsiProtocol.SERVER_AIDED)
    c.psi.add(Role.GRID, tags(3, 1))  # as if the grid had sent its tags already
    with pytest.raises(ProtocolAbort, match="sent PSI tags twice"):
        c.match(MatchRequest(JOB, Role.GRID, tags(3, 2)))


class FakeLink:
    """A coordinator link that plans a server-aided job and records failures."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def join(self, req: JoinRequest) -> JobPlan:
        return JobPlan(JOB, "mem://peer", bytes(32), TrainSettings(batch_size=64))

    def sync(self, req: SyncRequest) -> SyncReply:
        raise AssertionError("no barrier should be reached")

    def deal(self, req: DealRequest) -> DealReply:
        raise AssertionError("nothing should be dealt")

    def fail(self, req: FailRequest) -> None:
        self.failures.append(req.reason)

    def match(self, req: MatchRequest) -> MatchReply:
        raise AssertionError("no tags should be sent")


def test_a_party_refuses_a_job_that_aligns_with_another_protocol(tmp_path: Path) -> None:
    data = tmp_path / "bank.csv"
    data.write_text("id,x,y\n" + "".join(f"e{i},{i}.0,{i % 2}\n" for i in range(24)))
    cfg = PartyConfig(Role.BANK, JOB, data, tmp_path / "out", psi=PsiProtocol.ECDH)
    link = FakeLink()

    def connect(address: str) -> InMemoryChannel:
        raise AssertionError("the party should not reach its peer")

    node = PartyNode(cfg, link, connect, "mem://bank")
    with pytest.raises(ConfigError, match="bank: this party aligns only with --psi ecdh, but "
                       f"job {JOB} uses --psi server-aided"):
        node.run()
    # The coordinator hears the kind of failure only; the details stay in the bank's console.
    assert link.failures == ["configuration invalid (details in the bank's console and "
                             "node.log)"]
