"""``gridcredit serve``: a trained federation's grid and bank nodes kept up for online scoring.

The edge around ``parties.serving`` (which holds the protocol and says what each party
learns): servers, clients, audit entries and the process entry ``run_serve``.

- The grid node serves ``ServePeer`` (``Open``, ``Step``) to the bank node only.
- The bank node dials the grid (``--peer``), opens a session (the grid's blinded points,
  once), then serves ``Scoring.Score`` to callers presenting the bank's certificate (the
  bank's own systems). Per request it makes one or two ``Step`` calls to the grid.
- Both print ``LISTENING host:port`` once ready (the bank after its session is open), answer
  gRPC health checks and reflection, and stop cleanly on SIGTERM or SIGINT.
- Every party-to-party message is written to both nodes' audit logs, with the SHA-256 of
  the same serialized bytes on both sides, so ``gridcredit audit verify`` pairs them. A
  ``Score`` call is written to the bank's log (peer ``client``) with its size, under a
  digest keyed by a per-process random key: the log never holds a guessable hash of an ID.
- Bounds: at most ``--max-ids`` IDs per request (both nodes check), a deadline on every
  call (``--deadline`` plus a per-ID allowance, never past the caller's own deadline).

Assumes: mutual TLS with the federation's certificates (``gridcredit certs``), each naming
its role; the models and data are those of one finished training run; the grid is up
before the bank starts, or comes up within ``--connect-timeout``. If the grid restarts at
the same address, the bank opens a new session on the first request that finds its
session gone.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import numpy as np

from federation import wire
from federation.audit import AuditLog
from federation.certs import NodeCerts, check_own_certificate
from federation.errors import (
    ConfigError,
    InputDataError,
    PeerUnavailable,
    ProtocolAbort,
    VflError,
)
from federation.grpc_client import CHUNK, call, secure_channel
from federation.grpc_server import _guard, describe, require_role, start_server
from federation.messages import Envelope, Role
from federation.nodes import ExitCode
from federation.processes import NodeProcess
from federation.proto import vfl_pb2, vfl_pb2_grpc
from parties.data import load_party_csv
from parties.model import PartyModel
from parties.psi_pool import PsiPool
from parties.scorecard import Scorecard
from parties.serving import (
    MAX_IDS,
    SCORED,
    BankServing,
    GridServing,
    RequestError,
    RequestPlan,
    ScoredId,
    UnknownSession,
)

log = logging.getLogger(__name__)
CLIENT = "client"
# Generous per-ID allowance for the peer's curve work (~0.2 ms per ID on one core).
SECONDS_PER_ID = 0.001
RETRY_SECONDS = 2.0


@dataclass(frozen=True)
class ServeConfig:
    """Everything one serve node needs, parsed once from the flags.

    Attributes
    ----------
    role : Role
        ``Role.GRID`` or ``Role.BANK``.
    model, data : Path
        This party's ``model.json`` of the run, and its CSV (the bank's: the enterprises it
        may be asked about, with the model's features).
    certs : NodeCerts
        This node's TLS material.
    listen : str
        HOST:PORT to serve on (port 0 picks a free one).
    peer : str
        Bank only: HOST:PORT of the grid's serve node.
    audit : Path
        This node's audit log (continued if it exists).
    """

    role: Role
    model: Path
    data: Path
    certs: NodeCerts
    listen: str = "127.0.0.1:0"
    peer: str = ""
    audit: Path = Path("serve_audit.jsonl")
    id_column: str = "id"
    bands: tuple[float, ...] | None = None  # edges in points, -inf first and inf last
    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0
    max_ids: int = MAX_IDS
    deadline: float = 10.0
    connect_timeout: float = 60.0
    psi_workers: int | None = None


class AuditWriter:
    """Writes audit entries on its own thread, in the order they were handed over.

    Signing an entry (ECDSA P-256) and writing it costs about 0.5 ms; a request makes five
    entries per node, so on the request's path they would double its latency. Entries
    still queued when the process is killed are lost; a clean stop (``close``) writes them.
    """

    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, name="audit", daemon=True)
        self._thread.start()

    def record(self, **entry: Any) -> None:
        """Queue one entry (the keyword arguments of ``AuditLog.record``)."""
        self._queue.put(entry)

    def _drain(self) -> None:
        while (entry := self._queue.get()) is not None:
            try:
                self._audit.record(**entry)
            except (OSError, ValueError) as exc:  # a full disk must not go unnoticed
                log.error("audit log %s: entry not written: %s", self._audit.path, exc)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (waiting at most ``timeout`` s), then close the log."""
        self._queue.put(None)
        self._thread.join(timeout)
        self._audit.close()


# -- grid: the ServePeer service -----------------------------------------------------------


def _envelope(data: bytes, role: Role) -> Envelope:
    env = wire.envelope_from_bytes(data)
    if env.sender is not role:
        raise ProtocolAbort(f"message claims sender {env.sender} but the certificate names {role}")
    return env


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
        reply = _guard(context, lambda: self._grid.open(env))
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
                return self._grid.step(env)
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
        # The grid blinds all of its rows now: allow for its size (unknown yet) generously.
        timeout = max(self._deadline, 600.0)

        def fetch() -> bytes:
            return b"".join(piece.chunk for piece in self._stub.Open(request, timeout=timeout))

        try:
            reply = call(
                f"opening a serving session with the grid at {self.address}",
                fetch,
                retry_for=retry_for,
            )
        finally:
            self._record("sent", env, data)
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
                raise

        try:
            reply = call(
                f"{env.tag.step} (request {env.tag.round}) at the grid ({self.address})",
                once,
                retry_for=min(RETRY_SECONDS, timeout),
            )
        finally:
            self._record("sent", env, data)
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
    """``Score`` on the bank node; callers must present the bank's own certificate."""

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
        require_role(context, (Role.BANK,))
        ids = list(request.ids)
        self._record("received", "score/request", 0, request.SerializeToString(), "ids", len(ids))
        remaining = context.time_remaining()
        try:
            plan, results = self._link.score(ids, remaining)
        except RequestError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
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


# -- the process -------------------------------------------------------------------------


def partial_logits(cfg: ServeConfig) -> tuple[list[str], np.ndarray]:
    """This party's IDs and partial logit per row of ``--data`` under its model.

    Raises
    ------
    InputDataError
        The model or CSV is unreadable, of the other role, or lacks a model feature.
    """
    model = PartyModel.load(cfg.model, cfg.role)
    data = load_party_csv(cfg.data, cfg.id_column, None)
    missing = [f for f in model.features if f not in data.features]
    if missing:
        raise InputDataError(
            f"{cfg.data}: missing column(s) {missing} that the model {cfg.model} needs"
        )
    data = data.select(model.features)
    return data.ids, np.asarray(model.partial_logit(data.x), dtype=np.float64)


def _announce(listen: str, port: int) -> str:
    address = f"{listen.rsplit(':', 1)[0] or '127.0.0.1'}:{port}"
    print(f"LISTENING {address}", flush=True)
    return address


def _stop_event() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
    return stop


def run_serve(cfg: ServeConfig, stop: threading.Event | None = None) -> ExitCode:
    """Run one serve node until SIGTERM / SIGINT (or ``stop`` is set).

    Parameters
    ----------
    cfg : ServeConfig
        The node's settings.
    stop : threading.Event, optional
        Set it to stop the node (default: an event set by SIGTERM and SIGINT).

    Returns
    -------
    ExitCode
        ``ExitCode.OK`` after a clean stop.

    Raises
    ------
    ConfigError, InputDataError
        Bad flags, certificates, model or data (before anything listens).
    PeerUnavailable, ProtocolAbort
        Bank: the grid could not be reached or refused the session.
    """
    if cfg.role is Role.BANK and not cfg.peer:
        raise ConfigError("bank: --peer HOST:PORT of the grid's serve node is required")
    if cfg.role is Role.GRID and cfg.peer:
        raise ConfigError("grid: --peer is not used (the bank dials the grid)")
    if not 0 < cfg.max_ids <= 1_000_000:
        raise ConfigError(f"--max-ids must be 1 to 1000000, got {cfg.max_ids}")
    check_own_certificate(cfg.certs, cfg.role)
    ids, u = partial_logits(cfg)
    if stop is None:
        stop = _stop_event()
    audit = AuditWriter(AuditLog(cfg.audit, cfg.role.value, cfg.certs.key.read_bytes()))
    pool = PsiPool(cfg.psi_workers)
    link: GridLink | None = None
    server: grpc.Server | None = None
    try:
        if cfg.role is Role.GRID:
            grid = GridServing(ids, u, max_ids=cfg.max_ids, pool=pool)
            server, port = start_server(cfg.certs, cfg.listen, add_serve_peer(grid, audit))
        else:
            try:
                card = Scorecard(cfg.base_score, cfg.base_odds, cfg.pdo)
                bank = BankServing(ids, u, card, cfg.bands, max_ids=cfg.max_ids, pool=pool)
            except ValueError as exc:
                raise ConfigError(f"scorecard or bands: {exc}") from exc
            link = GridLink(cfg.peer, cfg.certs, audit, bank, cfg.deadline)
            seconds = link.open(cfg.connect_timeout)
            log.info("serving: session with the grid open in %.2f s", seconds)
            server, port = start_server(cfg.certs, cfg.listen, add_scoring(link, audit))
        _announce(cfg.listen, port)
        log.info("serving as %s: %d rows, audit log %s", cfg.role, len(ids), cfg.audit)
        while not stop.wait(0.5):
            pass
        log.info("serving: stopping")
    finally:
        if server is not None:
            server.stop(grace=2.0).wait(5)
        if link is not None:
            link.close()
        pool.close()
        audit.close()
    return ExitCode.OK


# -- starting serve nodes as processes (tests, bench) --------------------------------------


def serve_module() -> str:
    """``federation.cli`` once it has the ``serve`` command, else ``federation.serve_cli``."""
    from federation.cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction) and "serve" in action.choices:
            return "federation.cli"
    return "federation.serve_cli"


@dataclass
class ServeProcess(NodeProcess):
    """A ``serve`` node as an OS process (``args`` start with ``serve``); stderr in node.log."""

    module: str = "federation.serve_cli"

    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        log_file = (self.out / "node.log").open("w", encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            env=env,
            start_new_session=True,
        )
        log_file.close()
        threading.Thread(target=self._read, daemon=True).start()
