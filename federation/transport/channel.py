"""Party-to-party channels: a ``Channel`` protocol, the tag-matched ``Inbox`` behind it,
and an in-memory pair for tests.

Every message is matched by ``Tag(round, step)``, never by arrival order. The inbox
rejects a message for another job, from another sender, with a tag it has already
seen, for a round it has already passed, or for a round too far ahead; each rejection
is one readable line. ``recv`` waits at most its deadline, then raises
``PeerUnavailable``; an abort notice from the peer wakes every waiter at once. The inbox
also holds the job's bound on one message's size, which the transport checks before it
buffers a message (``federation.protocol.limits``).
Assumes: the transport authenticated the sender (mutual TLS) before ``put``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from federation.protocol.errors import PeerUnavailable, ProtocolAbort, VflError
from federation.protocol.messages import (
    DealReply,
    DealRequest,
    Envelope,
    FailRequest,
    JobPlan,
    JoinRequest,
    Role,
    SyncReply,
    SyncRequest,
    Tag,
)
from federation.transport import wire

ABORT_STEP = "abort"
# A party is never more than one exchange ahead of its peer; allow a little slack.
ROUND_WINDOW = 2

Observer = Callable[[str, Envelope], None]


class Channel(Protocol):
    """What party code sees of the network."""

    def send(self, env: Envelope) -> None: ...

    def recv(self, tag: Tag, timeout: float) -> Envelope: ...

    def abort(self, reason: str) -> None: ...

    @property
    def bytes_sent(self) -> int: ...


class Inbox:
    """Messages that arrived from the one peer, waiting to be claimed by tag."""

    def __init__(self, job_id: str, peer: Role, max_message_bytes: int | None = 0) -> None:
        self.job_id = job_id
        self.peer = peer
        self._limit = max_message_bytes  # 0: no bound; None: set from the plan (set_limit)
        self._cond = threading.Condition()
        self._pending: dict[Tag, Envelope] = {}
        self._seen: set[Tag] = set()
        self._cursor = 0
        self._aborted: str | None = None
        self._failure: VflError | None = None
        self._on_change: list[Callable[[], None]] = []

    def on_change(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` (under the inbox's lock) whenever a message, an abort or a failure
        arrives: a party reading its own socket (``tls_direct``) waits on that, not here."""
        self._on_change.append(hook)

    def _changed(self) -> None:
        self._cond.notify_all()
        for hook in self._on_change:
            hook()

    def put(self, env: Envelope) -> None:
        """Accept one message or raise ``ProtocolAbort`` saying why not."""
        if env.job_id != self.job_id:
            raise ProtocolAbort(
                f"message for job {env.job_id!r} rejected: this node runs job {self.job_id!r}"
            )
        if env.sender is not self.peer:
            raise ProtocolAbort(f"message from {env.sender} rejected: expected {self.peer}")
        with self._cond:
            if env.tag.step == ABORT_STEP:
                reason = np.asarray(env.tensors.get("reason", np.array([""]))).reshape(-1)
                self._aborted = str(reason[0]) if reason.size else "no reason given"
                self._changed()
                return
            self._check_tag(env.tag)
            self._seen.add(env.tag)
            self._pending[env.tag] = env
            self._changed()

    def _check_tag(self, tag: Tag) -> None:
        if tag in self._seen:
            raise ProtocolAbort(
                f"duplicate or replayed message from {self.peer}: round {tag.round}, "
                f"step {tag.step!r} was already received"
            )
        if tag.round < self._cursor:
            raise ProtocolAbort(
                f"message from {self.peer} for past round {tag.round} (step {tag.step!r}) "
                f"rejected: this node is at round {self._cursor}"
            )
        if tag.round > self._cursor + ROUND_WINDOW:
            raise ProtocolAbort(
                f"message from {self.peer} for future round {tag.round} (step {tag.step!r}) "
                f"rejected: this node is at round {self._cursor}"
            )

    def get(self, tag: Tag, timeout: float) -> Envelope:
        """Claim the message with ``tag``, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (env := self.take(tag)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.missing(tag, timeout)
                self._cond.wait(left)
            return env

    def take(self, tag: Tag) -> Envelope | None:
        """The message with ``tag`` if it is here, else None (no waiting); raises this
        node's failure or the peer's abort once there is no such message."""
        with self._cond:
            self._cursor = max(self._cursor, tag.round)
            env = self._pending.pop(tag, None)
            if env is None and self._failure is not None:
                raise self._failure
            if env is None:
                self.raise_if_aborted()
            return env

    def raise_if_aborted(self) -> None:
        """Raise the peer's abort notice, if one came."""
        with self._cond:
            if self._aborted is not None:
                raise ProtocolAbort(f"{self.peer} aborted the job: {self._aborted}")

    def missing(self, tag: Tag, timeout: float) -> PeerUnavailable:
        """The error of a ``recv`` that waited ``timeout`` s for ``tag`` in vain."""
        return PeerUnavailable(f"no message from {self.peer} for round {tag.round}, "
                               f"step {tag.step!r} within {timeout:g} s")

    def set_limit(self, max_message_bytes: int) -> None:
        """The largest message the peer may send in this job (from the plan; 0: no bound)."""
        with self._cond:
            self._limit = max_message_bytes
            self._changed()

    def limit(self, timeout: float) -> int:
        """The message size bound, waiting at most ``timeout`` s for the plan to set it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._limit is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProtocolAbort(f"message from {self.peer} refused: this node has no "
                                        f"plan for job {self.job_id!r} yet")
                self._cond.wait(left)
            return self._limit

    def fail_local(self, error: VflError) -> None:
        """Wake every waiter with this node's own failure (e.g. its peer is unreachable)."""
        with self._cond:
            self._failure = error
            self._changed()


def abort_envelope(job_id: str, sender: Role, reason: str) -> Envelope:
    """The notice a failing party sends its peer so the peer stops at once."""
    return Envelope(job_id, Tag(0, ABORT_STEP), sender, {"reason": np.array([reason[:500]])})


def claim(inbox: Inbox, observers: list[Observer], tag: Tag, timeout: float) -> Envelope:
    """A channel's ``recv``: the message with ``tag`` from ``inbox``, the observers told."""
    env = inbox.get(tag, timeout)
    for observe in observers:
        observe("received", env)
    return env


ABORT_WAIT = 5.0  # how long an abort notice may take to reach the peer
log = logging.getLogger(__name__)


class PeerStream:
    """What the two network channels to the peer share (``stream.GrpcChannel`` and
    ``tls_plane.TlsChannel``): sending (refused once broken or ended; serialized once,
    counted, the observers told), receiving through the inbox, the best-effort abort notice.
    Subclasses set the attributes below and define ``_transmit`` (put one serialized message
    on the wire), ``_finish`` (send the closing frame; True once the peer confirmed) and
    ``close``."""

    role: Role
    peer: Role
    observers: list[Observer]
    _inbox: Inbox
    _error: VflError | None
    _ending: bool
    _bytes_sent: int

    def _transmit(self, env: Envelope, data: bytes) -> None:
        raise NotImplementedError

    def _finish(self, timeout: float) -> bool:
        raise NotImplementedError

    def close(self, timeout: float | None = None) -> None:
        raise NotImplementedError

    def send(self, env: Envelope) -> None:
        if self._error is not None:
            raise self._error
        if self._ending:
            raise ProtocolAbort(f"the stream to {self.peer} is closed")
        data = wire.envelope_to_bytes(env)
        self._transmit(env, data)
        self._bytes_sent += len(data)
        for observe in self.observers:
            observe("sent", env)

    def recv(self, tag: Tag, timeout: float) -> Envelope:
        # A broken stream failed the inbox already; a message that arrived before the break
        # (the peer's last, before it finished and stopped its server) is still handed out.
        return claim(self._inbox, self.observers, tag, timeout)

    def abort(self, reason: str) -> None:
        """Best effort: tell the peer to stop now rather than at its deadline."""
        if self._error is not None or self._ending:
            return
        try:
            self.send(abort_envelope(self._inbox.job_id, self.role, reason))
        except VflError as exc:
            log.info("could not notify %s of the abort: %s", self.peer, exc)
            return
        self._after_abort_notice()

    def _after_abort_notice(self) -> None:
        """End the stream after the abort notice, waiting up to ``ABORT_WAIT`` for the
        peer's confirmation."""
        if not self._finish(ABORT_WAIT):
            log.info("the abort notice to %s was not confirmed within %g s", self.peer,
                     ABORT_WAIT)

    @property
    def bytes_sent(self) -> int:
        return self._bytes_sent


class InMemoryChannel:
    """One end of an in-process channel pair; payloads are copied as the wire would."""

    def __init__(self, role: Role, inbox: Inbox, peer_inbox: Inbox) -> None:
        self.role = role
        self._inbox = inbox
        self._peer_inbox = peer_inbox
        self._bytes_sent = 0
        self.observers: list[Observer] = []

    @staticmethod
    def pair(job_id: str) -> tuple[InMemoryChannel, InMemoryChannel]:
        """(grid end, bank end) of one job."""
        grid_inbox, bank_inbox = Inbox(job_id, Role.BANK), Inbox(job_id, Role.GRID)
        return (
            InMemoryChannel(Role.GRID, grid_inbox, bank_inbox),
            InMemoryChannel(Role.BANK, bank_inbox, grid_inbox),
        )

    def send(self, env: Envelope) -> None:
        copied = Envelope(env.job_id, env.tag, env.sender,
                          {k: np.array(v, copy=True) for k, v in env.tensors.items()})
        for observe in self.observers:
            observe("sent", copied)
        self._bytes_sent += copied.nbytes()
        self._peer_inbox.put(copied)

    def recv(self, tag: Tag, timeout: float) -> Envelope:
        return claim(self._inbox, self.observers, tag, timeout)

    def abort(self, reason: str) -> None:
        self._peer_inbox.put(abort_envelope(self._inbox.job_id, self.role, reason))

    @property
    def bytes_sent(self) -> int:
        return self._bytes_sent


class CoordinatorLink(Protocol):
    """What a party sees of the coordinator (gRPC stub or the ``Coordinator`` itself)."""

    def join(self, req: JoinRequest) -> JobPlan: ...

    def sync(self, req: SyncRequest) -> SyncReply: ...

    def deal(self, req: DealRequest) -> DealReply: ...

    def fail(self, req: FailRequest) -> None: ...
