"""Coordinator blindness: what reaches the coordinator is registration, a few scalars per
barrier, deal requests, failure notices and, with server-aided PSI, each party's list of
16-byte tags (pseudorandom without the key the parties agreed on between themselves);
never another tensor, a share or a masked value. It answers the PSI with positions only.

Checked on every request the parties made of the coordinator during a whole job (the
recording ``CoordinatorLink``), by type (only ``JoinRequest``, ``SyncRequest``,
``DealRequest``, ``FailRequest``), by content (every field a plain scalar or a short
string; barrier values only the names docs/design.md allows: intersection count, epoch loss
share, weight-change norm) and by size (protobuf bytes as the gRPC transport sends them).
Also: every party-to-party message went to the peer, none through the coordinator
(docs/design.md "Dealer": the coordinator knows every mask, a masked value routed through it
would be opened). A negative control feeds the checker leaky requests.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import numpy as np
import pytest

from crypto.psi import server_aided
from crypto.psi.errors import domain_prefix
from federation.protocol.messages import (
    DealRequest,
    FailRequest,
    JoinRequest,
    MatchReply,
    MatchRequest,
    Mode,
    PsiProtocol,
    Role,
    SyncRequest,
    peer_of,
)
from parties.alignment import server_aided_domain
from tests.privacy.conftest import MODES, PSI, SMALL_EXTRA, SMALL_ROWS, small_settings
from tests.privacy.harness import (
    JOB,
    Job,
    RecordingSharedFit,
    make_data,
    request_wire_bytes,
    run_job,
)

# step -> (allowed float values, allowed ring values)
SYNC_VALUES = {
    "aligned": ({"intersection"}, set()),
    "epoch": ({"delta_sq"}, {"loss"}),
    "evaluated": (set(), set()),
}
MAX_WIRE_BYTES = {JoinRequest: 80, SyncRequest: 96, DealRequest: 40, FailRequest: 600,
                  MatchRequest: 64}  # plus 16 bytes per tag
MAX_TAGS = 10 * SMALL_ROWS
MAX_TEXT = {"reason": 500}
MAX_SCALARS = 3  # number-valued fields besides the header (round / epoch / counts)


def problems(req: Any) -> list[str]:
    """Why ``req`` is more than a coordinator may see; empty when it is fine."""
    kind = type(req)
    if kind not in MAX_WIRE_BYTES:
        return [f"{kind.__name__} is not a coordinator request"]
    out = []
    scalars = 0
    extra = 0
    for f in fields(req):
        value = getattr(req, f.name)
        if isinstance(req, MatchRequest) and f.name == "tags":
            if not (isinstance(value, np.ndarray) and value.dtype == np.uint8
                    and value.ndim == 2 and value.shape[1] == server_aided.TAG_BYTES
                    and len(value) <= MAX_TAGS):
                out.append(f"tags are {type(value).__name__} {getattr(value, 'shape', '')}")
            extra = 16 * len(value)
            continue
        if isinstance(value, dict):
            if len(value) > 2:
                out.append(f"{f.name} has {len(value)} entries")
            for key, v in value.items():
                if not isinstance(key, str) or not isinstance(v, int | float):
                    out.append(f"{f.name}[{key!r}] is a {type(v).__name__}")
            scalars += len(value)
        elif isinstance(value, str):  # Role is a str too
            if len(value) > MAX_TEXT.get(f.name, 64):
                out.append(f"{f.name} is {len(value)} characters")
        elif not isinstance(value, int | np.integer):
            out.append(f"{f.name} is a {type(value).__name__}")
    if scalars > MAX_SCALARS:
        out.append(f"{scalars} values")
    if isinstance(req, SyncRequest):
        allowed = SYNC_VALUES.get(req.step)
        if allowed is None:
            out.append(f"unknown barrier step {req.step!r}")
        else:
            if not set(req.values) <= allowed[0]:
                out.append(f"values {sorted(req.values)} at step {req.step!r}")
            if not set(req.ring_values) <= allowed[1]:
                out.append(f"ring values {sorted(req.ring_values)} at step {req.step!r}")
    size = len(request_wire_bytes(req)) if not out else 0
    if size > MAX_WIRE_BYTES[kind] + extra:
        out.append(f"{size} bytes on the wire")
    return out


def check_view(job: Job) -> Counter[str]:
    inbound = job.transcript.to_coordinator()
    bad = [f"{m.sender} {m.kind} {m.step}: {p}" for m in inbound for p in problems(m.request)]
    assert not bad, "\n".join(bad)
    # Party-to-party traffic went to the peer only.
    for m in job.transcript.messages:
        if m.kind == "Envelope":
            assert m.receiver is peer_of(m.sender)
    return Counter(m.kind for m in inbound)


@pytest.mark.parametrize("psi", PSI, ids=lambda p: p.value)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_coordinator_receives_only_registration_scalars_and_deal_requests(
        mode: Mode, psi: PsiProtocol, small_job: Callable[..., Job]) -> None:
    job = small_job(mode, psi)
    kinds = check_view(job)
    inbound = job.transcript.to_coordinator()
    epochs = job.results[Role.GRID].epochs_run
    tags = {"MatchRequest": 2} if psi is PsiProtocol.SERVER_AIDED else {}
    assert kinds == {"JoinRequest": 2, "DealRequest": 2 * epochs,
                     "SyncRequest": 2 * (1 + epochs + 1), **tags}
    sizes = [len(m.wire) for m in inbound if m.kind != "MatchRequest"]
    scalars = sum(len(m.request.values) + len(m.request.ring_values) for m in inbound
                  if isinstance(m.request, SyncRequest))
    print(f"\n[coordinator {mode} {psi}] {len(inbound)} requests {dict(kinds)}, {scalars} scalar "
          f"values, wire sizes {min(sizes)}..{max(sizes)} bytes, total {sum(sizes)} bytes; "
          f"party-to-party: {len(job.transcript.messages) - len(inbound)} messages, "
          f"{sum(m.payload_bytes for m in job.transcript.messages if m.kind == 'Envelope')} "
          "payload bytes, none via the coordinator")
    epoch_syncs = [m.request for m in inbound if m.step == "epoch"]
    assert all(set(r.ring_values) == {"loss"} for r in epoch_syncs)
    if mode is Mode.SHARED:  # the weight change is secret in mode shared: never reported
        assert all(np.isnan(r.values["delta_sq"]) for r in epoch_syncs)
    # The intersection count is the only number of the alignment barrier.
    aligned = [m.request.values for m in inbound if m.step == "aligned"]
    assert aligned == [{"intersection": float(SMALL_ROWS)}] * 2


def test_server_aided_psi_shows_the_coordinator_only_random_looking_tags_and_sizes(
        small_job: Callable[..., Job]) -> None:
    """The coordinator's PSI view: each party's tag list (its size), the intersection size;
    its answer is positions only. The tags are no unkeyed function of the IDs and look
    uniform; the full transcript search (test_transcript) finds no ID or feature in them."""
    job = small_job(Mode.SHARED, PsiProtocol.SERVER_AIDED)
    rows = SMALL_ROWS + SMALL_EXTRA
    match = [m for m in job.transcript.to_coordinator() if m.kind == "MatchRequest"]
    assert sorted(m.sender for m in match) == [Role.BANK, Role.GRID]
    for m in match:
        tags = m.request.tags
        assert set(m.tensors) == {"tags"} and tags.shape == (rows, 16) and tags.dtype == np.uint8
        assert len(m.wire) <= MAX_WIRE_BYTES[MatchRequest] + 16 * rows
        ids = job.inputs[m.sender].ids
        prefix = domain_prefix(server_aided.TAG_ID, server_aided_domain(JOB))
        unkeyed = {hashlib.sha256(prefix + x.encode()).digest()[:16] for x in ids}
        unkeyed |= {server_aided.encode_block(x.encode())[:16] for x in ids}
        assert len(unkeyed) == 2 * len(ids) and not unkeyed & {bytes(t) for t in tags}
        ones = np.unpackbits(tags, axis=1).mean()
        assert 0.48 < ones < 0.52  # 53,760 bits: fails with probability < 1e-18
    common = {bytes(t) for t in match[0].request.tags} & {bytes(t) for t in match[1].request.tags}
    assert len(common) == SMALL_ROWS  # what the coordinator learns: the intersection size
    assert job.coordinator.psi_sizes == {"grid": rows, "bank": rows}
    replies = [r for r in job.transcript.replies if isinstance(r.reply, MatchReply)]
    assert len(replies) == 2
    for r in replies:
        assert [f.name for f in fields(r.reply)] == ["positions"]
        pos = r.reply.positions
        assert pos.ndim == 1 and len(pos) == SMALL_ROWS and 0 <= pos.min() and pos.max() < rows


class CrashingFit(RecordingSharedFit):
    """The bank dies in the third iteration of the first epoch."""

    def _iteration(self, t: int, batch: int, *args: Any, **kw: Any) -> Any:
        if t == 2:
            raise RuntimeError("simulated crash of the bank in iteration 3")
        return super()._iteration(t, batch, *args, **kw)


def test_a_failed_job_sends_the_coordinator_only_short_failure_notices() -> None:
    grid, bank = make_data(SMALL_ROWS, 4, 3, seed=4)
    job = run_job(grid, bank, small_settings(Mode.SHARED), psi=False, check=False,
                  fit_classes={Role.BANK: CrashingFit})
    assert len(job.errors) == 2
    kinds = check_view(job)
    fails = [m.request for m in job.transcript.to_coordinator() if m.kind == "FailRequest"]
    print(f"\n[coordinator failure] {dict(kinds)}; reasons: {[f.reason for f in fails]}")
    assert {f.role for f in fails} == {Role.GRID, Role.BANK}
    assert job.coordinator.failure is not None and "simulated crash" in job.coordinator.failure


LEAKY = {
    "a residual vector as barrier values": SyncRequest(
        JOB, Role.BANK, 1, "epoch", {f"d{i}": 0.1 * i for i in range(32)}, {"loss": 5}),
    "a tensor in a value": SyncRequest(JOB, Role.BANK, 1, "epoch",
                                       {"delta_sq": np.zeros(4)}, {"loss": 5}),  # type: ignore[dict-item]
    "an unknown ring value": SyncRequest(JOB, Role.GRID, 1, "epoch", {"delta_sq": 0.1},
                                         {"u_grid": 12345}),
    "a value at the wrong barrier": SyncRequest(JOB, Role.GRID, 0, "aligned",
                                                {"intersection": 400.0, "delta_sq": 0.1}),
    "bytes in a join": JoinRequest(JOB, Role.GRID, "x" * 4096, 400, 4),
    "a long failure reason": FailRequest(JOB, Role.GRID, "E=" + "1234567890" * 100),
    "a party-to-party tensor": np.zeros((8, 4), dtype=np.uint64),
    "points instead of tags": MatchRequest(JOB, Role.GRID, np.zeros((8, 32), dtype=np.uint8)),
    "ring words as tags": MatchRequest(JOB, Role.GRID, np.zeros((8, 2), dtype=np.uint64)),
}


@pytest.mark.parametrize("what", sorted(LEAKY))
def test_the_checker_rejects_leaky_requests(what: str) -> None:
    assert problems(LEAKY[what]), what
