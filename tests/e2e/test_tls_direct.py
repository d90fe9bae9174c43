"""The data plane read on the party's own thread (``federation.transport.tls_direct``).

Two parties, each with a direct ``DataListener`` and a ``TlsChannel`` with its
``DirectReader``, over real mutual-TLS sockets on loopback (ports chosen at run time).
Shown: both parties sending a large message at the same moment both get through (with no
reader thread, two blocking writes would wait on each other forever), then many exchanges
in lockstep arrive in order and the audit logs pair; two parties closing at the same moment
both finish at once, each confirmed; a failure or a message from another thread wakes a
waiting party at once; an abort goes out without waiting for a busy peer, which reads it
at its next wait; a second connection is refused while the first goes on; a peer
that takes no bytes fails the sender after its deadline, in one line.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from federation.protocol.errors import PeerUnavailable, ProtocolAbort
from federation.protocol.messages import Envelope, Role, Tag, peer_of
from federation.transport.audit import AuditLog
from federation.transport.audit_pairs import match_peers
from federation.transport.certs import NodeCerts, write_federation
from federation.transport.channel import Inbox
from federation.transport.tls_direct import DirectReader
from federation.transport.tls_plane import DataListener, TlsChannel, tls_context

pytestmark = pytest.mark.e2e
JOB = "job-direct"
DEADLINE = 10.0
LARGE = (8 << 20) // 8  # 8 MiB of uint64: more than loopback's socket buffers hold


@dataclass
class Party:
    role: Role
    inbox: Inbox
    audit: AuditLog
    plane: DataListener
    channel: TlsChannel | None = None
    reader: DirectReader | None = None

    def connect(self, fed: Path, peer: Party, deadline: float = DEADLINE) -> None:
        self.reader = DirectReader(self.plane, self.inbox, self.plane.later, deadline)
        self.channel = TlsChannel(self.role, "127.0.0.1:0", peer.plane.port,
                                  NodeCerts.in_dir(fed, self.role), self.inbox,
                                  self.plane.later, deadline, self.reader)



def stop(*parties: Party) -> None:
    """Close the channels at the same moment, as two nodes do, then the listeners."""
    closing = [threading.Thread(target=p.channel.close, args=(DEADLINE,))
               for p in parties if p.channel is not None]
    for thread in closing:
        thread.start()
    for thread in closing:
        thread.join(DEADLINE + 5)
    for party in parties:
        party.plane.close()
        party.audit.close()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fed")
    write_federation(directory)
    return directory


def listening(fed: Path, folder: Path, role: Role) -> Party:
    inbox = Inbox(JOB, peer_of(role))
    audit = AuditLog(folder / role.value / "audit.jsonl", role.value, job=JOB)
    plane = DataListener(NodeCerts.in_dir(fed, role), "127.0.0.1", inbox, audit, direct=True)
    return Party(role, inbox, audit, plane)


@pytest.fixture
def pair(fed: Path, tmp_path: Path) -> Iterator[tuple[Party, Party]]:
    grid, bank = listening(fed, tmp_path, Role.GRID), listening(fed, tmp_path, Role.BANK)
    try:
        grid.connect(fed, bank)
        bank.connect(fed, grid)
        yield grid, bank
    finally:
        stop(grid, bank)


def exchange(party: Party, rounds: int, errors: list[BaseException]) -> None:
    """A large message each way at the same moment, then ``rounds`` lockstep exchanges."""
    assert party.channel is not None
    try:
        big = np.arange(LARGE, dtype=np.uint64) + np.uint64(party.role is Role.BANK)
        party.channel.send(Envelope(JOB, Tag(1, "E"), party.role, {"E": big}))
        got = party.channel.recv(Tag(1, "E"), DEADLINE).tensors["E"]
        assert got.shape == (LARGE,) and int(got[0]) == int(party.role is Role.GRID)
        for r in range(2, rounds + 2):
            party.channel.send(Envelope(JOB, Tag(r, "fit"), party.role,
                                        {"F": np.full(1024, r, dtype=np.uint64)}))
            assert int(party.channel.recv(Tag(r, "fit"), DEADLINE).tensors["F"][0]) == r
    except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
        errors.append(exc)


def test_large_messages_cross_at_once_then_lockstep_and_both_close_at_once(
        pair: tuple[Party, Party], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    errors: list[BaseException] = []
    threads = [threading.Thread(target=exchange, args=(party, 200, errors)) for party in pair]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "the parties are stuck"
    assert errors == []
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="federation.transport"):
        stop(*pair)
    assert time.monotonic() - start < DEADLINE / 2  # each read the other's closing frame
    assert not [r for r in caplog.records if "confirmed" in r.getMessage()]
    logs = {r.value: tmp_path / r.value / "audit.jsonl" for r in (Role.GRID, Role.BANK)}
    assert match_peers(logs) == []


def waiting(party: Party, tag: Tag) -> tuple[threading.Thread, list[object]]:
    """A thread in the party's ``recv`` for ``tag``; returns once it is reading."""
    outcome: list[object] = []

    def run() -> None:
        assert party.channel is not None
        try:
            outcome.append(party.channel.recv(tag, DEADLINE))
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert party.reader is not None
    lock = party.reader._lock  # held while it reads or waits for bytes
    for _ in range(5000):
        if lock.locked() or outcome:
            break
        time.sleep(0.001)
    return thread, outcome


def test_a_failure_from_another_thread_wakes_a_waiting_party_at_once(
        pair: tuple[Party, Party]) -> None:
    _, bank = pair
    thread, outcome = waiting(bank, Tag(1, "never"))
    start = time.monotonic()
    bank.inbox.fail_local(PeerUnavailable("the coordinator is gone"))
    thread.join(DEADLINE)
    assert time.monotonic() - start < DEADLINE / 2
    assert len(outcome) == 1 and isinstance(outcome[0], PeerUnavailable)
    assert "the coordinator is gone" in str(outcome[0])


def test_a_message_put_by_another_thread_wakes_a_waiting_party(
        pair: tuple[Party, Party]) -> None:
    _, bank = pair  # e.g. one that came by the gRPC servicer
    thread, outcome = waiting(bank, Tag(1, "side"))
    start = time.monotonic()
    bank.inbox.put(Envelope(JOB, Tag(1, "side"), Role.GRID, {"x": np.ones(3, np.uint64)}))
    thread.join(DEADLINE)
    assert time.monotonic() - start < DEADLINE / 2
    assert len(outcome) == 1 and isinstance(outcome[0], Envelope)


def test_an_abort_goes_out_at_once_and_a_busy_peer_reads_it_at_its_next_wait(
        pair: tuple[Party, Party]) -> None:
    grid, bank = pair  # the bank is busy: nobody reads its side
    assert grid.channel is not None and bank.channel is not None
    start = time.monotonic()
    grid.channel.abort("the grid's data failed its checks")
    assert time.monotonic() - start < 2.0  # no wait for a confirmation from a busy peer
    with pytest.raises(ProtocolAbort, match="grid aborted the job: the grid's data failed"):
        bank.channel.recv(Tag(1, "fit"), DEADLINE)


def test_a_second_connection_is_refused_while_the_first_goes_on(
        fed: Path, pair: tuple[Party, Party], caplog: pytest.LogCaptureFixture) -> None:
    grid, bank = pair
    with caplog.at_level(logging.WARNING, logger="federation.transport"):
        ctx = tls_context(NodeCerts.in_dir(fed, Role.GRID), server=False)
        raw = socket.create_connection(("127.0.0.1", bank.plane.port), DEADLINE)
        with ctx.wrap_socket(raw, server_hostname="bank") as sock:
            assert sock.recv(1) == b""  # closed without the confirming byte
    said = [r.getMessage() for r in caplog.records]
    assert any("refused a second connection from grid" in m for m in said), said
    assert grid.channel is not None and bank.channel is not None
    grid.channel.send(Envelope(JOB, Tag(1, "after"), Role.GRID, {"x": np.ones(2, np.uint64)}))
    assert bank.channel.recv(Tag(1, "after"), DEADLINE).tensors["x"].size == 2


def test_a_peer_that_takes_no_bytes_fails_the_sender_after_its_deadline(
        fed: Path, tmp_path: Path) -> None:
    grid, bank = listening(fed, tmp_path, Role.GRID), listening(fed, tmp_path, Role.BANK)
    try:
        grid.connect(fed, bank, deadline=1.0)  # the bank never reads: no channel, no reader
        assert grid.channel is not None
        start = time.monotonic()
        with pytest.raises(PeerUnavailable) as info:
            grid.channel.send(Envelope(JOB, Tag(1, "E"), Role.GRID,
                                       {"E": np.zeros(8 * LARGE, dtype=np.uint64)}))
        assert time.monotonic() - start < DEADLINE
    finally:
        stop(grid, bank)
    text = str(info.value)
    assert "bank" in text and "within 1 s" in text and "\n" not in text, text
