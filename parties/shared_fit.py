"""Training in mode ``shared``: the weights stay additively shared (docs/design.md, "Training,
mode shared"). No gradient, residual, logit or loss of a batch is ever opened.

Each party holds a share of theta_G, of theta_B (the intercept last) and of their momentum;
the grid is party 0 and the bank party 1 of the SecureML truncation. Features are clipped
to |x| <= clip and encoded with f_x fraction bits; weights, residuals and steps carry
f = frac_bits. Per iteration t on batch I (n rows), with every product the one secure
product of ``crypto.beaver`` and its result kept shared:

1. Forward: <u> = X_G <theta_G> + X_B <theta_B> (``transpose=False``: each party sent
   W = its share of the peer's block - m in the previous message). The f + f_x bit sum is
   truncated by f_x + 2 bits at once, so it is <u>/4 at f bits; the bank adds 1/2 - y:
   <d> = <u>/4 + 1/2 - y.
2. One exchange: each party sends F = <d> - m (for the peer's X^T d), L = <d> - a (or - b:
   the loss triple) and W for iteration t + 1. W is ready before the peer's message: a
   party's share of the peer's gradient is E_peer^T <d> + c_1, from its own values only.
3. Backward: <X^T d> at f + f_x bits is truncated by f_x + floor(log2 n) bits.
4. Update: <V> <- trunc(C_mu <V> + C_g <g'> + C_l2 <theta>, f_C), <theta> <- <theta> - <V>,
   with public integers C_mu = mu 2^f_C, C_g = lr 2^a / n 2^f_C and C_l2 = lr l2 2^f_C (0 for
   the intercept): SGD (mu = 0) or momentum with L2, one truncation per weight.
5. Loss: the Taylor loss log 2 - y~u/2 + u^2/8 equals log 2 - 1/2 + 2 d^2 (4d = u - 2y~); the
   cross term <d>_G . <d>_B comes from a dealer dot-product triple. Only the epoch sum is
   opened, to the coordinator, under the pairwise zero-sum mask (as in mode ``local``).
So an iteration is one exchange, plus one per epoch for its first W. At the end each party
sends the other its share of the other's block (``reveal="own"``), or keeps its shares
(``"none"``: evaluation and scoring then run jointly, ``parties.joint``).

Assumes: semi-honest parties, a non-colluding dealer, an authenticated channel; truncated
values far below 2^63 (a share pair wraps with probability |x| / 2^64 per element; the
run's bound is ``FitResult.expected_wrap_failures``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from crypto import correlated
from crypto.beaver import (
    combine_matrix_side,
    combine_vector_side,
    dot_combine_first,
    dot_combine_second,
    mask_matrix,
    mask_vector,
)
from crypto.correlated import BACKWARD, FORWARD, SQUARE, product_name
from crypto.ring import Ring, decode, dot, encode, truncate_share
from crypto.sigmoid import LOG2
from federation.protocol.errors import ConfigError, ProtocolAbort
from federation.protocol.messages import (
    Decision,
    Envelope,
    Optimizer,
    Role,
    Tag,
    TrainSettings,
    peer_of,
)
from federation.protocol.schedule import Schedule, check_batches
from federation.transport.channel import Channel, CoordinatorLink
from parties.deal_ahead import DealAhead
from parties.local_fit import (
    STEP_MASKED_X,
    FitResult,
    agree_pair_key,
    report_epoch,
)
from parties.shared_params import (
    DEFAULT_FEATURE_CLIP,
    DEFAULT_FEATURE_FRAC_BITS,
    FOUR,
    PARTY_INDEX,
    STEP_FRAC_BITS,
    TWO,
    WrapBudget,
    check_shared_settings,
    decay_constants,
    encode_features,
    gradient_shift,
    momentum_constant,
    step_constant,
)

log = logging.getLogger(__name__)
Float = npt.NDArray[np.float64]
Tensors = dict[str, npt.NDArray[np.generic]]

STEP_START = "fit-start"
STEP_FIT = "fit"
STEP_REVEAL = "reveal"


def _aligned(arr: npt.NDArray[np.generic]) -> Ring:
    """``arr`` (uint64), copied if it is a view at an address that is not 8-byte aligned (a
    tensor read in place from a message): numpy's products on it run ~1.2-1.8x slower."""
    if arr.flags.aligned:
        return np.asarray(arr, dtype=np.uint64)
    return np.array(arr, dtype=np.uint64)  # a copy: numpy allocates it aligned


class SharedFit:
    """One party's side of mode ``shared`` training; a drop-in sibling of ``LocalFit``."""

    def __init__(self, role: Role, job_id: str, settings: TrainSettings, schedule: Schedule,
                 seed: bytes, x: Float, y: Float | None, channel: Channel,
                 coordinator: CoordinatorLink,
                 on_epoch: Callable[[int, float], None] | None = None,
                 *, reveal: str = "own") -> None:
        if (role is Role.BANK) != (y is not None):
            raise ValueError("exactly the bank holds labels")
        self.f_x = int(getattr(settings, "feature_frac_bits", DEFAULT_FEATURE_FRAC_BITS))
        self.clip = float(getattr(settings, "feature_clip", DEFAULT_FEATURE_CLIP))
        check_shared_settings(settings, self.f_x, self.clip, reveal)
        if schedule.n_train * 8.0 * 2.0 ** (2 * settings.frac_bits) >= 2.0**63:
            raise ConfigError(f"frac bits {settings.frac_bits} leave no room for the epoch loss "
                              f"of {schedule.n_train} rows at 2f bits; use fewer")
        self.role, self.peer, self.party = role, peer_of(role), PARTY_INDEX[role]
        self.job_id, self.settings, self.schedule, self.reveal = job_id, settings, schedule, reveal
        self.f = settings.frac_bits
        self._seed, self._channel, self._coordinator = seed, channel, coordinator
        self._on_epoch = on_epoch or (lambda epoch, loss: None)
        self._timeout = settings.deadline_seconds
        rows = schedule.train_rows
        self._x = [encode_features(x[rows[a:b]], self.f_x, self.clip)
                   for a, b in schedule.batch_bounds]
        self._mask = [correlated.matrix_mask(seed, role.value, j, xb.shape)
                      for j, xb in enumerate(self._x)]
        self._label = None if y is None else [encode(0.5 - y[rows[a:b]], self.f)
                                              for a, b in schedule.batch_bounds]
        self._peer_masked: list[Ring] = []
        self._pair_key = b""
        self._k = {role: x.shape[1], self.peer: 0}  # the peer's count arrives with E
        self._clock = {"setup": 0.0, "deal": 0.0, "send": 0.0, "wait": 0.0, "barrier": 0.0}
        self.start_epoch = 0
        self._deals = DealAhead(coordinator, job_id, role, settings.epochs)
        self._resume: dict[str, Any] | None = None
        self.on_checkpoint: Callable[[int, dict[str, Any]], None] | None = None

    # -- setup -----------------------------------------------------------------------
    def setup(self) -> None:
        """Agree the pairwise key and swap E = X - M for every batch, once per job."""
        self._pair_key = agree_pair_key(self._channel, self.job_id, self.role, self._timeout)
        masked = np.vstack([mask_matrix(xr, m)
                            for xr, m in zip(self._x, self._mask, strict=True)])
        tag = Tag(0, STEP_MASKED_X)
        self._channel.send(Envelope(self.job_id, tag, self.role, {"E": masked}))
        peer = self._channel.recv(tag, self._timeout).tensors.get("E", np.zeros(0))
        if peer.dtype != np.uint64 or peer.ndim != 2 or peer.shape[0] != self.schedule.n_train:
            raise ProtocolAbort(f"{self.peer} sent masked features of dtype {peer.dtype}, shape "
                                f"{peer.shape}; expected uint64 ({self.schedule.n_train}, k)")
        check_batches(self.schedule, self.role.value, (self._k[self.role], peer.shape[1]))
        peer = _aligned(peer)  # read in place from the message: the matmuls want 8-byte words
        self._peer_masked = [peer[a:b] for a, b in self.schedule.batch_bounds]
        self._k[self.peer] = peer.shape[1]
        self._init_state()

    def _init_state(self) -> None:
        s, lr = self.settings, self.settings.learning_rate
        self._theta = {r: np.zeros(k, dtype=np.uint64) for r, k in self._k.items()}
        self._velocity = {r: np.zeros(k, dtype=np.uint64) for r, k in self._k.items()}
        self._decay = {r: decay_constants(lr, s.l2, k, r is Role.BANK)
                       for r, k in self._k.items()}
        self._momentum = momentum_constant(s)
        wanted = lr * s.l2 * 2.0**STEP_FRAC_BITS
        if s.l2 > 0 and abs(round(wanted) - wanted) > 0.01 * wanted:
            log.warning("lr * l2 = %.3g is rounded to %d / 2^%d: the L2 penalty is off by %.1f%%",
                        lr * s.l2, round(wanted), STEP_FRAC_BITS,
                        100 * abs(round(wanted) - wanted) / wanted)
        sizes = [self.schedule.batch_size_of(j) for j in range(self.schedule.n_batches)]
        self._step = [step_constant(lr, n) for n in sizes]
        mu = s.momentum if s.optimizer is Optimizer.MOMENTUM else 0.0
        self._budget = WrapBudget(self.f, self.f_x, self.clip, sum(self._k.values()), lr, s.l2,
                                  mu, min(sizes))

    # -- masks -----------------------------------------------------------------------
    def _epoch_masks(self, epoch: int) -> dict[str, Ring]:
        """Every mask of the epoch, one PRG stream per purpose, and the dealt c_1."""
        s, seed, nb, w = self.schedule, self._seed, self.schedule.n_batches, self.schedule.width
        own_fwd, own_bwd = (product_name(kind, self.role.value) for kind in (FORWARD, BACKWARD))
        peer_fwd, peer_bwd = (product_name(kind, self.peer.value) for kind in (FORWARD, BACKWARD))
        masks = {
            "m_fwd": correlated.vector_masks(seed, peer_fwd, epoch, nb, self._k[self.peer]),
            "m_bwd": correlated.vector_masks(seed, peer_bwd, epoch, nb, w),
            "c0_fwd": correlated.product_c0(seed, own_fwd, epoch, nb, w),
            "c0_bwd": correlated.product_c0(seed, own_bwd, epoch, nb, self._k[self.role]),
        }
        if self.role is Role.GRID:
            masks["sq"] = correlated.dot_first_masks(seed, SQUARE, epoch, nb, s.width)
            masks["sq_c0"] = correlated.dot_c0(seed, SQUARE, epoch, nb)
        else:
            masks["sq"] = correlated.dot_second_masks(seed, SQUARE, epoch, nb, s.width)
        t0 = time.perf_counter()
        deal = self._deals.get(epoch)
        self._clock["deal"] += time.perf_counter() - t0
        want: dict[str, tuple[str, tuple[int, ...]]] = {
            "c1_fwd": (peer_fwd, (nb, w)), "c1_bwd": (peer_bwd, (nb, self._k[self.peer]))}
        if self.role is Role.BANK:
            want["sq_c1"] = (SQUARE, (nb,))
        for name, (product, shape) in want.items():
            got = deal.corrections.get(product)
            if got is None or got.dtype != np.uint64 or got.shape != shape:
                what = "nothing" if got is None else f"{got.dtype} {got.shape}"
                raise ProtocolAbort(f"dealer sent {what} for {product!r}; expected uint64 {shape}")
            masks[name] = got
        return masks

    # -- messages --------------------------------------------------------------------
    def _exchange(self, tag: Tag, out: Tensors, shapes: dict[str, tuple[int, ...]]
                  ) -> dict[str, Ring]:
        """Send one message, receive the peer's with the same tag and check its tensors."""
        t0 = time.perf_counter()
        self._channel.send(Envelope(self.job_id, tag, self.role, out))
        t1 = time.perf_counter()
        got = self._channel.recv(tag, self._timeout).tensors
        self._clock["send"] += t1 - t0
        self._clock["wait"] += time.perf_counter() - t1
        for name, shape in shapes.items():
            arr = got.get(name)
            if arr is None or arr.dtype != np.uint64 or arr.shape != shape:
                what = "missing" if arr is None else f"{arr.dtype} {arr.shape}"
                raise ProtocolAbort(f"{self.peer} sent {name!r} as {what} at round {tag.round}, "
                                    f"step {tag.step!r}; expected uint64 {shape}")
        if set(got) != set(shapes):
            raise ProtocolAbort(f"{self.peer} sent tensors {sorted(got)} at round {tag.round}, "
                                f"step {tag.step!r}; expected {sorted(shapes)}")
        return {name: _aligned(got[name]) for name in shapes}

    def _masked_peer_block(self, masks: dict[str, Ring], t: int) -> Ring:
        """W = my share of the peer's weights - m: the peer's forward product input."""
        return mask_vector(self._theta[self.peer], masks["m_fwd"][t])

    # -- one iteration ---------------------------------------------------------------
    def _forward(self, t: int, batch: int, masks: dict[str, Ring], w_peer: Ring) -> Ring:
        """<d> = trunc(<X_G theta_G + X_B theta_B>, f_x + 2) (+ 1/2 - y at the bank)."""
        x, n = self._x[batch], self._x[batch].shape[0]
        raw = (x @ self._theta[self.role]
               + combine_matrix_side(self._mask[batch], w_peer, masks["c0_fwd"][t, :n],
                                     transpose=False)
               + combine_vector_side(self._peer_masked[batch], self._theta[self.peer],
                                     masks["c1_fwd"][t, :n], transpose=False))
        # SecureML: local truncation, needs |u| 2^(f + f_x) << 2^63.
        d = truncate_share(self.party, raw, self.f_x + 2)
        if self._label is not None:
            d = d + self._label[batch]
        return d

    def _update(self, block: Role, grad_raw: Ring, batch: int) -> None:
        """<V> <- trunc(C_mu V + C_g g' + C_l2 theta, f_C); <theta> <- <theta> - <V>."""
        n = self._x[batch].shape[0]
        # SecureML: local truncation, needs |X^T d| 2^(f + f_x) << 2^63.
        grad = truncate_share(self.party, grad_raw, self.f_x + gradient_shift(n))
        raw = (self._momentum * self._velocity[block] + self._step[batch] * grad
               + self._decay[block] * self._theta[block])
        # SecureML: local truncation, needs |V| 2^(f + f_C) << 2^63.
        self._velocity[block] = truncate_share(self.party, raw, STEP_FRAC_BITS)
        self._theta[block] = self._theta[block] - self._velocity[block]

    def _iteration(self, t: int, batch: int, masks: dict[str, Ring], w_peer: Ring,
                   round_: int, last: bool) -> tuple[Ring, Ring]:
        """One exchange; returns (this party's 2f-bit loss share, the peer's next W)."""
        n = self._x[batch].shape[0]
        d = self._forward(t, batch, masks, w_peer)
        # My half of X_peer^T d needs nothing from the peer, so W for t + 1 goes now.
        self._update(self.peer, combine_vector_side(self._peer_masked[batch], d,
                                                    masks["c1_bwd"][t]), batch)
        masked_d = mask_vector(d, masks["m_bwd"][t, :n])
        masked_sq = mask_vector(d, masks["sq"][t, :n])
        out: Tensors = {"F": masked_d, "L": masked_sq}
        shapes: dict[str, tuple[int, ...]] = {"F": (n,), "L": (n,)}
        if not last:
            out["W"] = self._masked_peer_block(masks, t + 1)
            shapes["W"] = (self._k[self.role],)
        got = self._exchange(Tag(round_, STEP_FIT), out, shapes)
        grad_own = (d @ self._x[batch]
                    + combine_matrix_side(self._mask[batch], got["F"], masks["c0_bwd"][t]))
        self._update(self.role, grad_own, batch)
        if self.role is Role.GRID:
            cross = dot_combine_first(masks["sq"][t, :n], masked_sq, got["L"],
                                      masks["sq_c0"][t : t + 1])
        else:
            cross = dot_combine_second(got["L"], masks["sq"][t, :n], masks["sq_c1"][t : t + 1])
        loss = TWO * dot(d, d) + FOUR * cross
        return loss, got.get("W", np.zeros(0, dtype=np.uint64))

    # -- epochs ----------------------------------------------------------------------
    def _epoch(self, epoch: int, round_: int) -> tuple[Ring, int]:
        """All iterations of ``epoch``; returns the loss share and the last round used."""
        masks = self._epoch_masks(epoch)
        order = self.schedule.order(epoch)
        got = self._exchange(Tag(round_ + 1, STEP_START),
                             {"W": self._masked_peer_block(masks, 0)},
                             {"W": (self._k[self.role],)})
        w_peer = got["W"]
        loss = np.zeros(1, dtype=np.uint64)
        if self.role is Role.BANK:
            loss = encode([self.schedule.n_train * (LOG2 - 0.5)], 2 * self.f)
        for t, batch in enumerate(order):
            round_ += 1
            share, w_peer = self._iteration(t, int(batch), masks, w_peer, round_,
                                            last=t == len(order) - 1)
            loss = loss + share
        return loss, round_

    def _report_epoch(self, epoch: int, loss_share: Ring) -> Decision:
        """Open the epoch loss to the coordinator only, under the pairwise zero-sum mask."""
        t0 = time.perf_counter()
        # The weight change is secret in this mode: no delta_sq to report (NaN).
        reply = report_epoch(self._coordinator, self.job_id, self.role, self._pair_key, epoch,
                             loss_share, math.nan)
        self._clock["barrier"] += time.perf_counter() - t0
        loss = reply.values.get("loss", math.nan)
        bound = self._budget.add_epoch(loss, self.schedule.n_train, self.schedule.n_batches)
        log.info("%s: epoch %d, loss %.6f, expected wrap failures so far <= %.3g",
                 self.role, epoch, loss, bound)
        self._on_epoch(epoch, loss)
        self.result.losses.append(loss)
        return reply.decision

    def _reveal(self, round_: int) -> None:
        """Each owner opens its own block: send my share of the peer's, add the peer's."""
        shares = {r.value: self._theta[r].copy() for r in (Role.GRID, Role.BANK)}
        if self.reveal == "none":
            self.result.weight_shares = shares
            self.result.theta = np.full(self._k[self.role], math.nan)
            return
        got = self._exchange(Tag(round_, STEP_REVEAL), {"theta": shares[self.peer.value]},
                             {"theta": (self._k[self.role],)})
        self.result.theta = decode(self._theta[self.role] + got["theta"], self.f)

    def resume_from(self, epoch: int, state: dict[str, Any]) -> None:
        """Continue after ``epoch`` from checkpointed shares (applied after setup)."""
        self.start_epoch, self._resume = epoch, state

    def checkpoint_state(self) -> dict[str, Any]:
        """This party's shares of both weight blocks and of the momentum, as integers."""
        return {"theta": {r.value: [int(v) for v in self._theta[r]] for r in self._theta},
                "velocity": {r.value: [int(v) for v in self._velocity[r]]
                             for r in self._velocity},
                "losses": list(self.result.losses)}

    def _restore(self, state: dict[str, Any]) -> None:
        for r in (Role.GRID, Role.BANK):
            theta = np.array(state["theta"][r.value], dtype=np.uint64)
            if theta.shape != self._theta[r].shape:
                raise ProtocolAbort(f"checkpoint holds {theta.shape[0]} {r} weights, the job "
                                    f"has {self._theta[r].shape[0]}")
            self._theta[r] = theta
            self._velocity[r] = np.array(state["velocity"][r.value], dtype=np.uint64)
        self.result.losses = list(state["losses"])

    def run(self) -> FitResult:
        """Train until the coordinator says stop; returns this party's own weights."""
        with self._deals:
            return self._train()

    def _train(self) -> FitResult:
        start, cpu = time.perf_counter(), time.process_time()
        self.result = FitResult(np.full(self._k[self.role], math.nan))
        self.setup()
        self._clock["setup"] = time.perf_counter() - start
        if self._resume is not None:
            self._restore(self._resume)
        self.result.epochs_run = self.start_epoch
        round_ = 0
        for epoch in range(self.start_epoch + 1, self.settings.epochs + 1):
            loss_share, round_ = self._epoch(epoch, round_)
            self.result.epochs_run = epoch
            decision = self._report_epoch(epoch, loss_share)
            if self.on_checkpoint is not None:
                self.on_checkpoint(epoch, self.checkpoint_state())
            if decision is Decision.STOP:
                break
        round_ += 1
        self._reveal(round_)
        self.result.expected_wrap_failures = self._budget.total
        self.result.seconds = time.perf_counter() - start
        self.result.last_round = round_
        split = dict(self._clock)
        split["compute"] = self.result.seconds - sum(split.values())
        split["cpu"] = time.process_time() - cpu  # every thread of this process, not a part
        self.result.time_split = split
        return self.result
