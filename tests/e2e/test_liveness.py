"""The coordinator notices a party that died while the other waits at a barrier."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from federation.coordinator import Coordinator
from federation.job_stages import JobStage
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import JoinRequest, Role, SyncRequest, TrainSettings
from federation.transport.audit import AuditLog
from federation.transport.certs import NodeCerts, write_federation
from federation.transport.channel import Inbox
from federation.transport.grpc_client import watch_parties
from federation.transport.grpc_server import add_party, start_server

pytestmark = pytest.mark.e2e


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_dead_party_fails_the_job_while_its_peer_waits_at_a_barrier(tmp_path: Path) -> None:
    write_federation(tmp_path)
    coordinator = Coordinator("j", TrainSettings(batch_size=64), barrier_timeout=60)
    dead = f"127.0.0.1:{_closed_port()}"
    results: dict[str, object] = {}

    def party(role: Role, address: str) -> None:
        try:
            coordinator.join(JoinRequest("j", role, address, 100, 3))
            coordinator.sync(SyncRequest("j", role, 0, "aligned", {"intersection": 100.0}))
        except ProtocolAbort as exc:
            results[role.value] = exc

    # The bank (a live party server) reaches the barrier; the grid joined from an address
    # where nothing listens any more.
    audit = AuditLog(tmp_path / "bank-audit.jsonl", "bank")
    server, port = start_server(NodeCerts.in_dir(tmp_path, Role.BANK), "127.0.0.1:0",
                                add_party(Inbox("j", Role.GRID), audit))
    bank = threading.Thread(target=party, args=(Role.BANK, f"127.0.0.1:{port}"))
    bank.start()
    grid_join = threading.Thread(target=lambda: coordinator.join(
        JoinRequest("j", Role.GRID, dead, 100, 3)))
    grid_join.start()
    started = time.monotonic()
    watch_parties(coordinator, NodeCerts.in_dir(tmp_path, Role.COORDINATOR), every=0.2,
                  misses=3)
    try:
        bank.join(30)
        grid_join.join(5)
    finally:
        server.stop(0)
        audit.close()
    assert not bank.is_alive()
    assert coordinator.stage is JobStage.FAILED
    assert time.monotonic() - started < 10
    assert "grid" in str(results["bank"]) and dead in str(results["bank"])
