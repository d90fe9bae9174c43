"""Online scoring: the protocol state of one serving session between grid and bank (no gRPC).

After training, each party keeps its own model and its own table; the bank's systems ask for
scores of enterprises one request at a time. One session (DESIGN.md "One training job",
step 6, made cheap per request):

Session start, once (``GridServing.open`` / ``BankServing.accept_points``)

1. The bank draws a session id; the grid draws a fresh key k_G for it and sends its blinded
   points k_G*H(id) for all of its N rows, shuffled (position j is grid row perm[j]).
2. The bank draws a fresh key k_B and re-blinds them once: k_B*k_G*H(id) -> j, a lookup table.

Request r (``BankServing.blinded_request`` ... ``BankServing.results``), cost O(request)

3. The bank blinds the requested IDs it has in its own data, k_B*H(id), and sends them.
4. The grid re-blinds them in order, k_G*k_B*H(id), and remembers request r and its size.
5. The bank looks each up in its table; the matches give shuffled positions j. It sends those
   positions, sorted (so their order says nothing about the request's order), once per r.
6. The grid returns its partial logit u_G for exactly those rows (at most as many as step 3
   had points, each at most once); the bank computes p = sigmoid(u_B + u_G) exactly, points
   and band. IDs that found no match are "no grid record"; IDs the bank does not hold are an
   error for that ID and are never sent.

What each party learns. The grid: the session's request count and sizes, and which of its
own rows were scored in each request (as PSI reveals the intersection); it can link repeats
of the same blinded ID within one session (k_B is per session); nothing about probabilities,
points or the bank's features -- no message from the bank carries them. The bank: the
grid's row count N, for each requested ID whether the grid holds it, and u_G of each scored
row (it knows u_B and learns the exact score; as in batch scoring, README "What each party
learns").

Assumes: two semi-honest parties (a deviating bank could ask for u_G of rows it did not
match, up to the size of its request); an authenticated transport that checked the bank's
certificate before ``GridServing`` sees a message; IDs compared as exact strings after
stripping spaces (as ``load_party_csv`` reads them); keys never leave their party and are
fresh per session. Thread-safe: the edge calls these from gRPC worker threads.
"""

from __future__ import annotations

import collections
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from crypto import psi
from crypto.sigmoid import sigmoid
from federation.errors import ProtocolAbort, VflError
from federation.messages import Envelope, Role, Tag
from parties.psi_pool import PsiPool, blind_parallel, reblind_parallel
from parties.scorecard import Scorecard, band_of

log = logging.getLogger(__name__)
Float = npt.NDArray[np.float64]

STEP_OPEN = "serve/open"
STEP_POINTS = "serve/points"
STEP_BLINDED = "serve/blinded"
STEP_DOUBLE = "serve/double"
STEP_ROWS = "serve/rows"
STEP_PARTIAL = "serve/partial"

SCORED = "scored"
NO_GRID_RECORD = "no grid record"  # the same words as parties.node's scores.csv
ERROR = "error"
NOT_IN_BANK_DATA = "not in the bank's data"

MAX_IDS = 10_000
MAX_ID_CHARS = 256
MAX_SESSIONS = 4
MAX_PENDING = 1_024
PENDING_SECONDS = 120.0
DONE_WINDOW = 100_000
SESSION_ID = re.compile(r"[0-9a-f]{16,64}")


class RequestError(VflError):
    """A scoring request is malformed (empty, too large, a bad ID); nothing was sent."""


class UnknownSession(ProtocolAbort):
    """The grid holds no session of this id (it restarted, or evicted it)."""


@dataclass(frozen=True, slots=True)
class ScoredId:
    """The answer for one requested ID.

    Attributes
    ----------
    id : str
        The ID as requested.
    status : str
        ``SCORED``, ``NO_GRID_RECORD`` or ``ERROR``.
    probability, points : float
        Exact default probability and scorecard points (nan unless scored).
    band : str
        Score band label such as ``"[600, 620)"`` ("" unless scored).
    error : str
        Why the ID could not be scored ("" unless ``ERROR``).
    """

    id: str
    status: str
    probability: float = float("nan")
    points: float = float("nan")
    band: str = ""
    error: str = ""


def session_domain(session: str) -> bytes:
    """The PSI hash domain of a serving session (unrelated to every training job's)."""
    return f"gridcredit/serve/v1/{session}".encode()


def _check_session(session: str) -> None:
    if not SESSION_ID.fullmatch(session):
        raise ProtocolAbort(f"session id {session[:80]!r} is not 16-64 lowercase hex digits")


def _tensor(
    env: Envelope, name: str, dtype: type[np.generic], ndim: int, width: int | None = None
) -> npt.NDArray[np.generic]:
    a = env.tensors.get(name)
    if (
        a is None
        or a.dtype != np.dtype(dtype)
        or a.ndim != ndim
        or (width is not None and a.shape[1] != width)
    ):
        what = "nothing" if a is None else f"{a.dtype} {a.shape}"
        raise ProtocolAbort(
            f"{env.sender} sent {what} as {name!r} at {env.tag.step!r} "
            f"(round {env.tag.round}); expected {np.dtype(dtype)} "
            f"{ndim}-d{'' if width is None else f' (n, {width})'}"
        )
    return np.asarray(a)


def _reblind(points: psi.Points, key: bytes, pool: PsiPool | None, who: Role) -> psi.Points:
    try:
        return reblind_parallel(points, key, pool=pool)
    except psi.PsiError as exc:
        raise ProtocolAbort(f"{who} sent an invalid PSI point: {exc}") from exc


# -- grid ---------------------------------------------------------------------------------


@dataclass
class _GridSession:
    session: str
    key: bytes
    perm: npt.NDArray[np.intp]  # shuffled position -> own row
    pending: collections.OrderedDict[int, tuple[int, float]] = field(
        default_factory=collections.OrderedDict
    )  # round -> (points received, expiry)
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
    u : Float
        The grid's partial logit u_G = z(x_G) . w_G per row, same order.
    max_ids : int
        The most points one request may carry.
    pool : PsiPool, optional
        Worker processes for the curve work of large sessions and requests.
    clock : callable
        Monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        ids: Sequence[str],
        u: Float,
        *,
        max_ids: int = MAX_IDS,
        pool: PsiPool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(ids) != len(u):
            raise ValueError(f"{len(ids)} IDs but {len(u)} partial logits")
        self._ids = list(ids)
        self._u = np.asarray(u, dtype=np.float64)
        self._max_ids = max_ids
        self._pool = pool
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: collections.OrderedDict[str, _GridSession] = collections.OrderedDict()
        self._handlers: dict[str, Callable[[_GridSession, Envelope], Envelope]] = {
            STEP_BLINDED: self._double,
            STEP_ROWS: self._partial,
        }

    def open(self, env: Envelope) -> Envelope:
        """Answer ``serve/open``: a fresh key and the shuffled blinded points of every row."""
        if env.tag != Tag(0, STEP_OPEN):
            raise ProtocolAbort(
                f"expected round 0, step {STEP_OPEN!r} to open a session; got "
                f"round {env.tag.round}, step {env.tag.step!r}"
            )
        _check_session(env.job_id)
        with self._lock:
            if env.job_id in self._sessions:
                raise ProtocolAbort(f"session {env.job_id} is already open")
        key = psi.new_key()
        points, perm = psi.shuffle(
            blind_parallel(self._ids, key, session_domain(env.job_id), pool=self._pool)
        )
        with self._lock:
            self._sessions[env.job_id] = _GridSession(env.job_id, key, perm)
            while len(self._sessions) > MAX_SESSIONS:
                old, _ = self._sessions.popitem(last=False)
                log.info("serving: session %s closed (more than %d open)", old, MAX_SESSIONS)
        log.info("serving: session %s opened, %d rows", env.job_id, len(self._ids))
        return Envelope(env.job_id, Tag(0, STEP_POINTS), Role.GRID, {"points": points})

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
        points = psi.as_points(_tensor(env, "points", np.uint8, 2, psi.POINT_BYTES))
        if not 0 < len(points) <= self._max_ids:
            raise ProtocolAbort(
                f"request {r} carries {len(points)} points; expected 1 to {self._max_ids}"
            )
        with self._lock:
            self._admit(s, r)
            s.pending[r] = (len(points), self._clock() + PENDING_SECONDS)
        try:
            double = _reblind(points, s.key, self._pool, env.sender)
        except ProtocolAbort:
            with self._lock:
                if s.pending.pop(r, None) is not None:
                    self._finish(s, r)
            raise
        return Envelope(s.session, Tag(r, STEP_DOUBLE), Role.GRID, {"points": double})

    def _admit(self, s: _GridSession, r: int) -> None:
        """Refuse a round seen before; drop expired requests; bound the open ones."""
        if r <= s.floor or r in s.pending or r in s.done_set:
            raise ProtocolAbort(
                f"request round {r} of session {s.session} was already used or is too old"
            )
        now = self._clock()
        for old in [k for k, (_, expiry) in s.pending.items() if expiry < now]:
            del s.pending[old]
            self._finish(s, old)
        while len(s.pending) >= MAX_PENDING:
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
        r = env.tag.round
        rows = np.asarray(_tensor(env, "rows", np.int64, 1), dtype=np.int64)
        with self._lock:
            entry = s.pending.pop(r, None)
            if entry is None:
                raise ProtocolAbort(
                    f"rows for request round {r} of session {s.session}: no "
                    "such open request (unknown, answered or expired)"
                )
            self._finish(s, r)
        n_points, _ = entry
        if len(rows) > n_points:
            raise ProtocolAbort(
                f"request {r} asks for {len(rows)} rows but carried only {n_points} IDs"
            )
        if len(rows) and (
            rows[0] < 0 or rows[-1] >= len(s.perm) or not bool(np.all(rows[1:] > rows[:-1]))
        ):
            raise ProtocolAbort(
                f"request {r}: rows must be strictly increasing positions in 0..{len(s.perm) - 1}"
            )
        u = self._u[s.perm[rows]]
        with self._lock:
            s.scored_rows += len(rows)
        return Envelope(s.session, Tag(r, STEP_PARTIAL), Role.GRID, {"u": u})

    def open_sessions(self) -> list[str]:
        """Ids of the sessions currently open, oldest first."""
        with self._lock:
            return list(self._sessions)


# -- bank ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BankSession:
    session: str
    key: bytes
    table: dict[bytes, int]  # k_B*k_G*H(id) -> the grid's shuffled position


@dataclass(frozen=True)
class RequestPlan:
    """One scoring request between its steps: what was asked and what was sent.

    Attributes
    ----------
    round : int
        The request's number in its session (audit round).
    session : str
        The session it was blinded for.
    ids : list of str
        The IDs as requested (stripped), in request order.
    sent : list of str
        The distinct IDs the bank holds, in the order their points were sent.
    """

    round: int
    session: str
    ids: list[str]
    sent: list[str]
    state: _BankSession = field(repr=False)
    matched: dict[str, int] = field(default_factory=dict)  # sent ID -> position in `rows`


class BankServing:
    """The bank's side: its partial logit per own row and the lookup table of the session.

    Parameters
    ----------
    ids : sequence of str
        The bank's enterprise IDs, one per row of its ``--data`` (unique).
    u : Float
        The bank's partial logit u_B = z(x_B) . w_B + intercept per row, same order.
    card : Scorecard
        Scaling of probabilities to points.
    bands : sequence of float, optional
        Band edges (first -inf, last inf); default 20-point bands aligned to multiples of 20.
    max_ids : int
        The most IDs one request may carry.
    pool : PsiPool, optional
        Worker processes for the curve work of large sessions and requests.
    """

    def __init__(
        self,
        ids: Sequence[str],
        u: Float,
        card: Scorecard,
        bands: Sequence[float] | None = None,
        *,
        max_ids: int = MAX_IDS,
        pool: PsiPool | None = None,
    ) -> None:
        if len(ids) != len(u):
            raise ValueError(f"{len(ids)} IDs but {len(u)} partial logits")
        if bands is not None and (len(bands) < 2 or bands[0] != -np.inf or bands[-1] != np.inf):
            raise ValueError("band edges must start with -inf and end with inf")
        self._row = {x: i for i, x in enumerate(ids)}
        self._u = np.asarray(u, dtype=np.float64)
        self._card = card
        self._bands = None if bands is None else np.asarray(bands, dtype=np.float64)
        self._max_ids = max_ids
        self._pool = pool
        self._lock = threading.Lock()
        self._state: _BankSession | None = None
        self._round = 0

    @property
    def session(self) -> str:
        """The open session's id ("" before one is open)."""
        return "" if self._state is None else self._state.session

    @staticmethod
    def open_request() -> Envelope:
        """The ``serve/open`` message of a new session (its id is fresh)."""
        return Envelope(secrets.token_hex(16), Tag(0, STEP_OPEN), Role.BANK, {})

    def accept_points(self, env: Envelope) -> None:
        """Re-blind the grid's points once into this session's lookup table."""
        if env.tag != Tag(0, STEP_POINTS):
            raise ProtocolAbort(
                f"expected the grid's {STEP_POINTS!r} at round 0; got round "
                f"{env.tag.round}, step {env.tag.step!r}"
            )
        _check_session(env.job_id)
        key = psi.new_key()
        points = psi.as_points(_tensor(env, "points", np.uint8, 2, psi.POINT_BYTES))
        double = _reblind(points, key, self._pool, env.sender)
        raw = double.tobytes()
        width = psi.POINT_BYTES
        table = {raw[j : j + width]: i for i, j in enumerate(range(0, len(raw), width))}
        if len(table) != len(double):
            raise ProtocolAbort("the grid's points repeat: its IDs must be unique")
        with self._lock:
            self._state = _BankSession(env.job_id, key, table)
        log.info("serving: session %s open, the grid has %d rows", env.job_id, len(table))

    def blinded_request(self, ids: Sequence[str]) -> tuple[RequestPlan, Envelope | None]:
        """Check a request and blind the IDs the bank holds (None: nothing to send).

        Raises
        ------
        RequestError
            Empty or too many IDs, or an ID that is not a non-empty string of at most
            ``MAX_ID_CHARS`` characters.
        ProtocolAbort
            No session is open.
        """
        if not 0 < len(ids) <= self._max_ids:
            raise RequestError(f"a request carries 1 to {self._max_ids} IDs, got {len(ids)}")
        clean = [_clean_id(x, i) for i, x in enumerate(ids)]
        with self._lock:
            state = self._state
            if state is None:
                raise ProtocolAbort("no serving session with the grid is open")
            self._round += 1
            r = self._round
        sent = [x for x in dict.fromkeys(clean) if x in self._row]
        plan = RequestPlan(r, state.session, clean, sent, state)
        if not sent:
            return plan, None
        points = blind_parallel(sent, state.key, session_domain(state.session), pool=self._pool)
        return plan, Envelope(state.session, Tag(r, STEP_BLINDED), Role.BANK, {"points": points})

    def rows_request(self, plan: RequestPlan, env: Envelope) -> Envelope | None:
        """Look the grid's answer up; the sorted positions to ask for (None: no match)."""
        if env.tag != Tag(plan.round, STEP_DOUBLE) or env.job_id != plan.session:
            raise ProtocolAbort(
                f"expected {STEP_DOUBLE!r} for request {plan.round}; got round "
                f"{env.tag.round}, step {env.tag.step!r}"
            )
        double = _tensor(env, "points", np.uint8, 2, psi.POINT_BYTES)
        if len(double) != len(plan.sent):
            raise ProtocolAbort(
                f"the grid returned {len(double)} points for request "
                f"{plan.round}; expected {len(plan.sent)}"
            )
        raw, width = double.tobytes(), psi.POINT_BYTES
        found = {
            x: plan.state.table.get(raw[i * width : (i + 1) * width])
            for i, x in enumerate(plan.sent)
        }
        hits = {x: j for x, j in found.items() if j is not None}
        if not hits:
            return None
        rows = np.array(sorted(set(hits.values())), dtype=np.int64)
        where = {int(j): k for k, j in enumerate(rows)}
        plan.matched.update({x: where[j] for x, j in hits.items()})
        return Envelope(plan.session, Tag(plan.round, STEP_ROWS), Role.BANK, {"rows": rows})

    def results(self, plan: RequestPlan, env: Envelope | None) -> list[ScoredId]:
        """Combine u_B with the grid's u_G: one ``ScoredId`` per requested ID, in order."""
        n = len(set(plan.matched.values()))
        u_grid = np.zeros(0)
        if env is not None:
            if env.tag != Tag(plan.round, STEP_PARTIAL) or env.job_id != plan.session:
                raise ProtocolAbort(
                    f"expected {STEP_PARTIAL!r} for request {plan.round}; got "
                    f"round {env.tag.round}, step {env.tag.step!r}"
                )
            u_grid = _tensor(env, "u", np.float64, 1).astype(np.float64)
        if len(u_grid) != n:
            raise ProtocolAbort(
                f"the grid sent {len(u_grid)} partial logits for request {plan.round}; expected {n}"
            )
        scored = list(plan.matched)
        p = sigmoid(
            np.array([self._u[self._row[x]] for x in scored], dtype=np.float64)
            + u_grid[[plan.matched[x] for x in scored]]
        )
        points = self._card.points(p)
        bands = band_of(points, self._bands) if len(points) else np.array([], dtype=str)
        answer = {
            x: ScoredId(x, SCORED, float(q), float(s), str(b))
            for x, q, s, b in zip(scored, p, points, bands)
        }
        return [
            answer.get(x)
            or (
                ScoredId(x, NO_GRID_RECORD)
                if x in self._row
                else ScoredId(x, ERROR, error=NOT_IN_BANK_DATA)
            )
            for x in plan.ids
        ]


def _clean_id(x: object, index: int) -> str:
    if not isinstance(x, str):
        raise RequestError(f"ID at index {index} is {type(x).__name__}, expected a string")
    s = x.strip()
    if not s or len(s) > MAX_ID_CHARS:
        raise RequestError(f"ID at index {index} is empty or longer than {MAX_ID_CHARS} characters")
    return s
