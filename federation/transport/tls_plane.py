"""The party-to-party data plane: one raw mutual-TLS socket per peer and job.

Why not a gRPC stream: gRPC's synchronous Python stack wakes three threads per message
(caller -> request-iterator thread; server poll thread -> stream reader -> caller) and spends
~0.5 ms of CPU per exchange on its own machinery; an iteration of the fit is one exchange,
so that was most of it (bench/RESULTS.md, "Stream transport"). Here a message costs one
``sendall`` on the sender's own thread and one wake-up of the receiver's reader thread.

Negotiated through the gRPC control plane: the connecting party asks its peer's gRPC server
for the data port (``Party.DataPlane``, under gRPC's mutual TLS and role check), then opens
a TLS connection to that port with the same node certificate. Both ends require a
certificate from the federation CA naming the expected role (the client checks the server's
name as gRPC does; the server checks the client's common name, then confirms with one byte,
so a refused certificate fails the connecting party at once with one line). A peer that
serves no data plane (port 0: ``GRIDCREDIT_DATA_PLANE=grpc``) or has none (an older version:
``Party.DataPlane`` is UNIMPLEMENTED, said in one INFO line) gets the gRPC stream instead.
The answer names the listening port, or ``GRIDCREDIT_DATA_PLANE_ADVERTISE``'s: a forwarder's
in front of the data plane, dialled at the host of the node's advertised gRPC address (the
chaos harness's fault proxy; it relays the TLS bytes, never the plaintext).

Frames: an 8-byte little-endian size, then that many bytes of a serialized ``Envelope``; a
size of 0 closes the stream on purpose (a stream that stops without it means the peer died).
The receiver refuses a size above the job's bound before reading the message, puts each
message into the inbox (which refuses another job, sender, replayed tag, past or far-future
round) and writes its audit entry; the sender writes its audit entry once the bytes are
with the kernel. Any refusal closes the connection and fails the job.
Assumes: both parties hold certificates of the federation CA (``federation.transport.certs``).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
import threading
import time
from collections import deque
from typing import Any

import grpc

from federation.proto import vfl_pb2, vfl_pb2_grpc
from federation.protocol.errors import ConfigError, PeerUnavailable, ProtocolAbort, VflError
from federation.protocol.messages import Envelope, Role, Tag
from federation.transport.audit import AuditLog
from federation.transport.certs import NodeCerts
from federation.transport.channel import Inbox, Observer, PeerStream
from federation.transport.grpc_client import call, secure_channel
from federation.transport.grpc_server import LIMIT_WAIT, accept_message, check_size, describe
from federation.transport.stream import GrpcChannel

log = logging.getLogger(__name__)
HEADER = struct.Struct("<Q")
ACCEPTED = b"\x01"  # the server's confirmation that it accepted the client's certificate
HANDSHAKE_SECONDS = 10.0
JOIN_LIMIT = 1 << 20  # smaller messages go out with their header in one TLS record


def tls_context(certs: NodeCerts, server: bool) -> ssl.SSLContext:
    """Mutual TLS (1.2 or later) with the federation CA only, this node's certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certs.cert, certs.key)
    ctx.load_verify_locations(cafile=str(certs.ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def common_name(sock: ssl.SSLSocket) -> str:
    """The common name of the peer's (verified) certificate, "" if none."""
    cert: dict[str, Any] = dict(sock.getpeercert() or {})
    for rdn in cert.get("subject", ()):
        for pair in rdn:
            if pair[0] == "commonName":
                return str(pair[1])
    return ""


def _read_exact(sock: ssl.SSLSocket, size: int) -> memoryview | None:
    """Exactly ``size`` bytes (read-only), or None if the stream ended first."""
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = sock.recv_into(view[got:])
        if not n:
            return None
        got += n
    return view.toreadonly()


class LaterAudit:
    """Audit entries of received messages, written later by the receiving party's own thread
    while it waits for its peer (``flush``), not by the reader thread, where hashing and
    writing would compete for the GIL with the party it just woke."""

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit
        self._queue: deque[dict[str, Any]] = deque()

    def record(self, *, direction: str, peer: str, job: str, round_: int, step: str,
               payload: bytes | memoryview,
               tensors: list[dict[str, Any]] | None = None) -> None:
        self._queue.append({"direction": direction, "peer": peer, "job": job,
                            "round_": round_, "step": step, "payload": payload,
                            "tensors": tensors})

    def flush(self) -> None:
        while self._queue:
            self.audit.record(**self._queue.popleft())


class DataListener:
    """This party's data-plane server: accepts its peer's connection(s) for the job."""

    def __init__(self, certs: NodeCerts, host: str, inbox: Inbox, audit: AuditLog,
                 port: int = 0) -> None:
        self._ctx = tls_context(certs, server=True)
        self._inbox, self._audit = inbox, LaterAudit(audit)
        self.later = self._audit
        try:
            self._sock = socket.create_server((host, port), family=_family(host))
        except OSError as exc:
            raise ConfigError(f"cannot listen for the data plane on {host}:{port}: the port is "
                              f"in use or the address is not this machine's ({exc.strerror}); "
                              "choose another data port ([node] data_port or --data-port, "
                              "0 picks a free one)") from None
        self.port: int = self._sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, name="data-plane-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), name="data-plane-reader",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        peer = self._inbox.peer
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(HANDSHAKE_SECONDS)
            sock = self._ctx.wrap_socket(conn, server_side=True)
        except (OSError, ValueError) as exc:
            log.warning("data plane: refused a connection: TLS handshake failed (%s)", exc)
            conn.close()
            return
        got = common_name(sock)
        if got != peer.value:
            log.warning("data plane: refused a connection: certificate names role %r; "
                        "this node accepts %s", got, peer)
            sock.close()
            return
        with sock:
            sock.sendall(ACCEPTED)
            sock.settimeout(None)  # a silent peer is caught by recv's deadline
            self._read(sock, peer)

    def _read(self, sock: ssl.SSLSocket, role: Role) -> None:
        """Put each message into the inbox until the closing frame; any failure ends the job."""
        count = 0
        try:
            while True:
                head = _read_exact(sock, HEADER.size)
                if head is None:
                    raise PeerUnavailable(f"the stream from {role} broke (it ended without its "
                                          f"closing frame after {count} messages): {role} "
                                          "is gone")
                size = HEADER.unpack(head)[0]
                if size == 0:
                    return
                check_size(size, self._inbox.limit(LIMIT_WAIT), role)
                data = _read_exact(sock, size)
                if data is None:
                    raise PeerUnavailable(f"the stream from {role} ended inside a message "
                                          f"(of {size} bytes): {role} is gone")
                accept_message(self._inbox, self._audit, data, role)
                count += 1
        except VflError as exc:
            self._inbox.fail_local(exc)
        except (OSError, ValueError) as exc:  # reset, TLS error, closed under us
            if not self._closed:
                self._inbox.fail_local(PeerUnavailable(
                    f"the stream from {role} broke after {count} messages ({exc}): "
                    f"{role} is gone"))

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        self.later.flush()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def data_port(address: str, certs: NodeCerts, peer: Role, job_id: str, deadline: float) -> int:
    """Ask the peer's gRPC server for its data-plane port (0: it has none).

    A peer of a version from before the data plane has no ``Party.DataPlane``: its server
    answers UNIMPLEMENTED, which means 0 here (said in one INFO line), not a failure. Every
    other answer is ``call``'s: UNAVAILABLE retried, a refusal (role, job) fails the job.
    """
    channel = secure_channel(address, certs, peer)
    stub = vfl_pb2_grpc.PartyStub(channel)  # type: ignore[no-untyped-call]

    def ask() -> int:
        try:
            reply = stub.DataPlane(vfl_pb2.DataPlaneRequest(job_id=job_id), timeout=deadline)
        except grpc.RpcError as exc:
            if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise
            log.info("%s at %s has no data plane (an older version: Party.DataPlane is "
                     "UNIMPLEMENTED); party messages go on the gRPC stream", peer, address)
            return 0
        return int(reply.port)

    try:
        return call(f"sending to {peer} at {address}", ask, retry_for=deadline)
    finally:
        channel.close()


class TlsChannel(PeerStream):
    """This party's end of the data plane: sends on its own connection to the peer's
    ``DataListener``; receives through its own listener into ``inbox``."""

    def __init__(self, role: Role, peer_address: str, port: int, certs: NodeCerts,
                 inbox: Inbox, later: LaterAudit, deadline: float) -> None:
        self.role, self.peer, self.address = role, inbox.peer, peer_address
        self._inbox, self._later, self._deadline = inbox, later, deadline
        self._audit = later.audit
        self._bytes_sent = 0
        self._lock = threading.Lock()
        self._ending = False
        self._error: VflError | None = None
        self.observers: list[Observer] = []
        self._sock = self._connect(peer_address.rpartition(":")[0].strip("[]"), port, certs)

    def _connect(self, host: str, port: int, certs: NodeCerts) -> ssl.SSLSocket:
        where = f"the data plane of {self.peer} at {host}:{port}"
        ctx = tls_context(certs, server=False)
        try:
            raw = socket.create_connection((host, port), timeout=self._deadline)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = ctx.wrap_socket(raw, server_hostname=self.peer.value)
        except ssl.SSLError as exc:
            raise ProtocolAbort(f"TLS handshake with {where} refused ({exc}); one side's "
                                "certificate is not from the federation CA, has expired, or "
                                "names another role") from None
        except OSError as exc:
            raise PeerUnavailable(f"cannot reach {where}: {exc}") from None
        try:
            if common_name(sock) != self.peer.value:
                raise ProtocolAbort(f"{where} presented a certificate naming "
                                    f"{common_name(sock)!r}, not {self.peer}")
            if sock.recv(1) != ACCEPTED:  # TLS 1.3: a refused client certificate shows here
                raise ProtocolAbort(f"{where} refused this node's certificate (TLS handshake: "
                                    "it is not from the federation CA, has expired, or names "
                                    "another role)")
        except (OSError, ProtocolAbort) as exc:
            sock.close()
            if isinstance(exc, ProtocolAbort):
                raise
            raise ProtocolAbort(f"{where} refused this node's certificate ({exc})") from None
        sock.settimeout(None)
        return sock

    # -- the Channel protocol --------------------------------------------------------------
    def _transmit(self, env: Envelope, data: bytes) -> None:
        head = HEADER.pack(len(data))
        try:
            with self._lock:
                if len(data) < JOIN_LIMIT:
                    self._sock.sendall(head + data)
                else:
                    self._sock.sendall(head)
                    self._sock.sendall(data)
        except (OSError, ValueError) as exc:
            self._error = PeerUnavailable(f"the stream to {self.peer} at {self.address} broke "
                                          f"({exc}); {self.peer} is gone or stopped")
            self._inbox.fail_local(self._error)
            raise self._error from None
        # The bytes are with the kernel: log while the peer computes its reply.
        self._later.flush()
        self._audit.record(direction="sent", peer=self.peer.value, job=env.job_id,
                           round_=env.tag.round, step=env.tag.step, payload=data,
                           tensors=describe(env.tensors))

    def recv(self, tag: Tag, timeout: float) -> Envelope:
        self._later.flush()
        return super().recv(tag, timeout)

    def _finish(self, timeout: float) -> bool:
        """Send the closing frame; True once the peer closed its end (it read everything)."""
        if self._ending:
            return True
        self._ending = True
        try:
            with self._lock:
                self._sock.sendall(HEADER.pack(0))
            self._sock.settimeout(max(timeout, 0.001))
            end = time.monotonic() + timeout
            while time.monotonic() < end:  # the peer closes once it read the closing frame
                if not self._sock.recv(1):
                    return True
        except (OSError, ValueError):
            return self._error is None
        return False

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is sent (up to ``timeout``, default the deadline), then close."""
        if not self._finish(self._deadline if timeout is None else timeout):
            log.info("last messages to %s may not have been confirmed", self.peer)
        self._sock.close()
        self._later.flush()


DATA_PLANE_ENV = "GRIDCREDIT_DATA_PLANE"  # "grpc": party messages on the gRPC stream instead


def tls_plane_wanted() -> bool:
    """Whether this node serves and uses the TLS data plane (the default)."""
    return os.environ.get(DATA_PLANE_ENV, "tls") != "grpc"


# The port this node names in its ``Party.DataPlane`` answer, if not its listening one: a
# forwarder's in front of the data plane (the peer dials it at the host of this node's
# advertised gRPC address), e.g. the chaos harness's fault proxy (bench/chaos_proxy.py).
DATA_PLANE_ADVERTISE_ENV = "GRIDCREDIT_DATA_PLANE_ADVERTISE"


def advertised_port(listening: int) -> int:
    """The data-plane port the peer is told: ``listening`` unless the setting names one."""
    text = os.environ.get(DATA_PLANE_ADVERTISE_ENV)
    if text is None:
        return listening
    digits = text.strip()
    if not (digits.isascii() and digits.isdecimal()) or not 0 < int(digits) < 65536:
        raise ConfigError(f"{DATA_PLANE_ADVERTISE_ENV}={text!r}: not a port (1-65535; the "
                          "port of a forwarder in front of this node's data plane)")
    return int(text)


def open_channel(role: Role, peer_address: str, certs: NodeCerts, inbox: Inbox,
                 audit: AuditLog, deadline: float,
                 plane: DataListener | None) -> PeerStream:
    """The channel to the peer: the TLS data plane if both ends serve one, else the gRPC
    stream (``federation.transport.stream``)."""
    port = data_port(peer_address, certs, inbox.peer, inbox.job_id, deadline) \
        if plane is not None else 0
    if port == 0 or plane is None:
        return GrpcChannel(role, peer_address, certs, inbox, audit, deadline)
    return TlsChannel(role, peer_address, port, certs, inbox, plane.later, deadline)
