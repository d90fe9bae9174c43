"""Mode shared over the TLS data plane gives bit for bit the weights of the in-memory channel
(same data, seeds and row order), with the peer's connection read by a reader thread or by
the party itself (``tls_direct``): the transport moves bytes, never values (issue 10 item 3)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from federation.protocol.messages import JoinRequest, Mode, Role, SyncRequest
from federation.protocol.schedule import Schedule
from federation.transport.audit import AuditLog
from federation.transport.certs import NodeCerts, write_federation
from federation.transport.channel import Channel, Inbox, InMemoryChannel
from federation.transport.tls_direct import DirectReader
from federation.transport.tls_plane import DataListener, TlsChannel
from parties.local_fit import FitResult
from parties.shared_fit import SharedFit
from tests.inprocess.test_shared_fit import JOB, Settings, SharedCoordinator, _data

pytestmark = pytest.mark.e2e
SEEDS = {Role.GRID: b"g" * 32, Role.BANK: b"b" * 32}


def fit(channels: dict[Role, Channel]) -> dict[Role, FitResult]:
    xg, xb, y = _data()
    settings = Settings(mode=Mode.SHARED, epochs=3, batch_size=64, learning_rate=0.1, l2=0.01,
                        tolerance=0.0, seed=5)
    coordinator = SharedCoordinator(JOB, settings, barrier_timeout=60)
    coordinator._seeds = dict(SEEDS)  # fixed dealer seeds: the weights are then fixed too
    results: dict[Role, FitResult] = {}
    errors: list[BaseException] = []

    def party(role: Role, x: np.ndarray, labels: np.ndarray | None) -> None:
        try:
            plan = coordinator.join(JoinRequest(JOB, role, "here", len(x), x.shape[1]))
            reply = coordinator.sync(SyncRequest(JOB, role, 0, "aligned",
                                                 {"intersection": len(x)}))
            schedule = Schedule(len(x), settings.validation_fraction, settings.batch_size,
                                settings.seed, int(reply.values["min_batch"]))
            results[role] = SharedFit(role, JOB, settings, schedule, plan.dealer_seed, x,
                                      labels, channels[role], coordinator).run()
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)
            channels[role].abort(str(exc))

    threads = [threading.Thread(target=party, args=(Role.GRID, xg, None)),
               threading.Thread(target=party, args=(Role.BANK, xb, y))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("direct", [False, True], ids=["reader-thread", "direct"])
def test_the_tls_plane_gives_the_in_memory_weights_bit_for_bit(tmp_path: Path,
                                                                direct: bool) -> None:
    grid_mem, bank_mem = InMemoryChannel.pair(JOB)
    expected = fit({Role.GRID: grid_mem, Role.BANK: bank_mem})
    write_federation(tmp_path / "fed")
    certs = {r: NodeCerts.in_dir(tmp_path / "fed", r) for r in (Role.GRID, Role.BANK)}
    peer = {Role.GRID: Role.BANK, Role.BANK: Role.GRID}
    audits = {r: AuditLog(tmp_path / r.value / "audit.jsonl", r.value, job=JOB) for r in peer}
    inboxes = {r: Inbox(JOB, peer[r]) for r in peer}
    planes = {r: DataListener(certs[r], "127.0.0.1", inboxes[r], audits[r], direct=direct)
              for r in peer}
    readers = {r: DirectReader(planes[r], inboxes[r], planes[r].later, 30.0) if direct
               else None for r in peer}
    channels = {r: TlsChannel(r, f"127.0.0.1:{planes[peer[r]].port}", planes[peer[r]].port,
                              certs[r], inboxes[r], planes[r].later, 30.0, readers[r])
                for r in peer}
    try:
        got = fit(dict(channels))  # type: ignore[arg-type]
    finally:
        closing = [threading.Thread(target=channels[r].close, args=(5.0,)) for r in peer]
        for t in closing:  # both at once, as two nodes do
            t.start()
        for t in closing:
            t.join(10)
        for r in peer:
            planes[r].close()
            audits[r].close()
    for role in peer:
        assert np.array_equal(got[role].theta, expected[role].theta), role
        assert got[role].losses == expected[role].losses
