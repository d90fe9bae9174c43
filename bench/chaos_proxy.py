"""A fault-injecting TCP proxy for ``bench/chaos.py`` (loopback only).

A party advertises the proxy's address instead of its own, so its peer's gRPC channel
(mutual TLS, end to end: the proxy sees only ciphertext) goes through it. Every connection
gets two pump threads, one per direction, that forward what they read chunk by chunk.

A connection becomes *eligible* for the fault once it has carried ``eligible_bytes`` (the
party's channel carries the PSI points at once; the coordinator's health checks, which
reach the party by the same advertised address, never carry that much). The fault fires on
the ``fire_at``-th eligible chunk (counted over both directions and all connections):

- ``delay``: hold that chunk for ``delay_seconds`` (past the job's deadline), then forward;
- ``drop``: reset the connection (both sockets closed with SO_LINGER 0) instead of forwarding;
- ``corrupt``: flip one byte of the chunk and forward it (TLS refuses the record).

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


@dataclass
class FaultProxy:
    """Listens on 127.0.0.1 (port chosen at run time) and forwards to ``upstream``."""

    kind: str | None = None
    fire_at: int = 0
    delay_seconds: float = 0.0
    eligible_bytes: int = 8192
    upstream: tuple[str, int] | None = None
    eligible_chunks: int = 0
    fired_at: float | None = None  # time.monotonic() of the fault
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closing: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _sockets: list[socket.socket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._accepter = threading.Thread(target=self._accept, daemon=True, name="proxy")
        self._accepter.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def forward_to(self, address: str) -> None:
        """Set the party's real ``host:port`` (known once it printed ``LISTENING``)."""
        host, port = address.rsplit(":", 1)
        self.upstream = (host, int(port))
        self._ready.set()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._ready.wait(10.0) or self.upstream is None:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            carried = [0]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst, client, server, carried),
                                 daemon=True, name="proxy-pump").start()

    def _decide(self, carried: list[int], size: int) -> str | None:
        """Count the chunk; return the fault to apply to it, if this is the one."""
        with self._lock:
            carried[0] += size
            if carried[0] < self.eligible_bytes:
                return None
            self.eligible_chunks += 1
            if self.kind is None or self.fired_at is not None:
                return None
            if self.eligible_chunks >= self.fire_at:
                self.fired_at = time.monotonic()
                return self.kind
            return None

    def _pump(self, src: socket.socket, dst: socket.socket, client: socket.socket,
              server: socket.socket, carried: list[int]) -> None:
        try:
            while data := src.recv(CHUNK):
                fault = self._decide(carried, len(data))
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
        self._listener.close()
        self._accepter.join(2)
        with self._lock:
            for sock in self._sockets:
                _reset(sock)
            self._sockets.clear()


def _reset(sock: socket.socket) -> None:
    """Close with an RST, as a dropped connection looks to the other end."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
