"""The coordinator's view does not depend on the data.

Two jobs with the same randomness (coordinator seeds, X25519 pair keys, PSI keys and
shuffles fixed per thread by ``fixed_randomness``), the same IDs and shapes, but different
feature values and labels: every request the coordinator receives is byte-identical on the
wire (protobuf; with server-aided PSI, the default, the tags included: they depend on the
IDs and the parties' key only), in the same order per party, except the opened scalars,
i.e. the masked epoch loss shares (``ring_values["loss"]``, whose sum is the revealed
epoch loss) and, in mode local, the weight-change norms (``values["delta_sq"]``). Mode
shared reports no weight change (NaN), so there it must be identical too. The dealt
corrections, which depend on seeds and shapes only, come out identical as well.

Controls: the opened scalars do differ between the two jobs (the data did change), and a
third job with one more grid column is told apart by the same comparison.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from federation.protocol.messages import Mode, Role, SyncRequest
from tests.privacy.conftest import MODES, small_settings
from tests.privacy.harness import Job, fixed_randomness, make_data, request_wire_bytes, run_job

OPENED_RING = {"loss"}


def opened(mode: Mode) -> set[str]:
    return {"delta_sq"} if mode is Mode.LOCAL else set()


def run(mode: Mode, seed: int, k_grid: int = 4) -> Job:
    grid, bank = make_data(200, k_grid, 3, seed=seed, extra_ids=10, id_seed=0)
    with fixed_randomness("coordinator-view"):
        return run_job(grid, bank, small_settings(mode, epochs=2))


def view(job: Job) -> dict[Role, list[tuple[str, bytes]]]:
    """Per party and kind, in order: (kind, wire bytes with the opened scalars zeroed).

    Requests are grouped by kind, keeping their order within each kind: a party fetches the
    dealer's corrections one epoch ahead on its own thread, so how its Deal and Sync requests
    interleave depends on thread timing (not on data); each kind's sequence does not.
    """
    out: dict[Role, list[tuple[str, bytes]]] = {Role.GRID: [], Role.BANK: []}
    for m in sorted(job.transcript.to_coordinator(), key=lambda m: m.kind):  # stable sort
        req: Any = m.request
        if isinstance(req, SyncRequest):
            req = dataclasses.replace(
                req, values={k: (0.0 if k in opened(job.mode) else v)
                             for k, v in req.values.items()},
                ring_values={k: (0 if k in OPENED_RING else v)
                             for k, v in req.ring_values.items()})
        out[m.sender].append((m.kind, request_wire_bytes(req)))
    return out


def opened_values(job: Job) -> list[float | int]:
    """The opened scalars, grid's first, each party's in order."""
    return [v for role in (Role.GRID, Role.BANK) for m in job.transcript.to_coordinator()
            if m.sender is role and isinstance(m.request, SyncRequest)
            for d, names in ((m.request.values, opened(job.mode)),
                             (m.request.ring_values, OPENED_RING))
            for k, v in d.items() if k in names]


def differences(a: Job, b: Job) -> list[str]:
    va, vb = view(a), view(b)
    out = []
    for role in (Role.GRID, Role.BANK):
        if len(va[role]) != len(vb[role]):
            out.append(f"{role}: {len(va[role])} vs {len(vb[role])} requests")
        for i, (x, y) in enumerate(zip(va[role], vb[role], strict=False)):
            if x != y:
                out.append(f"{role} request {i} ({x[0]}) differs")
    return out


@pytest.fixture(scope="module")
def jobs() -> dict[tuple[Mode, str], Job]:
    out = {}
    for mode in MODES:
        out[(mode, "a")] = run(mode, seed=11)
        out[(mode, "b")] = run(mode, seed=12)
        out[(mode, "wider")] = run(mode, seed=11, k_grid=5)
    return out


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_coordinator_view_is_byte_identical_for_different_data(
        mode: Mode, jobs: dict[tuple[Mode, str], Job]) -> None:
    a, b = jobs[(mode, "a")], jobs[(mode, "b")]
    assert not np.array_equal(a.data[Role.BANK].x, b.data[Role.BANK].x)
    assert not np.array_equal(np.asarray(a.data[Role.BANK].y), np.asarray(b.data[Role.BANK].y))
    assert a.data[Role.BANK].ids == b.data[Role.BANK].ids
    diff = differences(a, b)
    n = sum(len(v) for v in view(a).values())
    n_bytes = sum(len(w) for v in view(a).values() for _, w in v)
    print(f"\n[coordinator view {mode}] {n} requests, {n_bytes} wire bytes compared; "
          f"opened scalars {len(opened_values(a))} per job: job a {opened_values(a)[:4]}..., "
          f"job b {opened_values(b)[:4]}...; losses {a.coordinator.losses} vs "
          f"{b.coordinator.losses}")
    assert not diff, "\n".join(diff)
    assert n >= 14
    assert {"JoinRequest", "MatchRequest", "SyncRequest"} <= {k for k, _ in view(a)[Role.GRID]}
    # Control: the data did change what was opened, and only that.
    assert all(x != y for x, y in zip(opened_values(a), opened_values(b), strict=True))
    # The corrections the dealer sent back depend on seeds and shapes only.
    for role in (Role.GRID, Role.BANK):
        for da, db in zip(a.transcript.dealt(role), b.transcript.dealt(role), strict=True):
            assert da.corrections.keys() == db.corrections.keys()
            for k in da.corrections:
                np.testing.assert_array_equal(da.corrections[k], db.corrections[k])


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_the_comparison_tells_a_different_shape_apart(
        mode: Mode, jobs: dict[tuple[Mode, str], Job]) -> None:
    diff = differences(jobs[(mode, "a")], jobs[(mode, "wider")])
    # Requests are compared kind by kind (Deal < Join < Match < Sync): the grid's join,
    # which states its column count, is the one that differs.
    assert any(d.startswith("grid request") and "(JoinRequest) differs" in d
               for d in diff), diff
