"""Training in mode ``local`` (the source patent's scheme, as in FATE's hetero-LR).

Each party keeps its own weights in plaintext and learns only its own gradient. Per
iteration on batch I (docs/design.md, "Training, mode local"):

1. u_own = X_own theta_own in float (the bank's X carries a column of ones).
2. The residual d = u/4 + 1/2 - y is born shared: grid enc(u_G/4), bank enc(u_B/4+1/2-y).
3. One exchange: each party sends F = d_own - m (its dealer mask), z = E_peer^T d_own + c_1
   (its share of the peer's cross term) and its masked loss operand (e or f).
4. Each party adds X_own^T d_own + M_own^T F_peer + c_0 + z_peer, decodes the 2f-bit
   result exactly, divides by |I| and updates its own weights.
5. The Taylor loss is summed in shares over the epoch and opened to the coordinator
   only as an epoch total, hidden under a pairwise zero-sum mask until both shares add.

Assumes: semi-honest parties, a non-colluding dealer, an authenticated channel. A party
learns its per-batch gradient X_own^T d, which reveals labels when |I| is not much
larger than its column count: the coordinator and each party refuse any batch (the
partition's last one included) below 4x the larger column count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto import correlated
from crypto.beaver import (
    combine_matrix_side,
    combine_vector_side,
    dot_combine_first,
    dot_combine_second,
    dot_mask,
    mask_matrix,
    mask_vector,
)
from crypto.prg import derive_key, expand
from crypto.ring import Ring, decode, encode, rmatvec
from crypto.sigmoid import (
    loss_cross_vector,
    loss_local_features,
    loss_local_label,
    residual_share_features,
    residual_share_label,
)
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import (
    Decision,
    Envelope,
    Role,
    SyncReply,
    SyncRequest,
    Tag,
    TrainSettings,
    peer_of,
)
from federation.protocol.products import GRAD, LOSS
from federation.protocol.schedule import Schedule, check_batches
from federation.transport.channel import Channel, CoordinatorLink
from parties.deal_ahead import DealAhead
from parties.divergence import LogitGuard
from parties.optim import OptimizerState

log = logging.getLogger(__name__)
Float = npt.NDArray[np.float64]
STEP_KEY = "pair-key"
STEP_MASKED_X = "masked-x"
STEP_FIT = "fit"
STEP_EPOCH = "epoch"


@dataclass
class FitResult:
    theta: Float
    losses: list[float] = field(default_factory=list)
    epochs_run: int = 0
    seconds: float = 0.0
    last_round: int = 0
    # Where the time went: setup (key agreement, E exchange), dealing, sending, waiting for
    # the peer's message, and everything else (local arithmetic).
    time_split: dict[str, float] = field(default_factory=dict)
    # Mode shared: an upper bound on the expected number of truncation wrap failures in the
    # run (docs/design.md, "Training, mode shared"); mode local truncates nothing.
    expected_wrap_failures: float = 0.0
    # Mode shared with --reveal-weights none: this party's shares of each block (keyed by the
    # owner's role value, ring elements at frac_bits); scoring must then stay joint.
    weight_shares: dict[str, npt.NDArray[np.uint64]] = field(default_factory=dict)


def with_intercept(x: Float) -> Float:
    """The bank's matrix: its features and a last column of ones for theta_0."""
    return np.hstack([x, np.ones((x.shape[0], 1))])


def agree_pair_key(channel: Channel, job_id: str, role: Role, timeout: float) -> bytes:
    """An X25519 key agreement with the peer over the (mTLS) channel.

    The key masks the loss shares the parties report to the coordinator, so the
    coordinator (which knows every dealer mask) sees only their sum.
    """
    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    tag = Tag(0, STEP_KEY)
    channel.send(Envelope(job_id, tag, role, {"public": np.frombuffer(public, dtype=np.uint8)}))
    peer_public = channel.recv(tag, timeout).tensors["public"]
    if peer_public.dtype != np.uint8 or peer_public.shape != (32,):
        raise ProtocolAbort(
            f"{peer_of(role)} sent a malformed key: {peer_public.dtype} "
            f"{peer_public.shape}, expected uint8 (32,)"
        )
    shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public.tobytes()))
    return derive_key(shared, f"gridcredit/pair/{job_id}")


def report_epoch(
    coordinator: CoordinatorLink,
    job_id: str,
    role: Role,
    pair_key: bytes,
    epoch: int,
    loss_share: Ring,
    delta_sq: float,
) -> SyncReply:
    """Open the epoch loss to the coordinator only, under the pairwise zero-sum mask.

    The grid adds r and the bank subtracts it (r from the key only the two parties share),
    so the coordinator, which knows every dealer mask, learns the sum and nothing else.
    """
    r = expand(pair_key, f"loss-mask/epoch={epoch}", 1)
    masked = loss_share + r if role is Role.GRID else loss_share - r
    reply = coordinator.sync(
        SyncRequest(
            job_id, role, epoch, STEP_EPOCH, {"delta_sq": delta_sq}, {"loss": int(masked[0])}
        )
    )
    if reply.decision is Decision.ABORT:
        raise ProtocolAbort(f"coordinator aborted the job: {reply.reason}")
    return reply


class LocalFit:
    """One party's side of mode ``local`` training."""

    def __init__(
        self,
        role: Role,
        job_id: str,
        settings: TrainSettings,
        schedule: Schedule,
        seed: bytes,
        x: Float,
        y: Float | None,
        channel: Channel,
        coordinator: CoordinatorLink,
        on_epoch: Callable[[int, float], None] | None = None,
    ) -> None:
        if (role is Role.BANK) != (y is not None):
            raise ValueError("exactly the bank holds labels")
        self.role, self.peer = role, peer_of(role)
        self.job_id, self.settings, self.schedule = job_id, settings, schedule
        self.f = settings.frac_bits
        self._seed, self._channel, self._coordinator = seed, channel, coordinator
        self._on_epoch = on_epoch or (lambda epoch, loss: None)
        self._timeout = settings.deadline_seconds
        rows = schedule.train_rows
        self._x = [x[rows[a:b]] for a, b in schedule.batch_bounds]
        self._x_ring = [encode(xb, self.f) for xb in self._x]
        self._y = None if y is None else [y[rows[a:b]] for a, b in schedule.batch_bounds]
        self._mask = [
            correlated.matrix_mask(seed, role.value, j, xb.shape)
            for j, xb in enumerate(self._x_ring)
        ]
        self._peer_masked: list[Ring] = []
        self._pair_key = b""
        k = x.shape[1]
        penalized = np.ones(k)
        if role is Role.BANK:
            penalized[-1] = 0.0  # no penalty on the intercept
        self.optimizer = OptimizerState(
            settings.optimizer,
            settings.learning_rate,
            settings.l2,
            settings.l1,
            settings.momentum,
            penalized=penalized,
        )
        self.theta = np.zeros(k)
        self.guard = LogitGuard(role, self.f, schedule.n_train, settings.learning_rate)
        self._clock = {"setup": 0.0, "deal": 0.0, "send": 0.0, "wait": 0.0, "barrier": 0.0}
        self.start_epoch = 0
        self._deals = DealAhead(coordinator, job_id, role, settings.epochs)
        self._resume: dict[str, Any] | None = None
        self.on_checkpoint: Callable[[int, dict[str, Any]], None] | None = None

    # -- setup -----------------------------------------------------------------------
    def setup(self) -> None:
        """Agree the pairwise key and swap E = X - M for every batch, once per job."""
        self._pair_key = agree_pair_key(self._channel, self.job_id, self.role, self._timeout)
        masked = np.vstack([mask_matrix(xr, m) for xr, m in zip(self._x_ring, self._mask)])
        tag = Tag(0, STEP_MASKED_X)
        self._channel.send(Envelope(self.job_id, tag, self.role, {"E": masked}))
        peer = self._channel.recv(tag, self._timeout).tensors["E"]
        if peer.dtype != np.uint64 or peer.ndim != 2 or peer.shape[0] != self.schedule.n_train:
            raise ProtocolAbort(
                f"{self.peer} sent masked features of dtype {peer.dtype}, shape "
                f"{peer.shape}; expected uint64 ({self.schedule.n_train}, k)"
            )
        check_batches(self.schedule, self.role.value, (self._x[0].shape[1], peer.shape[1]))
        self._peer_masked = [np.asarray(peer[a:b], dtype=np.uint64)
                             for a, b in self.schedule.batch_bounds]

    # -- one epoch -------------------------------------------------------------------
    def _epoch_masks(self, epoch: int) -> dict[str, Ring]:
        s, seed, nb, w = self.schedule, self._seed, self.schedule.n_batches, self.schedule.width
        own, peer = GRAD[self.role], GRAD[self.peer]
        masks = {
            "m": correlated.vector_masks(seed, peer, epoch, nb, w),
            "c0": correlated.product_c0(seed, own, epoch, nb, self._x_ring[0].shape[1]),
        }
        if self.role is Role.GRID:
            masks["a"] = correlated.dot_first_masks(seed, LOSS, epoch, nb, w)
            masks["dc0"] = correlated.dot_c0(seed, LOSS, epoch, nb)
        else:
            masks["b"] = correlated.dot_second_masks(seed, LOSS, epoch, nb, s.width)
        t0 = time.perf_counter()
        deal = self._deals.get(epoch)
        self._clock["deal"] += time.perf_counter() - t0
        masks["c1"] = deal.corrections[peer]
        peer_k = self._peer_masked[0].shape[1]
        if masks["c1"].ndim != 2 or masks["c1"].shape[1] != peer_k:
            raise ProtocolAbort(f"{self.peer} sent masked features with {peer_k} columns; the "
                                f"dealer's corrections expect {masks['c1'].shape[1:]}")
        if self.role is Role.BANK:
            masks["loss_c1"] = deal.corrections[LOSS]
        return masks

    def _iteration(self, t: int, batch: int, masks: dict[str, Ring], round_: int) -> Ring:
        """One exchange; updates theta and returns this party's 2f-bit loss share."""
        x, x_ring, n = self._x[batch], self._x_ring[batch], self._x[batch].shape[0]
        u = x @ self.theta
        self.guard.add(u)  # before anything derived from u is encoded
        if self._y is None:
            d = residual_share_features(u, self.f)
            loss_operand, local_loss = encode(u, self.f), loss_local_features(u)
            loss_mask = masks["a"][t, :n]
        else:
            y = self._y[batch]
            d = residual_share_label(u, y, self.f)
            loss_operand, local_loss = (
                encode(loss_cross_vector(u, y), self.f),
                loss_local_label(u, y),
            )
            loss_mask = masks["b"][t, :n]
        masked_loss = dot_mask(loss_operand, loss_mask)
        tag = Tag(round_, STEP_FIT)
        out: dict[str, npt.NDArray[np.generic]] = {
            "F": mask_vector(d, masks["m"][t, :n]),
            "z": combine_vector_side(self._peer_masked[batch], d, masks["c1"][t]),
            "L": masked_loss,
        }
        t0 = time.perf_counter()
        self._channel.send(Envelope(self.job_id, tag, self.role, out))
        t1 = time.perf_counter()
        received = self._channel.recv(tag, self._timeout)
        self._clock["send"] += t1 - t0
        self._clock["wait"] += time.perf_counter() - t1
        got = self._check_fit(received.tensors, n, x.shape[1])
        grad_ring = (
            rmatvec(x_ring, d)
            + combine_matrix_side(self._mask[batch], got["F"], masks["c0"][t])
            + got["z"]
        )
        grad = decode(grad_ring, 2 * self.f) / n
        self.theta = self.optimizer.step(self.theta, grad)
        if self._y is None:
            cross = dot_combine_first(loss_mask, masked_loss, got["L"], masks["dc0"][t : t + 1])
        else:
            cross = dot_combine_second(got["L"], loss_mask, masks["loss_c1"][t : t + 1])
        return cross + encode(np.array([local_loss]), 2 * self.f)

    def _check_fit(
        self, got: dict[str, npt.NDArray[np.generic]], n: int, k: int
    ) -> dict[str, Ring]:
        shapes = {"F": (n,), "z": (k,), "L": (n,)}
        for name, shape in shapes.items():
            arr = got.get(name)
            if arr is None or arr.dtype != np.uint64 or arr.shape != shape:
                what = "missing" if arr is None else f"{arr.dtype} {arr.shape}"
                raise ProtocolAbort(f"{self.peer} sent {name!r} as {what}; expected uint64 {shape}")
        return {name: np.asarray(got[name], dtype=np.uint64) for name in shapes}

    def _report_epoch(self, epoch: int, loss_share: Ring, delta_sq: float) -> Decision:
        t0 = time.perf_counter()
        reply = report_epoch(
            self._coordinator, self.job_id, self.role, self._pair_key, epoch, loss_share, delta_sq
        )
        self._clock["barrier"] += time.perf_counter() - t0
        loss = reply.values.get("loss", float("nan"))
        self._on_epoch(epoch, loss)
        self.result.losses.append(loss)
        return reply.decision

    def resume_from(self, epoch: int, state: dict[str, Any]) -> None:
        """Continue after ``epoch`` from a checkpointed state (applied after setup)."""
        self.start_epoch, self._resume = epoch, state

    def checkpoint_state(self) -> dict[str, Any]:
        opt = self.optimizer
        return {
            "theta": self.theta.tolist(),
            "losses": list(self.result.losses),
            "step_count": opt.step_count,
            "velocity": None if opt.velocity is None else opt.velocity.tolist(),
            "second": None if opt.second is None else opt.second.tolist(),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        opt = self.optimizer
        self.theta = np.array(state["theta"], dtype=np.float64)
        opt.step_count = int(state["step_count"])
        opt.velocity = None if state["velocity"] is None else np.array(state["velocity"])
        opt.second = None if state["second"] is None else np.array(state["second"])
        self.result.losses = list(state["losses"])

    def run(self) -> FitResult:
        """Train until the coordinator says stop; returns this party's weights."""
        with self._deals:
            return self._train()

    def _train(self) -> FitResult:
        start, cpu = time.perf_counter(), time.process_time()
        self.result = FitResult(self.theta)
        self.setup()
        self._clock["setup"] = time.perf_counter() - start
        if self._resume is not None:
            self._restore(self._resume)
        self.result.epochs_run = self.start_epoch
        round_ = 0
        for epoch in range(self.start_epoch + 1, self.settings.epochs + 1):
            masks = self._epoch_masks(epoch)
            self.guard.start(epoch)
            before = self.theta.copy()
            loss_share = np.zeros(1, dtype=np.uint64)
            for t, batch in enumerate(self.schedule.order(epoch)):
                round_ += 1
                loss_share = loss_share + self._iteration(t, int(batch), masks, round_)
            delta_sq = float(np.sum((self.theta - before) ** 2))
            self.result.epochs_run = epoch
            decision = self._report_epoch(epoch, loss_share, delta_sq)
            if self.on_checkpoint is not None:
                self.on_checkpoint(epoch, self.checkpoint_state())
            if decision is Decision.STOP:
                break
        self.result.theta = self.theta
        self.result.seconds = time.perf_counter() - start
        self.result.last_round = round_
        split = dict(self._clock)
        split["compute"] = self.result.seconds - sum(split.values())
        split["cpu"] = time.process_time() - cpu  # every thread of this process, not a part
        self.result.time_split = split
        return self.result
