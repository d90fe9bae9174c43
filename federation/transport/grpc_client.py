"""gRPC clients: the party's coordinator link, health watchers, and the call helpers
the party-to-party stream (``federation.transport.stream``) uses too.

Every call has a deadline; only UNAVAILABLE (nothing was delivered) is retried, a
bounded number of times. A client checks that the server's certificate names the role
it expects (the role is the TLS target name), and the server checks the client's.
Messages are serialized once, streamed in 1 MiB pieces, and logged in the audit log
with the SHA-256 of exactly those bytes, so sent and received digests can be matched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from federation.proto import vfl_pb2, vfl_pb2_grpc
from federation.protocol.errors import PeerUnavailable, ProtocolAbort
from federation.protocol.messages import (
    DealReply,
    DealRequest,
    FailRequest,
    JobPlan,
    JoinRequest,
    MatchReply,
    MatchRequest,
    Role,
    SyncReply,
    SyncRequest,
)
from federation.protocol.services import CoordinatorService
from federation.transport import wire
from federation.transport.audit import AuditLog
from federation.transport.certs import NodeCerts
from federation.transport.grpc_server import STEP_MATCH, describe

log = logging.getLogger(__name__)
T = TypeVar("T")
CHUNK = 1 << 20
RETRIES = 5


def secure_channel(address: str, certs: NodeCerts, expected: Role) -> grpc.Channel:
    """A mutual-TLS channel that accepts only a server certificate naming ``expected``."""
    ca, cert, key = certs.read()
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                         certificate_chain=cert)
    options = [("grpc.ssl_target_name_override", expected.value),
               ("grpc.max_receive_message_length", 64 << 20),
               ("grpc.max_send_message_length", 64 << 20)]
    return grpc.secure_channel(address, creds, options=options)


def call(what: str, fn: Callable[[], T], *, retry_for: float) -> T:
    """Run one RPC; retry UNAVAILABLE for up to ``retry_for`` s; map errors to ours."""
    deadline = time.monotonic() + retry_for
    delay = 0.05
    for attempt in range(1, 1000):
        try:
            return fn()
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code is grpc.StatusCode.UNAVAILABLE and time.monotonic() + delay < deadline \
                    and attempt < 40 and not _certificate_refused(details):
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise PeerUnavailable(f"{what}: {_explain(code, details)}") from None
            raise ProtocolAbort(f"{what}: {details or code.name}") from None
    raise PeerUnavailable(f"{what}: gave up")  # pragma: no cover


def call_logged(what: str, fn: Callable[[], T], log_sent: Callable[[], None], *,
                retry_for: float) -> T:
    """:func:`call` for an audited message: ``log_sent()`` before the first attempt and
    before each retry of an attempt that may have arrived.

    An attempt that failed mid-call may have reached a peer that died before answering; a
    restarted peer then logs the retry as a second delivery, which needs its own 'sent'
    entry (the cross-check, ``audit_pairs``, accepts repeats that never arrived). A failed
    connect delivered nothing and adds no entry.
    """
    log_next = True

    def attempt() -> T:
        nonlocal log_next
        if log_next:
            log_sent()
        try:
            return fn()
        except grpc.RpcError as exc:
            log_next = "failed to connect" not in (exc.details() or "").lower()
            raise

    return call(what, attempt, retry_for=retry_for)


TLS_MARKERS = ("handshake", "ssl", "certificate", "tls", "verification", "socket closed")


def _certificate_refused(details: str) -> bool:
    """A handshake that failed on a certificate fails the same way every time: no retry.
    (Other handshake failures, "socket closed" or a reset, may be a peer restarting or dying:
    those are retried.)"""
    lower = details.lower()
    return "certificate" in lower or "verif" in lower


def _explain(code: grpc.StatusCode, details: str) -> str:
    lower = details.lower()
    if "stream removed" in lower:
        # The call's HTTP/2 stream existed, so the handshake had succeeded: the peer went away
        # mid-call (killed, stopped or restarted), whatever the socket error says.
        return f"the connection closed mid-call ({details.strip()}); the peer stopped or restarted"
    if any(marker in lower for marker in TLS_MARKERS):
        # "Socket closed" is what the client sees when the server's check refuses our
        # certificate during the handshake (TLS 1.3), or the server stopped mid-handshake.
        return (f"TLS handshake refused ({details.strip()}); one side's certificate is not "
                "from the federation CA, has expired, or names another role")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer before the deadline ({details.strip()})"
    return f"unreachable ({details.strip()})"


class GrpcCoordinatorLink:
    """A party's calls to the coordinator, each with a deadline and an audit entry."""

    def __init__(self, role: Role, address: str, certs: NodeCerts, audit: AuditLog,
                 deadline: float, barrier_wait: float,
                 on_plan: Callable[[JobPlan], None] | None = None) -> None:
        self.role = role
        self._on_plan = on_plan  # e.g. sets the inbox's message size bound
        self.address = address
        self._audit = audit
        self._deadline = deadline
        self._barrier_wait = barrier_wait
        self._grpc = secure_channel(address, certs, Role.COORDINATOR)
        self._stub = vfl_pb2_grpc.CoordinatorStub(self._grpc)
        self.bytes_sent = 0
        self.gone = False  # set when health checks found the coordinator dead or frozen

    def _rpc(self, step: str, round_: int, job: str, request: object,
             method: Callable[..., T], timeout: float, retry_for: float) -> T:
        payload = request.SerializeToString(deterministic=True)  # type: ignore[attr-defined]

        def send() -> T:
            return method(request, timeout=timeout)

        def log_sent() -> None:
            self._audit.record(direction="sent", peer="coordinator", job=job, round_=round_,
                               step=step, payload=payload)
            self.bytes_sent += len(payload)

        reply = call_logged(f"{step} at the coordinator ({self.address})", send, log_sent,
                            retry_for=retry_for)
        self._audit.record(direction="received", peer="coordinator", job=job, round_=round_,
                           step=step,
                           payload=reply.SerializeToString(deterministic=True))  # type: ignore[attr-defined]
        return reply

    def join(self, req: JoinRequest) -> JobPlan:
        reply = self._rpc("join", 0, req.job_id, wire.join_request_to_proto(req),
                          self._stub.Join, self._barrier_wait, self._deadline)
        plan = wire.plan_from_proto(reply)
        if self._on_plan is not None:
            self._on_plan(plan)
        return plan

    def sync(self, req: SyncRequest) -> SyncReply:
        reply = self._rpc(f"sync/{req.step}", req.round, req.job_id,
                          wire.sync_request_to_proto(req), self._stub.Sync,
                          self._barrier_wait, 0.0)
        return wire.sync_reply_from_proto(reply)

    def deal(self, req: DealRequest) -> DealReply:
        reply = self._rpc("deal", req.epoch, req.job_id, wire.deal_request_to_proto(req),
                          self._stub.Deal, self._deadline, 0.0)
        return wire.deal_reply_from_proto(reply)

    def match(self, req: MatchRequest) -> MatchReply:
        """Server-aided PSI: stream the tags, wait for both parties, read the positions."""
        data = wire.match_request_to_bytes(req)
        self._audit.record(direction="sent", peer="coordinator", job=req.job_id, round_=0,
                           step=STEP_MATCH, payload=data, tensors=describe({"tags": req.tags}))
        self.bytes_sent += len(data)
        timeout = self._barrier_wait + len(data) / 20e6

        def pieces() -> Iterator[vfl_pb2.MatchPiece]:
            for start in range(0, len(data), CHUNK):
                yield vfl_pb2.MatchPiece(chunk=data[start:start + CHUNK])

        def once() -> bytes:
            replies = self._stub.Match(pieces(), timeout=timeout)
            return b"".join(piece.chunk for piece in replies)

        out = call(f"{STEP_MATCH} at the coordinator ({self.address})", once, retry_for=0.0)
        reply = wire.match_reply_from_bytes(out)
        self._audit.record(direction="received", peer="coordinator", job=req.job_id, round_=0,
                           step=STEP_MATCH, payload=out,
                           tensors=describe({"positions": reply.positions}))
        return reply

    def fail(self, req: FailRequest) -> None:
        if self.gone:  # no one to tell: do not wait out a call to a frozen coordinator
            log.info("not telling the coordinator of the failure: it is gone")
            return
        try:
            self._rpc("fail", 0, req.job_id, wire.fail_request_to_proto(req), self._stub.Fail,
                      5.0, 0.0)
        except (PeerUnavailable, ProtocolAbort) as exc:
            log.info("could not tell the coordinator of the failure: %s", exc)

    def close(self) -> None:
        self._grpc.close()


def watch_parties(coordinator: CoordinatorService, certs: NodeCerts, every: float = 2.0,
                  misses: int = 3) -> threading.Thread:
    """Fail the job when a joined party stops answering health checks.

    A party that dies while its peer waits at a barrier would otherwise be noticed only
    when the barrier times out; this notices within about ``every * misses`` seconds.
    """
    def run() -> None:
        channels: dict[Role, grpc.Channel] = {}
        missed = dict.fromkeys((Role.GRID, Role.BANK), 0)
        try:
            while not coordinator.finished:
                for role, address in coordinator.party_addresses().items():
                    if role not in channels:
                        channels[role] = secure_channel(address, certs, role)
                    stub = health_pb2_grpc.HealthStub(channels[role])
                    try:
                        stub.Check(health_pb2.HealthCheckRequest(), timeout=every / 2)
                        missed[role] = 0
                    except grpc.RpcError as exc:
                        missed[role] += 1
                        if missed[role] >= misses and not coordinator.finished:
                            coordinator.fail(FailRequest(
                                coordinator.job_id, role, f"stopped answering at {address} "
                                f"({exc.code().name}); the node is gone"))
                time.sleep(every)
        finally:
            for channel in channels.values():
                channel.close()

    thread = threading.Thread(target=run, name="watch-parties", daemon=True)
    thread.start()
    return thread


def watch_coordinator(address: str, certs: NodeCerts, on_gone: Callable[[str], None],
                      stop: threading.Event, every: float = 1.0, misses: int = 5,
                      grace: float = 30.0) -> threading.Thread:
    """Call ``on_gone(reason)`` once the coordinator stops answering health checks.

    ``misses`` checks in a row must fail; before the coordinator first answered, misses
    count only after ``grace`` seconds (a node may start before its coordinator, and joining
    retries that long). It ends when ``stop`` is set (the job is over, the coordinator may
    exit). A frozen coordinator (SIGSTOP) is noticed as surely as a dead one: checks time out.
    """
    def run() -> None:
        channel = secure_channel(address, certs, Role.COORDINATOR)
        stub = health_pb2_grpc.HealthStub(channel)
        started, answered, missed = time.monotonic(), False, 0
        try:
            while not stop.is_set():
                try:
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=every)
                    if not answered:
                        log.info("watching the coordinator at %s (health checks)", address)
                    answered, missed = True, 0
                except grpc.RpcError as exc:
                    if answered or time.monotonic() - started > grace:
                        missed += 1
                    if missed >= misses and not stop.is_set():
                        on_gone(f"the coordinator at {address} stopped answering "
                                f"({exc.code().name}); it is gone or frozen")
                        return
                stop.wait(every)
        finally:
            channel.close()

    thread = threading.Thread(target=run, name="watch-coordinator", daemon=True)
    thread.start()
    return thread
