"""The party-to-party stream (issue 10 item 3, issue 9 item 7) over real mutual TLS.

The bank's party server (``start_server`` + ``add_party``) runs in the test process; the
grid is either a ``GrpcChannel`` here or its own process (``tests/e2e/stream_peer.py``).
Shown: messages arrive in the order they were sent, a 3 MiB message crosses in frames, and
both audit logs pair; a replayed message ends the stream and fails the receiver's job; a
message above the job's size bound is refused from its first frame, before it is buffered;
a peer killed mid-stream fails the waiting party at once, naming it, within its deadline.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from federation.proto import vfl_pb2, vfl_pb2_grpc
from federation.protocol.errors import PeerUnavailable, ProtocolAbort, VflError
from federation.protocol.limits import message_bound
from federation.protocol.messages import (
    Envelope,
    JoinRequest,
    Mode,
    Role,
    Tag,
    Task,
    TrainSettings,
)
from federation.transport import wire
from federation.transport.audit import AuditLog
from federation.transport.audit_pairs import match_peers
from federation.transport.certs import NodeCerts, write_federation
from federation.transport.channel import Inbox
from federation.transport.grpc_client import secure_channel
from federation.transport.grpc_server import add_party, start_server
from federation.transport.stream import GrpcChannel
from tests.conftest import REPO
from tests.e2e.stream_peer import payload

pytestmark = pytest.mark.e2e
JOB = "job-stream"
DEADLINE = 10.0
COUNT = 40


@dataclass
class Bank:
    inbox: Inbox
    audit: AuditLog
    address: str
    server: grpc.Server


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fed")
    write_federation(directory)
    return directory


def start_bank(fed: Path, folder: Path, limit: int = 0) -> Bank:
    inbox = Inbox(JOB, Role.GRID, limit)
    audit = AuditLog(folder / "bank" / "audit.jsonl", "bank", job=JOB)
    server, port = start_server(NodeCerts.in_dir(fed, Role.BANK), "127.0.0.1:0",
                                add_party(inbox, audit))
    return Bank(inbox, audit, f"127.0.0.1:{port}", server)


@pytest.fixture
def bank(fed: Path, tmp_path: Path) -> Iterator[Bank]:
    bank = start_bank(fed, tmp_path)
    try:
        yield bank
    finally:
        bank.server.stop(0)
        bank.audit.close()


def grid_stub(fed: Path, bank: Bank) -> tuple[grpc.Channel, vfl_pb2_grpc.PartyStub]:
    channel = secure_channel(bank.address, NodeCerts.in_dir(fed, Role.GRID), Role.BANK)
    return channel, vfl_pb2_grpc.PartyStub(channel)


def message(step: str, n: int = 4) -> bytes:
    return wire.envelope_to_bytes(Envelope(JOB, Tag(1, step), Role.GRID,
                                           {"F": np.arange(n, dtype=np.uint64)}))


def test_messages_arrive_in_order_large_ones_in_frames_and_the_logs_pair(
        fed: Path, bank: Bank, tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "grid" / "audit.jsonl", "grid", job=JOB)
    channel = GrpcChannel(Role.GRID, bank.address, NodeCerts.in_dir(fed, Role.GRID),
                          Inbox(JOB, Role.BANK), audit, DEADLINE)
    try:
        for i in range(COUNT):
            channel.send(Envelope(JOB, Tag(1, f"m{i}"), Role.GRID, payload(i)))
        for i in reversed(range(COUNT)):  # claimed by tag, whatever the order of claims
            got = bank.inbox.get(Tag(1, f"m{i}"), DEADLINE)
            np.testing.assert_array_equal(got.tensors["x"], payload(i)["x"])
    finally:
        channel.close()
        audit.close()
    bank.audit.close()
    logs = {"grid": tmp_path / "grid" / "audit.jsonl", "bank": tmp_path / "bank" / "audit.jsonl"}
    assert match_peers(logs) == []
    arrived = [line for line in logs["bank"].read_text().splitlines() if '"received"' in line]
    order = [line.split('"step": "')[1].split('"')[0] for line in arrived]
    assert order == [f"m{i}" for i in range(COUNT)]  # the arrival order is the send order


def test_a_replay_on_the_stream_is_refused_and_fails_the_receivers_job(
        fed: Path, bank: Bank) -> None:
    channel, stub = grid_stub(fed, bank)
    data = message("fit")
    try:
        with pytest.raises(grpc.RpcError) as info:
            stub.Stream(iter([vfl_pb2.Frame(size=len(data), chunk=data)] * 2), timeout=10)
    finally:
        channel.close()
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "duplicate or replayed message from grid" in (info.value.details() or "")
    assert bank.inbox.get(Tag(1, "fit"), 1.0).tensors["F"].size == 4  # the first one came
    with pytest.raises(ProtocolAbort, match="replayed"):
        bank.inbox.get(Tag(1, "next"), DEADLINE)  # the job fails at once, not at its deadline


@pytest.mark.parametrize("lie", [False, True], ids=["declared", "longer-than-declared"])
def test_a_message_above_the_bound_is_refused_before_it_is_buffered(
        fed: Path, tmp_path: Path, lie: bool) -> None:
    limit = 4096
    bank = start_bank(fed, tmp_path, limit)
    channel, stub = grid_stub(fed, bank)
    data = message("big", 2000)  # 16 kB of tensor
    declared = 150 if lie else len(data)
    try:
        frames = [vfl_pb2.Frame(size=declared, chunk=data[:100]),
                  *(vfl_pb2.Frame(chunk=data[i:i + 1000]) for i in range(100, len(data), 1000))]
        with pytest.raises(grpc.RpcError) as info:
            stub.Stream(iter(frames), timeout=10)
        with pytest.raises(grpc.RpcError) as unary:
            stub.Send(vfl_pb2.DeliverRequest(chunk=data), timeout=10)
    finally:
        channel.close()
        bank.server.stop(0)
        bank.audit.close()
    details = info.value.details() or ""
    if lie:
        assert "longer than the 150 bytes it declared" in details, details
    else:
        assert f"message of {len(data)} bytes from grid refused" in details, details
        assert f"at most {limit} bytes" in details
    assert f"at most {limit} bytes" in (unary.value.details() or "")
    assert '"received"' not in (tmp_path / "bank" / "audit.jsonl").read_text()


def test_the_plans_bound_holds_the_largest_message_of_a_job() -> None:
    s = TrainSettings(mode=Mode.SHARED)
    grid, bank = JoinRequest(JOB, Role.GRID, "", 80_000, 15), JoinRequest(JOB, Role.BANK, "",
                                                                          80_000, 16)
    e_bank = 8 * 64_000 * 16  # the bank's masked matrix E, the largest message to the grid
    assert e_bank < message_bound(s, grid, bank) < 8 * 80_000 * 16 * 2
    assert message_bound(s, bank, grid) >= 8 * 64_000 * 15
    screen = TrainSettings(mode=Mode.SHARED, task=Task.SCREEN)
    counts = 8 * 80_000 * 16 * 256  # a screening's one-hot counts at its most bins
    assert message_bound(screen, grid, bank) > counts


def read_lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_line(lines: queue.Queue[str], prefix: str, proc: subprocess.Popen[str]) -> str:
    while True:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            raise AssertionError(f"no {prefix!r} line from the grid within 60 s") from None
        if line.startswith(prefix):
            return line
        assert proc.poll() is None, line


def test_a_peer_killed_mid_stream_fails_the_waiting_party_naming_it(
        fed: Path, bank: Bank, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.stream_peer", str(fed), JOB, bank.address, "5"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=REPO, env=env)
    audit = AuditLog(tmp_path / "bank-out" / "audit.jsonl", "bank", job=JOB)
    channel: GrpcChannel | None = None
    try:
        lines = read_lines(proc)
        grid = wait_line(lines, "LISTENING ", proc).split()[1]
        wait_line(lines, "SENT", proc)
        for i in range(5):  # in order, the 3 MiB one in frames
            got = bank.inbox.get(Tag(1, f"m{i}"), DEADLINE)
            np.testing.assert_array_equal(got.tensors["x"], payload(i)["x"])
        channel = GrpcChannel(Role.BANK, grid, NodeCerts.in_dir(fed, Role.BANK), bank.inbox,
                              audit, DEADLINE)
        channel.send(Envelope(JOB, Tag(1, "reply"), Role.BANK, payload(0)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        with pytest.raises(VflError) as info:
            channel.recv(Tag(2, "never"), DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if channel is not None:
            channel.close(1.0)
        audit.close()
    message_ = str(info.value)
    assert isinstance(info.value, PeerUnavailable), repr(info.value)
    assert "grid" in message_ and "broke" in message_, message_  # noticed, not waited out
    assert "within" not in message_, message_
