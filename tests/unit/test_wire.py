"""federation.transport.wire: protobuf conversions of tensors, envelopes and coordinator messages.

Whatever arrives from the wire that is not a plain numeric / fixed-width text array of the
announced size must become ``ProtocolAbort`` (the servicer maps it to a clean status);
any other exception type escapes as an opaque gRPC UNKNOWN.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from federation.proto import vfl_pb2
from federation.protocol.errors import ProtocolAbort
from federation.protocol.messages import (
    DealReply,
    DealRequest,
    Decision,
    Envelope,
    FailRequest,
    JobPlan,
    JoinRequest,
    MatchReply,
    MatchRequest,
    Mode,
    Optimizer,
    Role,
    SyncReply,
    SyncRequest,
    Tag,
    Task,
    TrainSettings,
)
from federation.transport import wire

ARRAYS: dict[str, npt.NDArray[np.generic]] = {
    "u64": np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64),
    "f64": np.array([[0.0, -0.0, 1.5], [np.inf, -1e-300, 3.0]]),
    "u8": np.frombuffer(bytes(range(32)), dtype=np.uint8),
    "text": np.array(["grid ran out of memory", "ü—中文"]),
    "empty": np.zeros((0, 3), dtype=np.uint64),
    "i64": np.array([-5, 7], dtype=np.int64),
}


def same(a: npt.NDArray[np.generic], b: npt.NDArray[np.generic]) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_tensor_round_trip_keeps_dtype_shape_and_bits(name: str) -> None:
    arr = ARRAYS[name]
    proto = wire.tensor_to_proto(name, arr)
    assert proto.name == name and list(proto.shape) == list(arr.shape)
    back = wire.tensor_from_proto(vfl_pb2.Tensor.FromString(proto.SerializeToString()))
    assert same(back, arr)


def test_tensor_goes_little_endian_and_contiguous() -> None:
    big = np.array([1, 2, 3], dtype=">u8")
    proto = wire.tensor_to_proto("x", big)
    assert proto.dtype == "<u8" and proto.data[:8] == (1).to_bytes(8, "little")
    strided = np.arange(12, dtype=np.uint64).reshape(3, 4)[:, 1]
    assert wire.tensor_from_proto(wire.tensor_to_proto("s", strided)).tolist() == [1, 5, 9]


def test_envelope_round_trip_through_bytes() -> None:
    e = Envelope("job-9", Tag(17, "fit"), Role.GRID, dict(ARRAYS))
    back = wire.envelope_from_bytes(wire.envelope_to_bytes(e))
    assert (back.job_id, back.tag, back.sender) == ("job-9", Tag(17, "fit"), Role.GRID)
    assert sorted(back.tensors) == sorted(ARRAYS)
    assert all(same(back.tensors[k], v) for k, v in ARRAYS.items())


def _protobuf_bytes(e: Envelope) -> bytes:
    return bytes(vfl_pb2.Envelope(
        job_id=e.job_id, round=e.tag.round, step=e.tag.step, sender=e.sender.value,
        tensors=[wire.tensor_to_proto(k, v) for k, v in e.tensors.items()]).SerializeToString())


@pytest.mark.parametrize("tensors", [
    dict(ARRAYS), {}, {"big": np.arange(300_000, dtype=np.uint8).reshape(1000, 100, 3)},
    {"one": np.array([5], dtype=np.uint32), "": np.zeros(0, dtype=np.float64),
     "strided": np.arange(40, dtype=">i8").reshape(5, 8)[:, ::3]}],
    ids=["all-kinds", "none", "large", "edge-cases"])
@pytest.mark.parametrize("tag", [Tag(17, "fit"), Tag(0, ""), Tag(2**40, "bins-masked/12"),
                                 Tag(-3, "ü/中"), Tag(2**63 - 1, "x" * 200)])
def test_envelope_bytes_are_exactly_protobufs_serialization(
        tensors: dict[str, npt.NDArray[np.generic]], tag: Tag) -> None:
    # the hand-framed serializer must not change a byte of what crosses (nor the digests
    # both audit logs record)
    job = {17: "job-9", 0: "", -3: "jöb—9"}.get(tag.round, "j" * 300)
    for _ in range(2):  # the second time from the caches
        e = Envelope(job, tag, Role.BANK, tensors)
        assert wire.envelope_to_bytes(e) == _protobuf_bytes(e)


@pytest.mark.parametrize("arr", [np.array([object()]), np.array([True, False]),
                                 np.array([1 + 2j]), np.array([b"raw"])],
                         ids=["object", "bool", "complex", "bytes"])
def test_send_refuses_non_plain_dtypes(arr: npt.NDArray[np.generic]) -> None:
    with pytest.raises(TypeError, match="cannot be sent"):
        wire.tensor_to_proto("bad", arr)


def tensor(dtype: str, shape: list[int], data: bytes) -> vfl_pb2.Tensor:
    return vfl_pb2.Tensor(name="t", dtype=dtype, shape=shape, data=data)


@pytest.mark.parametrize(("dtype", "shape", "data"), [
    ("<u8", [3], bytes(23)),          # one byte short
    ("<u8", [3], bytes(25)),          # one byte long
    ("<f8", [2, 2], bytes(24)),
    ("<U4", [2], bytes(31)),
], ids=["short", "long", "matrix", "unicode"])
def test_byte_count_mismatch_is_protocol_abort(dtype: str, shape: list[int],
                                               data: bytes) -> None:
    with pytest.raises(ProtocolAbort, match=r"bytes for .*\(expected"):
        wire.tensor_from_proto(tensor(dtype, shape, data))


@pytest.mark.parametrize(("dtype", "shape"), [
    ("|O", [1]), ("?", [1]), ("<c16", [1]), ("V8", [1]), ("<M8[s]", [1]),
    ("(2,)<u8", [1]), ("<u8", [-1]), ("<u8", [1, 1, 1, 1, 1]), ("not-a-dtype", [1]), ("", [1]),
])
def test_refused_dtype_or_shape_is_protocol_abort(dtype: str, shape: list[int]) -> None:
    with pytest.raises(ProtocolAbort, match="tensor 't'"):
        wire.tensor_from_proto(tensor(dtype, shape, bytes(16)))


def test_overflowing_shape_is_protocol_abort() -> None:
    with pytest.raises(ProtocolAbort):
        wire.tensor_from_proto(tensor("<u8", [2**32, 2**32], b""))


def test_zero_itemsize_dtype_is_protocol_abort() -> None:
    with pytest.raises(ProtocolAbort):
        wire.tensor_from_proto(tensor("U", [3], b""))


@pytest.mark.parametrize("data", [b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x12"],
                         ids=["garbage", "truncated-field", "dangling-tag"])
def test_malformed_envelope_bytes_are_protocol_abort(data: bytes) -> None:
    with pytest.raises(ProtocolAbort, match="malformed message"):
        wire.envelope_from_bytes(data)


def _protobuf_parse(data: bytes) -> Envelope | None:
    msg = vfl_pb2.Envelope()
    try:
        msg.ParseFromString(data)
        sender = Role(msg.sender)
        return Envelope(msg.job_id, Tag(int(msg.round), msg.step), sender,
                        {t.name: wire.tensor_from_proto(t) for t in msg.tensors})
    except Exception:  # noqa: BLE001 - any refusal counts as one
        return None


def test_envelope_parse_equals_protobufs_on_valid_mutated_and_garbage_bytes() -> None:
    # the in-place parser (tensor data as views) must agree with protobuf's own parse: the
    # same envelope, or a ProtocolAbort where protobuf (or the codec) refuses
    rng = np.random.default_rng(5)
    e = Envelope("job-9", Tag(3, "bins-masked/0"), Role.GRID,
                 {"E": np.arange(60, dtype=np.uint8).reshape(4, 5, 3), "n": np.array([7])})
    good = wire.envelope_to_bytes(e)
    unknown = good + b"\x30\x07" + b"\x7a\x02ab"  # unknown varint and bytes fields
    group = good + b"\x33\x34"  # an (empty) unknown group: refused here, kept by protobuf
    cases = [good, unknown, good + b"\x2a", b"", good[:-1], good + b"\x00"]
    for _ in range(300):
        b = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        cases.append(bytes(b))
    cases += [bytes(rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8))
              for _ in range(200)]
    for data in cases:
        want = _protobuf_parse(data)
        if want is None:
            with pytest.raises(ProtocolAbort):
                wire.envelope_from_bytes(data)
            continue
        got = wire.envelope_from_bytes(data)
        assert (got.job_id, got.tag, got.sender) == (want.job_id, want.tag, want.sender)
        assert sorted(got.tensors) == sorted(want.tensors)
        assert all(same(got.tensors[k], v) for k, v in want.tensors.items())
    with pytest.raises(ProtocolAbort, match="malformed"):
        wire.envelope_from_bytes(group)


def test_unknown_sender_is_protocol_abort() -> None:
    msg = vfl_pb2.Envelope(job_id="j", round=1, step="fit", sender="mallory")
    with pytest.raises(ProtocolAbort, match="malformed"):
        wire.envelope_from_bytes(msg.SerializeToString())


def test_envelope_with_bad_tensor_is_protocol_abort() -> None:
    msg = vfl_pb2.Envelope(job_id="j", round=1, step="fit", sender="bank",
                           tensors=[tensor("<u8", [4], bytes(8))])
    with pytest.raises(ProtocolAbort, match="expected 32"):
        wire.envelope_from_bytes(msg.SerializeToString())


SETTINGS = TrainSettings(mode=Mode.SHARED, epochs=9, batch_size=128, learning_rate=0.07,
                         optimizer=Optimizer.ADAM, l2=0.01, l1=0.002, momentum=0.8,
                         tolerance=1e-7, seed=2**40 + 3, validation_fraction=0.3, frac_bits=20,
                         task=Task.SCORE, deadline_seconds=12.5)


def test_settings_round_trip_with_non_default_values() -> None:
    assert SETTINGS != TrainSettings()
    proto = vfl_pb2.TrainSettings.FromString(
        wire.settings_to_proto(SETTINGS).SerializeToString())
    assert wire.settings_from_proto(proto) == SETTINGS


def test_coordinator_messages_round_trip() -> None:
    join = JoinRequest("j", Role.BANK, "127.0.0.1:5", 1000, 12)
    assert wire.join_request_from_proto(wire.join_request_to_proto(join)) == join
    plan = JobPlan("j", "10.0.0.2:7", bytes(range(32)), SETTINGS)
    assert wire.plan_from_proto(wire.plan_to_proto(plan)) == plan
    sync = SyncRequest("j", Role.GRID, 3, "epoch", {"delta_sq": 0.25}, {"loss": 2**64 - 1})
    assert wire.sync_request_from_proto(wire.sync_request_to_proto(sync)) == sync
    reply = SyncReply(Decision.STOP, {"loss": 0.5}, "converged")
    assert wire.sync_reply_from_proto(wire.sync_reply_to_proto(reply)) == reply
    deal = DealRequest("j", Role.GRID, 4)
    assert wire.deal_request_from_proto(wire.deal_request_to_proto(deal)) == deal
    fail = FailRequest("j", Role.BANK, "disk full")
    assert wire.fail_request_from_proto(wire.fail_request_to_proto(fail)) == fail


def test_deal_reply_round_trip_keeps_uint64_corrections() -> None:
    c = {"grad_grid": np.array([[2**64 - 1, 0], [5, 2**63]], dtype=np.uint64),
         "loss": np.array([7], dtype=np.uint64)}
    back = wire.deal_reply_from_proto(wire.deal_reply_to_proto(DealReply(c)))
    assert sorted(back.corrections) == sorted(c)
    assert all(same(back.corrections[k], v) for k, v in c.items())


def test_psi_match_request_and_reply_round_trip() -> None:
    tags = np.random.default_rng(1).integers(0, 256, size=(7, 16), dtype=np.uint8)
    req = wire.match_request_from_bytes(
        wire.match_request_to_bytes(MatchRequest("job-1", Role.BANK, tags)))
    assert (req.job_id, req.role) == ("job-1", Role.BANK)
    np.testing.assert_array_equal(req.tags, tags)
    pos = np.array([0, 5, 2**32 - 1], dtype=np.int64)
    back = wire.match_reply_from_bytes(wire.match_reply_to_bytes(MatchReply(pos)))
    np.testing.assert_array_equal(back.positions, pos)
    assert wire.match_reply_from_bytes(b"").positions.shape == (0,)


@pytest.mark.parametrize(("data", "message"), [
    (vfl_pb2.MatchRequest(job_id="j", role="bank", tags=b"x" * 17).SerializeToString(),
     "17 bytes: expected a multiple of 16"),
    (vfl_pb2.MatchRequest(job_id="j", role="auditor", tags=b"").SerializeToString(),
     "unknown role 'auditor'"),
    (b"\xff\xff\xff", "not a MatchRequest"),
])
def test_bad_psi_tags_are_protocol_errors(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolAbort, match=message):
        wire.match_request_from_bytes(data)


def test_bad_psi_positions_are_protocol_errors() -> None:
    with pytest.raises(ProtocolAbort, match="multiple of 4"):
        wire.match_reply_from_bytes(vfl_pb2.MatchReply(positions=b"abc").SerializeToString())
    with pytest.raises(ProtocolAbort, match="0..2\\^32 - 1"):
        wire.match_reply_to_bytes(MatchReply(np.array([-1], dtype=np.int64)))
