"""The data plane read on the party's own thread: no reader thread, one wake-up per message.

Why: with a reader thread (``tls_plane.DataListener``'s default), every message costs a chain
of two wake-ups, the reader and then the party blocked in ``recv``, and GIL hand-offs
between them. Two processes on loopback exchanging a 16 kB message each way, with ~0.2 ms
of numpy between exchanges: ~0.34-0.39 ms per exchange with a reader thread, ~0.24 ms read
on the caller (bench/RESULTS.md, "Reading on the party's thread"). Party nodes use this
(``DataListener(direct=True)``); a listener without a channel (tests, tools) keeps its
reader thread.

How: the listener verifies the peer's connection as before and hands it over here.
``DirectReader`` reads it on whichever thread holds its lock:

- ``wait_for`` (the channel's ``recv``) reads frames into the inbox until the wanted tag
  is there or the deadline passes;
- ``send`` writes without blocking and, whenever the socket is full, reads the peer's
  frames meanwhile: both parties may send a large message at once (the masked features E
  of every job), and with no reader thread two blocking ``sendall`` would wait on each
  other forever;
- ``until_closed`` (the channel's ``close``) reads until the peer's closing frame, then
  waits for the peer to confirm ours, so two parties closing at once both finish.

Reading never waits inside a frame: a partly read frame is kept and continued at the next
wait, so two parties that both write a large message read each other piecemeal between
their own writes. Frames, size bound, checks, failure texts and audit entries are the reader
thread's (``tls_plane``); any refusal fails the inbox, which the next ``recv`` raises. A
write that makes no progress for the channel's deadline fails the job. Whatever else changes
the inbox (the gRPC servicer, another thread's failure) wakes a waiting reader through a
socket pair.
Assumes: one channel per listener and job; the caller set its sockets non-blocking.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time

from federation.protocol.errors import PeerUnavailable, ProtocolAbort, VflError
from federation.protocol.messages import Envelope, Tag
from federation.transport.channel import Inbox
from federation.transport.grpc_server import LIMIT_WAIT, accept_message, check_size
from federation.transport.tls_plane import HEADER, DataListener, LaterAudit

BLOCKED = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)


class _Blocked(Exception):
    """The peer's connection has no more bytes for now."""


class DirectReader:
    """The peer's connection into ``listener``, read by the party's own thread."""

    def __init__(self, listener: DataListener, inbox: Inbox, later: LaterAudit,
                 deadline: float) -> None:
        self._listener, self._inbox, self._later = listener, inbox, later
        self._deadline = deadline  # longest a started frame or a full socket may stall
        self._role = inbox.peer
        self._lock = threading.Lock()  # one thread reads at a time
        self._reader = 0  # the ident of that thread: its own inbox changes wake no one
        self._wake_r, self._wake_w = socket.socketpair()  # closed: sending fails, no reuse
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._count = 0
        self._head = memoryview(bytearray(HEADER.size))  # the frame being read: its size,
        self._body: memoryview | None = None  # then its message
        self._got = 0
        self.ended = False  # the peer's closing frame was read, or its stream broke
        inbox.on_change(self._wake)
        listener.on_inbound = self._wake

    # -- waking ----------------------------------------------------------------------------
    def _wake(self) -> None:
        if threading.get_ident() != self._reader:
            try:
                self._wake_w.send(b"\0")
            except OSError:  # full (a wake-up is pending anyway) or closed
                pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:  # empty
            pass

    # -- reading ---------------------------------------------------------------------------
    def wait_for(self, tag: Tag, timeout: float) -> Envelope:
        """The message with ``tag``: read frames until it is in the inbox (``recv``)."""
        deadline = time.monotonic() + timeout
        while (env := self._inbox.take(tag)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._inbox.missing(tag, timeout)
            self._pump(left)
        return env

    def _pump(self, timeout: float, writable: ssl.SSLSocket | None = None,
              readable: ssl.SSLSocket | None = None) -> None:
        """Wait at most ``timeout`` s for bytes of the peer's, read what is there (a whole
        frame goes into the inbox); return early when woken, or when ``writable`` can take
        bytes or ``readable`` has some."""
        if not self._lock.acquire(blocking=False):  # another thread reads: let it
            select.select([readable] if readable else [], [writable] if writable else [], [],
                          min(timeout, 0.05))
            return
        try:
            self._reader = threading.get_ident()
            sock = None if self.ended else self._listener.inbound()
            if sock is not None and sock.pending():  # decrypted bytes the kernel no longer has
                self._advance(sock)
                return
            watch: list[socket.socket] = [self._wake_r]
            watch += [s for s in (sock, readable) if s is not None]
            try:
                ready, _, _ = select.select(watch, [writable] if writable else [], [], timeout)
            except (OSError, ValueError) as exc:  # a socket closed under us (shutting down)
                self._end()
                self._inbox.fail_local(PeerUnavailable(
                    f"the stream from {self._role} was closed on this side ({exc})"))
                return
            if self._wake_r in ready:
                self._drain_wake()
            if sock is not None and sock in ready:
                self._advance(sock)
        finally:
            self._reader = 0
            self._lock.release()

    def _advance(self, sock: ssl.SSLSocket) -> None:
        """Read what the peer's connection holds now, never waiting; return once a message
        went into the inbox or nothing more is there. A refusal or a broken stream fails
        the inbox. Never waits inside a frame: while both parties send large messages, each
        reads the other's piecemeal between its own writes."""
        role = self._role
        try:
            while not self.ended:
                if self._body is None:
                    self._got += self._take(sock, self._head[self._got:], "")
                    if self._got < HEADER.size:
                        continue
                    size, self._got = HEADER.unpack(self._head)[0], 0
                    if size == 0:
                        self._end()
                        return
                    check_size(size, self._inbox.limit(LIMIT_WAIT), role)
                    self._body = memoryview(bytearray(size))
                    continue
                self._got += self._take(sock, self._body[self._got:],
                                        f"ended inside a message (of {len(self._body)} bytes)")
                if self._got == len(self._body):
                    data, self._body, self._got = self._body.toreadonly(), None, 0
                    accept_message(self._inbox, self._later, data, role)
                    self._count += 1
                    return
        except _Blocked:
            return
        except VflError as exc:
            self._end()
            self._inbox.fail_local(exc)
        except (MemoryError, OverflowError):  # a size with no bound set (tools, tests)
            self._end()
            self._inbox.fail_local(ProtocolAbort(
                f"a message from {role} announced more bytes than this node can hold"))
        except (OSError, ValueError) as exc:  # reset, TLS error, closed under us
            self._end()
            self._inbox.fail_local(PeerUnavailable(
                f"the stream from {role} broke after {self._count} messages ({exc}): "
                f"{role} is gone"))

    def _take(self, sock: ssl.SSLSocket, view: memoryview, inside: str) -> int:
        """Bytes read into ``view`` (> 0); raises ``_Blocked`` if none are there yet."""
        try:
            n = sock.recv_into(view)
        except BLOCKED:
            raise _Blocked from None
        if n:
            return n
        role = self._role
        raise PeerUnavailable(f"the stream from {role} {inside}: {role} is gone" if inside else
                              f"the stream from {role} broke (it ended without its closing "
                              f"frame after {self._count} messages): {role} is gone")

    def _end(self) -> None:
        """No more frames: close the peer's connection (it confirms our reading to it)."""
        self.ended = True
        self._listener.drop_inbound()

    # -- writing ---------------------------------------------------------------------------
    def send(self, sock: ssl.SSLSocket, data: bytes | memoryview) -> None:
        """Write all of ``data`` to the non-blocking ``sock``, reading the peer meanwhile."""
        view, sent = memoryview(data), 0
        stalled = time.monotonic() + self._deadline
        while sent < len(view):
            try:
                sent += sock.send(view[sent:])  # TLS: the same bytes again after a block
                stalled = time.monotonic() + self._deadline
                continue
            except BLOCKED:
                pass
            left = stalled - time.monotonic()
            if left <= 0:
                raise PeerUnavailable(f"{self._role} took none of a message's bytes within "
                                      f"{self._deadline:g} s ({sent} of {len(view)} sent)")
            self._pump(left, writable=sock)
            self._inbox.raise_if_aborted()  # the peer stopped: its reason, not a broken write

    def until_closed(self, sock: ssl.SSLSocket, timeout: float) -> bool:
        """After our closing frame: wait for the peer to close ``sock`` (it read
        everything) while reading its frames up to its own closing frame (then we close
        its connection, which is its confirmation). True if the peer confirmed within
        ``timeout``; returns early only once both happened, so two parties closing at the
        same moment both finish at once."""
        end, confirmed = time.monotonic() + timeout, False
        while (left := end - time.monotonic()) > 0:
            if not confirmed:
                try:
                    confirmed = not sock.recv(1)
                except BLOCKED:
                    pass
            if confirmed and self.ended:
                return True
            self._pump(left, readable=None if confirmed else sock)
        return confirmed

    def close(self) -> None:
        """The channel closed: nothing reads the peer's connection any more; close it."""
        self._end()
        self._wake_w.close()
        self._wake_r.close()
