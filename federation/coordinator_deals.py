"""The coordinator's dealing of corrections: per epoch of a fit, once for screening, once
per party for a joint forward pass (docs/design.md, "Dealer").

A mixin of :class:`federation.coordinator.Coordinator`: it checks the job and stage under the
coordinator's lock, then computes outside it (one deal at a time), and turns a dealer's
refusal (a mask asked for twice) into ``ProtocolAbort``. It never receives a masked value.
"""

from __future__ import annotations

import threading

from federation.dealer import Dealer, joint_correction
from federation.dealer_bins import TreeDealer
from federation.dealer_screen import ScreenDealer
from federation.dealer_shared import SharedDealer
from federation.job_stages import (
    JOINT_EPOCH,
    JobStage,
)
from federation.protocol.errors import ProtocolAbort, StageError
from federation.protocol.messages import (
    DealReply,
    DealRequest,
    JoinRequest,
    Role,
    TrainSettings,
)
from federation.protocol.products import SCREEN_DEAL_EPOCH


class DealsMixin:
    """``deal`` and its two special cases; the state is the coordinator's."""

    job_id: str
    settings: TrainSettings
    stage: JobStage
    intersection_size: int | None
    _cond: threading.Condition
    _deal_lock: threading.Lock
    _dealer: Dealer | SharedDealer | TreeDealer | None
    _screen_dealer: ScreenDealer | None
    _joint_dealt: set[tuple[Role, str]]
    _columns: dict[Role, int]
    _joined: dict[Role, JoinRequest]
    _seeds: dict[Role, bytes]

    def _check_job(self, job_id: str, role: Role) -> None:
        raise NotImplementedError

    def deal(self, req: DealRequest) -> DealReply:
        if req.epoch == JOINT_EPOCH:
            return self._deal_joint(req)
        if req.epoch == SCREEN_DEAL_EPOCH:
            return self._deal_screen(req)
        with self._cond:
            self._check_job(req.job_id, req.role)
            if self.stage is not JobStage.FIT or self._dealer is None:
                raise StageError(f"{req.role} asked for corrections in stage {self.stage}")
            limit = (self._dealer.schedule.n_batches if isinstance(self._dealer, TreeDealer)
                     else self.settings.epochs)
            if not 1 <= req.epoch <= limit:
                raise ProtocolAbort(f"{req.role} asked for corrections of epoch {req.epoch}; "
                                    f"the job has {self.settings.epochs}")
            dealer = self._dealer
        try:
            with self._deal_lock:
                return DealReply(dealer.corrections(req.role, req.epoch))
        except ValueError as exc:
            raise ProtocolAbort(str(exc)) from exc

    def _deal_screen(self, req: DealRequest) -> DealReply:
        """The bank's corrections of the two screening products, once."""
        with self._cond:
            self._check_job(req.job_id, req.role)
            dealer = self._screen_dealer
            if self.stage is not JobStage.SCREEN or dealer is None:
                raise StageError(f"{req.role} asked for screening corrections in stage "
                                 f"{self.stage}")
            if req.role is not Role.BANK:
                raise ProtocolAbort(f"{req.role} asked for screening corrections; only the "
                                    "bank receives any")
        s = dealer.sizes
        if min(s.width, s.grid_columns, s.bank_columns) < 1:
            raise ProtocolAbort(f"screening sizes incomplete: {s}")
        try:
            with self._deal_lock:
                return DealReply(dealer.corrections())
        except ValueError as exc:
            raise ProtocolAbort(str(exc)) from exc

    def _deal_joint(self, req: DealRequest) -> DealReply:
        """Corrections of the joint forward pass over the aligned rows (weights kept shared):
        after training (evaluate) or in a scoring job (score), once per party."""
        purposes = {JobStage.EVALUATE: "evaluate", JobStage.SCORE: "score"}
        with self._cond:
            self._check_job(req.job_id, req.role)
            purpose = purposes.get(self.stage)
            if purpose is None or self.intersection_size is None:
                raise StageError(f"{req.role} asked for joint corrections in stage {self.stage}")
            if (req.role, purpose) in self._joint_dealt:
                raise ProtocolAbort(f"joint corrections for {req.role} were already dealt")
            self._joint_dealt.add((req.role, purpose))
            columns = self._columns or {role: r.n_columns for role, r in self._joined.items()}
            n = self.intersection_size
        return DealReply({purpose: joint_correction(self._seeds, req.role, purpose, n, columns)})
