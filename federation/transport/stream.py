"""The party-to-party ``GrpcChannel``: one long-lived gRPC stream per peer and job.

The fallback path: by default party messages go on the TLS data plane
(``federation.transport.tls_plane``); this stream carries them when a node runs with
``GRIDCREDIT_DATA_PLANE=grpc`` or its peer serves no data plane.

Each party opens, once per job, a client stream (``Party.Stream``) to its peer's server and
sends every message of the job on it, in order; it receives the peer's messages on the
peer's stream into its own server (``grpc_server.PartyServicer``). A message costs one
frame (a serialized ``Envelope`` of at most 1 MiB; larger ones, such as the masked matrix
E once per job, in 1 MiB frames), not a call: no per-call stream set-up, headers,
certificate check or reply, so an exchange costs about one loopback trip.

``send`` serializes on the caller's thread and hands the bytes to the stream's feeder
(gRPC's request-iterator thread), the one hand-off per message; the audit entry of a sent
message is written by that thread after gRPC took the message, off the caller's path.
Failures: the peer is first reached with a health check, retrying UNAVAILABLE up to the
deadline (as every call does); once the stream runs, it breaking (the peer died or
refused a message) fails every waiting ``recv`` at once with the reason. ``close`` ends the
stream with an empty closing frame, so the peer tells a finished party from a dead one.
The stream's own deadline is long (``STREAM_LIFETIME``): a silent peer is caught by
``recv``'s deadline.
Assumes: mutual TLS with certificates naming the roles (``secure_channel``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from federation.proto import vfl_pb2, vfl_pb2_grpc
from federation.protocol.errors import PeerUnavailable, ProtocolAbort, VflError
from federation.protocol.messages import Envelope, Role
from federation.transport.audit import AuditLog
from federation.transport.certs import NodeCerts
from federation.transport.channel import Inbox, Observer, PeerStream
from federation.transport.grpc_client import call, secure_channel
from federation.transport.grpc_server import describe

log = logging.getLogger(__name__)
CHUNK = 1 << 20
STREAM_LIFETIME = 7 * 24 * 3600.0  # the stream's gRPC deadline; recv has the job's own
PARTY_SERVICE = "vfl.v1.Party"
Item = tuple[Envelope, bytes]


class GrpcChannel(PeerStream):
    """This party's end of the party-to-party channel (see the module docstring)."""

    def __init__(self, role: Role, peer_address: str, certs: NodeCerts, inbox: Inbox,
                 audit: AuditLog, deadline: float) -> None:
        self.role = role
        self.peer = inbox.peer
        self.address = peer_address
        self._inbox = inbox
        self._audit = audit
        self._deadline = deadline
        self._grpc = secure_channel(peer_address, certs, self.peer)
        self._stub = vfl_pb2_grpc.PartyStub(self._grpc)
        self._bytes_sent = 0
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._error: VflError | None = None
        self._ending = False
        self._ended = threading.Event()
        self._runner = threading.Thread(target=self._run, name=f"stream-to-{self.peer}",
                                        daemon=True)
        self._runner.start()
        self.observers: list[Observer] = []

    # -- the stream ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._reach()
            self._stub.Stream(self._frames(), timeout=STREAM_LIFETIME)
        except VflError as exc:
            self._fail(exc)
        except grpc.RpcError as exc:
            self._fail(self._broken(exc))
        except ValueError:  # grpc: "Cannot invoke RPC on closed channel" (closed meanwhile)
            self._fail(PeerUnavailable(f"the channel to {self.peer} was closed"))
        finally:
            self._ended.set()

    def _reach(self) -> None:
        """Wait until the peer's server answers (TLS done), retrying UNAVAILABLE."""
        health = health_pb2_grpc.HealthStub(self._grpc)
        request = health_pb2.HealthCheckRequest(service=PARTY_SERVICE)
        call(f"sending to {self.peer} at {self.address}",
             lambda: health.Check(request, timeout=self._deadline), retry_for=self._deadline)

    def _frames(self) -> Iterator[vfl_pb2.Frame]:
        """The stream's requests: runs on gRPC's request-iterator thread."""
        while (item := self._queue.get()) is not None:
            env, data = item
            yield vfl_pb2.Frame(size=len(data), chunk=data[:CHUNK])
            for start in range(CHUNK, len(data), CHUNK):
                yield vfl_pb2.Frame(chunk=data[start:start + CHUNK])
            # gRPC asks for the next frame once it took this one: log it now, off the path
            self._audit.record(direction="sent", peer=self.peer.value, job=env.job_id,
                               round_=env.tag.round, step=env.tag.step, payload=data,
                               tensors=describe(dict(env.tensors)))
        yield vfl_pb2.Frame()  # the closing frame: this end stopped on purpose

    def _broken(self, exc: grpc.RpcError) -> VflError:
        code, details = exc.code(), (exc.details() or "").strip()
        where = f"the stream to {self.peer} at {self.address}"
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.DEADLINE_EXCEEDED):
            return PeerUnavailable(f"{where} broke ({code.name}: {details or 'no details'}); "
                                   f"{self.peer} is gone or stopped")
        return ProtocolAbort(f"{self.peer} refused a message on {where}: {details or code.name}")

    def _fail(self, exc: VflError) -> None:
        if self._error is None:
            self._error = exc
        if not self._ending:  # a failure after the end of the job concerns no one
            self._inbox.fail_local(exc)

    # -- the Channel protocol --------------------------------------------------------------
    def _transmit(self, env: Envelope, data: bytes) -> None:
        self._queue.put((env, data))

    def _finish(self, timeout: float) -> bool:
        """End the stream after what is queued; True once the peer confirmed all of it."""
        if not self._ending:
            self._ending = True
            self._queue.put(None)
        return self._ended.wait(timeout) and self._error is None

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (up to ``timeout``, default the deadline), then close."""
        if not self._finish(self._deadline if timeout is None else timeout):
            why = self._error or f"not confirmed within {timeout or self._deadline:g} s"
            log.info("last messages to %s may not have been delivered: %s", self.peer, why)
        self._grpc.close()
        self._runner.join(5.0)
