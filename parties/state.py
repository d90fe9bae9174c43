"""The party node's state machine: one stage at a time, transitions checked."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum, auto

from federation.protocol.errors import StageError
from federation.protocol.messages import Role

log = logging.getLogger(__name__)


class Stage(StrEnum):
    IDLE = auto()
    JOINED = auto()
    PSI = auto()
    ALIGNED = auto()
    TRAINING = auto()
    EVALUATING = auto()
    SCORING = auto()
    SCREENING = auto()
    DONE = auto()
    ABORTED = auto()


ALLOWED: dict[Stage, frozenset[Stage]] = {
    Stage.IDLE: frozenset({Stage.JOINED, Stage.ABORTED}),
    Stage.JOINED: frozenset({Stage.PSI, Stage.ABORTED}),
    Stage.PSI: frozenset({Stage.ALIGNED, Stage.ABORTED}),
    Stage.ALIGNED: frozenset({Stage.TRAINING, Stage.SCORING, Stage.SCREENING, Stage.ABORTED}),
    Stage.TRAINING: frozenset({Stage.EVALUATING, Stage.ABORTED}),
    Stage.EVALUATING: frozenset({Stage.DONE, Stage.ABORTED}),
    Stage.SCORING: frozenset({Stage.DONE, Stage.ABORTED}),
    Stage.SCREENING: frozenset({Stage.DONE, Stage.ABORTED}),
    Stage.DONE: frozenset(),
    Stage.ABORTED: frozenset(),
}


@dataclass
class PartyState:
    role: Role
    stage: Stage = Stage.IDLE
    round: int = 0
    since: float = field(default_factory=time.monotonic, compare=False, repr=False)

    def advance(self, to: Stage) -> None:
        if to not in ALLOWED[self.stage]:
            raise StageError(f"{self.role}: expected one of {sorted(ALLOWED[self.stage])} after "
                             f"{self.stage}, got {to!r} (round {self.round})")
        now = time.monotonic()
        log.debug("%s: stage %s took %.3f s; now %s", self.role, self.stage, now - self.since,
                  to)
        self.stage, self.since = to, now
