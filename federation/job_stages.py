"""The coordinator's job stages, their allowed transitions, and the barrier steps.

A job moves REGISTER -> ALIGN -> one of FIT (then EVALUATE), SCORE or SCREEN -> DONE, or to
FAILED from any stage but DONE (docs/design.md, "One training job"). The parties name the
barrier that closes a stage by its step (``STEP_*``). Pure data: no node, no I/O.
"""

from __future__ import annotations

from enum import StrEnum, auto


class JobStage(StrEnum):
    REGISTER = auto()
    ALIGN = auto()
    FIT = auto()
    EVALUATE = auto()
    SCORE = auto()
    SCREEN = auto()
    DONE = auto()
    FAILED = auto()


ALLOWED: dict[JobStage, frozenset[JobStage]] = {
    JobStage.REGISTER: frozenset({JobStage.ALIGN, JobStage.FAILED}),
    JobStage.ALIGN: frozenset({JobStage.FIT, JobStage.SCORE, JobStage.SCREEN,
                               JobStage.FAILED}),
    JobStage.FIT: frozenset({JobStage.EVALUATE, JobStage.FAILED}),
    JobStage.EVALUATE: frozenset({JobStage.DONE, JobStage.FAILED}),
    JobStage.SCORE: frozenset({JobStage.DONE, JobStage.FAILED}),
    JobStage.SCREEN: frozenset({JobStage.DONE, JobStage.FAILED}),
    JobStage.DONE: frozenset(),
    JobStage.FAILED: frozenset(),
}

# Barrier steps the parties call, in order; each names the stage it closes.
STEP_ALIGNED = "aligned"
STEP_EPOCH = "epoch"
STEP_EVALUATED = "evaluated"
STEP_SCORED = "scored"
STEP_SCREENED = "screened"
JOINT_EPOCH = 0  # a deal request for epoch 0 asks for a joint forward pass's corrections
