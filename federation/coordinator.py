"""The coordinator: the job's state machine, its round barriers and the dealer.

It registers the two parties, hands each its dealer seed and its peer's address, waits
at each barrier until both parties arrive, sums the masked scalar loss shares once per
epoch, decides continue / stop, and deals correction vectors. It sees counts, shapes,
the epoch loss and weight-change norms; never a feature, label, share or masked value.
Assumes: the transport authenticated each caller's role (mutual TLS).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from crypto.prg import new_seed
from crypto.psi.errors import PsiError
from crypto.ring import decode
from federation.coordinator_deals import DealsMixin
from federation.dealer import Dealer
from federation.dealer_bins import TreeDealer
from federation.dealer_screen import ScreenDealer, agree_sizes
from federation.dealer_shared import SharedDealer
from federation.job_stages import (
    ALLOWED,
    STEP_ALIGNED,
    STEP_EPOCH,
    STEP_EVALUATED,
    STEP_SCORED,
    STEP_SCREENED,
    JobStage,
)
from federation.protocol.convergence import Outcome, judge
from federation.protocol.errors import ProtocolAbort, StageError
from federation.protocol.limits import message_bound
from federation.protocol.messages import (
    PARTY_ROLES,
    Decision,
    FailRequest,
    JobPlan,
    JoinRequest,
    MatchReply,
    MatchRequest,
    Mode,
    Model,
    PsiProtocol,
    Role,
    SyncReply,
    SyncRequest,
    Task,
    TrainSettings,
)
from federation.protocol.schedule import Schedule, min_batch_size
from federation.protocol.tree_schedule import STEP_TREE, TreeSchedule, early_stop
from federation.psi_match import TagMatchState

log = logging.getLogger(__name__)
Event = Callable[[dict[str, object]], None]


@dataclass
class _Barrier:
    arrived: dict[Role, SyncRequest] = field(default_factory=dict)
    reply: SyncReply | None = None


class Coordinator(DealsMixin):
    """Thread-safe job logic; the gRPC servicer and in-process tests call it directly."""

    def __init__(self, job_id: str, settings: TrainSettings, *, barrier_timeout: float = 60.0,
                 on_event: Event | None = None) -> None:
        self.job_id = job_id
        self.settings = settings
        self.stage = JobStage.REGISTER
        self.failure: str | None = None
        self.losses: list[float] = []
        self.delta_norms: list[float | None] = []
        self.stop_reason = ""  # why training stopped: converged, the epoch limit, diverged
        self.intersection_size: int | None = None
        self.start_epoch = 0
        self.stage_seconds: dict[str, float] = {}
        self._barrier_timeout = barrier_timeout
        self._on_event = on_event or (lambda event: None)
        self._cond = threading.Condition()
        self._joined: dict[Role, JoinRequest] = {}
        self._seeds = {role: new_seed() for role in PARTY_ROLES}
        self._barriers: dict[tuple[int, str], _Barrier] = {}
        self._dealer: Dealer | SharedDealer | TreeDealer | None = None
        self._screen_dealer: ScreenDealer | None = None
        self.validation_losses: list[float] = []
        self.kept_trees: int | None = None
        self._deal_lock = threading.Lock()
        self._joint_dealt: set[tuple[Role, str]] = set()
        self._schedule: Schedule | None = None
        self._columns: dict[Role, int] = {}
        self._stage_started = time.monotonic()
        self.psi = TagMatchState()
        self._told: set[Role] = set()  # parties told the failure reason (see wait_told)

    # -- state machine ---------------------------------------------------------------
    def _advance(self, to: JobStage) -> None:
        if to not in ALLOWED[self.stage]:
            raise StageError(f"job {self.job_id}: expected one of "
                             f"{sorted(ALLOWED[self.stage])}, got {to!r}")
        now = time.monotonic()
        self.stage_seconds[self.stage.value] = now - self._stage_started
        self._stage_started = now
        log.info("job %s: %s -> %s", self.job_id, self.stage, to)
        self.stage = to
        self._on_event({"event": "stage", "stage": to.value})

    def fail(self, req: FailRequest) -> None:
        """A party (or a timeout) failed the job: wake everyone with the reason."""
        with self._cond:
            self._told.add(Role(req.role))
            self._fail_locked(f"{req.role} failed: {req.reason}")

    def _fail_locked(self, reason: str) -> None:
        if self.stage in (JobStage.DONE, JobStage.FAILED):
            return
        self.failure = reason
        self.stage = JobStage.FAILED
        log.error("job %s failed: %s", self.job_id, reason)
        self._on_event({"event": "failed", "reason": reason})
        self._cond.notify_all()

    def _check_job(self, job_id: str, role: Role) -> None:
        if job_id != self.job_id:
            raise ProtocolAbort(f"{role} asked for job {job_id!r}; this coordinator runs "
                                f"{self.job_id!r}")
        if self.stage is JobStage.FAILED:
            self._told.add(role)  # no notify: callers may not hold the condition (wait_told polls)
            raise ProtocolAbort(f"job {self.job_id} already failed: {self.failure}")

    def _wait(self, ready: Callable[[], bool], what: str, role: Role | None = None) -> None:
        deadline = time.monotonic() + self._barrier_timeout
        while not ready():
            if self.stage is JobStage.FAILED:
                if role is not None:
                    self._told.add(role)
                raise ProtocolAbort(f"job {self.job_id} failed: {self.failure}")
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail_locked(f"timed out after {self._barrier_timeout:g} s waiting for {what}")
                raise ProtocolAbort(f"job {self.job_id} failed: {self.failure}")
            self._cond.wait(min(left, 1.0))

    # -- RPC handlers ----------------------------------------------------------------
    def join(self, req: JoinRequest) -> JobPlan:
        """Register one party; returns once both have joined."""
        with self._cond:
            self._check_job(req.job_id, req.role)
            if req.role in self._joined:
                raise ProtocolAbort(f"{req.role} joined job {self.job_id} twice")
            self._joined[req.role] = req
            self._on_event({"event": "joined", "role": req.role.value})
            if len(self._joined) == len(PARTY_ROLES):
                self._start_alignment()
            self._cond.notify_all()
            self._wait(lambda: len(self._joined) == len(PARTY_ROLES),
                       f"both parties to join (have {sorted(self._joined)})", req.role)
            self._check_job(req.job_id, req.role)
            peer = Role.BANK if req.role is Role.GRID else Role.GRID
            return JobPlan(self.job_id, self._joined[peer].address, self._seeds[req.role],
                           self.settings, message_bound(self.settings, req, self._joined[peer]))

    def _start_alignment(self) -> None:
        need = self._min_batch({role: r.n_columns for role, r in self._joined.items()})
        if self.settings.batch_size < need:
            self._fail_locked(
                f"batch size {self.settings.batch_size} is below the minimum batch {need} "
                f"(4x the larger party's {need // 4} columns); per-batch gradients could "
                "reveal labels")
            return
        self._advance(JobStage.ALIGN)

    def _min_batch(self, columns: dict[Role, int]) -> int:
        """The fewest rows of any batch of a logistic-regression job (1: no batches)."""
        if self.settings.task is Task.TRAIN and self.settings.model is Model.LR:
            return min_batch_size(columns.values())
        return 1

    def match(self, req: MatchRequest) -> MatchReply:
        """Server-aided PSI: wait for both parties' tags, match them once, answer each."""
        with self._cond:
            self._check_job(req.job_id, req.role)
            if self.settings.psi is not PsiProtocol.SERVER_AIDED:
                raise ProtocolAbort(f"{req.role} sent PSI tags, but job {self.job_id} "
                                    f"aligns with --psi {self.settings.psi}")
            if self.stage is not JobStage.ALIGN:
                raise StageError(f"{req.role} sent PSI tags in stage {self.stage}")
            if self.psi.add(req.role, req.tags):
                try:
                    common = self.psi.match()
                except PsiError as exc:
                    self._fail_locked(f"server-aided PSI: {exc}")
                    raise ProtocolAbort(f"job {self.job_id} failed: {self.failure}") from exc
                self._on_event({"event": "psi", "sizes": self.psi.sizes,
                                "intersection": common, "match_seconds": self.psi.seconds})
            self._cond.notify_all()
            self._wait(lambda: self.psi.ready(req.role),
                       f"both parties' PSI tags (have {self.psi.waiting()})", req.role)
            return self.psi.take(req.role)

    def sync(self, req: SyncRequest) -> SyncReply:
        """Barrier: wait for both parties at (round, step), then decide once for both."""
        with self._cond:
            self._check_job(req.job_id, req.role)
            barrier = self._barriers.setdefault((req.round, req.step), _Barrier())
            if req.role in barrier.arrived:
                raise ProtocolAbort(f"{req.role} reached round {req.round}, step {req.step!r} "
                                    "twice")
            barrier.arrived[req.role] = req
            if len(barrier.arrived) == len(PARTY_ROLES):
                barrier.reply = self._decide(req.round, req.step, barrier.arrived)
                self._cond.notify_all()
            self._wait(lambda: barrier.reply is not None,
                       f"both parties at round {req.round}, step {req.step!r} "
                       f"(arrived: {sorted(barrier.arrived)})", req.role)
            reply = barrier.reply
            if reply is None:  # pragma: no cover - _wait returns only when set
                raise ProtocolAbort("barrier released without a decision")
            return reply

    def _decide(self, round_: int, step: str, arrived: dict[Role, SyncRequest]) -> SyncReply:
        handlers: dict[str, Callable[[int, dict[Role, SyncRequest]], SyncReply]] = {
            STEP_ALIGNED: self._on_aligned,
            STEP_EPOCH: self._on_epoch,
            STEP_TREE: self._on_tree,
            STEP_EVALUATED: self._on_finished,
            STEP_SCORED: self._on_finished,
            STEP_SCREENED: self._on_finished,
        }
        handler = handlers.get(step)
        if handler is None:
            self._fail_locked(f"unknown barrier step {step!r}")
            return SyncReply(Decision.ABORT, reason=self.failure or "")
        try:
            return handler(round_, arrived)
        except (StageError, ValueError) as exc:
            self._fail_locked(str(exc))
            return SyncReply(Decision.ABORT, reason=str(exc))

    def _on_aligned(self, _round: int, arrived: dict[Role, SyncRequest]) -> SyncReply:
        counts = {role: int(r.values["intersection"]) for role, r in arrived.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"parties disagree on the intersection size: {counts}")
        n = counts[Role.GRID]
        self.intersection_size = n
        # Resume from the last epoch both parties checkpointed (0: a fresh start).
        self.start_epoch = min(int(r.values.get("checkpoint_epoch", 0)) for r in arrived.values())
        self._on_event({"event": "aligned", "intersection_size": n,
                        "start_epoch": self.start_epoch})
        if self.settings.task is Task.SCORE:
            self._advance(JobStage.SCORE)
            return SyncReply(Decision.CONTINUE, {"intersection": n})
        if self.settings.task is Task.SCREEN:
            return self._start_screening(n, arrived)
        if n == 0:
            raise ValueError("the parties share no enterprise IDs: nothing to train on")
        s = self.settings
        # A party that replaces its features by its own principal components (--pca) knows
        # its column count only after alignment; it reports it here.
        columns = {role: int(arrived[role].values.get("columns", r.n_columns))
                   for role, r in self._joined.items()}
        grown = [role for role, k in columns.items() if k > self._joined[role].n_columns]
        if grown:
            raise ValueError(f"{grown[0]} reported {columns[grown[0]]} columns after "
                             f"alignment, more than the {self._joined[grown[0]].n_columns} "
                             "it joined with")
        self._columns = columns
        need = self._min_batch(columns)  # both parties cut their batches with it alike
        self._schedule = Schedule(n, s.validation_fraction, s.batch_size, s.seed, need)
        values = {"intersection": n, "start_epoch": float(self.start_epoch),
                  "min_batch": float(need)}
        if s.model is Model.GBDT:
            # The grid joined with its feature count; its one-hot width is that x (bins + 1).
            width = columns[Role.GRID] * (s.bins + 1)
            self._dealer = TreeDealer(self._seeds, TreeSchedule(
                self._schedule.n_train, n, width, s.depth, s.trees, s.frac_bits))
            values["grid_width"] = float(width)
        else:
            dealer = SharedDealer if s.mode is Mode.SHARED else Dealer
            self._dealer = dealer(self._seeds, self._schedule, columns)
        self._advance(JobStage.FIT)
        return SyncReply(Decision.CONTINUE, values)

    def _start_screening(self, n: int, arrived: dict[Role, SyncRequest]) -> SyncReply:
        """Sizes of the two screening products, which both parties must report alike."""
        if n == 0:
            raise ValueError("the parties share no enterprise IDs: nothing to screen")
        self._screen_dealer = ScreenDealer(self._seeds, agree_sizes(
            n, {role: r.values for role, r in arrived.items()}))
        if min(self._screen_dealer.sizes.width, self._screen_dealer.sizes.grid_columns,
               self._screen_dealer.sizes.bank_columns) >= 1:
            self._screen_dealer.start()
        self._on_event({"event": "screening", "rows": n})
        self._advance(JobStage.SCREEN)
        # The grid's one-hot width (public, as c_1's shape): the bank checks E by it and
        # asks for c_1 only once E is in, so the dealer works while E is made and sent.
        return SyncReply(Decision.CONTINUE, {"intersection": n,
                                             "grid_width": float(self._screen_dealer.sizes.width)})

    def _on_epoch(self, epoch: int, arrived: dict[Role, SyncRequest]) -> SyncReply:
        if self.stage is not JobStage.FIT or self._schedule is None:
            raise StageError(f"epoch report in stage {self.stage}")
        expected = self.start_epoch + len(self.losses) + 1
        if epoch != expected:
            raise ValueError(f"epoch report for epoch {epoch}, expected {expected}")
        # The two loss shares carry a pairwise zero-sum mask: only their sum means anything.
        total = np.array([sum(r.ring_values["loss"] for r in arrived.values()) % 2**64],
                         dtype=np.uint64)
        loss = float(decode(total, 2 * self.settings.frac_bits)[0]) / self._schedule.n_train
        # Mode shared keeps the weights secret, so its weight change is not reported (NaN).
        delta_sq = sum(r.values.get("delta_sq", math.nan) for r in arrived.values())
        delta = math.sqrt(delta_sq) if math.isfinite(delta_sq) else None
        self.losses.append(loss)
        self.delta_norms.append(delta)
        verdict = judge(self.losses, self.settings.tolerance, first_epoch=self.start_epoch + 1)
        last = epoch >= self.settings.epochs
        stop = verdict.outcome is not Outcome.CONTINUE or last
        self._on_event({"event": "epoch", "epoch": epoch, "epochs": self.settings.epochs,
                        "loss": loss, "delta_norm": delta, "stop": stop})
        if verdict.outcome is Outcome.DIVERGED:
            self.stop_reason = (f"training diverged: {verdict.reason}; stopped with no model: "
                                f"try a smaller --learning-rate (now "
                                f"{self.settings.learning_rate:g})")
            self._fail_locked(self.stop_reason)
            return SyncReply(Decision.ABORT, reason=self.stop_reason)
        if stop:
            self.stop_reason = verdict.reason or (f"reached the epoch limit ({epoch}) before "
                                                  "converging")
        decision = Decision.STOP if stop else Decision.CONTINUE
        if decision is Decision.STOP:
            self._advance(JobStage.EVALUATE)
        return SyncReply(decision, {"loss": loss} if delta is None else
                         {"loss": loss, "delta_norm": delta})

    def _on_tree(self, tree: int, arrived: dict[Role, SyncRequest]) -> SyncReply:
        """After each tree: the bank's train and validation loss; stop early or go on."""
        if self.stage is not JobStage.FIT or not isinstance(self._dealer, TreeDealer):
            raise StageError(f"tree report in stage {self.stage}")
        if tree != len(self.losses) + 1:
            raise ValueError(f"report for tree {tree}, expected {len(self.losses) + 1}")
        values = arrived[Role.BANK].values
        train = float(values.get("train_loss", math.nan))
        valid = float(values.get("validation_loss", math.nan))
        self.losses.append(train)
        self.validation_losses.append(valid)
        self.delta_norms.append(None)
        stop, keep = early_stop(self.validation_losses, self.settings.early_stopping_rounds,
                                self.settings.trees)
        self._on_event({"event": "epoch", "epoch": tree, "epochs": self.settings.trees,
                        "loss": train, "validation_loss": valid, "delta_norm": None,
                        "stop": stop})
        if stop:
            self.kept_trees = keep
            self._dealer.close()
            self._advance(JobStage.EVALUATE)
        return SyncReply(Decision.STOP if stop else Decision.CONTINUE, {"keep": float(keep)})

    def _on_finished(self, _round: int, _arrived: dict[Role, SyncRequest]) -> SyncReply:
        self._advance(JobStage.DONE)
        return SyncReply(Decision.STOP)

    def party_addresses(self) -> dict[Role, str]:
        """Where the joined parties serve (for liveness checks)."""
        with self._cond:
            return {role: r.address for role, r in self._joined.items()}

    @property
    def finished(self) -> bool:
        return self.stage in (JobStage.DONE, JobStage.FAILED)

    def _until(self, done: Callable[[], bool], timeout: float, step: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, step))
            return True

    def wait_told(self, timeout: float) -> bool:
        """After a failure, wait up to ``timeout`` s until each party not yet joined (starting
        up) got the reason in a reply; True if all did (a joined one hears it from its peer)."""
        return self._until(lambda: self._told.union(self._joined).issuperset(PARTY_ROLES),
                           timeout, 0.5)

    def wait_finished(self, timeout: float) -> JobStage:
        if not self._until(lambda: self.finished, timeout, 1.0):
            with self._cond:
                self._fail_locked(f"job did not finish within {timeout:g} s")
        return self.stage
