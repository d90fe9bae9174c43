"""A fault-injecting TCP proxy for ``bench/chaos.py`` (loopback only).

It stands in front of one party, on two ports: the party's gRPC server and its TLS data
plane (``federation.transport.tls_plane``, the default party-to-party transport). The party
advertises the proxy's gRPC address (``advertise``) and names the proxy's data port in its
``Party.DataPlane`` answer (``GRIDCREDIT_DATA_PLANE_ADVERTISE``): that answer travels inside
gRPC's TLS, so the proxy cannot rewrite it, and the node itself names the port its peer
dials. The proxy forwards the first port to the party's gRPC port (its ``LISTENING`` line)
and the second to its data plane (its ``DATA PLANE`` line). Both connections stay mutual TLS
end to end: the proxy sees and relays ciphertext only. Every connection gets two pump
threads, one per direction, that forward what they read chunk by chunk. With
``GRIDCREDIT_DATA_PLANE=grpc`` the parties serve no data plane and the data port stays idle.

A connection becomes *eligible* for the fault once it has carried ``eligible_bytes`` (the
party's channel carries the PSI points at once; the coordinator's health checks, which
reach the party by the same advertised address, never carry that much). The fault fires on
the ``fire_at``-th eligible chunk (counted over both directions, all connections and both
ports; ``counted`` splits the count by port, ``fired_on`` names the port of the fault):

- ``delay``: hold that chunk for ``delay_seconds`` (past the job's deadline), then forward;
- ``drop``: reset the connection (both sockets closed with SO_LINGER 0) instead of forwarding;
- ``corrupt``: flip one byte of the chunk and forward it (TLS refuses the record: the
  receiving party fails its job, naming its peer).

With ``kind=None`` the proxy only counts eligible chunks (the fault-free reference run).
Assumes: one harness thread creates and closes it; counters are read after the job.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field

CHUNK = 65536
GRPC, DATA = "gRPC", "data plane"


@dataclass
class _Relay:
    """One listening port of the proxy and the party's port it forwards to."""

    route: str
    listener: socket.socket
    upstream: tuple[str, int] | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def listen(cls, route: str) -> _Relay:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.settimeout(0.2)
        return cls(route, listener)

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def forward_to(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.ready.set()


@dataclass
class FaultProxy:
    """Listens on 127.0.0.1 (two ports chosen at run time) and forwards to the party."""

    kind: str | None = None
    fire_at: int = 0
    delay_seconds: float = 0.0
    eligible_bytes: int = 8192
    eligible_chunks: int = 0
    counted: dict[str, int] = field(default_factory=lambda: {GRPC: 0, DATA: 0})
    fired_at: float | None = None  # time.monotonic() of the fault
    fired_on: str | None = None  # GRPC or DATA: the port whose connection took the fault
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closing: threading.Event = field(default_factory=threading.Event)
    _sockets: list[socket.socket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._relays = {route: _Relay.listen(route) for route in (GRPC, DATA)}
        self.port = self._relays[GRPC].port
        self.data_port = self._relays[DATA].port  # the party names it (see the docstring)
        self._accepters = [threading.Thread(target=self._accept, args=(relay,), daemon=True,
                                            name=f"proxy-{relay.route}")
                           for relay in self._relays.values()]
        for thread in self._accepters:
            thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def forward_to(self, address: str) -> None:
        """Set the party's real gRPC ``host:port`` (known once it printed ``LISTENING``)."""
        self._relays[GRPC].forward_to(address)

    def forward_data_to(self, address: str) -> None:
        """Set the party's real data plane ``host:port`` (its ``DATA PLANE`` line)."""
        self._relays[DATA].forward_to(address)

    def _accept(self, relay: _Relay) -> None:
        while not self._closing.is_set():
            try:
                client, _ = relay.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not relay.ready.wait(10.0) or relay.upstream is None:
                client.close()
                continue
            try:
                server = socket.create_connection(relay.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            carried = [0]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump,
                                 args=(src, dst, client, server, carried, relay.route),
                                 daemon=True, name="proxy-pump").start()

    def _decide(self, carried: list[int], size: int, route: str) -> str | None:
        """Count the chunk; return the fault to apply to it, if this is the one."""
        with self._lock:
            carried[0] += size
            if carried[0] < self.eligible_bytes:
                return None
            self.eligible_chunks += 1
            self.counted[route] += 1
            if self.kind is None or self.fired_at is not None:
                return None
            if self.eligible_chunks >= self.fire_at:
                self.fired_at, self.fired_on = time.monotonic(), route
                return self.kind
            return None

    def _pump(self, src: socket.socket, dst: socket.socket, client: socket.socket,
              server: socket.socket, carried: list[int], route: str) -> None:
        try:
            while data := src.recv(CHUNK):
                fault = self._decide(carried, len(data), route)
                if fault == "drop":
                    _reset(client)
                    _reset(server)
                    return
                if fault == "corrupt":
                    middle = len(data) // 2
                    data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
                elif fault == "delay":
                    self._closing.wait(self.delay_seconds)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closing.set()
        for relay in self._relays.values():
            relay.listener.close()
        for thread in self._accepters:
            thread.join(2)
        with self._lock:
            for sock in self._sockets:
                _reset(sock)
            self._sockets.clear()


def _reset(sock: socket.socket) -> None:
    """Close with an RST, as a dropped connection looks to the other end. (Shutting reading
    down first wakes the pump blocked on it: until it returns, the kernel keeps the socket
    open, and the other end would see nothing.)"""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
