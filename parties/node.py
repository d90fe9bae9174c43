"""One party node's job, from its CSV to its model, predictions and statistics.

The node loads and checks its data before touching the network, joins the
coordinator, aligns by PSI with its peer, then trains (mode ``local``) and evaluates,
or scores with a saved model. Every failure becomes one ``VflError`` line; before
re-raising it the node tells its peer and the coordinator, so nobody waits for a dead
job, and it writes no model, prediction or statistics file (audit logs stay: they are
valid prefixes).
Assumes: the caller built the transport (``connect`` and ``coordinator``) with mutual TLS.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from crypto.sigmoid import sigmoid
from federation.protocol.errors import ConfigError, InputDataError, ProtocolAbort, VflError
from federation.protocol.messages import (
    Decision,
    Envelope,
    FailRequest,
    JobPlan,
    JoinRequest,
    Mode,
    Model,
    Role,
    SyncReply,
    SyncRequest,
    Tag,
    Task,
    TrainSettings,
)
from federation.protocol.schedule import Schedule
from federation.transport.channel import Channel, CoordinatorLink
from parties import checkpoint
from parties.alignment import align, canonical_order
from parties.data import PartyData, Standardizer, load_party_csv
from parties.gbdt.model import TreeModel, load_model
from parties.gbdt.node_steps import TreeJob, score_trees, train_trees
from parties.joint import joint_logits
from parties.local_fit import LocalFit, with_intercept
from parties.model import PartyModel, atomic_write_text
from parties.outputs import write_bank_evaluation, write_scores
from parties.shared_fit import SharedFit
from parties.state import PartyState, Stage

log = logging.getLogger(__name__)
Float = npt.NDArray[np.float64]
STEP_EVALUATE = "evaluate"
STEP_SCORE = "score"


@dataclass(frozen=True)
class PartyConfig:
    """Everything one party node needs, parsed once from TOML and flags."""

    role: Role
    job_id: str
    data: Path
    out: Path
    id_column: str = "id"
    label_column: str = "y"
    model: Path | None = None
    psi_workers: int | None = None
    deadline_seconds: float = 30.0


Connect = Callable[[str], Channel]


class PartyNode:
    def __init__(
        self,
        config: PartyConfig,
        coordinator: CoordinatorLink,
        connect: Connect,
        address: str,
        on_epoch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.config = config
        self.role = config.role
        self.state = PartyState(config.role)
        self._coordinator = coordinator
        self._connect = connect
        self._address = address
        self._on_epoch = on_epoch
        self._channel: Channel | None = None
        self._aligned: dict[str, float] = {}
        self.stats: dict[str, Any] = {"role": self.role.value, "pid": os.getpid()}

    def run(self) -> dict[str, Any]:
        """Run the job; returns the statistics also written to ``out/stats.json``."""
        try:
            self._run()
        except VflError as exc:
            self._abort(str(exc))
            raise
        return self.stats

    def _abort(self, reason: str) -> None:
        if self.state.stage not in (Stage.DONE, Stage.ABORTED):
            self.state.advance(Stage.ABORTED)
        if self._channel is not None:
            self._channel.abort(f"{self.role} failed: {reason}")
        self._coordinator.fail(FailRequest(self.config.job_id, self.role, reason))

    def _run(self) -> None:
        cfg = self.config
        is_bank = self.role is Role.BANK
        # A node given a model scores: its file needs no label, and extra columns are ignored.
        labelled = is_bank and cfg.model is None
        data = load_party_csv(cfg.data, cfg.id_column, cfg.label_column if labelled else None)
        model = None
        if cfg.model is not None:  # the model's columns, so the dealer sizes masks right
            model = self._scoring_model(data)
            data = data.select(model.features)
        self.stats["rows"] = len(data.ids)
        plan = self._coordinator.join(
            JoinRequest(
                cfg.job_id,
                self.role,
                self._address,
                len(data.ids),
                data.x.shape[1] + (1 if is_bank else 0),
            )
        )
        self.state.advance(Stage.JOINED)
        settings = plan.settings
        if settings.task is Task.SCORE and model is None:
            raise ConfigError(f"{self.role}: a scoring job needs --model PATH")
        if settings.task is not Task.SCORE:
            model = None
        if is_bank and model is None and data.y is None:
            raise ConfigError(
                "bank: a training job needs labels, but this node was given a model to score with"
            )
        self._channel = self._connect(plan.peer_address)
        self.state.advance(Stage.PSI)
        started = time.perf_counter()
        rows = canonical_order(
            align(
                data.ids,
                self._channel,
                self.role,
                cfg.job_id,
                settings.deadline_seconds,
                cfg.psi_workers,
            ),
            data.ids,
            settings.seed,
        )
        self.stats["psi_seconds"] = time.perf_counter() - started
        self.stats["intersection_size"] = len(rows)
        resume = self._checkpoints(settings, len(rows), data.x.shape[1] + int(is_bank))
        offer = float(max(resume.states, default=0))
        reply = self._sync(
            0, "aligned", {"intersection": float(len(rows)), "checkpoint_epoch": offer}
        )
        resume.start = int(reply.values.get("start_epoch", 0))
        self._aligned = dict(reply.values)
        self.state.advance(Stage.ALIGNED)
        if model is None:
            self._train(plan, data, rows, resume)
        else:
            self._score(plan, data, rows, model)
        self.state.advance(Stage.DONE)
        self.stats["bytes_sent"] = self._channel.bytes_sent
        atomic_write_text(cfg.out / "stats.json", json.dumps(self.stats, indent=2) + "\n")

    def _sync(self, round_: int, step: str, values: dict[str, float]) -> SyncReply:
        reply = self._coordinator.sync(
            SyncRequest(self.config.job_id, self.role, round_, step, values)
        )
        if reply.decision is Decision.ABORT:
            raise ProtocolAbort(f"coordinator stopped the job: {reply.reason}")
        return reply

    def _checkpoints(self, settings: TrainSettings, n_rows: int, n_columns: int) -> _Resume:
        if settings.task is not Task.TRAIN or settings.checkpoint_every <= 0:
            return _Resume("", {})
        schedule = Schedule(
            n_rows, settings.validation_fraction, settings.batch_size, settings.seed
        )
        fp = checkpoint.fingerprint(settings, schedule, n_columns)
        return _Resume(fp, checkpoint.load(self.config.out / "checkpoint.json", fp))

    # -- training --------------------------------------------------------------------
    def _train(
        self, plan: JobPlan, data: PartyData, rows: npt.NDArray[np.intp], resume: _Resume
    ) -> None:
        settings, channel = plan.settings, self._require_channel()
        if settings.model is Model.GBDT:  # the bank grows the trees, the grid answers
            job = TreeJob(self.config.job_id, settings, plan.dealer_seed, channel,
                          self._coordinator, self.config.out)
            self.state.advance(Stage.TRAINING)
            self.stats.update(train_trees(job, self.role, data.take(rows.astype(np.int64)),
                                          self._aligned))
            self.state.advance(Stage.EVALUATING)
            self._sync(settings.trees + 1, "evaluated", {})
            return
        aligned = data.take(rows.astype(np.int64))
        schedule = Schedule(
            len(rows), settings.validation_fraction, settings.batch_size, settings.seed
        )
        standardizer = Standardizer.fit(aligned.x[schedule.train_rows])
        z = standardizer.apply(aligned.x)
        x = with_intercept(z) if self.role is Role.BANK else z
        self.state.advance(Stage.TRAINING)
        args = (self.role, self.config.job_id, settings, schedule, plan.dealer_seed, x,
                aligned.y, channel, self._coordinator, self._on_epoch)
        fitter: LocalFit | SharedFit
        if settings.mode is Mode.SHARED:
            fitter = SharedFit(*args, reveal=settings.reveal_weights)
        else:
            fitter = LocalFit(*args)
        self._wire_checkpoints(fitter, settings, resume)
        fit = fitter.run()
        clip = settings.feature_clip if settings.mode is Mode.SHARED else None
        if clip is not None:  # score the features exactly as training saw them
            x = np.clip(x, -clip, clip)
        self.stats.update(
            fit_seconds=fit.seconds,
            epochs_run=fit.epochs_run,
            losses=fit.losses,
            fit_time_split=fit.time_split,
            mode=settings.mode.value,
            expected_wrap_failures=fit.expected_wrap_failures,
        )
        self.state.advance(Stage.EVALUATING)
        if fit.weight_shares:  # --reveal-weights none: the bank opens u, never u_G
            u = self._joint(plan, x, fit.weight_shares, "evaluate", fit.last_round + 1)
            if u is not None:
                write_bank_evaluation(self.config.out, aligned, schedule, sigmoid(u), z, settings)
        else:
            tag = Tag(fit.last_round + 1, STEP_EVALUATE)
            u_own = x @ fit.theta
            if self.role is Role.GRID:
                channel.send(Envelope(self.config.job_id, tag, self.role, {"u": u_own}))
            else:
                u_grid = self._partial_logits(
                    channel.recv(tag, settings.deadline_seconds), len(rows)
                )
                p = sigmoid(u_own + u_grid)
                write_bank_evaluation(self.config.out, aligned, schedule, p, z, settings)
        shared = bool(fit.weight_shares)
        theta = np.zeros(x.shape[1]) if shared else fit.theta
        weights = theta[:-1] if self.role is Role.BANK else theta
        model = PartyModel(
            self.role.value,
            self.config.job_id,
            settings.mode.value,
            data.features,
            standardizer.mean.tolist(),
            standardizer.std.tolist(),
            [] if shared else weights.tolist(),
            float(theta[-1]) if self.role is Role.BANK and not shared else None,
            clip,
            {r: [int(v) for v in a] for r, a in fit.weight_shares.items()} if shared else None,
            settings.frac_bits,
            settings.feature_frac_bits,
        )
        model.save(self.config.out / "model.json")
        atomic_write_text(self.config.out / "coefficients.csv", model.coefficient_table())
        self._sync(fit.epochs_run + 1, "evaluated", {})

    def _joint(self, plan: JobPlan, x: Float, shares: dict[str, npt.NDArray[np.uint64]],
               purpose: str, round_: int) -> Float | None:
        s = plan.settings
        return joint_logits(
            self.role, self.config.job_id, x, shares, plan.dealer_seed,
            self._require_channel(), self._coordinator, frac_bits=s.frac_bits,
            feature_frac_bits=s.feature_frac_bits, clip=s.feature_clip, purpose=purpose,
            round_=round_, timeout=s.deadline_seconds)

    def _wire_checkpoints(
        self, fitter: LocalFit | SharedFit, settings: TrainSettings, resume: _Resume
    ) -> None:
        if resume.start > 0:
            if resume.start not in resume.states:
                raise ProtocolAbort(
                    f"{self.role}: asked to resume after epoch {resume.start}, "
                    f"but its checkpoints hold epochs {sorted(resume.states)}"
                )
            fitter.resume_from(resume.start, resume.states[resume.start])
            self.stats["resumed_after_epoch"] = resume.start
        if settings.checkpoint_every <= 0:
            return
        path, every = self.config.out / "checkpoint.json", settings.checkpoint_every

        def keep(epoch: int, state: dict[str, Any]) -> None:
            if epoch % every == 0 or epoch == settings.epochs:
                resume.states = checkpoint.save(
                    path, resume.fingerprint, {**resume.states, epoch: state}
                )

        fitter.on_checkpoint = keep

    def _partial_logits(self, env: Envelope, n: int) -> Float:
        u = env.tensors.get("u")
        if u is None or u.dtype != np.float64 or u.shape != (n,):
            what = "nothing" if u is None else f"{u.dtype} {u.shape}"
            raise ProtocolAbort(f"grid sent {what} at {env.tag.step!r}; expected float64 ({n},)")
        return np.asarray(u, dtype=np.float64)

    # -- scoring ---------------------------------------------------------------------
    def _scoring_model(self, data: PartyData) -> PartyModel | TreeModel:
        if self.config.model is None:
            raise ConfigError(f"{self.role}: a scoring job needs --model PATH")
        model = load_model(self.config.model, self.role)
        missing = [f for f in model.features if f not in data.features]
        if missing:
            raise InputDataError(
                f"{self.config.data}: missing column(s) {missing} that the "
                f"model {self.config.model} needs"
            )
        return model

    def _score(
        self,
        plan: JobPlan,
        data: PartyData,
        rows: npt.NDArray[np.intp],
        model: PartyModel | TreeModel,
    ) -> None:
        settings, channel = plan.settings, self._require_channel()
        self.state.advance(Stage.SCORING)
        aligned = data.take(rows.astype(np.int64))
        if not isinstance(model, PartyModel):  # trees: the grid answers its splits
            p = score_trees(self.config.job_id, model, aligned.x, channel,
                            settings.deadline_seconds)
            if p is not None:
                self._write_scores(data, rows, p)
            self._sync(1, "scored", {})
            return
        if model.shares is not None:  # a model kept shared scores jointly
            z = model.standardizer().apply(aligned.x)
            x = with_intercept(z) if self.role is Role.BANK else z
            joint = replace(plan, settings=replace(
                settings, frac_bits=model.frac_bits or settings.frac_bits,
                feature_frac_bits=model.feature_frac_bits or settings.feature_frac_bits,
                feature_clip=model.clip or settings.feature_clip))
            shares = {r: np.array(v, dtype=np.uint64) for r, v in model.shares.items()}
            u = self._joint(joint, x, shares, "score", 1)
            if u is not None:
                self._write_scores(data, rows, sigmoid(u))
            self._sync(1, "scored", {})
            return
        u_own = model.partial_logit(aligned.x)
        tag = Tag(1, STEP_SCORE)
        if self.role is Role.GRID:
            channel.send(Envelope(self.config.job_id, tag, self.role, {"u": u_own}))
        else:
            u_grid = self._partial_logits(channel.recv(tag, settings.deadline_seconds), len(rows))
            self._write_scores(data, rows, sigmoid(u_own + u_grid))
        self._sync(1, "scored", {})

    def _write_scores(self, data: PartyData, rows: npt.NDArray[np.intp], p: Float) -> None:
        write_scores(self.config.out, data, rows, p)
        self.stats["scored"] = len(rows)
        self.stats["no_grid_record"] = len(data.ids) - len(rows)

    def _require_channel(self) -> Channel:
        if self._channel is None:
            raise ProtocolAbort(f"{self.role}: no channel to the peer")
        return self._channel


@dataclass
class _Resume:
    """This party's checkpoints for the job, and the epoch the coordinator resumes after."""

    fingerprint: str
    states: dict[int, dict[str, Any]]
    start: int = 0


