"""Post-loan monitoring over the serving protocol: one session per period (no gRPC).

The bank opens a serving session (:mod:`parties.serving`) whose ``serve/open`` message names
the period (a month ordinal, tensor ``period``); the grid answers with the blinded points of
the enterprises it has a record of at that month, and its ``serve/partial`` answers carry,
besides u_G, the Table 7 rating code (tensor ``rating``, int8) of exactly the matched rows.

What each party learns, beyond online scoring: the grid learns which period the bank asks
about; the bank learns, per matched borrower, the rating (stable / expansion / shrink /
alert) -- never an indicator value. The grid learns which of its enterprises are in the
book, as PSI reveals an intersection (it answers only the rows the bank's request matched).

Key epochs span periods, as in ``serve`` (:mod:`parties.serving_grid`): :class:`EpochPoints`
keeps each enterprise's blinded point F_k(id) for the epoch, so a period blinds only the
enterprises it has not blinded in the epoch yet (none when the grid's ID set is unchanged)
and sorts the period's table; a new key and a new table after ``rotate_seconds``. Within
one epoch the bank sees the same F_k(id) in every period's table: which (unnamed) grid rows
stay, join or leave, and, for an ID whose F_k(id) it unblinded in an earlier period, whether
the grid still has it, without asking again (README, "Post-loan monitoring", "What each
party learns").

Assumes: periods are months the grid's raw data cover; one period's table is computed once
per session (at open) and kept for the last ``MAX_PERIODS`` sessions.
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from crypto import psi
from crypto.psi import oprf
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import Envelope, Role, Tag
from parties.evaluation.scorecard import Scorecard
from parties.labels.schema import format_month
from parties.monitoring import WIRE_RATINGS
from parties.monitoring_data import GridPeriod
from parties.monitoring_watch import PeriodNotReady
from parties.outputs import NO_GRID_RECORD
from parties.psi_pool import PsiPool, hash_points_parallel, multiply_parallel
from parties.serving import (
    EPOCH_BYTES,
    MAX_IDS,
    ROTATE_SECONDS,
    STEP_OPEN,
    STEP_PARTIAL,
    Float,
    ScoredId,
    UnknownSession,
    epoch_domain,
    tensor_of,
)
from parties.serving_bank import BankServing, RequestPlan
from parties.serving_grid import GridServing
from parties.serving_grid import _Epoch as Epoch  # serve's epoch record, shared as is

log = logging.getLogger(__name__)
MAX_PERIODS = 4


class EpochPoints:
    """The blinded point of every enterprise blinded in the current key epoch, by ID.

    Parameters
    ----------
    pool : PsiPool, optional
        Threads for hashing and blinding.
    rotate_seconds : float
        A table asked for this long after the epoch began starts a new epoch (new key).
    clock : callable
        Monotonic seconds (tests pass a fake one).
    """

    def __init__(self, pool: PsiPool | None = None, rotate_seconds: float = ROTATE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._rotate_seconds = rotate_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._epoch = b""
        self._key = b""
        self._started = -float("inf")
        self._row: dict[str, int] = {}  # ID -> its row in self._points
        self._points = np.zeros((0, psi.POINT_BYTES), dtype=np.uint8)
        self.blinded = 0  # points blinded in this node's life (for logs and tests)

    def table(self, ids: Sequence[str]) -> Epoch:
        """The epoch's sorted table of exactly ``ids`` (perm: table position -> index in
        ``ids``); blinds only the IDs not blinded in this epoch yet."""
        with self._lock:
            started = time.perf_counter()
            now = self._clock()
            if now - self._started >= self._rotate_seconds:
                self._epoch, self._key = secrets.token_bytes(EPOCH_BYTES), psi.new_key()
                self._started = now
                self._row = {}
                self._points = np.zeros((0, psi.POINT_BYTES), dtype=np.uint8)
                log.info("monitoring: key epoch %s started", self._epoch.hex())
            new = list(dict.fromkeys(x for x in ids if x not in self._row))
            if new:
                hashed = hash_points_parallel(new, epoch_domain(self._epoch), pool=self._pool)
                values = multiply_parallel(hashed, self._key, pool=self._pool,
                                           what="ID hashes to a point")
                self._row.update((x, len(self._points) + i) for i, x in enumerate(new))
                self._points = np.concatenate([self._points, psi.as_points(values)])
                self.blinded += len(new)
            rows = np.fromiter((self._row[x] for x in ids), dtype=np.intp, count=len(ids))
            table, perm = oprf.table(self._points[rows])
            log.info("monitoring: epoch %s table of %d rows, %d newly blinded, %.2f s",
                     self._epoch.hex(), len(ids), len(new), time.perf_counter() - started)
            return Epoch(self._epoch, self._key, table, perm, self._started)


class PeriodGrid(GridServing):
    """The grid's serving state for one period: u_G and the rating code per row.

    With ``points``, sessions get that epoch's table (:class:`EpochPoints`); without, the
    period blinds its rows under a key of its own, as ``serve`` would.
    """

    def __init__(self, period: GridPeriod, *, max_ids: int = MAX_IDS,
                 pool: PsiPool | None = None, points: EpochPoints | None = None) -> None:
        super().__init__(period.ids, period.u, max_ids=max_ids, pool=pool)
        self._rating = np.asarray(period.rating, dtype=np.int8)
        self._shared = None if points is None else points.table(period.ids)

    def epoch(self) -> Epoch:
        return super().epoch() if self._shared is None else self._shared

    def _answer(self, rows: npt.NDArray[np.intp]) -> dict[str, npt.NDArray[np.generic]]:
        # rows: the grid's own rows the request matched, as the grid itself found them
        return {**super()._answer(rows), "rating": self._rating[rows]}


class MonitorGrid(GridServing):
    """The grid's monitoring node state: a :class:`PeriodGrid` per session, built at open.

    Parameters
    ----------
    build : callable
        Month ordinal -> the grid's ``GridPeriod`` at that month (indicators, u_G, ratings).
    rotate_seconds : float
        Key epochs' length (:class:`EpochPoints`), as ``serve --rotate-hours``.
    """

    def __init__(self, build: Callable[[int], GridPeriod], *, max_ids: int = MAX_IDS,
                 pool: PsiPool | None = None, rotate_seconds: float = ROTATE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__([], np.zeros(0), max_ids=max_ids, pool=pool)
        self._build = build
        self._max = max_ids
        self._psi_pool = pool
        self.points = EpochPoints(pool, rotate_seconds, clock)
        self._by_session: collections.OrderedDict[str, PeriodGrid] = collections.OrderedDict()
        self._guard = threading.Lock()

    def open(self, env: Envelope, caller: str = Role.BANK.value) -> Envelope:
        """Open a session for the month named in ``period``: compute that month's table."""
        if env.tag != Tag(0, STEP_OPEN):
            raise ProtocolAbort(f"expected round 0, step {STEP_OPEN!r} to open a session")
        period = tensor_of(env, "period", np.int64, 1)
        if len(period) != 1 or not 0 < int(period[0]) < 12 * 10_000:
            raise ProtocolAbort("serve/open: 'period' must hold one month ordinal")
        state = PeriodGrid(self._built(int(period[0])), max_ids=self._max,
                           pool=self._psi_pool, points=self.points)
        reply = state.open(Envelope(env.job_id, env.tag, env.sender, {}), caller)
        with self._guard:
            self._by_session[env.job_id] = state
            while len(self._by_session) > MAX_PERIODS:
                self._by_session.popitem(last=False)
        log.info("monitoring: session %s for month %d, %d enterprises", env.job_id,
                 int(period[0]), len(state._ids))
        return reply

    def _built(self, month: int) -> GridPeriod:
        """The grid's period at ``month``; any failure but "not ready" is logged here in one
        line and reaches the bank as a generic reason: the grid's error text (file paths,
        database user, row contents) stays on the grid's side of the trust boundary."""
        try:
            return self._build(month)
        except PeriodNotReady:
            raise
        except Exception as exc:  # noqa: BLE001 -- refused, not carried on (see docstring)
            detail = " ".join(str(exc).split()) or type(exc).__name__
            log.error("monitoring: month %s: cannot build the period: %s: %s",
                      format_month(month), type(exc).__name__, detail[:2000])
            raise ProtocolAbort(f"the grid could not read its data for period "
                                f"{format_month(month)}; see the grid's log") from None

    def step(self, env: Envelope) -> Envelope:
        with self._guard:
            state = self._by_session.get(env.job_id)
        if state is None:
            raise UnknownSession(f"no monitoring session {env.job_id[:80]!r} on the grid")
        return state.step(env)


class PeriodBank(BankServing):
    """The bank's serving state for one period: its book's u_B; collects the ratings.

    ``probability`` is the bank model's calibration (``PartyModel.probability``), required
    so that the monitor's probabilities and points are those of ``score`` and ``serve``.
    """

    def __init__(self, period: int, ids: Sequence[str], u: np.ndarray, card: Scorecard,
                 bands: Sequence[float] | None = None, *,
                 probability: Callable[[Float], Float], max_ids: int = MAX_IDS,
                 pool: PsiPool | None = None) -> None:
        super().__init__(ids, u, card, bands, max_ids=max_ids, pool=pool,
                         probability=probability)
        self._period = period
        self.ratings: dict[str, str] = {}

    def open_request(self) -> Envelope:  # type: ignore[override]
        env = BankServing.open_request()
        period = np.array([self._period], dtype=np.int64)
        return Envelope(env.job_id, env.tag, env.sender, {"period": period})

    def results(self, plan: RequestPlan, env: Envelope | None) -> list[ScoredId]:
        out = super().results(plan, env)
        if env is not None:
            codes = np.asarray(tensor_of(env, "rating", np.int8, 1), dtype=np.int64)
            if len(codes) != len(set(plan.matched.values())) or \
                    bool(np.any((codes < 0) | (codes >= len(WIRE_RATINGS)))):
                raise ProtocolAbort(f"{STEP_PARTIAL}: bad 'rating' tensor from the grid")
            for x, j in plan.matched.items():
                self.ratings[x] = WIRE_RATINGS[int(codes[j])]
        for r in out:
            self.ratings.setdefault(r.id, NO_GRID_RECORD)
        return out


