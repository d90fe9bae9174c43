"""gRPC servers of the coordinator and of a party node (the edge: decode, call, encode).

Every server requires mutual TLS with the federation CA, answers the standard health
and reflection services, and checks in each handler that the caller's certificate
names a role allowed to call it. Our exceptions become status codes here.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from typing import Any, Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from federation.proto import vfl_pb2, vfl_pb2_grpc
from federation.protocol.errors import (
    ConfigError,
    PeerUnavailable,
    ProtocolAbort,
    StageError,
    VflError,
)
from federation.protocol.messages import Role
from federation.protocol.services import CoordinatorService
from federation.transport import wire
from federation.transport.audit import AuditLog
from federation.transport.certs import NodeCerts
from federation.transport.channel import Inbox

log = logging.getLogger(__name__)
T = TypeVar("T")
CHUNK = 1 << 20
STEP_MATCH = "psi/match"  # the audit step of the server-aided PSI call
LIMIT_WAIT = 60.0  # how long a message may wait for this node's plan (its size bound)


def caller_role(context: grpc.ServicerContext) -> str:
    """The role named by the caller's TLS certificate (its common name)."""
    names = context.auth_context().get("x509_common_name", [])
    return names[0].decode() if names else ""


def require_role(context: grpc.ServicerContext, allowed: tuple[Role, ...]) -> Role:
    got = caller_role(context)
    if got not in {r.value for r in allowed}:
        context.abort(grpc.StatusCode.PERMISSION_DENIED,
                      f"certificate names role {got!r}; this service accepts "
                      f"{', '.join(r.value for r in allowed)}")
    return Role(got)


def _guard(context: grpc.ServicerContext, call: Callable[[], T]) -> T:
    try:
        return call()
    except (StageError, ProtocolAbort) as exc:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    except PeerUnavailable as exc:
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
    except VflError as exc:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    raise AssertionError("unreachable")  # context.abort always raises


class PartyServicer(vfl_pb2_grpc.PartyServicer):
    """Receives the peer party's messages into this node's inbox.

    ``Stream`` is the job's path: one long-lived stream from the peer, a message per one or
    more frames, each put into the inbox by the thread that reads the stream (no further
    hand-off), ended by an empty closing frame: a stream that stops without it (the peer
    died; gRPC may show that as a plain end) fails the waiting party at once. A message
    larger than the job's bound is refused from its first frame, before any of it is
    buffered; a refused message ends the stream and the job.
    ``Send`` and ``Deliver`` take one message per call (tools and older peers).
    """

    def __init__(self, inbox: Inbox, audit: AuditLog, data_port: int = 0) -> None:
        self._inbox = inbox
        self._audit = audit
        self._data_port = data_port

    def DataPlane(self, request: vfl_pb2.DataPlaneRequest,
                  context: grpc.ServicerContext) -> vfl_pb2.DataPlaneReply:
        """The data plane's port (``federation.transport.tls_plane``), to the peer only."""
        require_role(context, (self._inbox.peer,))
        if request.job_id != self._inbox.job_id:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"data plane for job {request.job_id!r} refused: this node runs job "
                          f"{self._inbox.job_id!r}")
        return vfl_pb2.DataPlaneReply(port=self._data_port)

    def Send(self, request: vfl_pb2.DeliverRequest,
             context: grpc.ServicerContext) -> vfl_pb2.DeliverReply:
        role = require_role(context, (self._inbox.peer,))
        return _guard(context, lambda: self._accept(self._bounded(request.chunk, role), role))

    def Deliver(self, request_iterator: Iterator[vfl_pb2.DeliverRequest],
                context: grpc.ServicerContext) -> vfl_pb2.DeliverReply:
        role = require_role(context, (self._inbox.peer,))

        def join() -> vfl_pb2.DeliverReply:
            limit, size = self._inbox.limit(LIMIT_WAIT), 0
            parts: list[bytes] = []
            for piece in request_iterator:
                size += len(piece.chunk)
                check_size(size, limit, role)
                parts.append(piece.chunk)
            return self._accept(b"".join(parts), role)

        return _guard(context, join)

    def Stream(self, request_iterator: Iterator[vfl_pb2.Frame],
               context: grpc.ServicerContext) -> vfl_pb2.StreamReply:
        role = require_role(context, (self._inbox.peer,))
        counts = [0, 0]  # messages, bytes

        def read() -> vfl_pb2.StreamReply:
            try:
                if not self._read_stream(request_iterator, role, counts):
                    raise PeerUnavailable(f"the stream from {role} broke (it ended without its "
                                          f"closing frame after {counts[0]} messages): "
                                          f"{role} is gone")
            except VflError as exc:
                self._inbox.fail_local(exc)  # the peer broke the protocol: the job ends
                raise
            except grpc.RpcError:  # the peer vanished mid-stream (killed, network gone)
                self._inbox.fail_local(PeerUnavailable(
                    f"the stream from {role} broke after {counts[0]} messages: {role} is gone"))
            return vfl_pb2.StreamReply(messages=counts[0], bytes=counts[1])

        return _guard(context, read)

    def _read_stream(self, frames: Iterator[vfl_pb2.Frame], role: Role,
                     counts: list[int]) -> bool:
        """Put each message into the inbox; True if the stream ended with its closing frame
        (a frame with neither size nor bytes), False if it just stopped (the peer died)."""
        limit, expected, got = 0, 0, 0
        parts: list[bytes] = []
        for frame in frames:
            if not parts and not frame.size and not frame.chunk:
                return True
            if not parts:  # a message's first frame declares its size
                expected = int(frame.size)
                limit = limit or self._inbox.limit(LIMIT_WAIT)
                if expected <= 0:
                    raise ProtocolAbort(f"message from {role} without its size (frame "
                                        f"{counts[0] + 1} of the stream)")
                check_size(expected, limit, role)
            got += len(frame.chunk)
            if got > expected:
                raise ProtocolAbort(f"message from {role} longer than the {expected} bytes "
                                    "it declared")
            parts.append(frame.chunk)
            if got == expected:
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                parts, got = [], 0
                self._accept(data, role)
                counts[0] += 1
                counts[1] += len(data)
        if parts:
            raise PeerUnavailable(f"the stream from {role} ended inside a message "
                                  f"({got} of {expected} bytes)")
        return False

    def _bounded(self, data: bytes, role: Role) -> bytes:
        check_size(len(data), self._inbox.limit(LIMIT_WAIT), role)
        return data

    def _accept(self, data: bytes, role: Role) -> vfl_pb2.DeliverReply:
        accept_message(self._inbox, self._audit, data, role)
        return vfl_pb2.DeliverReply(bytes_received=len(data))


class Recorder(Protocol):
    """What writes a message's audit entry (``AuditLog``, or ``tls_plane.LaterAudit``)."""

    def record(self, *, direction: str, peer: str, job: str, round_: int, step: str,
               payload: bytes | memoryview,
               tensors: list[dict[str, Any]] | None = None) -> None: ...


def accept_message(inbox: Inbox, audit: Recorder, data: bytes | memoryview, role: Role) -> None:
    """Parse one message from ``role`` (authenticated by its certificate), put it into the
    inbox (which may refuse it: ``ProtocolAbort``) and log it as received."""
    env = wire.envelope_from_bytes(data)
    if env.sender is not role:
        raise ProtocolAbort(f"message claims sender {env.sender} but the certificate "
                            f"names {role}")
    try:
        inbox.put(env)  # first: it wakes the waiting party at once
    finally:
        audit.record(direction="received", peer=role.value, job=env.job_id,
                     round_=env.tag.round, step=env.tag.step, payload=data,
                     tensors=describe(env.tensors))


def check_size(size: int, limit: int, role: Role) -> None:
    if limit and size > limit:
        raise ProtocolAbort(f"message of {size} bytes from {role} refused: this job's messages "
                            f"are at most {limit} bytes (rows x columns x 8 plus slack)")


def describe(tensors: Mapping[str, object]) -> list[dict[str, object]]:
    """Names, dtypes and shapes of tensors for the audit log (never values)."""
    out: list[dict[str, object]] = []
    for name, arr in tensors.items():
        dtype = getattr(arr, "dtype", None)
        text = _DTYPE_NAMES.get(dtype)
        if text is None:  # str(dtype) costs ~5 us in numpy 2: once per dtype
            text = _DTYPE_NAMES.setdefault(dtype, str(dtype))
        out.append({"name": name, "dtype": text, "shape": list(getattr(arr, "shape", ()))})
    return out


_DTYPE_NAMES: dict[object, str] = {}


class CoordinatorServicer(vfl_pb2_grpc.CoordinatorServicer):
    """The coordinator's RPCs; only the grid and the bank may call them, each as itself."""

    def __init__(self, coordinator: CoordinatorService, audit: AuditLog) -> None:
        self._c = coordinator
        self._audit = audit

    def _log(self, direction: str, role: Role, step: str, round_: int,
             msg: object) -> None:
        payload = msg.SerializeToString(deterministic=True)  # type: ignore[attr-defined]
        self._audit.record(direction=direction, peer=role.value, job=self._c.job_id,
                           round_=round_, step=step, payload=payload)

    def _caller(self, context: grpc.ServicerContext, claimed: str) -> Role:
        role = require_role(context, (Role.GRID, Role.BANK))
        if claimed != role.value:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"request claims role {claimed!r} but the certificate names {role}")
        return role

    def Join(self, request: vfl_pb2.JoinRequest,
             context: grpc.ServicerContext) -> vfl_pb2.JoinReply:
        role = self._caller(context, request.role)
        self._log("received", role, "join", 0, request)
        reply = _guard(context, lambda: wire.plan_to_proto(
            self._c.join(wire.join_request_from_proto(request))))
        self._log("sent", role, "join", 0, reply)
        return reply

    def Sync(self, request: vfl_pb2.SyncRequest,
             context: grpc.ServicerContext) -> vfl_pb2.SyncReply:
        role = self._caller(context, request.role)
        step = f"sync/{request.step}"
        self._log("received", role, step, request.round, request)
        reply = _guard(context, lambda: wire.sync_reply_to_proto(
            self._c.sync(wire.sync_request_from_proto(request))))
        self._log("sent", role, step, request.round, reply)
        return reply

    def Deal(self, request: vfl_pb2.DealRequest,
             context: grpc.ServicerContext) -> vfl_pb2.DealReply:
        role = self._caller(context, request.role)
        self._log("received", role, "deal", request.epoch, request)
        reply = _guard(context, lambda: wire.deal_reply_to_proto(
            self._c.deal(wire.deal_request_from_proto(request))))
        self._log("sent", role, "deal", request.epoch, reply)
        return reply

    def Match(self, request_iterator: Iterator[vfl_pb2.MatchPiece],
              context: grpc.ServicerContext) -> Iterator[vfl_pb2.MatchPiece]:
        """Server-aided PSI: the party's tags in pieces; its matched positions in pieces."""
        role = require_role(context, (Role.GRID, Role.BANK))
        data = b"".join(piece.chunk for piece in request_iterator)

        def answer() -> bytes:
            req = wire.match_request_from_bytes(data)
            if req.role is not role:
                raise ProtocolAbort(f"PSI tags claim role {req.role} but the certificate "
                                    f"names {role}")
            self._audit.record(direction="received", peer=role.value, job=req.job_id,
                               round_=0, step=STEP_MATCH, payload=data,
                               tensors=describe({"tags": req.tags}))
            reply = self._c.match(req)
            out = wire.match_reply_to_bytes(reply)
            self._audit.record(direction="sent", peer=role.value, job=req.job_id, round_=0,
                               step=STEP_MATCH, payload=out,
                               tensors=describe({"positions": reply.positions}))
            return out

        out = _guard(context, answer)
        for start in range(0, len(out), CHUNK):
            yield vfl_pb2.MatchPiece(chunk=out[start:start + CHUNK])

    def Fail(self, request: vfl_pb2.FailRequest,
             context: grpc.ServicerContext) -> vfl_pb2.FailReply:
        role = self._caller(context, request.role)
        self._log("received", role, "fail", 0, request)
        reply = vfl_pb2.FailReply()
        # Logged before the job fails: its end wakes the node, which closes this log.
        self._log("sent", role, "fail", 0, reply)
        self._c.fail(wire.fail_request_from_proto(request))
        return reply


def refuse_unbindable(listen: str) -> None:
    """Fail with one line before gRPC tries (and logs its own multi-line complaint)."""
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit() or not host:
        raise ConfigError(f"cannot listen on {listen!r}: expected HOST:PORT")
    if int(port_text) == 0:
        return
    try:
        infos = socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    for family, kind, proto, _, address in infos[:1]:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            try:
                probe.bind(address)
            except OSError as exc:
                raise ConfigError(f"cannot listen on {listen}: {exc.strerror} (--listen "
                                  "HOST:PORT; port 0 picks a free one)") from None


def start_server(certs: NodeCerts, listen: str,
                 add: Callable[[grpc.Server], list[str]]) -> tuple[grpc.Server, int]:
    """Start a mutual-TLS server with health and reflection; returns (server, port).

    Raises ``ConfigError`` naming the address when it cannot be bound (port in use).
    """
    refuse_unbindable(listen)
    ca, cert, key = certs.read()
    creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                        require_client_auth=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                         options=[("grpc.so_reuseport", 0)])
    services = add(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in [*services, ""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [*services, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    try:
        port = server.add_secure_port(listen, creds)
    except RuntimeError:  # grpcio >= 1.60 raises where older versions returned 0
        port = 0
    if port == 0:
        server.stop(0)
        raise ConfigError(f"cannot listen on {listen}: the port is in use or the address is "
                          "not one of this host's (--listen HOST:PORT; port 0 picks a free one)")
    server.start()
    return server, port


def add_party(inbox: Inbox, audit: AuditLog,
              data_port: int = 0) -> Callable[[grpc.Server], list[str]]:
    def add(server: grpc.Server) -> list[str]:
        vfl_pb2_grpc.add_PartyServicer_to_server(PartyServicer(inbox, audit, data_port), server)
        return [vfl_pb2.DESCRIPTOR.services_by_name["Party"].full_name]
    return add


def add_coordinator(coordinator: CoordinatorService,
                    audit: AuditLog) -> Callable[[grpc.Server], list[str]]:
    def add(server: grpc.Server) -> list[str]:
        vfl_pb2_grpc.add_CoordinatorServicer_to_server(CoordinatorServicer(coordinator, audit),
                                                       server)
        return [vfl_pb2.DESCRIPTOR.services_by_name["Coordinator"].full_name]
    return add
