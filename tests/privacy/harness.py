"""In-process harness for the privacy suites: one whole job, every message recorded.

``run_job`` runs a training job of mode ``local`` or ``shared`` with the real
``Coordinator`` (its dealer by mode), the real ``LocalFit`` / ``SharedFit`` and, optionally,
the real PSI (``parties.alignment.align``), both parties in threads over
``InMemoryChannel.pair``. It records:

- every party-to-party ``Envelope`` (a channel observer, "sent" side), with the protobuf
  bytes the gRPC transport would put on the wire (``federation.transport.wire``);
- every request a party makes of the coordinator (``JoinRequest``, ``SyncRequest``,
  ``DealRequest``, ``FailRequest``) through a recording wrapper that the parties use as
  their ``CoordinatorLink``, with its wire bytes, and every reply (the dealt corrections);
- the parties' internal values per iteration (``RecordingLocalFit`` and
  ``RecordingSharedFit`` subclass the product classes and only observe): logits,
  residual shares, gradients, weights and their shares. The suites turn these into the
  list of secrets to look for.

Mode ``local`` ends, like ``parties.node.PartyNode``, with the evaluation message: the grid
sends its partial logits u_G of all aligned rows to the bank (docs/design.md reveals them to the
bank by design; the transcript suite excludes that one step by name and shows it is found).
Rows are put in ID order after PSI (as the node's canonical order does), so every party's
data, the schedule and the recorded values refer to the same aligned row numbers.
``fixed_randomness`` makes a job deterministic (coordinator seeds, X25519 pair keys, PSI
keys and shuffles) for the data-independence suite; ``sabotaged`` breaks the mask
generator for the negative controls; ``local_catalog`` / ``shared_catalog`` list a job's
secrets as 64-bit words, and ``Catalog.find`` looks for them in payload bytes.

The recording subclasses observe through the product classes' private hooks
(``_iteration``, ``_epoch_masks``, ``_forward``, ``_update``, ``_masked_peer_block``);
when those change, change them here. The transcript suite checks that what they record is
what the parties computed (and the triple-reuse suite, bit for bit, via the masks).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from crypto import correlated, prg
from crypto.ring import Ring, encode
from crypto.sigmoid import (
    LOG2,
    loss_cross_vector,
    residual_share_features,
    residual_share_label,
)
from federation.coordinator import Coordinator
from federation.dealer_shared import SharedDealer
from federation.protocol.messages import (
    DealReply,
    DealRequest,
    Envelope,
    FailRequest,
    JobPlan,
    JoinRequest,
    MatchReply,
    MatchRequest,
    Mode,
    Role,
    SyncReply,
    SyncRequest,
    Tag,
    TrainSettings,
    peer_of,
)
from federation.protocol.schedule import Schedule
from federation.transport import wire
from federation.transport.channel import InMemoryChannel
from parties import local_fit, shared_fit
from parties.alignment import align
from parties.local_fit import FitResult, LocalFit, with_intercept
from parties.shared_fit import SharedFit

JOB = "job-privacy"
STEP_MATCH = "psi/match"  # federation.grpc_server.STEP_MATCH: tags to the coordinator
STEP_EVALUATE = "evaluate"  # parties.node.STEP_EVALUATE: the grid's u_G to the bank
Float = npt.NDArray[np.float64]
COORDINATOR = Role.COORDINATOR

if "feature_frac_bits" in TrainSettings.__dataclass_fields__:
    Settings: type[TrainSettings] = TrainSettings
else:  # until TrainSettings carries mode shared's fields (SharedFit reads them by getattr)
    @dataclass(frozen=True, slots=True)
    class _SharedSettings(TrainSettings):
        feature_frac_bits: int = 8
        feature_clip: float = 8.0
        reveal_weights: str = "own"

    Settings = _SharedSettings


def settings(mode: Mode, **kw: Any) -> TrainSettings:
    """Job settings with mode shared's fields whether or not TrainSettings has them yet."""
    return Settings(mode=mode, **kw)


# -- data ---------------------------------------------------------------------------------
@dataclass
class PartyData:
    ids: list[str]
    x: Float  # the bank's carries the intercept column last
    y: Float | None = None


def make_data(n: int, k_grid: int = 4, k_bank: int = 3, seed: int = 1, *,
              extra_ids: int = 0, id_seed: int = 0) -> tuple[PartyData, PartyData]:
    """A synthetic job: ``n`` common enterprises, labels from a logistic model of both sides.

    Each party also holds ``extra_ids`` enterprises the other lacks (PSI drops them).
    IDs are 8 bytes ("E0000123"), so each is one 64-bit word to look for; they depend on
    ``id_seed`` only, the values on ``seed`` only.
    """
    rng = np.random.default_rng(seed)
    wrng = np.random.default_rng([seed, 1])
    total = n + 2 * extra_ids
    ids = [f"E{i:07d}" for i in np.random.default_rng(id_seed).permutation(10**6)[:total]]
    xg, xb = rng.normal(size=(total, k_grid)), rng.normal(size=(total, k_bank))
    logit = xg @ wrng.normal(size=k_grid) + xb @ wrng.normal(size=k_bank) - 0.4
    y = (rng.random(total) < 1 / (1 + np.exp(-logit))).astype(float)
    grid_rows = np.r_[0:n, n:n + extra_ids]
    bank_rows = np.r_[0:n, n + extra_ids:total]
    grid = PartyData([ids[i] for i in grid_rows], xg[grid_rows])
    bank = PartyData([ids[i] for i in bank_rows], with_intercept(xb[bank_rows]), y[bank_rows])
    return grid, bank


# -- the transcript -----------------------------------------------------------------------
@dataclass
class Message:
    """One message a party sent, to its peer or to the coordinator."""

    index: int
    sender: Role
    receiver: Role
    kind: str  # "Envelope", "JoinRequest", "SyncRequest", "DealRequest", "FailRequest"
    step: str
    round: int
    tensors: dict[str, npt.NDArray[np.generic]]
    request: Any
    wire: bytes  # the protobuf bytes the gRPC transport sends
    parts: list[bytes]  # the payload: each tensor's or each value field's bytes

    @property
    def payload_bytes(self) -> int:
        return sum(len(p) for p in self.parts)


@dataclass
class Reply:
    """What the coordinator answered a party (the dealt corrections among them)."""

    receiver: Role
    request: Any
    reply: Any


def value_parts(req: Any) -> list[bytes]:
    """The value-carrying fields of a coordinator request, each as its own byte string.

    SyncRequest values as <f8 and ring values as <u8 (the wire's double and fixed64), a
    join's address and a failure's reason as UTF-8. Header fields (job, role, round, step,
    epoch, row and column counts) are public framing, as an envelope's tag and shapes are.
    """
    if isinstance(req, SyncRequest):
        return ([np.array([v], dtype="<f8").tobytes() for v in req.values.values()]
                + [np.array([v % 2**64], dtype="<u8").tobytes()
                   for v in req.ring_values.values()])
    if isinstance(req, JoinRequest):
        return [req.address.encode()]
    if isinstance(req, FailRequest):
        return [req.reason.encode()]
    if isinstance(req, MatchRequest):
        return tensor_parts({"tags": req.tags})
    return []


def tensor_parts(tensors: dict[str, npt.NDArray[np.generic]]) -> list[bytes]:
    """Each tensor's data bytes as the wire carries them (little-endian, C order)."""
    out = []
    for arr in tensors.values():
        a = np.ascontiguousarray(arr)
        out.append(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return out


_TO_PROTO: dict[type, Callable[[Any], Any]] = {
    JoinRequest: wire.join_request_to_proto,
    SyncRequest: wire.sync_request_to_proto,
    DealRequest: wire.deal_request_to_proto,
    FailRequest: wire.fail_request_to_proto,
}


def request_wire_bytes(req: Any) -> bytes:
    if isinstance(req, MatchRequest):
        return wire.match_request_to_bytes(req)
    return bytes(_TO_PROTO[type(req)](req).SerializeToString())


class Transcript:
    """Everything that crossed a link during one job, in order of sending."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[Message] = []
        self.replies: list[Reply] = []

    def observe(self, direction: str, env: Envelope) -> None:
        """``InMemoryChannel.observers`` hook: record each envelope once, when sent."""
        if direction != "sent":
            return
        with self._lock:
            self.messages.append(Message(
                len(self.messages), env.sender, peer_of(env.sender), "Envelope", env.tag.step,
                env.tag.round, dict(env.tensors), env, wire.envelope_to_bytes(env),
                tensor_parts(env.tensors)))

    def request(self, role: Role, req: Any) -> None:
        step = STEP_MATCH if isinstance(req, MatchRequest) else getattr(
            req, "step", type(req).__name__)
        round_ = getattr(req, "round", getattr(req, "epoch", 0))
        tensors: dict[str, npt.NDArray[np.generic]] = (
            {"tags": req.tags} if isinstance(req, MatchRequest) else {})
        with self._lock:
            self.messages.append(Message(
                len(self.messages), role, COORDINATOR, type(req).__name__, step, round_,
                tensors, req, request_wire_bytes(req), value_parts(req)))

    def reply(self, role: Role, req: Any, rep: Any) -> None:
        with self._lock:
            self.replies.append(Reply(role, req, rep))

    def to_party(self, role: Role) -> list[Message]:
        return [m for m in self.messages if m.receiver is role]

    def to_coordinator(self) -> list[Message]:
        return [m for m in self.messages if m.receiver is COORDINATOR]

    def dealt(self, role: Role) -> list[DealReply]:
        return [r.reply for r in self.replies
                if r.receiver is role and isinstance(r.reply, DealReply)]


_ACTOR = threading.local()


def actor() -> str:
    """Who is running: "dealer" inside a deal call, else the thread's name (a role)."""
    return "dealer" if getattr(_ACTOR, "dealing", False) else threading.current_thread().name


class RecordingLink:
    """The coordinator as a party's ``CoordinatorLink``, recording every request and reply."""

    def __init__(self, coordinator: Coordinator, transcript: Transcript) -> None:
        self.coordinator = coordinator
        self._t = transcript

    def join(self, req: JoinRequest) -> JobPlan:
        self._t.request(req.role, req)
        plan = self.coordinator.join(req)
        self._t.reply(req.role, req, plan)
        return plan

    def sync(self, req: SyncRequest) -> SyncReply:
        self._t.request(req.role, req)
        rep = self.coordinator.sync(req)
        self._t.reply(req.role, req, rep)
        return rep

    def deal(self, req: DealRequest) -> DealReply:
        self._t.request(req.role, req)
        _ACTOR.dealing = True
        try:
            rep = self.coordinator.deal(req)
        finally:
            _ACTOR.dealing = False
        self._t.reply(req.role, req, rep)
        return rep

    def fail(self, req: FailRequest) -> None:
        self._t.request(req.role, req)
        self.coordinator.fail(req)

    def match(self, req: MatchRequest) -> MatchReply:
        self._t.request(req.role, req)
        rep = self.coordinator.match(req)
        self._t.reply(req.role, req, rep)
        return rep


class JobCoordinator(Coordinator):
    """The real coordinator; deals mode shared's corrections whatever its own wiring, and
    with ``guard=False`` skips the 4x batch-size refusal (to show why it exists)."""

    def __init__(self, *args: Any, guard: bool = True, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._guard = guard

    def _min_batch(self, columns: dict[Role, int]) -> int:
        return super()._min_batch(columns) if self._guard else 1

    def _on_aligned(self, round_: int, arrived: dict[Role, SyncRequest]) -> SyncReply:
        reply = super()._on_aligned(round_, arrived)
        shared = self.settings.mode is Mode.SHARED
        if shared and self._schedule is not None and not isinstance(self._dealer, SharedDealer):
            columns = {role: r.n_columns for role, r in self._joined.items()}
            self._dealer = SharedDealer(self._seeds, self._schedule, columns)  # type: ignore[assignment]
        return reply


# -- recording fits -----------------------------------------------------------------------
@dataclass
class LocalStep:
    epoch: int
    t: int
    batch: int
    round: int
    rows: npt.NDArray[np.int64]  # aligned row numbers of the batch
    theta: Float  # before the iteration
    u: Float  # this party's partial logit
    d: Ring  # this party's residual share at f bits
    operand: Ring  # this party's loss operand at f bits (masked into "L")
    grad: Float = field(default_factory=lambda: np.zeros(0))  # decoded, divided by |I|
    theta_after: Float = field(default_factory=lambda: np.zeros(0))
    loss: Ring = field(default_factory=lambda: np.zeros(1, dtype=np.uint64))  # share, 2f bits


class RecordingLocalFit(LocalFit):
    """``LocalFit`` that records its per-iteration values; the protocol is untouched."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.steps: list[LocalStep] = []
        self.masks: dict[int, dict[str, Ring]] = {}
        self._epoch_now = 0
        self._last_grad = np.zeros(0)
        step = self.optimizer.step

        def spy(theta: Float, grad: Float) -> Float:
            self._last_grad = np.array(grad, copy=True)
            return step(theta, grad)

        self.optimizer.step = spy  # type: ignore[method-assign]

    def _epoch_masks(self, epoch: int) -> dict[str, Ring]:
        self._epoch_now = epoch
        self.masks[epoch] = super()._epoch_masks(epoch)
        return self.masks[epoch]

    def _iteration(self, t: int, batch: int, masks: dict[str, Ring], round_: int) -> Ring:
        x, theta = self._x[batch], self.theta.copy()
        u = x @ theta
        if self._y is None:
            d, operand = residual_share_features(u, self.f), encode(u, self.f)
        else:
            y = self._y[batch]
            d = residual_share_label(u, y, self.f)
            operand = encode(loss_cross_vector(u, y), self.f)
        a, b = self.schedule.batch_bounds[batch]
        rec = LocalStep(self._epoch_now, t, batch, round_, self.schedule.train_rows[a:b],
                        theta, u, d, operand)
        share = super()._iteration(t, batch, masks, round_)
        rec.grad, rec.theta_after, rec.loss = self._last_grad, self.theta.copy(), share.copy()
        self.steps.append(rec)
        return share


@dataclass
class SharedStep:
    epoch: int
    t: int
    batch: int
    round: int
    rows: npt.NDArray[np.int64]
    theta: dict[Role, Ring]  # this party's shares of both blocks, before the iteration
    velocity: dict[Role, Ring]
    d: Ring = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))  # share, f bits
    grad: dict[Role, Ring] = field(default_factory=dict)  # share of X^T d, f + f_x bits
    theta_after: dict[Role, Ring] = field(default_factory=dict)
    velocity_after: dict[Role, Ring] = field(default_factory=dict)
    loss: Ring = field(default_factory=lambda: np.zeros(1, dtype=np.uint64))  # share, 2f bits


@dataclass
class MaskedBlock:
    """One W = (my share of the peer's weights) - m_fwd[t] this party sent."""

    epoch: int
    t: int
    share: Ring
    payload: Ring


class RecordingSharedFit(SharedFit):
    """``SharedFit`` that records its shares per iteration; the protocol is untouched."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.steps: list[SharedStep] = []
        self.blocks: list[MaskedBlock] = []
        self.masks: dict[int, dict[str, Ring]] = {}
        self._epoch_now = 0
        self._cur: SharedStep | None = None

    def _epoch_masks(self, epoch: int) -> dict[str, Ring]:
        self._epoch_now = epoch
        self.masks[epoch] = super()._epoch_masks(epoch)
        return self.masks[epoch]

    def _masked_peer_block(self, masks: dict[str, Ring], t: int) -> Ring:
        share = self._theta[self.peer].copy()
        out = super()._masked_peer_block(masks, t)
        self.blocks.append(MaskedBlock(self._epoch_now, t, share, np.array(out, copy=True)))
        return out

    def _forward(self, t: int, batch: int, masks: dict[str, Ring], w_peer: Ring) -> Ring:
        d = super()._forward(t, batch, masks, w_peer)
        if self._cur is not None:
            self._cur.d = d.copy()
        return d

    def _update(self, block: Role, grad_raw: Ring, batch: int) -> None:
        if self._cur is not None:
            self._cur.grad[block] = np.array(grad_raw, copy=True)
        super()._update(block, grad_raw, batch)
        if self._cur is not None:
            self._cur.theta_after[block] = self._theta[block].copy()
            self._cur.velocity_after[block] = self._velocity[block].copy()

    def _iteration(self, t: int, batch: int, masks: dict[str, Ring], w_peer: Ring,
                   round_: int, last: bool) -> tuple[Ring, Ring]:
        a, b = self.schedule.batch_bounds[batch]
        self._cur = SharedStep(self._epoch_now, t, batch, round_, self.schedule.train_rows[a:b],
                               {r: v.copy() for r, v in self._theta.items()},
                               {r: v.copy() for r, v in self._velocity.items()})
        out = super()._iteration(t, batch, masks, w_peer, round_, last)
        self._cur.loss = out[0].copy()
        self.steps.append(self._cur)
        self._cur = None
        return out


# -- running a job ------------------------------------------------------------------------
@dataclass
class Job:
    mode: Mode
    settings: TrainSettings
    transcript: Transcript
    coordinator: Coordinator
    schedule: Schedule
    data: dict[Role, PartyData]  # aligned: row i of both is the same enterprise
    fits: dict[Role, Any]  # RecordingLocalFit / RecordingSharedFit
    results: dict[Role, FitResult]
    seeds: dict[Role, bytes]
    errors: list[BaseException]
    evaluation_u: Float | None = None  # mode local: the u_G the grid sent for evaluation
    inputs: dict[Role, PartyData] = field(default_factory=dict)  # before PSI

    @property
    def n_columns(self) -> dict[Role, int]:
        return {r: d.x.shape[1] for r, d in self.data.items()}


def run_job(grid: PartyData, bank: PartyData, cfg: TrainSettings, *, psi: bool = True,
            guard: bool = True, evaluate: bool = True, timeout: float = 120.0,
            fit_classes: dict[Role, type] | None = None, check: bool = True) -> Job:
    """Run one job in threads named after the roles; return everything recorded."""
    transcript = Transcript()
    coordinator = JobCoordinator(JOB, cfg, barrier_timeout=60, guard=guard)
    link = RecordingLink(coordinator, transcript)
    channels = dict(zip((Role.GRID, Role.BANK), InMemoryChannel.pair(JOB), strict=True))
    for ch in channels.values():
        ch.observers.append(transcript.observe)
    shared = cfg.mode is Mode.SHARED
    classes: dict[Role, type] = {Role.GRID: RecordingSharedFit if shared else RecordingLocalFit,
               Role.BANK: RecordingSharedFit if shared else RecordingLocalFit}
    classes.update(fit_classes or {})
    fits: dict[Role, Any] = {}
    results: dict[Role, FitResult] = {}
    aligned: dict[Role, PartyData] = {}
    seeds: dict[Role, bytes] = {}
    errors: list[BaseException] = []
    box: dict[str, Any] = {}

    def party(role: Role, data: PartyData) -> None:
        channel = channels[role]
        try:
            plan = link.join(JoinRequest(JOB, role, f"mem://{role.value}", len(data.ids),
                                         data.x.shape[1]))
            seeds[role] = plan.dealer_seed
            if psi:
                rows = align(data.ids, channel, role, JOB, cfg.deadline_seconds, workers=1,
                             protocol=cfg.psi, coordinator=link)
                rows = rows[np.argsort(np.array(data.ids)[rows], kind="stable")]
            else:
                rows = np.arange(len(data.ids))
            mine = PartyData([data.ids[i] for i in rows], data.x[rows],
                             None if data.y is None else data.y[rows])
            aligned[role] = mine
            reply = link.sync(SyncRequest(JOB, role, 0, "aligned",
                                          {"intersection": float(len(rows))}))
            if reply.reason:
                raise RuntimeError(reply.reason)
            box["min_batch"] = int(reply.values.get("min_batch", 1))
            schedule = Schedule(len(rows), cfg.validation_fraction, cfg.batch_size, cfg.seed,
                                box["min_batch"])
            args = (role, JOB, cfg, schedule, plan.dealer_seed, mine.x, mine.y, channel, link)
            kw = {"reveal": getattr(cfg, "reveal_weights", "own")} if shared else {}
            fit = classes[role](*args, **kw)
            fits[role] = fit
            results[role] = fit.run()
            last = results[role].last_round
            if evaluate and not shared:  # as parties.node does after a mode local fit
                tag = Tag(last + 1, STEP_EVALUATE)
                if role is Role.GRID:
                    u = mine.x @ results[role].theta
                    box["u"] = u
                    channel.send(Envelope(JOB, tag, role, {"u": u}))
                else:
                    channel.recv(tag, cfg.deadline_seconds)
            link.sync(SyncRequest(JOB, role, results[role].epochs_run + 1, "evaluated", {}))
        except BaseException as exc:  # noqa: BLE001 - surfaced to the caller
            errors.append(exc)
            channel.abort(f"{role} failed: {exc}")
            link.fail(FailRequest(JOB, role, str(exc)[:500]))

    threads = [threading.Thread(target=party, args=(role, data), name=role.value)
               for role, data in ((Role.GRID, grid), (Role.BANK, bank))]
    with pytest.MonkeyPatch.context() as mp:
        if not guard:  # the parties' own batch check too (to show why both exist)
            for module in (local_fit, shared_fit):
                mp.setattr(module, "check_batches", lambda *args: None)
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout)
    if any(th.is_alive() for th in threads):
        raise TimeoutError(f"job did not finish within {timeout:g} s")
    if errors and check:
        raise errors[0]
    schedule = Schedule(len(aligned[Role.GRID].ids) if Role.GRID in aligned else 1,
                        cfg.validation_fraction, cfg.batch_size, cfg.seed,
                        box.get("min_batch", 1))
    return Job(cfg.mode, cfg, transcript, coordinator, schedule, aligned, fits, results, seeds,
               errors, box.get("u"), {Role.GRID: grid, Role.BANK: bank})


# -- fixed randomness ---------------------------------------------------------------------
@contextmanager
def fixed_randomness(label: str = "fixed") -> Iterator[None]:
    """Make every secret random draw of a job a function of (label, thread, counter).

    Patches ``secrets.token_bytes`` (coordinator seeds via ``crypto.prg.new_seed``, PSI
    keys and shuffles) and the X25519 key generation of the pairwise loss-mask key. Each
    thread has its own counter, so the result does not depend on thread interleaving.
    """
    import secrets

    counters: dict[str, int] = {}
    lock = threading.Lock()

    def token_bytes(n: int | None = 32) -> bytes:
        n = 32 if n is None else n
        name = threading.current_thread().name
        with lock:
            i = counters.get(name, 0)
            counters[name] = i + 1
        out = b""
        block = 0
        while len(out) < n:
            out += hashlib.sha256(f"{label}/{name}/{i}/{block}".encode()).digest()
            block += 1
        return out[:n]

    class FixedX25519:
        @staticmethod
        def generate() -> X25519PrivateKey:
            return X25519PrivateKey.from_private_bytes(token_bytes(32))

        from_private_bytes = staticmethod(X25519PrivateKey.from_private_bytes)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(secrets, "token_bytes", token_bytes)
        mp.setattr(local_fit, "X25519PrivateKey", FixedX25519)
        yield


# -- helpers shared by the suites ---------------------------------------------------------
def to_words(payload: bytes) -> Iterator[tuple[int, npt.NDArray[np.uint64]]]:
    """Every 8-byte window of ``payload`` as a little-endian uint64, by byte offset mod 8."""
    for offset in range(8):
        usable = (len(payload) - offset) // 8
        if usable > 0:
            yield offset, np.frombuffer(payload, dtype="<u8", count=usable,
                                        offset=offset).astype(np.uint64)


@contextmanager
def sabotaged(what: str) -> Iterator[None]:
    """Run a job with the product's mask generator broken (both parties and the dealer, so
    the job still computes correctly)."""
    with pytest.MonkeyPatch.context() as mp:
        if what == "reused mask":
            real = correlated.vector_masks

            def one_mask(seed: bytes, product: str, epoch: int, n_iter: int, width: int) -> Ring:
                first = real(seed, product, epoch, n_iter, width)[:1]
                return np.repeat(first, n_iter, axis=0)  # row 0 for every iteration

            mp.setattr(correlated, "vector_masks", one_mask)
        else:
            def weak(seed: bytes, label: str, shape: int | tuple[int, ...]) -> Ring:
                low = int.from_bytes(hashlib.sha256(seed + label.encode()).digest()[:2], "little")
                return np.random.default_rng(low).integers(0, 2**32, size=shape, dtype=np.uint64)

            for module in (prg, correlated, local_fit, shared_fit):
                if hasattr(module, "expand"):  # every module that expands masks by name
                    mp.setattr(module, "expand", weak)
        yield



# -- the secrets of a job -----------------------------------------------------------------
def fixed_point(values: npt.ArrayLike, bits: int) -> Ring:
    """round(v 2^bits) as ring words; values that do not fit in 63 bits are left out."""
    v = np.asarray(values, dtype=np.float64).ravel()
    scaled = np.rint(np.ldexp(v, bits))
    ok = np.isfinite(scaled) & (np.abs(scaled) < 2.0**62)
    return scaled[ok].astype(np.int64).view(np.uint64)


def float_words(values: npt.ArrayLike) -> Ring:
    return np.ascontiguousarray(np.asarray(values, dtype="<f8").ravel()).view("<u8").astype(
        np.uint64)


def signed(words: Ring, bits: int) -> Float:
    """Ring words read as two's-complement fixed point with ``bits`` fraction bits."""
    return np.ldexp(np.asarray(words, dtype=np.uint64).view(np.int64).astype(np.float64), -bits)


class Catalog:
    """Named sets of 64-bit words that must not appear in a message (each a secret value
    in one encoding), and the search for them in a payload's bytes."""

    def __init__(self) -> None:
        self.sets: dict[str, Ring] = {}
        self._all: Ring | None = None

    def add(self, name: str, words: npt.ArrayLike) -> None:
        w = np.asarray(words, dtype=np.uint64).ravel()
        old = self.sets.get(name, np.zeros(0, dtype=np.uint64))
        self.sets[name] = np.concatenate([old, w])
        self._all = None

    def reals(self, name: str, values: npt.ArrayLike, bits: tuple[int, ...]) -> None:
        """A real secret: float64 bytes and fixed point at each number of fraction bits."""
        self.add(f"{name}@float64", float_words(values))
        for b in bits:
            self.add(f"{name}@{b}bits", fixed_point(values, b))

    @property
    def words(self) -> Ring:
        if self._all is None:
            self._all = np.unique(np.concatenate(list(self.sets.values())))
        return self._all

    def __len__(self) -> int:
        return sum(len(v) for v in self.sets.values())

    def find(self, parts: list[bytes]) -> list[tuple[str, int]]:
        """(secret name, byte offset) of every secret word found in any 8-byte window of
        any of ``parts`` (offsets count across the parts, in order)."""
        hits: list[tuple[str, int]] = []
        base = 0
        for part in parts:
            hits.extend((name, base + off) for name, off in self._find(part))
            base += len(part)
        return hits

    def _find(self, payload: bytes) -> list[tuple[str, int]]:
        table = self.words
        offsets, found = [], []
        for offset, words in to_words(payload):
            at = np.minimum(np.searchsorted(table, words), len(table) - 1)
            hit = np.flatnonzero(table[at] == words)
            offsets.append(offset + 8 * hit)
            found.append(words[hit])
        if not found or not sum(len(w) for w in found):
            return []
        where, words = np.concatenate(offsets), np.concatenate(found)
        return [(name, int(o)) for name, s in self.sets.items()
                for o in where[np.isin(words, s)]]


def local_catalog(job: Job) -> Catalog:
    """Mode local: features, labels, IDs, per-iteration u_G, u_B, residual (shares and
    whole), loss operands, gradients and weights; reals at f and 2f bits and as float64."""
    f = job.settings.frac_bits
    bits = (f, 2 * f)
    cat = Catalog()
    _common(cat, job, bits)
    grid, bank = job.fits[Role.GRID], job.fits[Role.BANK]
    y = job.data[Role.BANK].y
    assert y is not None
    for gs, bs in zip(grid.steps, bank.steps, strict=True):
        assert (gs.epoch, gs.t, gs.batch) == (bs.epoch, bs.t, bs.batch)
        n = len(gs.rows)
        u = gs.u + bs.u
        for role, st in ((Role.GRID, gs), (Role.BANK, bs)):
            cat.reals(f"{role}.u", st.u, bits)
            cat.add(f"{role}.residual_share@ring", st.d)
            cat.add(f"{role}.loss_operand@ring", st.operand)
            cat.reals(f"{role}.gradient", st.grad, bits)
            cat.reals(f"{role}.gradient_sum", st.grad * n, bits)
            cat.reals(f"{role}.weights", st.theta, bits)
            cat.reals(f"{role}.weights", st.theta_after, bits)
            cat.add(f"{role}.batch_loss_share@ring", st.loss)
        cat.reals("joint.u", u, bits)
        cat.reals("joint.residual", u / 4 + 0.5 - y[gs.rows], bits)
        cat.add("joint.batch_loss@ring", gs.loss + bs.loss)
        cat.reals("joint.batch_loss", signed(gs.loss + bs.loss, 2 * f), bits)
    if job.evaluation_u is not None:
        cat.reals("grid.u_evaluation", job.evaluation_u, bits)
    return cat


def shared_catalog(job: Job) -> Catalog:
    """Mode shared: as mode local, at f, 2f and the features' f_x bits, plus every share a
    party holds (residual, weights, steps, gradients) as its exact ring words, and the
    reconstructed values (weights, u_G, u_B, residual, gradients) exactly and as reals."""
    from parties.shared_params import encode_features

    cfg = job.settings
    f, fx = cfg.frac_bits, int(getattr(cfg, "feature_frac_bits", 8))
    bits = (f, 2 * f, fx)
    cat = Catalog()
    _common(cat, job, bits)
    clip = float(getattr(cfg, "feature_clip", 8.0))
    xr = {r: encode_features(d.x, fx, clip) for r, d in job.data.items()}
    for role, x in xr.items():
        cat.add(f"{role}.features@ring_fx", x)
    grid, bank = job.fits[Role.GRID], job.fits[Role.BANK]
    for gs, bs in zip(grid.steps, bank.steps, strict=True):
        assert (gs.epoch, gs.t, gs.batch) == (bs.epoch, bs.t, bs.batch)
        for role, st in ((Role.GRID, gs), (Role.BANK, bs)):
            cat.add(f"{role}.residual_share@ring", st.d)
            cat.add(f"{role}.batch_loss_share@ring", st.loss)
            for block in (Role.GRID, Role.BANK):
                for what, vals in (("weights", st.theta), ("weights", st.theta_after),
                                   ("step", st.velocity_after), ("gradient", st.grad)):
                    cat.add(f"{role}.{what}_share[{block}]@ring", vals[block])
        loss = gs.loss + bs.loss  # 2 sum d^2 + 4 <d>_G.<d>_B, without n (log 2 - 1/2)
        cat.add("joint.batch_loss@ring", loss)
        cat.reals("joint.batch_loss", signed(loss, 2 * f), bits)
        cat.reals("joint.batch_loss", signed(loss, 2 * f) + len(gs.rows) * (LOG2 - 0.5), bits)
        d = gs.d + bs.d
        cat.add("joint.residual@ring", d)
        cat.reals("joint.residual", signed(d, f), bits)
        u = np.zeros(len(gs.rows))
        for block in (Role.GRID, Role.BANK):
            for when in ("theta", "theta_after"):
                w = getattr(gs, when)[block] + getattr(bs, when)[block]
                cat.add(f"joint.weights[{block}]@ring", w)
                cat.reals(f"joint.weights[{block}]", signed(w, f), bits)
            raw = xr[block][gs.rows] @ (gs.theta[block] + bs.theta[block])
            cat.add(f"{block}.u@ring", raw)
            cat.reals(f"{block}.u", signed(raw, f + fx), bits)
            u = u + signed(raw, f + fx)
            g = gs.grad[block] + bs.grad[block]
            cat.add(f"joint.gradient[{block}]@ring", g)
            cat.reals(f"joint.gradient_sum[{block}]", signed(g, f + fx), bits)
            cat.reals(f"joint.gradient[{block}]", signed(g, f + fx) / len(gs.rows), bits)
            v = gs.velocity_after[block] + bs.velocity_after[block]
            cat.reals(f"joint.step[{block}]", signed(v, f), bits)
        cat.reals("joint.u", u, bits)
    return cat


def _common(cat: Catalog, job: Job, bits: tuple[int, ...]) -> None:
    """Features, labels and IDs of both parties."""
    for role, d in job.data.items():
        cat.reals(f"{role}.features", d.x, bits)
    for role, d in job.inputs.items():
        raw = b"".join(i.encode()[:8].ljust(8, b"\0") for i in d.ids)
        cat.add(f"{role}.ids@utf8", np.frombuffer(raw, dtype="<u8").astype(np.uint64))
    y = job.data[Role.BANK].y
    assert y is not None
    cat.reals("bank.labels", y, bits)
    cat.reals("bank.label_term", 0.5 - y, bits)
