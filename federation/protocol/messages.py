"""Messages between nodes, as plain frozen dataclasses (no protobuf type leaves the edge).

A party-to-party ``Envelope`` carries named numpy tensors under a ``Tag``; the receiver
matches by tag, never by arrival order. Coordinator requests and replies are small
dataclasses of scalars and seeds; the one array the coordinator receives is a party's
list of server-aided PSI tags (``MatchRequest``: pseudorandom without the parties' key),
and the one it returns is that party's matched positions (``MatchReply``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

import numpy as np
import numpy.typing as npt


class Role(StrEnum):
    GRID = "grid"
    BANK = "bank"
    COORDINATOR = "coordinator"


PARTY_ROLES = (Role.GRID, Role.BANK)


def peer_of(role: Role) -> Role:
    """The other party."""
    if role is Role.GRID:
        return Role.BANK
    if role is Role.BANK:
        return Role.GRID
    raise ValueError(f"{role} has no peer party")


@dataclass(frozen=True, slots=True, order=True)
class Tag:
    """Which message of a job this is: (round, step)."""

    round: int
    step: str


@dataclass(frozen=True, slots=True)
class Envelope:
    """One party-to-party message: job, tag, sender and named tensors."""

    job_id: str
    tag: Tag
    sender: Role
    tensors: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)

    def nbytes(self) -> int:
        return sum(int(t.nbytes) for t in self.tensors.values())


class Decision(IntEnum):
    """The coordinator's answer at a barrier."""

    CONTINUE = 0
    STOP = 1
    ABORT = 2


@dataclass(frozen=True, slots=True)
class JoinRequest:
    job_id: str
    role: Role
    address: str
    n_rows: int
    n_columns: int  # columns of the matrix the party multiplies (bank: features + intercept)


class Mode(StrEnum):
    LOCAL = "local"
    SHARED = "shared"


class Optimizer(StrEnum):
    SGD = "sgd"
    MOMENTUM = "momentum"
    ADAM = "adam"


class Model(StrEnum):
    LR = "lr"
    GBDT = "gbdt"


class Task(StrEnum):
    TRAIN = "train"
    SCORE = "score"
    SCREEN = "screen"  # univariate screening of indicators (no model)


class PsiProtocol(StrEnum):
    """How the parties align their IDs (README "What each party learns")."""

    SERVER_AIDED = "server-aided"  # PRF tags matched by the coordinator (the default)
    ECDH = "ecdh"  # two-party Diffie-Hellman; the coordinator takes no part


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """The job's training parameters, decided by the coordinator's config, same for both."""

    mode: Mode = Mode.SHARED
    epochs: int = 100  # the most epochs; training stops earlier once converged
    batch_size: int = 256
    learning_rate: float = 0.15
    optimizer: Optimizer = Optimizer.SGD
    l2: float = 0.001
    l1: float = 0.0
    momentum: float = 0.9
    # Converged when the best epoch loss of a window improves by less than this, relative
    # (federation/protocol/convergence.py); 0 runs every epoch.
    tolerance: float = 1e-3
    seed: int = 42
    validation_fraction: float = 0.2
    frac_bits: int = 16
    task: Task = Task.TRAIN
    deadline_seconds: float = 30.0
    # Mode shared: features clipped to |z| <= feature_clip and encoded with fewer bits.
    feature_frac_bits: int = 8
    feature_clip: float = 8.0
    reveal_weights: str = "own"
    # Parties checkpoint their training state every N epochs (0: never); a job started
    # again with the same data and settings resumes from the last epoch both completed.
    checkpoint_every: int = 0
    # Which model the job trains; the tree fields below apply to --model gbdt only
    # (learning_rate and l2 serve both; gbdt defaults to 0.1 and 1.0, see config).
    model: Model = Model.LR
    trees: int = 50
    depth: int = 5
    bins: int = 32
    min_child_weight: float = 1.0
    subsample: float = 1.0
    early_stopping_rounds: int = 10
    psi: PsiProtocol = PsiProtocol.SERVER_AIDED

    def as_dict(self) -> dict[str, object]:
        """The settings as plain values (enums by their value), for JSON and TOML."""
        out: dict[str, object] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = value.value if isinstance(value, StrEnum) else value
        return out


@dataclass(frozen=True, slots=True)
class JobPlan:
    """What the coordinator hands each party on joining: the job, its peer and its seed."""

    job_id: str
    peer_address: str
    dealer_seed: bytes
    settings: TrainSettings
    max_message_bytes: int = 0  # the largest message the peer may send (0: no bound)


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """A party reached ``step`` of ``round``; ``values`` are the scalars docs/design.md allows."""

    job_id: str
    role: Role
    round: int
    step: str
    values: dict[str, float] = field(default_factory=dict)
    ring_values: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SyncReply:
    decision: Decision
    values: dict[str, float] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DealRequest:
    job_id: str
    role: Role
    epoch: int


@dataclass(frozen=True, slots=True)
class DealReply:
    """Correction vectors c_1 for one epoch, by product name."""

    corrections: dict[str, npt.NDArray[np.uint64]]


@dataclass(frozen=True, slots=True)
class FailRequest:
    job_id: str
    role: Role
    reason: str


@dataclass(frozen=True, slots=True)
class MatchRequest:
    """Server-aided PSI: a party's shuffled 16-byte tags, (n, 16) ``uint8``."""

    job_id: str
    role: Role
    tags: npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class MatchReply:
    """Positions of the party's matched tags in the list it sent, ascending by tag."""

    positions: npt.NDArray[np.int64]
