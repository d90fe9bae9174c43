"""One party node's job, from its CSV to its model, predictions and statistics.

The node loads and checks its data before touching the network, joins the
coordinator, aligns by PSI with its peer, then trains (mode ``local``) and evaluates,
or scores with a saved model. Every failure becomes one ``VflError`` line; before
re-raising it the node tells its peer and the coordinator its kind only (the line may hold
paths or cells), so nobody waits for a dead job; it writes no model, prediction or
statistics file (audit logs stay: they are valid prefixes).
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
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from federation.protocol.errors import (
    ConfigError,
    InputDataError,
    ProtocolAbort,
    VflError,
    failure_notice,
)
from federation.protocol.messages import (
    Decision,
    Envelope,
    FailRequest,
    JobPlan,
    JoinRequest,
    Mode,
    Model,
    PsiProtocol,
    Role,
    SyncReply,
    SyncRequest,
    Tag,
    Task,
)
from federation.protocol.schedule import Schedule
from federation.transport.channel import Channel, CoordinatorLink
from parties import checkpoint
from parties.alignment import TagMatcher, align, canonical_order
from parties.data import (
    PartyData,
    Standardizer,
    check_classes,
    check_split_classes,
    load_party_csv,
)
from parties.divergence import LogitGuard
from parties.gbdt.model import TreeModel, load_model
from parties.gbdt.node_steps import TreeJob, score_trees, train_trees
from parties.inputs import fit_training_pca, select_columns
from parties.joint import joint_logits, partial_logits_of
from parties.local_fit import FitResult, LocalFit, with_intercept
from parties.model import PartyModel, atomic_write_text
from parties.outputs import write_bank_evaluation, write_scores
from parties.pca import Pca
from parties.screen_step import ROUND_SELECTION, ScreenConfig, run_side, screen_sizes
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
    psi: PsiProtocol | None = None  # refuse a job that aligns any other way (None: any)
    features: tuple[str, ...] | None = None  # train on these columns only (--select, --stage)
    pca: int | str | None = None  # this party's own principal components (count or "auto")
    screen: ScreenConfig | None = None  # screen indicators instead (empty cell = missing)


Connect = Callable[[str], Channel]


class PartyLink(CoordinatorLink, TagMatcher, Protocol):
    """What a party node calls on the coordinator: the job's RPCs and the PSI match."""


class PartyNode:
    def __init__(self, config: PartyConfig, coordinator: PartyLink, connect: Connect,
                 address: str, on_epoch: Callable[[int, float], None] | None = None) -> None:
        self.config = config
        self.role = config.role
        self.state = PartyState(config.role)
        self._coordinator = coordinator
        self._connect = connect
        self._address = address
        self._on_epoch = on_epoch
        self._channel: Channel | None = None
        self._aligned: dict[str, float] = {}
        self._pca: Pca | None = None
        self.stats: dict[str, Any] = {"role": self.role.value, "pid": os.getpid()}

    def run(self) -> dict[str, Any]:
        """Run the job; returns the statistics also written to ``out/stats.json``."""
        try:
            self._run()
        except VflError as exc:  # the details stay here: others learn only the kind
            self._abort(failure_notice(self.role.value, exc))
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, or the node's watchers
            self._abort(str(exc) or "interrupted")
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
        data = load_party_csv(cfg.data, cfg.id_column, cfg.label_column if labelled else None,
                              allow_missing=cfg.screen is not None)
        if data.y is not None:  # one class, or a handful of rows of one, cannot be fitted
            check_classes(data.y, f"{cfg.data}, column {cfg.label_column!r}")
        model = None
        if cfg.model is not None:  # the model's columns, so the dealer sizes masks right
            model = self._scoring_model(data)
            data = data.select(model.features)
        elif cfg.features is not None:
            data = select_columns(data, list(cfg.features), self.role)
        self.stats["rows"] = len(data.ids)
        plan = self._coordinator.join(
            JoinRequest(
                cfg.job_id,
                self.role,
                self._address,
                len(data.ids),
                (len(model.mean) if isinstance(model, PartyModel) else data.x.shape[1])
                + (1 if is_bank else 0),
            )
        )
        self.state.advance(Stage.JOINED)
        settings = plan.settings
        if settings.task is Task.SCORE and model is None:
            raise ConfigError(f"{self.role}: a scoring job needs --model PATH")
        if (settings.task is Task.SCREEN) != (cfg.screen is not None):
            raise ConfigError(f"{self.role}: a [screen] table needs a screening job and vice versa")
        if settings.task is not Task.SCORE:
            model = None
        if is_bank and model is None and data.y is None:
            raise ConfigError(
                "bank: a training job needs labels, but this node was given a model to score with"
            )
        if cfg.psi is not None and cfg.psi is not settings.psi:
            raise ConfigError(f"{self.role}: this party aligns only with --psi {cfg.psi}, "
                              f"but job {cfg.job_id} uses --psi {settings.psi}")
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
                protocol=settings.psi,
                coordinator=self._coordinator,
            ),
            data.ids,
            settings.seed,
        )
        self.stats["psi_seconds"] = time.perf_counter() - started
        self.stats["psi_protocol"] = settings.psi.value
        self.stats["intersection_size"] = len(rows)
        if cfg.screen is not None:
            self._screen(plan, data, rows, cfg.screen)
            return
        columns = data.x.shape[1]
        if model is None and cfg.pca is not None and settings.task is Task.TRAIN:
            self._pca = fit_training_pca(data, rows, settings, cfg.pca, self.stats)
            columns = self._pca.loadings.shape[1]
        resume = checkpoint.resume_plan(settings, len(rows), columns + int(is_bank),
                                        cfg.out / "checkpoint.json")
        offer = float(max(resume.states, default=0))
        values = {"intersection": float(len(rows)), "checkpoint_epoch": offer,
                  "columns": float(columns + int(is_bank))}  # columns: after any PCA
        reply = self._sync(0, "aligned", values)
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

    def _screen(self, plan: JobPlan, data: PartyData, rows: npt.NDArray[np.intp],
                screen: ScreenConfig) -> None:
        """Screening instead of training (``parties.screen_step``); no model is written."""
        aligned, cfg = data.take(rows.astype(np.int64)), self.config
        reply = self._sync(0, "aligned", screen_sizes(self.role, plan.settings, aligned, screen))
        self.state.advance(Stage.ALIGNED)
        self.state.advance(Stage.SCREENING)
        self.stats.update(run_side(self.role, self._require_channel(), self._coordinator, plan,
                                   aligned, screen, cfg.out, cfg.id_column, dict(reply.values)))
        self._sync(ROUND_SELECTION + 1, "screened", {})
        self.state.advance(Stage.DONE)
        self.stats["bytes_sent"] = self._require_channel().bytes_sent
        atomic_write_text(cfg.out / "stats.json", json.dumps(self.stats, indent=2) + "\n")

    def _sync(self, round_: int, step: str, values: dict[str, float]) -> SyncReply:
        reply = self._coordinator.sync(
            SyncRequest(self.config.job_id, self.role, round_, step, values)
        )
        if reply.decision is Decision.ABORT:
            raise ProtocolAbort(f"coordinator stopped the job: {reply.reason}")
        return reply

    # -- training --------------------------------------------------------------------
    def _train(
        self, plan: JobPlan, data: PartyData, rows: npt.NDArray[np.intp], resume: checkpoint.Resume
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
        # The coordinator's minimum batch cuts the partition; each fit checks it itself.
        schedule = Schedule(len(rows), settings.validation_fraction, settings.batch_size,
                            settings.seed, int(self._aligned.get("min_batch", 1)))
        if aligned.y is not None:
            check_split_classes(aligned.y, schedule.train_rows, schedule.validation_rows,
                                str(self.config.data))
        inputs = aligned.x if self._pca is None else self._pca.apply(aligned.x)
        standardizer = Standardizer.fit(inputs[schedule.train_rows])
        z = standardizer.apply(inputs)
        x = with_intercept(z) if self.role is Role.BANK else z
        self.state.advance(Stage.TRAINING)
        args = (self.role, self.config.job_id, settings, schedule, plan.dealer_seed, x,
                aligned.y, channel, self._coordinator, self._on_epoch)
        fitter: LocalFit | SharedFit
        if settings.mode is Mode.SHARED:
            fitter = SharedFit(*args, reveal=settings.reveal_weights)
        else:
            fitter = LocalFit(*args)
        if resumed := checkpoint.wire(fitter, settings, resume, self.role.value,
                                      self.config.out / "checkpoint.json"):
            self.stats["resumed_after_epoch"] = resumed
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
        u = self._evaluation_logits(plan, x, fit, schedule)
        calibration = None
        if u is not None:  # the bank: exact logits of every aligned row
            platt = write_bank_evaluation(self.config.out, aligned, schedule, u, z, settings)
            calibration = platt.as_dict()
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
            calibration,
            None if self._pca is None else self._pca.as_dict(),
        )
        model.save(self.config.out / "model.json")
        atomic_write_text(self.config.out / "coefficients.csv", model.coefficient_table())
        self._sync(fit.epochs_run + 1, "evaluated", {})

    def _evaluation_logits(self, plan: JobPlan, x: Float, fit: FitResult,
                           schedule: Schedule) -> Float | None:
        """The bank's full logits of the aligned rows (the grid: None), once each party has
        checked the magnitudes it sees against the fixed-point range (parties.divergence)."""
        s, channel = plan.settings, self._require_channel()
        guard = LogitGuard(self.role, s.frac_bits, schedule.n_train, s.learning_rate)
        guard.start(fit.epochs_run)
        if fit.weight_shares:  # --reveal-weights none: the bank opens u, never u_G
            u = self._joint(plan, x, fit.weight_shares, "evaluate", fit.last_round + 1)
            if u is not None:
                guard.add(u[schedule.train_rows], "logits")
            return u
        u_own = x @ fit.theta
        guard.add(u_own[schedule.train_rows])
        tag = Tag(fit.last_round + 1, STEP_EVALUATE)
        if self.role is Role.GRID:
            channel.send(Envelope(self.config.job_id, tag, self.role, {"u": u_own}))
            return None
        return u_own + partial_logits_of(channel.recv(tag, s.deadline_seconds), x.shape[0])

    def _joint(self, plan: JobPlan, x: Float, shares: dict[str, npt.NDArray[np.uint64]],
               purpose: str, round_: int) -> Float | None:
        s = plan.settings
        return joint_logits(
            self.role, self.config.job_id, x, shares, plan.dealer_seed,
            self._require_channel(), self._coordinator, frac_bits=s.frac_bits,
            feature_frac_bits=s.feature_frac_bits, clip=s.feature_clip, purpose=purpose,
            round_=round_, timeout=s.deadline_seconds)

    # -- scoring ---------------------------------------------------------------------
    def _scoring_model(self, data: PartyData) -> PartyModel | TreeModel:
        if self.config.model is None:
            raise ConfigError(f"{self.role}: a scoring job needs --model PATH")
        model = load_model(self.config.model, self.role)
        if missing := [f for f in model.features if f not in data.features]:
            raise InputDataError(f"{self.config.data}: missing column(s) {missing} that the "
                                 f"model {self.config.model} needs")
        return model

    def _score(self, plan: JobPlan, data: PartyData, rows: npt.NDArray[np.intp],
               model: PartyModel | TreeModel) -> None:
        settings, channel = plan.settings, self._require_channel()
        self.state.advance(Stage.SCORING)
        aligned = data.take(rows.astype(np.int64))
        p: Float | None = None
        if not isinstance(model, PartyModel):  # trees: the grid answers its splits
            p = score_trees(self.config.job_id, model, aligned.x, channel,
                            settings.deadline_seconds)
        elif model.shares is not None:  # a model kept shared scores jointly
            z = model.standardized(aligned.x)
            x = with_intercept(z) if self.role is Role.BANK else z
            joint = replace(plan, settings=replace(
                settings, frac_bits=model.frac_bits or settings.frac_bits,
                feature_frac_bits=model.feature_frac_bits or settings.feature_frac_bits,
                feature_clip=model.clip or settings.feature_clip))
            shares = {r: np.array(v, dtype=np.uint64) for r, v in model.shares.items()}
            u = self._joint(joint, x, shares, "score", 1)
            p = None if u is None else model.probability(u)
        elif self.role is Role.GRID:
            u_own = model.partial_logit(aligned.x)
            channel.send(Envelope(self.config.job_id, Tag(1, STEP_SCORE), self.role,
                                  {"u": u_own}))
        else:
            env = channel.recv(Tag(1, STEP_SCORE), settings.deadline_seconds)
            u = model.partial_logit(aligned.x) + partial_logits_of(env, len(rows))
            p = model.probability(u)
        if p is not None:
            self._write_scores(data, rows, p)
        self._sync(1, "scored", {})

    def _write_scores(self, data: PartyData, rows: npt.NDArray[np.intp], p: Float) -> None:
        write_scores(self.config.out, data, rows, p)
        self.stats["scored"] = len(rows)
        self.stats["no_grid_record"] = len(data.ids) - len(rows)

    def _require_channel(self) -> Channel:
        if self._channel is None:
            raise ProtocolAbort(f"{self.role}: no channel to the peer")
        return self._channel
