"""The gRPC services of ``gridcredit serve``: the grid's ``ServePeer`` and the bank's ``Scoring``.

Servicers decode, call :mod:`parties.serving` (which holds the protocol and says what each
party learns) and encode; every party-to-party message is written to both nodes' audit logs
with the SHA-256 of the same serialized bytes, and a ``Score`` call to the bank's log under a
per-process keyed digest, so the log never holds a guessable hash of an ID.
The grid's quota refusals travel as ``RESOURCE_EXHAUSTED`` with the grid's one line, to the
bank and on to the client. ``Score`` accepts scoring clients (``gridcredit certs --client
NAME``) and the bank node itself; ``ServePeer`` accepts the bank node only.
Assumes: mutual TLS with the federation's certificates, each naming its role.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator

import grpc

from federation.proto import vfl_pb2, vfl_pb2_grpc
from federation.protocol.errors import (
    PeerUnavailable,
    ProtocolAbort,
    VflError,
)
from federation.protocol.messages import Envelope, Role
from federation.transport import wire
from federation.transport.audit import AuditWriter
from federation.transport.certs import NodeCerts, is_client_name
from federation.transport.grpc_client import CHUNK, call_logged, secure_channel
from federation.transport.grpc_server import _guard, caller_role, describe, require_role
from parties.serving import SCORED, RequestError, ScoredId, UnknownSession
from parties.serving_bank import BankServing, RequestPlan
from parties.serving_grid import GridServing
from parties.serving_limits import QuotaExceeded

log = logging.getLogger(__name__)
CLIENT = "client"
# Generous per-ID allowance for the peer's curve work (~0.2 ms per ID on one core).
SECONDS_PER_ID = 0.001
RETRY_SECONDS = 2.0


# -- grid: the ServePeer service -----------------------------------------------------------


def _envelope(data: bytes, role: Role) -> Envelope:
    env = wire.envelope_from_bytes(data)
    if env.sender is not role:
        raise ProtocolAbort(f"message claims sender {env.sender} but the certificate names {role}")
    return env


def _refusing(context: grpc.ServicerContext, fn: Callable[[], Envelope]) -> Envelope:
    """Run ``fn``; a quota refusal becomes ``RESOURCE_EXHAUSTED`` with its one line."""
    try:
        return fn()
    except QuotaExceeded as exc:
        log.warning("serving: %s", exc)
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        raise AssertionError("unreachable") from exc  # context.abort always raises


class ServePeerServicer(vfl_pb2_grpc.ServePeerServicer):
    """The grid's answers to the bank's session and request steps (bank certificate only)."""

    def __init__(self, grid: GridServing, audit: AuditWriter) -> None:
        self._grid = grid
        self._audit = audit

    def _record(self, direction: str, env: Envelope, data: bytes) -> None:
        self._audit.record(
            direction=direction,
            peer=Role.BANK.value,
            job=env.job_id,
            round_=env.tag.round,
            step=env.tag.step,
            payload=data,
            tensors=describe(dict(env.tensors)),
        )

    def _received(self, data: bytes, context: grpc.ServicerContext) -> Envelope:
        role = require_role(context, (Role.BANK,))
        env = _guard(context, lambda: _envelope(data, role))
        self._record("received", env, data)
        return env

    def Open(
        self, request: vfl_pb2.ServeOpenRequest, context: grpc.ServicerContext
    ) -> Iterator[vfl_pb2.ServeOpenReply]:
        env = self._received(request.envelope, context)
        caller = caller_role(context)
        reply = _guard(context, lambda: _refusing(context, lambda: self._grid.open(env, caller)))
        data = wire.envelope_to_bytes(reply)
        try:
            for start in range(0, len(data), CHUNK):
                yield vfl_pb2.ServeOpenReply(chunk=data[start : start + CHUNK])
        finally:  # logged once the stream is over, delivered or not (as GrpcChannel does)
            self._record("sent", reply, data)

    def Step(
        self, request: vfl_pb2.ServeStepRequest, context: grpc.ServicerContext
    ) -> vfl_pb2.ServeStepReply:
        env = self._received(request.envelope, context)

        def answer() -> Envelope:
            try:
                return _refusing(context, lambda: self._grid.step(env))
            except UnknownSession as exc:  # the bank reacts by opening a new session
                context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
                raise AssertionError("unreachable") from exc  # context.abort always raises

        reply = _guard(context, answer)
        data = wire.envelope_to_bytes(reply)
        self._record("sent", reply, data)
        return vfl_pb2.ServeStepReply(envelope=data)


# -- bank: the link to the grid and the Scoring service ------------------------------------


class SessionLost(VflError):
    """The grid no longer holds this bank's session."""


class GridRefused(VflError):
    """The grid refused a request or a session open under one of its quotas."""


def _refused(exc: grpc.RpcError) -> None:
    """Raise ``GridRefused`` (the grid's own line) for a quota refusal."""
    if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
        raise GridRefused(exc.details() or "the grid refused (a quota)") from None


class GridLink:
    """The bank's session with the grid's serve node; every message audited on both sides.

    Parameters
    ----------
    address : str
        HOST:PORT of the grid's serve node.
    certs : NodeCerts
        The bank's TLS material; the grid must present a certificate naming the grid.
    audit : AuditWriter
        The bank's audit log.
    bank : BankServing
        The bank's protocol state.
    deadline : float
        Seconds per call, plus ``SECONDS_PER_ID`` per point in it.
    """

    def __init__(
        self, address: str, certs: NodeCerts, audit: AuditWriter, bank: BankServing, deadline: float
    ) -> None:
        self.address = address
        self._audit = audit
        self._bank = bank
        self._deadline = deadline
        self._channel = secure_channel(address, certs, Role.GRID)
        self._stub = vfl_pb2_grpc.ServePeerStub(self._channel)
        self._reopen = threading.Lock()

    @property
    def session(self) -> str:
        """The open session's id (audit ``job`` of its entries)."""
        return self._bank.session

    def _record(self, direction: str, env: Envelope, data: bytes) -> None:
        self._audit.record(
            direction=direction,
            peer=Role.GRID.value,
            job=env.job_id,
            round_=env.tag.round,
            step=env.tag.step,
            payload=data,
            tensors=describe(dict(env.tensors)),
        )

    def open(self, retry_for: float) -> float:
        """Open a new session (retrying an unreachable grid up to ``retry_for`` s); seconds."""
        started = time.perf_counter()
        env = self._bank.open_request()
        data = wire.envelope_to_bytes(env)
        request = vfl_pb2.ServeOpenRequest(envelope=data)
        # The grid may start a key epoch now (it blinds all its rows): allow for its size.
        timeout = max(self._deadline, 600.0)

        def fetch() -> bytes:
            try:
                return b"".join(piece.chunk
                                for piece in self._stub.Open(request, timeout=timeout))
            except grpc.RpcError as exc:
                _refused(exc)
                raise

        reply = call_logged(f"opening a serving session with the grid at {self.address}",
                            fetch, lambda: self._record("sent", env, data),
                            retry_for=retry_for)
        points = wire.envelope_from_bytes(reply)
        self._record("received", points, reply)
        self._bank.accept_points(points)
        return time.perf_counter() - started

    def _step(self, env: Envelope, timeout: float) -> Envelope:
        data = wire.envelope_to_bytes(env)
        request = vfl_pb2.ServeStepRequest(envelope=data)

        def once() -> vfl_pb2.ServeStepReply:
            try:
                reply: vfl_pb2.ServeStepReply = self._stub.Step(request, timeout=timeout)
                return reply
            except grpc.RpcError as exc:
                if exc.code() is grpc.StatusCode.NOT_FOUND:
                    raise SessionLost(exc.details() or "session gone") from None
                _refused(exc)
                raise

        reply = call_logged(
            f"{env.tag.step} (request {env.tag.round}) at the grid ({self.address})",
            once, lambda: self._record("sent", env, data),
            retry_for=min(RETRY_SECONDS, timeout))
        answer = _envelope(reply.envelope, Role.GRID)
        self._record("received", answer, reply.envelope)
        return answer

    def score(self, ids: list[str], remaining: float | None) -> tuple[RequestPlan, list[ScoredId]]:
        """Score ``ids`` (opening a new session once if the grid lost this one)."""
        session = self._bank.session
        try:
            return self._score_once(ids, remaining)
        except SessionLost as exc:
            log.warning("serving: %s; opening a new session", exc)
            with self._reopen:
                if self._bank.session == session:
                    self.open(RETRY_SECONDS)
            return self._score_once(ids, remaining)

    def _score_once(
        self, ids: list[str], remaining: float | None
    ) -> tuple[RequestPlan, list[ScoredId]]:
        started = time.monotonic()
        plan, blinded = self._bank.blinded_request(ids)
        if blinded is None:
            return plan, self._bank.results(plan, None)

        def timeout() -> float:
            own = self._deadline + SECONDS_PER_ID * len(plan.sent)
            if remaining is None:
                return own
            left = remaining - (time.monotonic() - started)
            if left <= 0:
                raise ProtocolAbort(f"request {plan.round}: the caller's deadline passed")
            return min(own, left)

        rows = self._bank.rows_request(plan, self._step(blinded, timeout()))
        partial = None if rows is None else self._step(rows, timeout())
        return plan, self._bank.results(plan, partial)

    def close(self) -> None:
        self._channel.close()


def _result_proto(r: ScoredId) -> vfl_pb2.ScoreResult:
    scored = r.status == SCORED
    return vfl_pb2.ScoreResult(
        id=r.id,
        status=r.status,
        probability=r.probability if scored else 0.0,
        points=r.points if scored else 0.0,
        band=r.band,
        error=r.error,
    )


class ScoringServicer(vfl_pb2_grpc.ScoringServicer):
    """``Score`` on the bank node: callers present a client certificate or the bank's own."""

    def __init__(self, link: GridLink, audit: AuditWriter) -> None:
        self._link = link
        self._audit = audit
        self._key = secrets.token_bytes(32)  # keys the digests of client calls; never stored

    def _record(
        self, direction: str, step: str, round_: int, data: bytes, what: str, n: int
    ) -> None:
        # Same length as the message, so the entry's byte count is true; keyed, so its
        # digest cannot be matched against a guessed ID.
        keyed = hashlib.shake_256(self._key + data).digest(len(data))
        self._audit.record(
            direction=direction,
            peer=CLIENT,
            job=self._link.session,
            round_=round_,
            step=step,
            payload=keyed,
            tensors=[{"name": what, "dtype": "message", "shape": [n]}],
        )

    def Score(
        self, request: vfl_pb2.ScoreRequest, context: grpc.ServicerContext
    ) -> vfl_pb2.ScoreReply:
        who = caller_role(context)
        if who != Role.BANK.value and not is_client_name(who):
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"certificate names role {who!r}; Score accepts scoring clients "
                          "(gridcredit certs --client NAME) and the bank")
        ids = list(request.ids)
        self._record("received", "score/request", 0, request.SerializeToString(), "ids", len(ids))
        remaining = context.time_remaining()
        try:
            plan, results = self._link.score(ids, remaining)
        except RequestError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except GridRefused as exc:
            log.warning("serving: a request was refused: %s", exc)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except PeerUnavailable as exc:
            log.warning("serving: a request failed: %s", exc)
            context.abort(grpc.StatusCode.UNAVAILABLE, f"scoring failed: {exc}")
        except VflError as exc:
            log.warning("serving: a request failed: %s", exc)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"scoring failed: {exc}")
        reply = vfl_pb2.ScoreReply(
            results=[_result_proto(r) for r in results], session=plan.session, request=plan.round
        )
        self._record(
            "sent", "score/reply", plan.round, reply.SerializeToString(), "results", len(results)
        )
        return reply


def add_serve_peer(grid: GridServing, audit: AuditWriter) -> Callable[[grpc.Server], list[str]]:
    """Register the grid's ``ServePeer`` service (for ``start_server``)."""

    def add(server: grpc.Server) -> list[str]:
        vfl_pb2_grpc.add_ServePeerServicer_to_server(ServePeerServicer(grid, audit), server)
        return [vfl_pb2.DESCRIPTOR.services_by_name["ServePeer"].full_name]

    return add


def add_scoring(link: GridLink, audit: AuditWriter) -> Callable[[grpc.Server], list[str]]:
    """Register the bank's ``Scoring`` service (for ``start_server``)."""

    def add(server: grpc.Server) -> list[str]:
        vfl_pb2_grpc.add_ScoringServicer_to_server(ScoringServicer(link, audit), server)
        return [vfl_pb2.DESCRIPTOR.services_by_name["Scoring"].full_name]

    return add


