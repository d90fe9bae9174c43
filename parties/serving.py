"""Online scoring: the protocol state of one serving session between grid and bank (no gRPC).

After training, each party keeps its own model and its own table; the bank's systems ask for
scores of enterprises one request at a time. Unbalanced PSI (``crypto.psi.oprf``; docs/
design.md "One training job", step 6): the grid blinds its N rows once per key epoch, not
per session, and a session open costs no curve work on either side.

Key epoch, once per ``rotate_seconds`` (``GridServing.epoch``)

1. The grid draws an epoch id and key k, computes F_k(id) = X25519(k, H(id)) for all its
   rows (H: hash to the prime-order subgroup, under the epoch's domain) and sorts the
   values: position j of the table is grid row perm[j].

Session start (``GridServing.open`` / ``BankServing.accept_points``)

2. The bank draws a session id; the grid answers with the current epoch id and its table.
   The bank checks that the table strictly ascends and keeps it: no curve work.

Request r (``BankServing.blinded_request`` ... ``BankServing.results``), cost O(request)

3. The bank draws, per requested ID it has in its own data, r_i and s_i = r_i^-1 (mod l),
   and sends X25519(r_i, H(id)) in a random order.
4. The grid raises them to k in order, keeps its answers Q_i and remembers request r.
5. The bank unblinds each with s_i, F_k(id), and looks it up in the table. For the matches
   only it sends (i, s_i): the request index and key, once per r.
6. The grid computes X25519(s_i, Q_i) itself and looks it up in its own table: a row counts
   only if it comes out (a bank cannot name rows its request did not match, it would need
   k or the row's ID). It returns u_G for exactly those rows, each once, once per request;
   the bank computes p = sigmoid(u_B + u_G) exactly, points and band. IDs that found no
   match are "no grid record"; IDs the bank does not hold are an error for that ID and are
   never sent. The grid's quotas (``parties.serving_limits``) bound rows per session and
   requests and opens per minute.

What each party learns. The grid: the session's request count and sizes, and which of its
own rows were scored in each request (as PSI reveals the intersection); the s_i it gets
turn only the matched points back into its own rows' hashes, the other points stay
blinded by secret r_i; the random order hides which requested position matched; r_i is
fresh per ID and request, so it cannot link two requests for the same ID; nothing about
probabilities, points or the bank's features -- no message from the bank carries them. The
bank: the grid's row count N, for each requested ID whether the grid holds it, and u_G of
each scored row (it knows u_B and learns the exact score; as in batch scoring, README "What
each party learns"); since every session of an epoch gets the same table, also whether the
grid's rows changed within the epoch. The table alone reveals nothing else: testing an ID
needs the grid's answer (k never leaves the grid); a new epoch makes old tables useless.

Assumes: the grid does not trust the bank's claims of matches (step 6 checks them); the
bank may ask about any ID it knows (that is scoring); an authenticated transport that
checked the bank's certificate before ``GridServing`` sees a message; IDs compared as exact
strings after stripping spaces (as ``load_party_csv`` reads them); k never leaves the grid,
r_i never leaves the bank, s_i only for a match. Thread-safe: the edge calls these from
gRPC worker threads.
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
EPOCH_BYTES = 16
ROTATE_SECONDS = 24 * 3600.0
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


def epoch_domain(epoch: bytes) -> bytes:
    """The PSI hash domain of a serving key epoch (unrelated to every training job's)."""
    return b"gridcredit/serve/v2/" + epoch.hex().encode()


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
