"""Training checkpoints of one party, so a failed job can resume from a completed epoch.

A checkpoint holds this party's own training state after an epoch both parties finished
(the epoch barrier passed): mode ``local`` its plaintext weights and optimizer state,
mode ``shared`` its shares of both weight blocks. It is keyed by a fingerprint of what
must not change between the two jobs (rows, columns, schedule, optimizer, mode), and
the last two epochs are kept, because the two parties may have written different
epochs when the job died; the coordinator resumes both from the older one.
Files are written atomically; nothing here leaves the party.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from federation.protocol.errors import InputDataError, ProtocolAbort
from federation.protocol.messages import Task, TrainSettings
from federation.protocol.schedule import Schedule
from parties.model import atomic_write_text

KEEP = 2
State = dict[str, Any]


def fingerprint(settings: TrainSettings, schedule: Schedule, n_columns: int) -> str:
    """What two jobs must share for one to continue the other's training."""
    same = {k: v for k, v in settings.as_dict().items()
            if k not in ("deadline_seconds", "tolerance", "checkpoint_every", "task")}
    same.update(n_rows=schedule.n_rows, n_columns=n_columns)
    return hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()


def load(path: Path, expected: str) -> dict[int, State]:
    """Checkpointed states by epoch; empty when there is none for this fingerprint."""
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("fingerprint") != expected:
            return {}
        return {int(epoch): state for epoch, state in raw["states"].items()}
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise InputDataError(f"{path}: unreadable checkpoint ({exc}); delete it to start "
                             "afresh") from exc


def save(path: Path, expected: str, states: dict[int, State]) -> dict[int, State]:
    """Write the newest ``KEEP`` states; returns what was kept."""
    kept = {e: states[e] for e in sorted(states)[-KEEP:]}
    atomic_write_text(path, json.dumps({"fingerprint": expected,
                                        "states": {str(e): s for e, s in kept.items()}}) + "\n")
    return kept


@dataclass
class Resume:
    """This party's checkpoints for the job, and the epoch the coordinator resumes after."""

    fingerprint: str
    states: dict[int, State]
    start: int = 0


def resume_plan(settings: TrainSettings, n_rows: int, n_columns: int, path: Path) -> Resume:
    """The checkpoints this party can offer for this job (none unless checkpointing)."""
    if settings.task is not Task.TRAIN or settings.checkpoint_every <= 0:
        return Resume("", {})
    schedule = Schedule(n_rows, settings.validation_fraction, settings.batch_size, settings.seed)
    fp = fingerprint(settings, schedule, n_columns)
    return Resume(fp, load(path, fp))


class Resumable(Protocol):
    """What a fit offers for checkpoints (``LocalFit``, ``SharedFit``)."""

    on_checkpoint: Callable[[int, State], None] | None

    def resume_from(self, epoch: int, state: State) -> None: ...


def wire(fitter: Resumable, settings: TrainSettings, resume: Resume, who: str,
         path: Path) -> int:
    """Resume ``fitter`` where the coordinator said and keep its checkpoints every N epochs.

    Returns the epoch resumed after (0: a fresh start).
    """
    if resume.start > 0:
        if resume.start not in resume.states:
            raise ProtocolAbort(f"{who}: asked to resume after epoch {resume.start}, "
                                f"but its checkpoints hold epochs {sorted(resume.states)}")
        fitter.resume_from(resume.start, resume.states[resume.start])
    if settings.checkpoint_every > 0:
        every = settings.checkpoint_every

        def keep(epoch: int, state: State) -> None:
            if epoch % every == 0 or epoch == settings.epochs:
                resume.states = save(path, resume.fingerprint, {**resume.states, epoch: state})

        fitter.on_checkpoint = keep
    return resume.start
