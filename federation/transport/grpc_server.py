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
from typing import TypeVar

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
# Party messages up to this size go in one unary Send, larger ones in 1 MiB pieces: one
# call has no slicing into pieces and no joining here, two copies fewer on each side. The
# server accepts a Send of that size (and its framing) and nothing larger.
UNARY_MAX = 16 << 20
SEND_METHOD = "/vfl.v1.Party/Send"
STEP_MATCH = "psi/match"  # the audit step of the server-aided PSI call


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
    """Receives the peer party's messages into this node's inbox."""

    def __init__(self, inbox: Inbox, audit: AuditLog) -> None:
        self._inbox = inbox
        self._audit = audit

    def Send(self, request: bytes,
             context: grpc.ServicerContext) -> vfl_pb2.DeliverReply:
        """The serialized ``DeliverRequest`` as it came (registered without a deserializer,
        ``add_party``): the envelope is read in place, not copied out of a message first."""
        return self._accept(request, context, framed=True)

    def Deliver(self, request_iterator: Iterator[vfl_pb2.DeliverRequest],
                context: grpc.ServicerContext) -> vfl_pb2.DeliverReply:
        return self._accept(b"".join(piece.chunk for piece in request_iterator), context)

    def _accept(self, raw: bytes, context: grpc.ServicerContext,
                framed: bool = False) -> vfl_pb2.DeliverReply:
        role = require_role(context, (self._inbox.peer,))

        def accept() -> vfl_pb2.DeliverReply:
            data = wire.delivered_envelope(raw) if framed else raw
            env = wire.envelope_from_bytes(data)
            if env.sender is not role:
                raise ProtocolAbort(f"message claims sender {env.sender} but the certificate "
                                    f"names {role}")
            try:
                self._inbox.put(env)  # first: it wakes the waiting party at once
            finally:
                self._audit.record(direction="received", peer=role.value, job=env.job_id,
                                   round_=env.tag.round, step=env.tag.step, payload=data,
                                   tensors=describe(env.tensors))
            return vfl_pb2.DeliverReply(bytes_received=len(data))

        return _guard(context, accept)


def describe(tensors: Mapping[str, object]) -> list[dict[str, object]]:
    """Names, dtypes and shapes of tensors for the audit log (never values)."""
    out: list[dict[str, object]] = []
    for name, arr in tensors.items():
        dtype = getattr(arr, "dtype", None)
        out.append({"name": name, "dtype": str(dtype), "shape": list(getattr(arr, "shape", ()))})
    return out


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
        self._c.fail(wire.fail_request_from_proto(request))
        return vfl_pb2.FailReply()


def _refuse_unbindable(listen: str) -> None:
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
    _refuse_unbindable(listen)
    ca, cert, key = certs.read()
    creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                        require_client_auth=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                         options=[("grpc.so_reuseport", 0),
                                  ("grpc.max_receive_message_length", UNARY_MAX + 4096)])
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


def add_party(inbox: Inbox, audit: AuditLog) -> Callable[[grpc.Server], list[str]]:
    def add(server: grpc.Server) -> list[str]:
        servicer = PartyServicer(inbox, audit)
        # As the generated ``add_PartyServicer_to_server``, but Send takes its request as
        # the raw serialized bytes (no deserializer): see ``PartyServicer.Send``.
        handlers = {
            "Send": grpc.unary_unary_rpc_method_handler(
                servicer.Send, request_deserializer=None,
                response_serializer=vfl_pb2.DeliverReply.SerializeToString),
            "Deliver": grpc.stream_unary_rpc_method_handler(
                servicer.Deliver, request_deserializer=vfl_pb2.DeliverRequest.FromString,
                response_serializer=vfl_pb2.DeliverReply.SerializeToString),
        }
        name = vfl_pb2.DESCRIPTOR.services_by_name["Party"].full_name
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
        return [name]
    return add


def add_coordinator(coordinator: CoordinatorService,
                    audit: AuditLog) -> Callable[[grpc.Server], list[str]]:
    def add(server: grpc.Server) -> list[str]:
        vfl_pb2_grpc.add_CoordinatorServicer_to_server(CoordinatorServicer(coordinator, audit),
                                                       server)
        return [vfl_pb2.DESCRIPTOR.services_by_name["Coordinator"].full_name]
    return add
