"""A party node's tree job: train and evaluate, or score, with files written at the end.

Training: ``fit_bank`` / ``fit_grid``; then the bank writes the predictions of every
aligned row (it knows every row's leaf from training: no scoring exchange, nothing more
revealed), the bank-only model's (the same boosting on the bank's features alone) and
the metrics; each party writes its own model file. Scoring: the grid sends, for every
one of its splits, "x <= threshold" of each aligned row; the bank walks the trees.
Assumes: the caller aligned the rows by PSI and built the channel and coordinator link.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from crypto import bin_product as bp
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import Envelope, Role, Tag, TrainSettings
from federation.protocol.schedule import Schedule
from federation.protocol.tree_schedule import STEP_SCORE
from federation.transport.channel import Channel, CoordinatorLink
from parties.data import PartyData
from parties.gbdt.core import sigmoid
from parties.gbdt.fit import fit_bank, fit_grid, tree_params
from parties.gbdt.model import GbdtBankModel, GbdtGridModel, TreeModel
from parties.gbdt.twin import fit_twin
from parties.model import atomic_write_text
from parties.outputs import metrics_or_reason

Float = npt.NDArray[np.float64]
Metrics = Callable[[Float, Float], dict[str, Any]]


@dataclass(frozen=True)
class TreeJob:
    """What the node hands a tree job."""

    job_id: str
    settings: TrainSettings
    seed: bytes
    channel: Channel
    coordinator: CoordinatorLink
    out: Path


def _settings_record(s: TrainSettings) -> dict[str, Any]:
    keys = ("trees", "depth", "learning_rate", "bins", "l2", "min_child_weight", "subsample",
            "early_stopping_rounds", "frac_bits", "seed")
    return {k: getattr(s, k) for k in keys}


def train_trees(job: TreeJob, role: Role, aligned: PartyData, replies: dict[str, float]
                ) -> dict[str, Any]:
    """One party's whole tree job on its aligned rows; returns its statistics.

    ``replies``: the coordinator's answer at the alignment barrier (the bank needs the
    grid's one-hot width from it).
    """
    s = job.settings
    schedule = Schedule(len(aligned.ids), s.validation_fraction, s.batch_size, s.seed)
    if role is Role.GRID:
        return train_grid(job, aligned, schedule)
    return train_bank(job, aligned, schedule, int(replies.get("grid_width", 0)),
                      metrics_or_reason)


def score_trees(job_id: str, model: TreeModel, x: Float, channel: Channel, timeout: float
                ) -> Float | None:
    """Scoring with trees: the grid sends its split bits (None), the bank the probabilities."""
    if isinstance(model, GbdtGridModel):
        score_grid(job_id, model, x, channel)
        return None
    return score_bank(job_id, model, x, channel, timeout)


def train_grid(job: TreeJob, data: PartyData, schedule: Schedule) -> dict[str, Any]:
    fit = fit_grid(job.job_id, job.settings, schedule, job.seed, data.x, job.channel,
                   job.coordinator)
    model = GbdtGridModel(job.job_id, list(data.features), fit.result.splits)
    model.save(job.out / "model.json")
    return {"fit_seconds": fit.seconds, "epochs_run": fit.result.trees, "losses": [],
            "bytes_masked_matrix": fit.result.bytes_masked, "model": "gbdt"}


def train_bank(job: TreeJob, data: PartyData, schedule: Schedule, grid_width: int,
               metrics: Metrics) -> dict[str, Any]:
    if data.y is None:
        raise ProtocolAbort("the bank has no labels")
    s, y = job.settings, data.y
    fit = fit_bank(job.job_id, s, schedule, grid_width, job.seed, data.x, y, job.channel,
                   job.coordinator)
    boosted = fit.boosted
    p = sigmoid(boosted.raw())
    train, valid = schedule.train_rows, schedule.validation_rows
    # The bank's own model on its own features: the baseline that grid data must beat.
    alone, _, _ = fit_twin(np.zeros((len(y), 0)), data.x, y, train, valid, tree_params(s),
                           s.bins)
    p_bank = sigmoid(alone.raw())
    split = np.full(len(y), "train", dtype=object)
    split[valid] = "validation"
    lines = ["id,split,y,probability"] + [
        f"{i},{t},{int(v)},{q:.10g}" for i, t, v, q in zip(data.ids, split, y, p)]
    atomic_write_text(job.out / "predictions.csv", "\n".join(lines) + "\n")
    atomic_write_text(job.out / "bank_only_predictions.csv", "\n".join(
        ["id,split,y,probability"] + [f"{i},{t},{int(v)},{q:.10g}" for i, t, v, q in
                                      zip(data.ids, split, y, p_bank)]) + "\n")
    report = {"train": metrics(y[train], p[train]), "validation": metrics(y[valid], p[valid]),
              "bank_only": {"train": metrics(y[train], p_bank[train]),
                            "validation": metrics(y[valid], p_bank[valid]),
                            "trees": len(alone.trees)}}
    atomic_write_text(job.out / "metrics.json", json.dumps(report, indent=2) + "\n")
    model = GbdtBankModel(job.job_id, list(data.features), boosted.base, s.depth,
                          boosted.trees, grid_width // (s.bins + 1), _settings_record(s))
    model.save(job.out / "model.json")
    atomic_write_text(job.out / "importance.json",
                      json.dumps(model.importance(), indent=2) + "\n")
    return {"fit_seconds": fit.seconds, "epochs_run": len(boosted.trees),
            "losses": boosted.train_losses, "validation_losses": boosted.validation_losses,
            "fit_time_split": fit.time_split, "model": "gbdt"}


def score_grid(job_id: str, model: GbdtGridModel, x: Float, channel: Channel) -> None:
    """Send "x <= threshold" of every aligned row at each of the grid's splits."""
    nodes, bits = model.left_bits(x)
    channel.send(Envelope(job_id, Tag(1, STEP_SCORE), Role.GRID,
                          {"nodes": nodes, "bits": bp.pack_bits(bits)}))


def receive_grid_bits(env: Envelope, model: GbdtBankModel, n: int
                      ) -> dict[tuple[int, int], npt.NDArray[np.bool_]]:
    """Check the grid's answer covers exactly the model's grid splits; unpack it."""
    nodes, bits = env.tensors.get("nodes"), env.tensors.get("bits")
    expected = model.grid_nodes()
    words = -(-n // 64)
    if (nodes is None or bits is None or nodes.dtype != np.int64 or nodes.ndim != 2
            or nodes.shape[1] != 2 or bits.dtype != np.uint64
            or bits.shape != (nodes.shape[0], words)):
        raise ProtocolAbort(f"grid sent a malformed scoring answer; expected its split bits "
                            f"for {n} rows")
    got = [(int(t), int(i)) for t, i in nodes]
    if set(got) != expected or len(got) != len(expected):
        raise ProtocolAbort(f"the grid's model has {len(got)} splits, the bank's trees "
                            f"{len(expected)} grid splits: the two model files do not match")
    opened = bp.unpack_bits(np.asarray(bits, dtype=np.uint64), n).reshape(len(got), n)
    return dict(zip(got, opened))


def score_bank(job_id: str, model: GbdtBankModel, x: Float, channel: Channel,
               timeout: float) -> Float:
    """Probabilities of the aligned rows: the trees walked with the grid's answers."""
    env = channel.recv(Tag(1, STEP_SCORE), timeout)
    grid_left = receive_grid_bits(env, model, x.shape[0])
    return sigmoid(model.raw(x, grid_left))
