"""Conversions between our dataclasses and protobuf messages (the only place that does).

Arrays travel as dtype string + shape + raw little-endian bytes. Only plain numeric and
fixed-width text dtypes are accepted from the wire; anything else is a protocol error.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from federation.proto import vfl_pb2
from federation.protocol.codec import decode_tensor, encode_tensor, encode_tensor_view
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
    Model,
    Optimizer,
    PsiProtocol,
    Role,
    SyncReply,
    SyncRequest,
    Tag,
    Task,
    TrainSettings,
)


def tensor_to_proto(name: str, arr: npt.NDArray[np.generic]) -> vfl_pb2.Tensor:
    dtype, shape, data = encode_tensor(name, arr)
    return vfl_pb2.Tensor(name=name, dtype=dtype, shape=shape, data=data)


def tensor_from_proto(t: vfl_pb2.Tensor) -> npt.NDArray[np.generic]:
    return decode_tensor(t.name, t.dtype, list(t.shape), t.data)


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes([v]) for v in range(128)]
_TENSORS = b"\x2a"  # Envelope.tensors: field 5, length-delimited
_DATA = b"\x22"  # Tensor.data: field 4, length-delimited


def _field(key: bytes, text: str) -> bytes:
    """A proto3 string field (omitted when empty, as protobuf does)."""
    raw = text.encode("utf-8")
    return key + _varint(len(raw)) + raw if raw else b""


_HEADS: dict[tuple[str, str, str], tuple[bytes, bytes]] = {}
_METAS: dict[tuple[str, str, tuple[int, ...]], bytes] = {}
_CACHE_LIMIT = 1024


def _heads(job: str, step: str, sender: str) -> tuple[bytes, bytes]:
    """(job_id field, step + sender fields) of an envelope, cached per job, step and sender."""
    key = (job, step, sender)
    out = _HEADS.get(key)
    if out is None:
        out = (_field(b"\x0a", job), _field(b"\x1a", step) + _field(b"\x22", sender))
        if len(_HEADS) < _CACHE_LIMIT:
            _HEADS[key] = out
    return out


def _meta(name: str, dtype: str, shape: tuple[int, ...]) -> bytes:
    """A Tensor's name, dtype and (packed) shape fields, cached per distinct triple."""
    key = (name, dtype, shape)
    out = _METAS.get(key)
    if out is None:
        dims = b"".join(_varint(d) for d in shape)
        out = (_field(b"\x0a", name) + _field(b"\x12", dtype)
               + (b"\x1a" + _varint(len(dims)) + dims if dims else b""))
        if len(_METAS) < _CACHE_LIMIT:
            _METAS[key] = out
    return out


def _envelope_parts(env: Envelope) -> list[bytes | memoryview]:
    """The serialized envelope as pieces, framed by hand (field order and proto3 omissions as
    protobuf writes them; ``tests/unit/test_wire.py`` compares with ``SerializeToString``)."""
    job, rest = _heads(env.job_id, env.tag.step, env.sender.value)
    rnd = int(env.tag.round)
    if not -(1 << 63) <= rnd < 1 << 63:
        raise ValueError(f"round {rnd} is out of range for int64")
    parts: list[bytes | memoryview] = [
        job + (b"\x10" + _varint(rnd & 0xFFFFFFFFFFFFFFFF) if rnd else b"") + rest]
    for name, arr in env.tensors.items():
        dtype, shape, raw = encode_tensor_view(name, arr)
        meta = _meta(name, dtype, tuple(shape))
        data_field = _DATA + _varint(raw.size) if raw.size else b""  # proto3: empty omitted
        parts += [_TENSORS, _varint(len(meta) + len(data_field) + raw.size), meta, data_field,
                  raw.data]
    return parts


def envelope_to_bytes(env: Envelope) -> bytes:
    """The serialized ``vfl_pb2.Envelope``, byte for byte what ``SerializeToString`` gives.

    Protobuf writes fields in field-number order, and a tensor's data (Tensor field 4) and
    the tensors (Envelope field 5) are the last fields: so the small fields go through
    protobuf and each tensor's data is framed by hand and copied once, straight from the
    array into the message (``SerializeToString`` of the whole would copy it four times:
    to bytes, into the Tensor, into the Envelope, out; ``tests/unit/test_wire.py``).
    """
    return b"".join(_envelope_parts(env))


def envelope_from_bytes(data: bytes | memoryview) -> Envelope:
    """The envelope of ``envelope_to_bytes``'s bytes; each tensor a read-only view of them.

    Protobuf parses everything but the tensors' data (``_without_data``: the message with
    each Tensor.data field cut out, which names, dtypes, shapes and the envelope's fields
    keep their protobuf checks); the data are views of ``data``, not copied twice (into
    the parsed message, out as bytes) as ``ParseFromString`` of the whole would.
    """
    view = memoryview(data)
    if len(view) <= WHOLE_PARSE:
        small = _small_envelope(view)
        if small is not None:
            return small
    try:
        meta, spans = _without_data(view)
        msg = vfl_pb2.Envelope()
        msg.ParseFromString(meta)
        sender = Role(msg.sender)
    except Exception as exc:  # _Malformed, protobuf's DecodeError, Role's ValueError
        raise ProtocolAbort(f"malformed message ({len(view)} bytes): {exc}") from exc
    if len(msg.tensors) != len(spans):
        raise ProtocolAbort(f"malformed message ({len(view)} bytes): tensors do not parse")
    return Envelope(msg.job_id, Tag(int(msg.round), msg.step), sender,
                    {t.name: decode_tensor(t.name, t.dtype, list(t.shape), span)
                     for t, span in zip(msg.tensors, spans)})


WHOLE_PARSE = 1 << 18  # up to this size protobuf parses all of it: copying the data is cheaper


def _small_envelope(view: memoryview) -> Envelope | None:
    """A small message parsed whole by protobuf (each tensor a read-only view of its copy);
    None if protobuf kept unknown fields: the in-place parser then decides, as for any size."""
    try:
        msg = vfl_pb2.Envelope()
        msg.ParseFromString(view)
        sender = Role(msg.sender)
    except Exception as exc:  # protobuf's DecodeError, Role's ValueError
        raise ProtocolAbort(f"malformed message ({len(view)} bytes): {exc}") from exc
    if len(UnknownFieldSet(msg)) or any(len(UnknownFieldSet(t)) for t in msg.tensors):
        return None
    return Envelope(msg.job_id, Tag(int(msg.round), msg.step), sender,
                    {t.name: decode_tensor(t.name, t.dtype, list(t.shape), t.data)
                     for t in msg.tensors})


class _Malformed(ValueError):
    pass


def _varint_at(view: memoryview, pos: int, stop: int) -> tuple[int, int]:
    value, shift = 0, 0
    while pos < stop and shift < 64:
        byte = view[pos]
        value, shift, pos = value | (byte & 0x7F) << shift, shift + 7, pos + 1
        if byte < 0x80:
            return value, pos
    raise _Malformed("truncated varint")


def _fields(view: memoryview, start: int, stop: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(number, wire type, field start, payload start, end) of each field in [start, stop)."""
    pos = start
    while pos < stop:
        key, body = _varint_at(view, pos, stop)
        number, kind = key >> 3, key & 7
        if kind == 0:
            end = _varint_at(view, body, stop)[1]
        elif kind in (1, 5):
            end = body + (8 if kind == 1 else 4)
        elif kind == 2:
            size, body = _varint_at(view, body, stop)
            end = body + size
        else:
            raise _Malformed(f"wire type {kind}")
        if end > stop or number == 0:
            raise _Malformed("field past its message")
        yield number, kind, pos, body, end
        pos = end


def _without_data(view: memoryview) -> tuple[bytes, list[memoryview]]:
    """The envelope's bytes with every Tensor.data field removed, and each tensor's data."""
    parts: list[bytes | memoryview] = []
    spans: list[memoryview] = []
    for number, kind, start, body, end in _fields(view, 0, len(view)):
        if number != 5 or kind != 2:
            parts.append(view[start:end])
            continue
        kept: list[bytes | memoryview] = []
        data = view[0:0]
        for n, k, s, b, e in _fields(view, body, end):
            if n == 4 and k == 2:
                data = view[b:e]  # the last one wins, as in protobuf
            else:
                kept.append(view[s:e])
        tensor = b"".join(kept)
        parts += [_TENSORS, _varint(len(tensor)), tensor]
        spans.append(data)
    return b"".join(parts), spans


def settings_to_proto(s: TrainSettings) -> vfl_pb2.TrainSettings:
    return vfl_pb2.TrainSettings(
        mode=s.mode.value, epochs=s.epochs, batch_size=s.batch_size,
        learning_rate=s.learning_rate, optimizer=s.optimizer.value, l2=s.l2, l1=s.l1,
        momentum=s.momentum, tolerance=s.tolerance, seed=s.seed,
        validation_fraction=s.validation_fraction, frac_bits=s.frac_bits, task=s.task.value,
        deadline_seconds=s.deadline_seconds, feature_frac_bits=s.feature_frac_bits,
        feature_clip=s.feature_clip, reveal_weights=s.reveal_weights,
        checkpoint_every=s.checkpoint_every, psi=s.psi.value, model=s.model.value,
        trees=s.trees, depth=s.depth, bins=s.bins, min_child_weight=s.min_child_weight,
        subsample=s.subsample, early_stopping_rounds=s.early_stopping_rounds)


def settings_from_proto(p: vfl_pb2.TrainSettings) -> TrainSettings:
    return TrainSettings(
        mode=Mode(p.mode), epochs=p.epochs, batch_size=p.batch_size,
        learning_rate=p.learning_rate, optimizer=Optimizer(p.optimizer), l2=p.l2, l1=p.l1,
        momentum=p.momentum, tolerance=p.tolerance, seed=p.seed,
        validation_fraction=p.validation_fraction, frac_bits=p.frac_bits, task=Task(p.task),
        deadline_seconds=p.deadline_seconds, feature_frac_bits=p.feature_frac_bits,
        feature_clip=p.feature_clip, reveal_weights=p.reveal_weights,
        checkpoint_every=p.checkpoint_every, psi=PsiProtocol(p.psi), model=Model(p.model),
        trees=p.trees, depth=p.depth, bins=p.bins, min_child_weight=p.min_child_weight,
        subsample=p.subsample, early_stopping_rounds=p.early_stopping_rounds)


def join_request_to_proto(r: JoinRequest) -> vfl_pb2.JoinRequest:
    return vfl_pb2.JoinRequest(job_id=r.job_id, role=r.role.value, address=r.address,
                               n_rows=r.n_rows, n_columns=r.n_columns)


def join_request_from_proto(p: vfl_pb2.JoinRequest) -> JoinRequest:
    return JoinRequest(p.job_id, Role(p.role), p.address, p.n_rows, p.n_columns)


def plan_to_proto(plan: JobPlan) -> vfl_pb2.JoinReply:
    return vfl_pb2.JoinReply(job_id=plan.job_id, peer_address=plan.peer_address,
                             dealer_seed=plan.dealer_seed,
                             settings=settings_to_proto(plan.settings),
                             max_message_bytes=plan.max_message_bytes)


def plan_from_proto(p: vfl_pb2.JoinReply) -> JobPlan:
    return JobPlan(p.job_id, p.peer_address, p.dealer_seed, settings_from_proto(p.settings),
                   p.max_message_bytes)


def sync_request_to_proto(r: SyncRequest) -> vfl_pb2.SyncRequest:
    return vfl_pb2.SyncRequest(job_id=r.job_id, role=r.role.value, round=r.round, step=r.step,
                               values=r.values, ring_values=r.ring_values)


def sync_request_from_proto(p: vfl_pb2.SyncRequest) -> SyncRequest:
    return SyncRequest(p.job_id, Role(p.role), p.round, p.step, dict(p.values),
                       dict(p.ring_values))


def sync_reply_to_proto(r: SyncReply) -> vfl_pb2.SyncReply:
    return vfl_pb2.SyncReply(decision=int(r.decision), values=r.values, reason=r.reason)


def sync_reply_from_proto(p: vfl_pb2.SyncReply) -> SyncReply:
    return SyncReply(Decision(p.decision), dict(p.values), p.reason)


def deal_request_to_proto(r: DealRequest) -> vfl_pb2.DealRequest:
    return vfl_pb2.DealRequest(job_id=r.job_id, role=r.role.value, epoch=r.epoch)


def deal_request_from_proto(p: vfl_pb2.DealRequest) -> DealRequest:
    return DealRequest(p.job_id, Role(p.role), p.epoch)


def deal_reply_to_proto(r: DealReply) -> vfl_pb2.DealReply:
    return vfl_pb2.DealReply(corrections=[tensor_to_proto(k, v) for k, v in r.corrections.items()])


def deal_reply_from_proto(p: vfl_pb2.DealReply) -> DealReply:
    return DealReply({t.name: np.asarray(tensor_from_proto(t), dtype=np.uint64)
                      for t in p.corrections})


def fail_request_to_proto(r: FailRequest) -> vfl_pb2.FailRequest:
    return vfl_pb2.FailRequest(job_id=r.job_id, role=r.role.value, reason=r.reason)


def fail_request_from_proto(p: vfl_pb2.FailRequest) -> FailRequest:
    return FailRequest(p.job_id, Role(p.role), p.reason)


TAG_BYTES = 16


def match_request_to_bytes(r: MatchRequest) -> bytes:
    """The serialized ``MatchRequest`` (streamed in pieces, audited whole)."""
    tags = np.ascontiguousarray(r.tags, dtype=np.uint8)
    msg = vfl_pb2.MatchRequest(job_id=r.job_id, role=r.role.value, tags=tags.tobytes())
    data: bytes = msg.SerializeToString(deterministic=True)
    return data


def match_request_from_bytes(data: bytes) -> MatchRequest:
    """Parse a ``MatchRequest``; the tags must be a whole number of 16-byte rows."""
    try:
        p = vfl_pb2.MatchRequest.FromString(data)
    except DecodeError:
        raise ProtocolAbort(f"PSI tags: {len(data)} bytes that are not a MatchRequest") from None
    if len(p.tags) % TAG_BYTES:
        raise ProtocolAbort(f"PSI tags of {len(p.tags)} bytes: expected a multiple of "
                            f"{TAG_BYTES}")
    try:
        role = Role(p.role)
    except ValueError:
        raise ProtocolAbort(f"PSI tags from unknown role {p.role[:20]!r}") from None
    tags = np.frombuffer(p.tags, dtype=np.uint8).reshape(-1, TAG_BYTES)
    return MatchRequest(p.job_id, role, tags)


def match_reply_to_bytes(r: MatchReply) -> bytes:
    """The serialized ``MatchReply``: positions as little-endian uint32."""
    pos = np.asarray(r.positions)
    if pos.size and (pos.min() < 0 or pos.max() >= 2**32):
        raise ProtocolAbort("PSI positions must lie in 0..2^32 - 1")
    msg = vfl_pb2.MatchReply(positions=pos.astype("<u4").tobytes())
    data: bytes = msg.SerializeToString(deterministic=True)
    return data


def match_reply_from_bytes(data: bytes) -> MatchReply:
    """Parse a ``MatchReply``."""
    try:
        p = vfl_pb2.MatchReply.FromString(data)
    except DecodeError:
        raise ProtocolAbort(f"PSI positions: {len(data)} bytes that are not a MatchReply") from None
    if len(p.positions) % 4:
        raise ProtocolAbort(f"PSI positions of {len(p.positions)} bytes: expected a "
                            "multiple of 4")
    return MatchReply(np.frombuffer(p.positions, dtype="<u4").astype(np.int64))
