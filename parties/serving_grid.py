"""Online scoring, the grid's side: one blinded table per key epoch, answers per request.

The protocol and what each party learns are in :mod:`parties.serving`. The grid blinds its
rows once per key epoch (``crypto.psi.oprf``), sends that table to every session opened in
the epoch, re-blinds each request's points with the epoch key, keeps its answers, and
returns its partial logits only for the rows it finds matched itself from the unblinding
keys the bank reveals (never for positions the bank names), at most once per request. An
open after ``rotate_seconds`` starts a new epoch (new key, new table); sessions of the old
epoch keep it until they close. Quotas (:mod:`parties.serving_limits`) bound rows per
session, requests and opens per minute. Thread-safe: the edge calls it from gRPC worker
threads.
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from crypto import psi
from crypto.psi import oprf
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import Envelope, Role, Tag
from parties.psi_pool import (
    PsiPool,
    hash_points_parallel,
    multiply_each_parallel,
    multiply_parallel,
)
from parties.serving import (
    DONE_WINDOW,
    EPOCH_BYTES,
    MAX_IDS,
    MAX_PENDING,
    MAX_SESSIONS,
    PENDING_SECONDS,
    ROTATE_SECONDS,
    STEP_BLINDED,
    STEP_DOUBLE,
    STEP_OPEN,
    STEP_PARTIAL,
    STEP_POINTS,
    STEP_ROWS,
    UnknownSession,
    check_session,
    epoch_domain,
    reblind,
    tensor_of,
)
from parties.serving_limits import QuotaExceeded, Quotas, RateWindow

log = logging.getLogger(__name__)
PENDING_POINTS = 200_000  # answers kept per session for open requests (32 bytes each)

# -- grid ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Epoch:
    """One key epoch: the key, the sorted table every session of the epoch gets."""

    epoch: bytes
    key: bytes
    table: psi.Points
    perm: npt.NDArray[np.intp]  # table position -> own row
    started: float


@dataclass
class _GridSession:
    session: str
    epoch: _Epoch
    pending: collections.OrderedDict[int, tuple[psi.Points, float]] = field(
        default_factory=collections.OrderedDict
    )  # round -> (the grid's answers Q_i, expiry)
    done: collections.deque[int] = field(default_factory=collections.deque)
    done_set: set[int] = field(default_factory=set)
    floor: int = 0  # rounds <= floor are finished or too old
    scored_rows: int = 0


class GridServing:
    """The grid's side: its partial logit per row, and the sessions the bank opened.

    Parameters
    ----------
    ids : sequence of str
        The grid's enterprise IDs, one per row (unique).
    u : array
        The grid's answer per row, same order: its partial logit u_G = z(x_G) . w_G
        (float64, logistic regression), or for trees the packed bits "x <= threshold" of
        each of its splits (uint64 words, one row per enterprise).
    max_ids : int
        The most points one request may carry.
    pool : PsiPool, optional
        Threads for the curve work of the table and of large requests.
    rotate_seconds : float
        An open later than this after the current epoch began starts a new one.
    clock : callable
        Monotonic seconds (tests pass a fake one).
    quotas : Quotas, optional
        Rows per session, requests and opens per minute (default: unlimited).
    """

    def __init__(
        self,
        ids: Sequence[str],
        u: npt.NDArray[np.generic],
        *,
        max_ids: int = MAX_IDS,
        pool: PsiPool | None = None,
        rotate_seconds: float = ROTATE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        quotas: Quotas | None = None,
    ) -> None:
        if len(ids) != len(u):
            raise ValueError(f"{len(ids)} IDs but {len(u)} partial logits")
        self._ids = list(ids)
        self._u = np.asarray(u) if np.asarray(u).dtype == np.uint64 else \
            np.asarray(u, dtype=np.float64)
        self._max_ids = max_ids
        self._pool = pool
        self._rotate_seconds = rotate_seconds
        self._clock = clock
        self._quotas = quotas or Quotas()
        self._requests = RateWindow(self._quotas.requests_per_minute, "requests",
                                    "--max-requests-per-minute", clock)
        self._opens = RateWindow(self._quotas.opens_per_minute, "session opens",
                                 "--max-opens-per-minute", clock)
        self._lock = threading.Lock()
        self._epoch_lock = threading.Lock()
        self._epoch: _Epoch | None = None
        self._sessions: collections.OrderedDict[str, _GridSession] = collections.OrderedDict()
        self._handlers: dict[str, Callable[[_GridSession, Envelope], Envelope]] = {
            STEP_BLINDED: self._double,
            STEP_ROWS: self._partial,
        }

    def epoch(self) -> _Epoch:
        """The current key epoch, started (table blinded) if there is none or it is too old.

        Costs ~0.13 ms of CPU per grid row when it starts one (hash to the curve and one
        X25519 each, on the pool's threads); every other open costs nothing but sending.
        """
        with self._epoch_lock:
            now = self._clock()
            current = self._epoch
            if current is not None and now - current.started < self._rotate_seconds:
                return current
            started = time.perf_counter()
            epoch, key = secrets.token_bytes(EPOCH_BYTES), psi.new_key()
            hashed = hash_points_parallel(self._ids, epoch_domain(epoch), pool=self._pool)
            values = multiply_parallel(hashed, key, pool=self._pool, what="ID hashes to a point")
            table, perm = oprf.table(values)
            self._epoch = _Epoch(epoch, key, table, perm, now)
            log.info("serving: key epoch %s started, %d rows blinded in %.2f s", epoch.hex(),
                     len(table), time.perf_counter() - started)
            return self._epoch

    def open(self, env: Envelope, caller: str = Role.BANK.value) -> Envelope:
        """Answer ``serve/open``: the current epoch's id and sorted blinded table.

        Raises
        ------
        QuotaExceeded
            ``caller`` opened ``opens_per_minute`` sessions in the last minute.
        """
        if env.tag != Tag(0, STEP_OPEN):
            raise ProtocolAbort(
                f"expected round 0, step {STEP_OPEN!r} to open a session; got "
                f"round {env.tag.round}, step {env.tag.step!r}"
            )
        check_session(env.job_id)
        with self._lock:
            if env.job_id in self._sessions:
                raise ProtocolAbort(f"session {env.job_id} is already open")
        self._opens.take(caller)  # before any work: a flood of opens costs nothing
        epoch = self.epoch()
        with self._lock:
            self._sessions[env.job_id] = _GridSession(env.job_id, epoch)
            while len(self._sessions) > MAX_SESSIONS:
                old, _ = self._sessions.popitem(last=False)
                log.info("serving: session %s closed (more than %d open)", old, MAX_SESSIONS)
        log.info("serving: session %s opened in epoch %s, %d rows", env.job_id,
                 epoch.epoch.hex(), len(self._ids))
        tensors: dict[str, npt.NDArray[np.generic]] = {
            "points": epoch.table,
            "epoch": np.frombuffer(epoch.epoch, dtype=np.uint8).copy(),
        }
        return Envelope(env.job_id, Tag(0, STEP_POINTS), Role.GRID, tensors)

    def step(self, env: Envelope) -> Envelope:
        """Answer one request step (``serve/blinded`` or ``serve/rows``) of an open session."""
        handler = self._handlers.get(env.tag.step)
        if handler is None:
            raise ProtocolAbort(
                f"unexpected step {env.tag.step!r}; expected one of {sorted(self._handlers)}"
            )
        with self._lock:
            session = self._sessions.get(env.job_id)
        if session is None:
            raise UnknownSession(
                f"no open serving session {env.job_id[:80]!r} on the grid "
                "(restarted or evicted); open a new one"
            )
        return handler(session, env)

    def _double(self, s: _GridSession, env: Envelope) -> Envelope:
        r = env.tag.round
        points = psi.as_points(tensor_of(env, "points", np.uint8, 2, psi.POINT_BYTES))
        if not 0 < len(points) <= self._max_ids:
            raise ProtocolAbort(
                f"request {r} carries {len(points)} points; expected 1 to {self._max_ids}"
            )
        limit = self._quotas.rows_per_session
        if limit is not None and s.scored_rows >= limit:
            self._close(s, f"has scored its {limit} rows (grid --max-rows-per-session)")
        self._requests.take()
        with self._lock:
            self._admit(s, r, len(points))
            s.pending[r] = (np.zeros((0, psi.POINT_BYTES), np.uint8),
                            self._clock() + PENDING_SECONDS)
        try:
            double = reblind(points, s.epoch.key, self._pool, env.sender)
        except ProtocolAbort:
            with self._lock:
                if s.pending.pop(r, None) is not None:
                    self._finish(s, r)
            raise
        with self._lock:
            if r in s.pending:  # kept for step 5: the bank's keys are checked against it
                s.pending[r] = (double, s.pending[r][1])
        return Envelope(s.session, Tag(r, STEP_DOUBLE), Role.GRID, {"points": double})

    def _close(self, s: _GridSession, why: str) -> None:
        with self._lock:
            self._sessions.pop(s.session, None)
        log.info("serving: session %s closed: %s", s.session, why)
        raise UnknownSession(f"session {s.session} {why}; it is closed, open a new one")

    def _admit(self, s: _GridSession, r: int, n_points: int) -> None:
        """Refuse a round seen before; drop expired requests; bound the open ones."""
        if r <= s.floor or r in s.pending or r in s.done_set:
            raise ProtocolAbort(
                f"request round {r} of session {s.session} was already used or is too old"
            )
        now = self._clock()
        for old in [k for k, (_, expiry) in s.pending.items() if expiry < now]:
            del s.pending[old]
            self._finish(s, old)
        budget = max(PENDING_POINTS, self._max_ids) - n_points
        while s.pending and (
            len(s.pending) >= MAX_PENDING
            or sum(len(q) for q, _ in s.pending.values()) > budget
        ):
            old, _ = s.pending.popitem(last=False)
            self._finish(s, old)

    def _finish(self, s: _GridSession, r: int) -> None:
        s.done.append(r)
        s.done_set.add(r)
        while len(s.done) > DONE_WINDOW:
            gone = s.done.popleft()
            s.done_set.discard(gone)
            s.floor = max(s.floor, gone)

    def _partial(self, s: _GridSession, env: Envelope) -> Envelope:
        """Step 5: the rows the revealed keys prove matched; u_G of exactly those, once."""
        r = env.tag.round
        with self._lock:  # closed by this message, answered or refused: once per request
            entry = s.pending.pop(r, None)
            if entry is None:
                raise ProtocolAbort(
                    f"rows for request round {r} of session {s.session}: no "
                    "such open request (unknown, answered or expired)"
                )
            self._finish(s, r)
        answers, _ = entry
        index = np.asarray(tensor_of(env, "index", np.int64, 1), dtype=np.int64)
        keys = tensor_of(env, "keys", np.uint8, 2, psi.POINT_BYTES)
        if len(index) != len(keys) or len(index) > len(answers):
            raise ProtocolAbort(
                f"request {r} reveals {len(index)} indices and {len(keys)} keys; the request "
                f"carried {len(answers)} points"
            )
        if len(index) and (
            index[0] < 0 or index[-1] >= len(answers)
            or not bool(np.all(index[1:] > index[:-1]))
        ):
            raise ProtocolAbort(
                f"request {r}: indices must be strictly increasing in 0..{len(answers) - 1}"
            )
        self._charge(s, r, len(index))
        rows = self._matched_rows(s, r, answers[index], keys)
        return Envelope(s.session, Tag(r, STEP_PARTIAL), Role.GRID, self._answer(rows))

    def _charge(self, s: _GridSession, r: int, n: int) -> None:
        """Count n rows against the session's quota (before any curve work)."""
        limit = self._quotas.rows_per_session
        if limit is not None and n > limit:
            raise QuotaExceeded(
                f"the grid refused: request {r} asks for {n} rows; a session may score at "
                f"most {limit} (grid --max-rows-per-session {limit})"
            )
        with self._lock:
            over = limit is not None and s.scored_rows + n > limit
            if not over:
                s.scored_rows += n
        if over:
            self._close(s, f"would pass its {limit} rows (grid --max-rows-per-session)")

    def _matched_rows(self, s: _GridSession, r: int, answers: psi.Points,
                      keys: npt.NDArray[np.generic]) -> npt.NDArray[np.intp]:
        """Own rows whose table value X25519(s_i, Q_i) gives; any other is a refusal."""
        if not len(answers):
            return np.zeros(0, dtype=np.intp)
        try:
            values = multiply_each_parallel(keys, answers, pool=self._pool,
                                            what="revealed point")
        except psi.PsiError as exc:
            raise ProtocolAbort(f"request {r}: {exc}") from exc
        pos = oprf.lookup(s.epoch.table, values)
        missing = np.flatnonzero(pos < 0)
        if missing.size:
            raise ProtocolAbort(
                f"request {r}: {missing.size} revealed point(s) match no grid row (first at "
                f"revealed index {int(missing[0])}); the grid answers only rows a request "
                "matched, nothing is sent"
            )
        if len(np.unique(pos)) != len(pos):
            raise ProtocolAbort(f"request {r}: one grid row revealed twice")
        rows: npt.NDArray[np.intp] = s.epoch.perm[pos]
        return rows

    def _answer(self, rows: npt.NDArray[np.intp]) -> dict[str, npt.NDArray[np.generic]]:
        """The tensors of ``serve/partial`` for these own rows, in order."""
        return {"u": self._u[rows]}

    def open_sessions(self) -> list[str]:
        """Ids of the sessions currently open, oldest first."""
        with self._lock:
            return list(self._sessions)
