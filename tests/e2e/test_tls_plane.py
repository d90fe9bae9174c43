"""The party-to-party TLS data plane (``federation.transport.tls_plane``, issue 10 item 3).

The bank's data plane (``DataListener`` behind its gRPC server, which names the port) runs
in the test process; the grid is a ``TlsChannel`` here or its own process
(``tests/e2e/stream_peer.py ... tls``). Ports are chosen at run time. Shown: messages arrive
in order, a 3 MiB message crosses, both audit logs pair; a replayed message closes the
stream and fails the receiver's job; a message above the job's bound is refused before it is
read; a peer killed mid-stream fails the waiting party at once, naming it (each of these
with the bank's connection read by its reader thread and read directly by the caller, as
party nodes do: ``tls_direct``); a certificate
from another CA, or from the federation CA naming another role, is refused at once. A peer of
an older version, whose gRPC server has no ``Party.DataPlane`` (UNIMPLEMENTED), gets the gRPC
stream instead, said in one INFO line; any other answer to that question (the role or the
job refused) still fails the job with its one line.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from federation.proto import vfl_pb2
from federation.protocol.errors import PeerUnavailable, ProtocolAbort, VflError
from federation.protocol.messages import Envelope, Role, Tag
from federation.transport import wire
from federation.transport.audit import AuditLog
from federation.transport.audit_pairs import match_peers
from federation.transport.certs import NodeCerts, write_federation
from federation.transport.channel import Inbox
from federation.transport.data_plane import data_port, open_channel
from federation.transport.grpc_server import PartyServicer, add_party, start_server
from federation.transport.stream import GrpcChannel
from federation.transport.tls_direct import DirectReader
from federation.transport.tls_plane import (
    HEADER,
    DataListener,
    LaterAudit,
    TlsChannel,
    tls_context,
)
from tests.conftest import REPO
from tests.e2e.stream_peer import payload
from tests.e2e.test_stream import read_lines, wait_line

pytestmark = pytest.mark.e2e
JOB = "job-tls"
DEADLINE = 10.0
COUNT = 40


@dataclass
class Bank:
    inbox: Inbox
    audit: AuditLog
    plane: DataListener
    address: str
    server: grpc.Server
    reader: DirectReader | None = None

    def get(self, tag: Tag, timeout: float) -> Envelope:
        """The bank's ``recv``: from the inbox its reader thread fills, or read directly."""
        if self.reader is None:
            return self.inbox.get(tag, timeout)
        return self.reader.wait_for(tag, timeout)

    def stop(self) -> None:
        self.server.stop(0)
        self.plane.close()
        if self.reader is not None:
            self.reader.close()
        self.audit.close()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fed")
    write_federation(directory)
    return directory


def start_bank(fed: Path, folder: Path, limit: int = 0, direct: bool = False) -> Bank:
    inbox = Inbox(JOB, Role.GRID, limit)
    audit = AuditLog(folder / "bank" / "audit.jsonl", "bank", job=JOB)
    plane = DataListener(NodeCerts.in_dir(fed, Role.BANK), "127.0.0.1", inbox, audit,
                         direct=direct)
    server, port = start_server(NodeCerts.in_dir(fed, Role.BANK), "127.0.0.1:0",
                                add_party(inbox, audit, plane.port))
    reader = DirectReader(plane, inbox, plane.later, DEADLINE) if direct else None
    return Bank(inbox, audit, plane, f"127.0.0.1:{port}", server, reader)


@pytest.fixture(params=["reader-thread", "direct"])
def bank(fed: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Bank]:
    """The bank's data plane read by its reader thread, or by the caller (party nodes)."""
    bank = start_bank(fed, tmp_path, direct=request.param == "direct")
    try:
        yield bank
    finally:
        bank.stop()


def grid_channel(fed: Path, bank: Bank, audit: AuditLog) -> TlsChannel:
    certs = NodeCerts.in_dir(fed, Role.GRID)
    port = data_port(bank.address, certs, Role.BANK, JOB, DEADLINE)
    assert port == bank.plane.port
    return TlsChannel(Role.GRID, bank.address, port, certs, Inbox(JOB, Role.BANK),
                      LaterAudit(audit), DEADLINE)


def raw_grid_socket(fed: Path, bank: Bank) -> ssl.SSLSocket:
    """A grid connection to the bank's data plane that writes whatever a test wants."""
    ctx = tls_context(NodeCerts.in_dir(fed, Role.GRID), server=False)
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", bank.plane.port), 10),
                           server_hostname="bank")
    assert sock.recv(1) == b"\x01"
    return sock


def message(step: str, n: int = 4) -> bytes:
    data = wire.envelope_to_bytes(Envelope(JOB, Tag(1, step), Role.GRID,
                                           {"F": np.arange(n, dtype=np.uint64)}))
    return HEADER.pack(len(data)) + data


def test_messages_arrive_in_order_a_large_one_crosses_and_the_logs_pair(
        fed: Path, bank: Bank, tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "grid" / "audit.jsonl", "grid", job=JOB)
    channel = grid_channel(fed, bank, audit)
    sending = threading.Thread(target=lambda: [  # a direct bank reads only while it waits
        channel.send(Envelope(JOB, Tag(1, f"m{i}"), Role.GRID, payload(i)))
        for i in range(COUNT)])
    sending.start()
    try:
        for i in reversed(range(COUNT)):  # claimed by tag, whatever the order of claims
            got = bank.get(Tag(1, f"m{i}"), DEADLINE)
            np.testing.assert_array_equal(got.tensors["x"], payload(i)["x"])
    finally:
        sending.join(DEADLINE)
        bank.stop()  # first: a direct bank reads (and confirms the closing frame) only in get
        channel.close()
        audit.close()
    logs = {"grid": tmp_path / "grid" / "audit.jsonl", "bank": tmp_path / "bank" / "audit.jsonl"}
    assert match_peers(logs) == []
    arrived = [line for line in logs["bank"].read_text().splitlines() if '"received"' in line]
    order = [line.split('"step": "')[1].split('"')[0] for line in arrived]
    assert order == [f"m{i}" for i in range(COUNT)]  # the arrival order is the send order


def test_a_replay_is_refused_and_fails_the_receivers_job(fed: Path, bank: Bank) -> None:
    with raw_grid_socket(fed, bank) as sock:
        sock.sendall(message("fit") * 2)
        assert bank.get(Tag(1, "fit"), DEADLINE).tensors["F"].size == 4  # the first came
        with pytest.raises(ProtocolAbort, match="duplicate or replayed message from grid"):
            bank.get(Tag(1, "next"), DEADLINE)  # at once, not at the deadline
        assert sock.recv(1) == b""  # the bank closed the stream


@pytest.mark.parametrize("direct", [False, True], ids=["reader-thread", "direct"])
def test_a_message_above_the_bound_is_refused_before_it_is_read(
        fed: Path, tmp_path: Path, direct: bool) -> None:
    limit = 4096
    bank = start_bank(fed, tmp_path, limit, direct)
    try:
        with raw_grid_socket(fed, bank) as sock:
            data = message("big", 2000)
            sock.sendall(data[:HEADER.size + 100])  # the size alone is enough to refuse it
            with pytest.raises(ProtocolAbort) as info:
                bank.get(Tag(1, "big"), DEADLINE)
    finally:
        bank.stop()
    assert f"message of {len(data) - HEADER.size} bytes from grid refused" in str(info.value)
    assert f"at most {limit} bytes" in str(info.value)
    assert '"received"' not in (tmp_path / "bank" / "audit.jsonl").read_text()


def test_a_certificate_of_another_ca_is_refused_at_once(fed: Path, bank: Bank,
                                                        tmp_path: Path) -> None:
    other = tmp_path / "other"
    write_federation(other)
    audit = AuditLog(tmp_path / "grid" / "audit.jsonl", "grid", job=JOB)
    try:
        with pytest.raises(ProtocolAbort, match="certificate"):
            TlsChannel(Role.GRID, bank.address, bank.plane.port,
                       NodeCerts.in_dir(other, Role.GRID), Inbox(JOB, Role.BANK),
                       LaterAudit(audit), DEADLINE)
    finally:
        audit.close()


def test_a_certificate_naming_another_role_is_refused(fed: Path, bank: Bank,
                                                      tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "coord" / "audit.jsonl", "coordinator", job=JOB)
    try:  # the coordinator's certificate is from the federation CA but is not the grid's
        with pytest.raises(ProtocolAbort, match="refused this node's certificate"):
            TlsChannel(Role.GRID, bank.address, bank.plane.port,
                       NodeCerts.in_dir(fed, Role.COORDINATOR), Inbox(JOB, Role.BANK),
                       LaterAudit(audit), DEADLINE)
    finally:
        audit.close()
    with pytest.raises(PeerUnavailable):  # nothing arrived, nothing failed the job
        bank.get(Tag(1, "m0"), 0.2)


def test_without_a_data_plane_the_grpc_stream_is_used(fed: Path, tmp_path: Path) -> None:
    inbox = Inbox(JOB, Role.GRID)
    audit = AuditLog(tmp_path / "bank" / "audit.jsonl", "bank", job=JOB)
    server, port = start_server(NodeCerts.in_dir(fed, Role.BANK), "127.0.0.1:0",
                                add_party(inbox, audit))  # serves no data plane: port 0
    grid_audit = AuditLog(tmp_path / "grid" / "audit.jsonl", "grid", job=JOB)
    grid_inbox = Inbox(JOB, Role.BANK)
    plane = DataListener(NodeCerts.in_dir(fed, Role.GRID), "127.0.0.1", grid_inbox, grid_audit)
    channel = open_channel(Role.GRID, f"127.0.0.1:{port}", NodeCerts.in_dir(fed, Role.GRID),
                           grid_inbox, grid_audit, DEADLINE, plane)
    try:
        assert isinstance(channel, GrpcChannel)
        channel.send(Envelope(JOB, Tag(1, "m"), Role.GRID, payload(0)))
        assert inbox.get(Tag(1, "m"), DEADLINE).tensors["x"].size == 4
    finally:
        channel.close()
        plane.close()
        server.stop(0)
        audit.close()
        grid_audit.close()


def add_older_party(inbox: Inbox, audit: AuditLog) -> Callable[[grpc.Server], list[str]]:
    """The party service of a node from before the data plane: ``Party`` without
    ``DataPlane`` (its ``Stream`` is all the fallback uses)."""
    def add(server: grpc.Server) -> list[str]:
        stream = grpc.stream_unary_rpc_method_handler(
            PartyServicer(inbox, audit).Stream, request_deserializer=vfl_pb2.Frame.FromString,
            response_serializer=vfl_pb2.StreamReply.SerializeToString)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("vfl.v1.Party", {"Stream": stream}),))
        return ["vfl.v1.Party"]
    return add


def test_a_peer_of_an_older_version_gets_the_grpc_stream_said_in_one_line(
        fed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inbox = Inbox(JOB, Role.GRID)
    audit = AuditLog(tmp_path / "bank" / "audit.jsonl", "bank", job=JOB)
    server, port = start_server(NodeCerts.in_dir(fed, Role.BANK), "127.0.0.1:0",
                                add_older_party(inbox, audit))
    grid_audit = AuditLog(tmp_path / "grid" / "audit.jsonl", "grid", job=JOB)
    grid_inbox = Inbox(JOB, Role.BANK)
    plane = DataListener(NodeCerts.in_dir(fed, Role.GRID), "127.0.0.1", grid_inbox, grid_audit)
    channel = None
    try:
        with caplog.at_level(logging.INFO, logger="federation.transport"):
            channel = open_channel(Role.GRID, f"127.0.0.1:{port}",
                                   NodeCerts.in_dir(fed, Role.GRID), grid_inbox, grid_audit,
                                   DEADLINE, plane)
        assert isinstance(channel, GrpcChannel)
        for i in range(4):  # the 3 MiB one too
            channel.send(Envelope(JOB, Tag(1, f"m{i}"), Role.GRID, payload(i)))
        for i in range(4):
            got = inbox.get(Tag(1, f"m{i}"), DEADLINE)
            np.testing.assert_array_equal(got.tensors["x"], payload(i)["x"])
    finally:
        if channel is not None:
            channel.close()
        plane.close()
        server.stop(0)
        audit.close()
        grid_audit.close()
    said = [r for r in caplog.records if r.name.startswith("federation.transport")]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert said[0].levelno == logging.INFO
    assert "gRPC stream" in said[0].getMessage() and "DataPlane" in said[0].getMessage()
    assert "\n" not in said[0].getMessage()


@pytest.mark.parametrize(("role", "job", "refusal"), [
    (Role.COORDINATOR, JOB, "certificate names role 'coordinator'; this service accepts grid"),
    (Role.GRID, "job-other", "data plane for job 'job-other' refused"),
])
def test_another_refusal_of_the_data_plane_question_still_fails_in_one_line(
        fed: Path, bank: Bank, tmp_path: Path, role: Role, job: str, refusal: str) -> None:
    audit = AuditLog(tmp_path / "grid" / "audit.jsonl", "grid", job=job)
    inbox = Inbox(job, Role.BANK)
    plane = DataListener(NodeCerts.in_dir(fed, role), "127.0.0.1", inbox, audit)
    try:
        with pytest.raises(ProtocolAbort) as info:
            open_channel(Role.GRID, bank.address, NodeCerts.in_dir(fed, role), inbox, audit,
                         DEADLINE, plane)
    finally:
        plane.close()
        audit.close()
    assert refusal in str(info.value) and f"bank at {bank.address}" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_peer_killed_mid_stream_fails_the_waiting_party_naming_it(bank: Bank,
                                                                    fed: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.stream_peer", str(fed), JOB, bank.address, "5",
         "tls"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=REPO, env=env)
    try:
        lines = read_lines(proc)
        for i in range(5):  # in order, the 3 MiB one too
            got = bank.get(Tag(1, f"m{i}"), DEADLINE)
            np.testing.assert_array_equal(got.tensors["x"], payload(i)["x"])
        wait_line(lines, "SENT", proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        with pytest.raises(VflError) as info:
            bank.get(Tag(2, "never"), DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    message_ = str(info.value)
    assert isinstance(info.value, PeerUnavailable), repr(info.value)
    assert "grid" in message_ and "broke" in message_, message_  # noticed, not waited out
    assert "within" not in message_, message_
