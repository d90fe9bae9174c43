"""Online scoring, the bank's side: the session's lookup table and the steps of one request.

The protocol and what each party learns are in :mod:`parties.serving`. The bank keeps the
grid's sorted table of the epoch as it came (no curve work), blinds the requested IDs it
holds with a fresh r_i per ID, in a random order, unblinds the grid's answers with r_i^-1,
looks them up, reveals r_i^-1 of the matches only (the grid checks them itself), and
computes the exact probability, points and band from the grid's partial logits.
Thread-safe: the edge calls it from gRPC worker threads.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from crypto import psi
from crypto.psi import oprf
from crypto.sigmoid import sigmoid
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import Envelope, Role, Tag
from parties.evaluation.scorecard import Scorecard, band_of
from parties.outputs import NO_GRID_RECORD
from parties.psi_pool import PsiPool, hash_points_parallel, multiply_each_parallel
from parties.serving import (
    EPOCH_BYTES,
    ERROR,
    MAX_IDS,
    NOT_IN_BANK_DATA,
    SCORED,
    STEP_BLINDED,
    STEP_DOUBLE,
    STEP_OPEN,
    STEP_PARTIAL,
    STEP_POINTS,
    STEP_ROWS,
    Float,
    RequestError,
    ScoredId,
    check_session,
    clean_id,
    epoch_domain,
    tensor_of,
)

# Trees: the bank's logits from its row indices and the grid's packed split bits per row.
Combine = Callable[[npt.NDArray[np.int64], npt.NDArray[np.generic]], Float]

log = logging.getLogger(__name__)

# -- bank ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BankSession:
    session: str
    epoch: bytes
    table: psi.Points  # F_k(id) of every grid row, ascending; position j as the grid numbers it


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
        The distinct IDs the bank holds, in the (random) order their points were sent.
    """

    round: int
    session: str
    ids: list[str]
    sent: list[str]
    state: _BankSession = field(repr=False)
    unblind: psi.Points = field(default_factory=lambda: np.zeros((0, 32), np.uint8),
                                repr=False)  # s_i = r_i^-1 (mod l), one per sent point
    matched: dict[str, int] = field(default_factory=dict)  # sent ID -> position in the answer


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
    combine : callable, optional
        Trees: the logit of the bank's rows (indices into ``ids``) from the grid's packed
        split bits for them (uint64 words per row); default u_B + u_G.
    probability : callable, optional
        Full logits u_B + u_G to probabilities: the model's calibration
        (``PartyModel.probability``); default the logistic function itself.
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
        combine: Combine | None = None,
        probability: Callable[[Float], Float] = sigmoid,
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
        self._probability = probability
        self._lock = threading.Lock()
        self._state: _BankSession | None = None
        self._round = 0
        self._combine = combine

    @property
    def session(self) -> str:
        """The open session's id ("" before one is open)."""
        return "" if self._state is None else self._state.session

    @staticmethod
    def open_request() -> Envelope:
        """The ``serve/open`` message of a new session (its id is fresh)."""
        return Envelope(secrets.token_hex(16), Tag(0, STEP_OPEN), Role.BANK, {})

    def accept_points(self, env: Envelope) -> None:
        """Keep the grid's table of the epoch as this session's lookup table (no curve work)."""
        if env.tag != Tag(0, STEP_POINTS):
            raise ProtocolAbort(
                f"expected the grid's {STEP_POINTS!r} at round 0; got round "
                f"{env.tag.round}, step {env.tag.step!r}"
            )
        check_session(env.job_id)
        epoch = tensor_of(env, "epoch", np.uint8, 1)
        if len(epoch) != EPOCH_BYTES:
            raise ProtocolAbort(f"the grid's epoch id has {len(epoch)} bytes; expected "
                                f"{EPOCH_BYTES}")
        try:
            table = oprf.check_table(tensor_of(env, "points", np.uint8, 2, psi.POINT_BYTES))
        except psi.PsiError as exc:
            raise ProtocolAbort(f"the grid's table is invalid: {exc}") from exc
        with self._lock:
            self._state = _BankSession(env.job_id, bytes(epoch.tobytes()), table)
        log.info("serving: session %s open in epoch %s, the grid has %d rows", env.job_id,
                 epoch.tobytes().hex(), len(table))

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
        clean = [clean_id(x, i) for i, x in enumerate(ids)]
        with self._lock:
            state = self._state
            if state is None:
                raise ProtocolAbort("no serving session with the grid is open")
            self._round += 1
            r = self._round
        held = [x for x in dict.fromkeys(clean) if x in self._row]
        if not held:
            return RequestPlan(r, state.session, clean, held, state), None
        # A random order: which request index matched tells the grid nothing (step 5).
        sent = [held[i] for i in psi.random_permutation(len(held))]
        blind, unblind = oprf.blinding_pairs(len(sent))
        plan = RequestPlan(r, state.session, clean, sent, state, unblind)
        hashed = hash_points_parallel(sent, epoch_domain(state.epoch), pool=self._pool)
        points = multiply_each_parallel(blind, hashed, pool=self._pool,
                                        what="ID hashes to a point")
        return plan, Envelope(state.session, Tag(r, STEP_BLINDED), Role.BANK, {"points": points})

    def rows_request(self, plan: RequestPlan, env: Envelope) -> Envelope | None:
        """Look the grid's answer up; reveal the matches' keys s_i (None: no match)."""
        if env.tag != Tag(plan.round, STEP_DOUBLE) or env.job_id != plan.session:
            raise ProtocolAbort(
                f"expected {STEP_DOUBLE!r} for request {plan.round}; got round "
                f"{env.tag.round}, step {env.tag.step!r}"
            )
        double = tensor_of(env, "points", np.uint8, 2, psi.POINT_BYTES)
        if len(double) != len(plan.sent):
            raise ProtocolAbort(
                f"the grid returned {len(double)} points for request "
                f"{plan.round}; expected {len(plan.sent)}"
            )
        try:
            values = multiply_each_parallel(plan.unblind, psi.check_received(double),
                                            pool=self._pool)
        except psi.PsiError as exc:
            raise ProtocolAbort(f"the grid sent an invalid PSI point: {exc}") from exc
        index = np.flatnonzero(oprf.lookup(plan.state.table, values) >= 0).astype(np.int64)
        if not len(index):
            return None
        plan.matched.update({plan.sent[int(i)]: k for k, i in enumerate(index)})
        keys = np.ascontiguousarray(plan.unblind[index])
        return Envelope(plan.session, Tag(plan.round, STEP_ROWS), Role.BANK,
                        {"index": index, "keys": keys})

    def results(self, plan: RequestPlan, env: Envelope | None) -> list[ScoredId]:
        """Combine u_B with the grid's u_G: one ``ScoredId`` per requested ID, in order."""
        n = len(plan.matched)
        u_grid: npt.NDArray[np.generic] = np.zeros(0)
        if env is not None:
            if env.tag != Tag(plan.round, STEP_PARTIAL) or env.job_id != plan.session:
                raise ProtocolAbort(
                    f"expected {STEP_PARTIAL!r} for request {plan.round}; got "
                    f"round {env.tag.round}, step {env.tag.step!r}"
                )
            dtype, ndim = (np.float64, 1) if self._combine is None else (np.uint64, 2)
            u_grid = tensor_of(env, "u", dtype, ndim)
        if len(u_grid) != n:
            raise ProtocolAbort(
                f"the grid sent {len(u_grid)} partial logits for request {plan.round}; expected {n}"
            )
        scored = list(plan.matched)
        rows = np.array([self._row[x] for x in scored], dtype=np.int64)
        answers = u_grid[[plan.matched[x] for x in scored]]
        if self._combine is None:
            logits = self._u[rows] + answers.astype(np.float64)
        else:
            logits = self._combine(rows, answers.reshape(len(rows), -1))
        p = self._probability(logits)
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
