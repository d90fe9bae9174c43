"""A party refuses messages it must not act on, over gRPC and inside the protocol.

Transport level: the bank's real party server (``start_server`` + ``add_party`` with its
``Inbox`` and ``AuditLog``, mutual TLS from ``write_federation``) receives messages sent
as its peer, the grid: a replay, another job, a past or far-future round, another
sender, undecodable bytes or tensors. Each is answered FAILED_PRECONDITION with a
readable reason, nothing reaches the inbox, and the server keeps serving.

Protocol level: the two trainers over ``InMemoryChannel`` with the grid's outgoing
messages corrupted: a wrong-shape, wrong-dtype or missing tensor makes the job fail with
``ProtocolAbort`` before the receiver updates anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest

from federation.coordinator import Coordinator, JobStage
from federation.proto import vfl_pb2, vfl_pb2_grpc
from federation.protocol.errors import PeerUnavailable, ProtocolAbort, VflError
from federation.protocol.messages import (
    Envelope,
    FailRequest,
    JoinRequest,
    Mode,
    Role,
    SyncRequest,
    Tag,
    TrainSettings,
)
from federation.protocol.schedule import Schedule
from federation.transport import wire
from federation.transport.audit import AuditLog
from federation.transport.certs import NodeCerts, write_federation
from federation.transport.channel import ABORT_STEP, ROUND_WINDOW, Inbox, InMemoryChannel
from federation.transport.grpc_client import secure_channel
from federation.transport.grpc_server import add_party, start_server
from parties.local_fit import LocalFit, with_intercept
from parties.shared_fit import SharedFit

pytestmark = pytest.mark.e2e
JOB = "job-refusals"
FIT = "fit"


# -- transport level: the bank's party server -------------------------------------------------
@dataclass
class BankServer:
    inbox: Inbox
    fed: Path
    address: str
    stub: vfl_pb2_grpc.PartyStub  # a client holding the grid's certificate
    channels: list[grpc.Channel] = field(default_factory=list)

    def deliver(self, data: bytes) -> vfl_pb2.DeliverReply:
        return self.stub.Send(vfl_pb2.DeliverRequest(chunk=data), timeout=10)

    def refused(self, data: bytes, *, as_role: Role = Role.GRID,
                streamed: bool = False) -> grpc.RpcError:
        stub = self.stub if as_role is Role.GRID else self.stub_as(as_role)
        with pytest.raises(grpc.RpcError) as info:
            if streamed:
                stub.Deliver(iter([vfl_pb2.DeliverRequest(chunk=data)]), timeout=10)
            else:
                stub.Send(vfl_pb2.DeliverRequest(chunk=data), timeout=10)
        return info.value

    def stub_as(self, role: Role) -> vfl_pb2_grpc.PartyStub:
        channel = secure_channel(self.address, NodeCerts.in_dir(self.fed, role), Role.BANK)
        grpc.channel_ready_future(channel).result(timeout=10)
        self.channels.append(channel)
        return vfl_pb2_grpc.PartyStub(channel)

    def still_serving(self, round_: int) -> None:
        """A valid message after the refusals is accepted and can be claimed."""
        tag = Tag(round_, "after")
        self.deliver(_env(tag, {"x": np.arange(3, dtype=np.uint64)}))
        got = self.inbox.get(tag, 5.0)
        np.testing.assert_array_equal(got.tensors["x"], np.arange(3, dtype=np.uint64))

    def nothing_pending(self, tag: Tag) -> None:
        with pytest.raises(PeerUnavailable):
            self.inbox.get(tag, 0.05)


def _env(tag: Tag, tensors: dict[str, np.ndarray], *, job: str = JOB,
         sender: Role = Role.GRID) -> bytes:
    return wire.envelope_to_bytes(Envelope(job, tag, sender, tensors))


def _f(n: int = 4, value: int = 7) -> dict[str, np.ndarray]:
    return {"F": np.full(n, value, dtype=np.uint64)}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fed")
    write_federation(directory)
    return directory


@pytest.fixture
def bank(fed: Path, tmp_path: Path) -> Iterator[BankServer]:
    inbox = Inbox(JOB, Role.GRID)
    certs = NodeCerts.in_dir(fed, Role.BANK)
    audit = AuditLog(tmp_path / "bank" / "audit.jsonl", "bank", certs.key.read_bytes())
    server, port = start_server(certs, "127.0.0.1:0", add_party(inbox, audit))
    address = f"127.0.0.1:{port}"
    channel = secure_channel(address, NodeCerts.in_dir(fed, Role.GRID), Role.BANK)
    bank = BankServer(inbox, fed, address, vfl_pb2_grpc.PartyStub(channel), [channel])
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield bank
    finally:
        for ch in bank.channels:
            ch.close()
        server.stop(grace=None).wait(5)
        audit.close()


def _assert_refused(error: grpc.RpcError, *fragments: str) -> None:
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION, (error.code(), error.details())
    details = error.details() or ""
    assert "\n" not in details
    for fragment in fragments:
        assert fragment in details, details


@pytest.mark.parametrize("altered", [False, True], ids=["identical", "altered_payload"])
def test_replayed_message_is_refused_and_the_original_is_kept(bank: BankServer,
                                                              altered: bool) -> None:
    tag = Tag(1, FIT)
    first = _env(tag, _f(value=7))
    assert bank.deliver(first).bytes_received == len(first)
    replay = _env(tag, _f(value=9)) if altered else first
    for streamed in (False, True):
        _assert_refused(bank.refused(replay, streamed=streamed),
                        "duplicate or replayed message from grid: round 1, step 'fit' was "
                        "already received")
    got = bank.inbox.get(tag, 5.0)
    np.testing.assert_array_equal(got.tensors["F"], np.full(4, 7, dtype=np.uint64))
    # Claimed once, the tag stays spent: a later copy is a replay too.
    _assert_refused(bank.refused(first), "duplicate or replayed")
    bank.still_serving(1)


def test_message_for_another_job_is_refused(bank: BankServer) -> None:
    tag = Tag(1, FIT)
    _assert_refused(bank.refused(_env(tag, _f(), job="job-other")),
                    f"message for job 'job-other' rejected: this node runs job '{JOB}'")
    bank.nothing_pending(tag)
    # The same tag for the right job is still fresh: the refusal spent nothing.
    bank.deliver(_env(tag, _f()))
    assert bank.inbox.get(tag, 5.0).job_id == JOB


def test_message_for_a_past_round_is_refused(bank: BankServer) -> None:
    bank.deliver(_env(Tag(2, FIT), _f()))
    bank.inbox.get(Tag(2, FIT), 5.0)  # the node moves on to round 2
    for round_ in (1, 0, -5):
        _assert_refused(bank.refused(_env(Tag(round_, "late"), _f())),
                        f"message from grid for past round {round_} (step 'late') rejected: "
                        "this node is at round 2")
        bank.nothing_pending(Tag(round_, "late"))
    bank.still_serving(2)


@pytest.mark.parametrize("ahead", [ROUND_WINDOW + 1, 1000, 2**62])
def test_message_for_a_far_future_round_is_refused(bank: BankServer, ahead: int) -> None:
    bank.deliver(_env(Tag(ROUND_WINDOW, "near"), _f()))  # within the window: accepted
    _assert_refused(bank.refused(_env(Tag(ahead, FIT), _f())),
                    f"message from grid for future round {ahead} (step 'fit') rejected: "
                    "this node is at round 0")
    bank.nothing_pending(Tag(ahead, FIT))
    assert bank.inbox.get(Tag(ROUND_WINDOW, "near"), 5.0).tag.round == ROUND_WINDOW


def test_message_claiming_another_sender_is_refused(bank: BankServer) -> None:
    _assert_refused(bank.refused(_env(Tag(1, FIT), _f(), sender=Role.BANK)),
                    "message claims sender bank but the certificate names grid")
    bank.nothing_pending(Tag(1, FIT))
    bank.still_serving(1)


@pytest.mark.parametrize("presents", [Role.COORDINATOR, Role.BANK])
def test_caller_whose_certificate_names_another_role_is_denied(bank: BankServer,
                                                               presents: Role) -> None:
    error = bank.refused(_env(Tag(1, FIT), _f(), sender=presents), as_role=presents)
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == (f"certificate names role {presents.value!r}; this service "
                               "accepts grid")
    bank.nothing_pending(Tag(1, FIT))


def _tensor_message(tensor: vfl_pb2.Tensor) -> bytes:
    return vfl_pb2.Envelope(job_id=JOB, round=1, step=FIT, sender="grid",
                            tensors=[tensor]).SerializeToString()





@pytest.mark.parametrize("tensor,fragment", [
    (vfl_pb2.Tensor(name="F", dtype="<u8", shape=[4], data=b"\0" * 31),
     "tensor 'F': 31 bytes for <u8 (4,) (expected 32)"),
    (vfl_pb2.Tensor(name="F", dtype="<u8", shape=[2, 3], data=b"\0" * 8),
     "tensor 'F': 8 bytes for <u8 (2, 3) (expected 48)"),
    (vfl_pb2.Tensor(name="F", dtype="|O", shape=[1], data=b"\0" * 8),
     "tensor 'F': refused dtype '|O'"),
    (vfl_pb2.Tensor(name="F", dtype="<i4,<i4", shape=[1], data=b"\0" * 8),
     "tensor 'F': refused dtype '<i4,<i4'"),
    (vfl_pb2.Tensor(name="F", dtype="<M8[s]", shape=[1], data=b"\0" * 8),
     "tensor 'F': refused dtype '<M8[s]'"),
    (vfl_pb2.Tensor(name="F", dtype="uint65", shape=[1], data=b"\0" * 8),
     "tensor 'F': unknown dtype 'uint65'"),
    (vfl_pb2.Tensor(name="F", dtype="<u8", shape=[1, 1, 1, 1, 1], data=b"\0" * 8),
     "tensor 'F': refused dtype '<u8' / shape (1, 1, 1, 1, 1)"),
    (vfl_pb2.Tensor(name="F", dtype="<u8", shape=[-1], data=b""),
     "tensor 'F': refused dtype '<u8' / shape (-1,)"),
    (vfl_pb2.Tensor(name="F", dtype="<u8", shape=[2**40, 2**40], data=b"\0" * 8),
     "tensor 'F': refused dtype '<u8' / shape"),
    pytest.param(vfl_pb2.Tensor(name="F", dtype="<u8", shape=[0, 2**62, 2**62], data=b""),
                 "tensor 'F'"),
    pytest.param(vfl_pb2.Tensor(name="F", dtype="3&s", shape=[1], data=b"\0" * 8),
                 "tensor 'F'"),
    pytest.param(vfl_pb2.Tensor(name="F", dtype="01", shape=[1], data=b"\0" * 8),
                 "tensor 'F'"),
], ids=["short_data", "wrong_shape", "object_dtype", "structured_dtype", "datetime_dtype",
        "unknown_dtype", "five_dims", "negative_dim", "overflowing_shape", "huge_empty_shape",
        "dtype_value_error", "dtype_syntax_error"])
def test_tensor_with_wrong_shape_or_dtype_is_refused(bank: BankServer, tensor: vfl_pb2.Tensor,
                                                     fragment: str) -> None:
    _assert_refused(bank.refused(_tensor_message(tensor)), fragment)
    bank.nothing_pending(Tag(1, FIT))
    bank.still_serving(1)


@pytest.mark.parametrize("data", [b"\xff" * 16, b"\x0a\x05abc", b"\x22\x04gridx"],
                         ids=["garbage", "truncated", "unknown_sender"])
def test_undecodable_message_is_refused(bank: BankServer, data: bytes) -> None:
    _assert_refused(bank.refused(data), f"malformed message ({len(data)} bytes)")
    bank.still_serving(1)




@pytest.mark.parametrize("reason", [
    pytest.param(np.array([], dtype="<U4")),
    pytest.param(np.empty((0, 2), dtype=np.uint64)),
], ids=["empty_text_reason", "empty_matrix_reason"])
def test_abort_notice_with_an_empty_reason_is_refused_or_honoured(bank: BankServer,
                                                                  reason: np.ndarray) -> None:
    """Either answer is clean; an uncaught exception (status UNKNOWN) is not."""
    try:
        bank.deliver(_env(Tag(0, ABORT_STEP), {"reason": reason}))
    except grpc.RpcError as error:
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION, (error.code(),
                                                                     error.details())
        bank.still_serving(1)
    else:
        with pytest.raises(ProtocolAbort, match="grid aborted the job"):
            bank.inbox.get(Tag(1, FIT), 5.0)


def test_abort_notice_from_the_peer_wakes_the_waiting_node(bank: BankServer) -> None:
    """The control: a well-formed abort is accepted and stops the waiter at once."""
    bank.deliver(_env(Tag(0, ABORT_STEP), {"reason": np.array(["grid failed: disk full"])}))
    with pytest.raises(ProtocolAbort, match="grid aborted the job: grid failed: disk full"):
        bank.inbox.get(Tag(1, FIT), 10.0)


# -- protocol level: corrupted messages inside a training job -------------------------------
Tensors = dict[str, np.ndarray]
Corruption = Callable[[Tensors], Tensors]


class CorruptingChannel:
    """The grid's end of an in-memory channel; corrupts one outgoing message."""

    def __init__(self, inner: InMemoryChannel, step: str, round_: int | None,
                 corrupt: Corruption) -> None:
        self._inner, self._step, self._round, self._corrupt = inner, step, round_, corrupt
        self.corrupted = 0

    def send(self, env: Envelope) -> None:
        if (not self.corrupted and env.tag.step == self._step
                and self._round in (None, env.tag.round)):
            self.corrupted += 1
            env = Envelope(env.job_id, env.tag, env.sender, self._corrupt(dict(env.tensors)))
        self._inner.send(env)

    def recv(self, tag: Tag, timeout: float) -> Envelope:
        return self._inner.recv(tag, timeout)

    def abort(self, reason: str) -> None:
        self._inner.abort(reason)

    @property
    def bytes_sent(self) -> int:
        return self._inner.bytes_sent


def _short(name: str) -> Corruption:
    return lambda t: {**t, name: t[name][:-1]}


def _as_float(name: str) -> Corruption:
    return lambda t: {**t, name: t[name].astype(np.float64)}


def _drop(name: str) -> Corruption:
    return lambda t: {k: v for k, v in t.items() if k != name}


def _wider(name: str) -> Corruption:
    return lambda t: {**t, name: np.hstack([t[name], t[name][:, :1]])}


def _narrower(name: str) -> Corruption:
    return lambda t: {**t, name: t[name][:, :-1]}


def _run_job(mode: Mode, step: str, round_: int | None, corrupt: Corruption
             ) -> tuple[dict[Role, BaseException | None], dict[Role, object], Coordinator, int]:
    rng = np.random.default_rng(1)
    n = 400
    xg, xb = rng.normal(size=(n, 5)), with_intercept(rng.normal(size=(n, 3)))
    y = (rng.random(n) < 0.4).astype(float)
    settings = TrainSettings(mode=mode, epochs=2, batch_size=64, deadline_seconds=2.0,
                             tolerance=0.0)
    coordinator = Coordinator(JOB, settings, barrier_timeout=10)
    grid_end, bank_end = InMemoryChannel.pair(JOB)
    grid_channel = CorruptingChannel(grid_end, step, round_, corrupt)
    trainer = SharedFit if mode is Mode.SHARED else LocalFit
    errors: dict[Role, BaseException | None] = {}
    fits: dict[Role, object] = {}

    def party(role: Role, x: np.ndarray, labels: np.ndarray | None, channel: object) -> None:
        try:
            plan = coordinator.join(JoinRequest(JOB, role, "mem", len(x), x.shape[1]))
            reply = coordinator.sync(SyncRequest(JOB, role, 0, "aligned",
                                                 {"intersection": len(x)}))
            schedule = Schedule(len(x), settings.validation_fraction, settings.batch_size,
                                settings.seed, int(reply.values["min_batch"]))
            fit = trainer(role, JOB, settings, schedule, plan.dealer_seed, x, labels, channel,
                          coordinator)
            fits[role] = fit
            fit.run()
            errors[role] = None
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            errors[role] = exc
            if isinstance(exc, VflError):  # what PartyNode.run does on a failure
                channel.abort(f"{role} failed: {exc}")  # type: ignore[attr-defined]
                coordinator.fail(FailRequest(JOB, role, str(exc)))

    threads = [threading.Thread(target=party, args=(Role.GRID, xg, None, grid_channel)),
               threading.Thread(target=party, args=(Role.BANK, xb, y, bank_end))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(t.is_alive() for t in threads), "a party did not stop within 30 s"
    return errors, fits, coordinator, grid_channel.corrupted



CASES = [
    (Mode.LOCAL, "fit", 2, _short("F"), "grid sent 'F' as uint64 (63,); expected uint64 (64,)"),
    (Mode.LOCAL, "fit", 2, _as_float("F"), "grid sent 'F' as float64 (64,)"),
    (Mode.LOCAL, "fit", 1, _short("z"), "grid sent 'z' as uint64 (3,); expected uint64 (4,)"),
    (Mode.LOCAL, "fit", 3, _drop("L"), "grid sent 'L' as missing"),
    (Mode.LOCAL, "pair-key", None, _short("public"), "grid sent a malformed key"),
    (Mode.LOCAL, "masked-x", None, _short("E"), "grid sent masked features"),
    pytest.param(Mode.LOCAL, "masked-x", None, _wider("E"), "grid sent masked features"),
    pytest.param(Mode.LOCAL, "masked-x", None, _narrower("E"), "grid sent masked features"),
    (Mode.SHARED, "fit", 2, _short("F"),
     "grid sent 'F' as uint64 (63,) at round 2, step 'fit'; expected uint64 (64,)"),
    (Mode.SHARED, "fit", 2, _as_float("F"), "grid sent 'F' as float64 (64,) at round 2"),
    (Mode.SHARED, "fit", 3, _short("W"), "grid sent 'W' as uint64 (3,) at round 3"),
    (Mode.SHARED, "fit", 2, lambda t: {**t, "X": t["F"]},
     "grid sent tensors ['F', 'L', 'W', 'X'] at round 2"),
    (Mode.SHARED, "fit-start", 1, _short("W"),
     "grid sent 'W' as uint64 (3,) at round 1, step 'fit-start'; expected uint64 (4,)"),
    (Mode.SHARED, "masked-x", None, _short("E"), "grid sent masked features"),
    # Caught only at the dealer's check, which words it as the dealer's fault.
    (Mode.SHARED, "masked-x", None, _wider("E"), "expected uint64 (5, 6)"),
]


@pytest.mark.parametrize("mode,step,round_,corrupt,message", CASES, ids=[
    "local_F_short", "local_F_float", "local_z_short", "local_L_missing", "local_key_short",
    "local_E_rows", "local_E_wider", "local_E_narrower", "shared_F_short", "shared_F_float",
    "shared_W_short", "shared_extra_tensor", "shared_start_W_short", "shared_E_rows",
    "shared_E_wider"])
def test_wrong_shape_from_the_peer_fails_the_job_before_it_is_used(
        mode: Mode, step: str, round_: int | None, corrupt: Corruption, message: str) -> None:
    errors, fits, coordinator, corrupted = _run_job(mode, step, round_, corrupt)
    assert corrupted == 1
    bank_error = errors[Role.BANK]
    assert isinstance(bank_error, ProtocolAbort), repr(bank_error)
    assert message in str(bank_error), str(bank_error)
    # The grid stops at once on the bank's abort notice, not at its deadline.
    grid_error = errors[Role.GRID]
    assert isinstance(grid_error, ProtocolAbort), repr(grid_error)
    assert "bank aborted the job: bank failed: " in str(grid_error) or \
        "already failed" in str(grid_error), str(grid_error)
    assert coordinator.stage is JobStage.FAILED
    assert (coordinator.failure or "").startswith("bank failed: "), coordinator.failure
    # Nothing was computed on it: no epoch finished, no loss was opened.
    assert fits[Role.BANK].result.epochs_run == 0  # type: ignore[attr-defined]
    assert coordinator.losses == []
