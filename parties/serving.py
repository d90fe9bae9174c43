"""Online scoring: the protocol state of one serving session between grid and bank (no gRPC).

After training, each party keeps its own model and its own table; the bank's systems ask for
scores of enterprises one request at a time. One session (docs/design.md "One training job",
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

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crypto import psi
from federation.protocol.errors import ProtocolAbort, VflError
from federation.protocol.messages import Envelope, Role
from parties.psi_pool import PsiPool, reblind_parallel

Float = npt.NDArray[np.float64]

STEP_OPEN = "serve/open"
STEP_POINTS = "serve/points"
STEP_BLINDED = "serve/blinded"
STEP_DOUBLE = "serve/double"
STEP_ROWS = "serve/rows"
STEP_PARTIAL = "serve/partial"

SCORED = "scored"
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


def check_session(session: str) -> None:
    if not SESSION_ID.fullmatch(session):
        raise ProtocolAbort(f"session id {session[:80]!r} is not 16-64 lowercase hex digits")


def tensor_of(
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


def reblind(points: psi.Points, key: bytes, pool: PsiPool | None, who: Role) -> psi.Points:
    try:
        return reblind_parallel(points, key, pool=pool)
    except psi.PsiError as exc:
        raise ProtocolAbort(f"{who} sent an invalid PSI point: {exc}") from exc


def clean_id(x: object, index: int) -> str:
    if not isinstance(x, str):
        raise RequestError(f"ID at index {index} is {type(x).__name__}, expected a string")
    s = x.strip()
    if not s or len(s) > MAX_ID_CHARS:
        raise RequestError(f"ID at index {index} is empty or longer than {MAX_ID_CHARS} characters")
    return s
