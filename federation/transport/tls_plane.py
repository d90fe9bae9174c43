"""The party-to-party data plane: one raw mutual-TLS socket per peer and job.

Why not a gRPC stream: gRPC's synchronous Python stack wakes three threads per message
(caller -> request-iterator thread; server poll thread -> stream reader -> caller) and spends
~0.5 ms of CPU per exchange on its own machinery; an iteration of the fit is one exchange,
so that was most of it (bench/RESULTS.md, "Stream transport"). Here a message costs one
write on the sender's own thread and one wake-up of the receiver: of the party itself in a
node (``tls_direct``), of the listener's reader thread otherwise (tools, tests).

Negotiated through the gRPC control plane (``data_plane``): the connecting party asks its
peer's gRPC server for the data port (``Party.DataPlane``, under gRPC's mutual TLS and role
check), then opens a TLS connection to that port with the same node certificate. Both ends
require a certificate from the federation CA naming the expected role (the client checks
the server's name as gRPC does; the server checks the client's common name, then confirms
with one byte, so a refused certificate fails the connecting party at once with one line).
A peer that serves no data plane (port 0: ``GRIDCREDIT_DATA_PLANE=grpc``) or has none (an
older version: ``Party.DataPlane`` is UNIMPLEMENTED, said in one INFO line) gets the gRPC
stream instead.
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
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from federation.protocol.errors import ConfigError, PeerUnavailable, ProtocolAbort, VflError
from federation.protocol.messages import Envelope, Role, Tag
from federation.transport.audit import AuditLog
from federation.transport.certs import NodeCerts
from federation.transport.channel import Inbox, Observer, PeerStream
from federation.transport.grpc_server import LIMIT_WAIT, accept_message, check_size, describe

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
    """This party's data-plane server: accepts its peer's connection(s) for the job.

    By default each verified connection gets a reader thread that puts its messages into
    the inbox. With ``direct`` (party nodes), the first verified connection is kept for the
    party's own thread to read (``tls_direct.DirectReader``), and later ones are refused.
    """

    def __init__(self, certs: NodeCerts, host: str, inbox: Inbox, audit: AuditLog,
                 port: int = 0, *, direct: bool = False) -> None:
        self._ctx = tls_context(certs, server=True)
        self._inbox, self._audit = inbox, LaterAudit(audit)
        self.later = self._audit
        self.direct = direct
        self._inbound: ssl.SSLSocket | None = None
        self._handed = False  # direct: a connection was kept (it may be closed since)
        self._inbound_lock = threading.Lock()
        self.on_inbound: Callable[[], None] = lambda: None
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
        if self.direct:
            self._keep(sock, peer)
            return
        with sock:
            sock.sendall(ACCEPTED)
            sock.settimeout(None)  # a silent peer is caught by recv's deadline
            self._read(sock, peer)

    def _keep(self, sock: ssl.SSLSocket, peer: Role) -> None:
        """Direct mode: keep the first verified connection for the party's thread."""
        with self._inbound_lock:
            first = not self._handed and not self._closed
            self._handed = self._handed or first
        if not first:
            log.warning("data plane: refused a second connection from %s: this job's stream "
                        "is open already", peer)
            sock.close()
            return
        try:
            sock.sendall(ACCEPTED)
        except OSError as exc:
            log.warning("data plane: the connection from %s broke at once (%s)", peer, exc)
        sock.setblocking(False)
        with self._inbound_lock:
            closed = self._closed
            if not closed:
                self._inbound = sock
        if closed:  # the listener closed meanwhile
            sock.close()
            return
        self.on_inbound()

    def inbound(self) -> ssl.SSLSocket | None:
        """Direct mode: the peer's verified connection, None before it came or once closed."""
        return self._inbound

    def drop_inbound(self) -> None:
        """Direct mode: close the peer's connection (its stream ended)."""
        with self._inbound_lock:
            sock, self._inbound = self._inbound, None
        if sock is not None:
            sock.close()

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
        with self._inbound_lock:
            self._closed = True
        self._sock.close()
        self.drop_inbound()
        self.later.flush()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class Reader(Protocol):
    """What ``TlsChannel`` needs of a reader on the party's own thread
    (``tls_direct.DirectReader``)."""

    def wait_for(self, tag: Tag, timeout: float) -> Envelope: ...

    def send(self, sock: ssl.SSLSocket, data: bytes | memoryview) -> None: ...

    def until_closed(self, sock: ssl.SSLSocket, timeout: float) -> bool: ...

    def close(self) -> None: ...


class TlsChannel(PeerStream):
    """This party's end of the data plane: sends on its own connection to the peer's
    ``DataListener``; receives through its own listener into ``inbox``, or, given a
    ``reader`` (``tls_direct``), reads the peer's connection on the caller's thread."""

    def __init__(self, role: Role, peer_address: str, port: int, certs: NodeCerts,
                 inbox: Inbox, later: LaterAudit, deadline: float,
                 reader: Reader | None = None) -> None:
        self.role, self.peer, self.address = role, inbox.peer, peer_address
        self._inbox, self._later, self._deadline = inbox, later, deadline
        self._audit = later.audit
        self._bytes_sent = 0
        self._lock = threading.Lock()
        self._ending = False
        self._error: VflError | None = None
        self.observers: list[Observer] = []
        self._reader = reader
        self._sock = self._connect(peer_address.rpartition(":")[0].strip("[]"), port, certs)
        if reader is not None:
            self._sock.setblocking(False)

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
                self._write(head + data if len(data) < JOIN_LIMIT else head)
                if len(data) >= JOIN_LIMIT:
                    self._write(data)
        except (OSError, ValueError) as exc:
            self._error = PeerUnavailable(f"the stream to {self.peer} at {self.address} broke "
                                          f"({exc}); {self.peer} is gone or stopped")
            self._inbox.fail_local(self._error)
            raise self._error from None
        except VflError as exc:  # direct: the peer took no bytes for the deadline, or aborted
            self._error = exc
            self._inbox.fail_local(exc)
            raise
        # The bytes are with the kernel: log while the peer computes its reply.
        self._later.flush()
        self._audit.record(direction="sent", peer=self.peer.value, job=env.job_id,
                           round_=env.tag.round, step=env.tag.step, payload=data,
                           tensors=describe(env.tensors))

    def _after_abort_notice(self) -> None:
        """Read directly, the peer takes the notice at its next wait (as a busy peer did
        from its reader thread): hand the closing frame to the kernel, which delivers it,
        without waiting for a confirmation that would hold this party's failure report."""
        if self._reader is None:
            super()._after_abort_notice()
            return
        self._ending = True
        try:
            with self._lock:
                self._write(HEADER.pack(0))
        except (VflError, OSError, ValueError) as exc:
            log.info("could not end the stream to %s after the abort notice: %s", self.peer,
                     exc)

    def _write(self, data: bytes) -> None:
        if self._reader is None:
            self._sock.sendall(data)
        else:
            self._reader.send(self._sock, data)

    def recv(self, tag: Tag, timeout: float) -> Envelope:
        self._later.flush()
        if self._reader is None:
            return super().recv(tag, timeout)
        env = self._reader.wait_for(tag, timeout)
        for observe in self.observers:
            observe("received", env)
        return env

    def _finish(self, timeout: float) -> bool:
        """Send the closing frame; True once the peer closed its end (it read everything)."""
        if self._ending:
            return True
        self._ending = True
        if self._error is not None:  # a frame may be cut short: no closing frame after it
            return False
        try:
            with self._lock:
                self._write(HEADER.pack(0))
            if self._reader is not None:
                return self._reader.until_closed(self._sock, timeout)
            self._sock.settimeout(max(timeout, 0.001))
            end = time.monotonic() + timeout
            while time.monotonic() < end:  # the peer closes once it read the closing frame
                if not self._sock.recv(1):
                    return True
        except (OSError, ValueError, PeerUnavailable):
            return self._error is None
        return False

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is sent (up to ``timeout``, default the deadline), then close."""
        if not self._finish(self._deadline if timeout is None else timeout):
            log.info("last messages to %s may not have been confirmed", self.peer)
        self._sock.close()
        if self._reader is not None:
            self._reader.close()
        self._later.flush()
