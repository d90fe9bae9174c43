"""Triple reuse: a matrix mask is used with one matrix only, a vector mask for one product
of one iteration only, and the dealers refuse to deal twice.

Every call of ``crypto.prg.expand`` during a whole job is recorded with who made it (a
party's thread, or the dealer inside a deal call), its seed and its label. Then:

- label level: no (seed, label) is expanded twice by the same actor; a dealer seed's
  labels are expanded only by that seed's party and the dealer; each vector mask (m, a,
  b) and each matrix mask (M) by exactly the two of them;
- row level: for every masked vector a party sent (F, L, and W in mode shared) the mask it
  actually used, recovered as (its secret input) - (the payload), is row t of the epoch's
  expansion under the label of that product (m/<product>/epoch=e, a/..., b/...), and no
  mask word is used twice anywhere in the job;
- matrices: each party sent E = X - M once, and the M it used for batch j is exactly
  ``M/<role>/batch=j`` of its seed;
- refusal: ``Dealer`` and ``SharedDealer`` refuse a second deal of an epoch, and a party
  that asks twice during a job makes the job fail.
A negative control reuses one vector mask row in every iteration (party and dealer alike,
so the job still trains): the label-level check cannot see it, the row-level check must.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from crypto import correlated, prg
from crypto.ring import Ring, encode
from federation.dealer import Dealer
from federation.dealer_shared import SharedDealer
from federation.protocol.messages import DealRequest, Mode, Role, peer_of
from federation.protocol.schedule import Schedule
from parties import local_fit, shared_fit
from tests.privacy.conftest import MODES, SMALL_EXTRA, SMALL_ROWS, small_settings
from tests.privacy.harness import (
    Job,
    RecordingLocalFit,
    RecordingSharedFit,
    actor,
    make_data,
    run_job,
    sabotaged,
)

VECTOR_KINDS = {"m", "a", "b"}


@dataclass
class Expansion:
    actor: str
    seed: bytes
    label: str
    out: Ring


@contextmanager
def expansions() -> Iterator[list[Expansion]]:
    log: list[Expansion] = []
    real = prg.expand

    def spy(seed: bytes, label: str, shape: int | tuple[int, ...]) -> Ring:
        out = real(seed, label, shape)
        log.append(Expansion(actor(), seed, label, out))
        return out

    with pytest.MonkeyPatch.context() as mp:
        for module in (prg, correlated, local_fit, shared_fit):
            if hasattr(module, "expand"):  # every module that expands masks by name
                mp.setattr(module, "expand", spy)
        yield log


def label_problems(job: Job, log: list[Expansion]) -> list[str]:
    owner = {seed: role.value for role, seed in job.seeds.items()}
    actors: dict[tuple[bytes, str], list[str]] = defaultdict(list)
    for e in log:
        actors[(e.seed, e.label)].append(e.actor)
    out = []
    for (seed, label), who in actors.items():
        twice = [a for a, c in Counter(who).items() if c > 1]
        if twice:
            out.append(f"{label} expanded more than once by {twice}")
        if seed not in owner:
            continue  # the pairwise loss-mask key: both parties, once each (checked above)
        if not set(who) <= {owner[seed], "dealer"}:
            out.append(f"{label} of the {owner[seed]}'s seed expanded by {sorted(set(who))}")
        kind = label.split("/")[0]
        if (kind in VECTOR_KINDS or kind == "M") and sorted(who) != sorted([owner[seed],
                                                                             "dealer"]):
            out.append(f"mask {label} expanded by {who}, expected its party and the dealer")
    return out


@dataclass
class Used:
    sender: Role
    what: str
    epoch: int
    t: int
    label: str
    mask: Ring


def used_masks(job: Job) -> list[Used]:
    """The mask of every masked vector sent: (secret input) - (payload)."""
    fit_msgs = {(m.sender, m.round): m.tensors for m in job.transcript.messages
                if m.step == "fit"}
    out = []
    for role, fit in job.fits.items():
        peer = peer_of(role).value
        dot_kind = "a" if role is Role.GRID else "b"
        for s in fit.steps:
            sent = fit_msgs[(role, s.round)]
            if job.mode is Mode.LOCAL:
                pairs = [("F", s.d, f"m/grad_{peer}"), ("L", s.operand, f"{dot_kind}/loss")]
            else:
                pairs = [("F", s.d, f"m/bwd_{peer}"), ("L", s.d, f"{dot_kind}/sq_loss")]
            for name, secret, product in pairs:
                out.append(Used(role, name, s.epoch, s.t, f"{product}/epoch={s.epoch}",
                                secret - sent[name]))
        for b in getattr(fit, "blocks", []):
            out.append(Used(role, "W", b.epoch, b.t, f"m/fwd_{peer}/epoch={b.epoch}",
                            b.share - b.payload))
    return out


def row_problems(job: Job, log: list[Expansion]) -> tuple[list[str], int]:
    ref = {(e.seed, e.label): e.out for e in log if e.actor != "dealer"}
    used = used_masks(job)
    out = []
    for u in used:
        rows = ref.get((job.seeds[u.sender], u.label))
        if rows is None:
            out.append(f"{u.sender} {u.what} (epoch {u.epoch}, t {u.t}): no expansion {u.label}")
        elif not np.array_equal(rows[u.t, : len(u.mask)], u.mask):
            out.append(f"{u.sender} {u.what} (epoch {u.epoch}, t {u.t}) is not row {u.t} of "
                       f"{u.label}")
    words = np.concatenate([u.mask for u in used])
    repeated = len(words) - len(np.unique(words))
    if repeated:
        out.append(f"{repeated} mask words were used more than once")
    return out, len(used)


def matrix_problems(job: Job, log: list[Expansion]) -> list[str]:
    ref = {(e.seed, e.label): e.out for e in log if e.actor != "dealer"}
    cfg, schedule, out = job.settings, job.schedule, []
    for role, data in job.data.items():
        sent = [m for m in job.transcript.messages if m.sender is role and m.step == "masked-x"]
        if len(sent) != 1:
            out.append(f"{role} sent masked features {len(sent)} times")
            continue
        x = data.x[schedule.train_rows]
        if job.mode is Mode.LOCAL:
            x_ring = encode(x, cfg.frac_bits)
        else:
            x_ring = shared_fit.encode_features(x, int(getattr(cfg, "feature_frac_bits", 8)),
                                                float(getattr(cfg, "feature_clip", 8.0)))
        used = x_ring - np.asarray(sent[0].tensors["E"], dtype=np.uint64)
        for j, (a, b) in enumerate(schedule.batch_bounds):
            mask = ref.get((job.seeds[role], f"M/{role.value}/batch={j}"))
            if mask is None or not np.array_equal(mask, used[a:b]):
                out.append(f"{role} masked batch {j} with something else than M/{role}/batch={j}")
    return out


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_every_mask_is_used_once_for_the_product_it_was_dealt_for(mode: Mode) -> None:
    grid, bank = make_data(SMALL_ROWS, 4, 3, seed=1, extra_ids=SMALL_EXTRA)
    with expansions() as log:
        job = run_job(grid, bank, small_settings(mode))
    labels = label_problems(job, log)
    rows, n_used = row_problems(job, log)
    matrices = matrix_problems(job, log)
    kinds = Counter(e.label.split("/")[0] for e in log)
    print(f"\n[reuse {mode}] {len(log)} expansions by {dict(Counter(e.actor for e in log))}, "
          f"kinds {dict(kinds)}; {n_used} masked vectors sent, "
          f"{sum(len(u.mask) for u in used_masks(job))} mask words checked; "
          f"{job.schedule.n_batches} matrix masks per party")
    assert not labels, "\n".join(labels)
    assert not rows, "\n".join(rows[:20])
    assert not matrices, "\n".join(matrices)
    iterations = len(job.fits[Role.GRID].steps)
    assert n_used >= 2 * 2 * iterations and kinds["M"] == 2 * 2 * job.schedule.n_batches


def test_a_mask_reused_across_iterations_is_caught_at_row_level() -> None:
    grid, bank = make_data(SMALL_ROWS, 4, 3, seed=1)
    with expansions() as log, sabotaged("reused mask"):
        job = run_job(grid, bank, small_settings(Mode.SHARED), psi=False)
    rows, _ = row_problems(job, log)
    print(f"\n[reuse control] label-level problems: {len(label_problems(job, log))}, "
          f"row-level: {len(rows)}, e.g. {rows[:1]} ... {rows[-1:]}")
    assert not label_problems(job, log)  # one label per epoch: invisible at label level
    assert any("used more than once" in p for p in rows)
    assert any("is not row" in p for p in rows)


@pytest.mark.parametrize("dealer_class", [Dealer, SharedDealer])
def test_dealers_refuse_to_deal_an_epoch_twice(dealer_class: type) -> None:
    schedule = Schedule(400, 0.2, 32, 3)
    dealer = dealer_class({Role.GRID: b"g" * 32, Role.BANK: b"b" * 32}, schedule,
                          {Role.GRID: 4, Role.BANK: 4})
    for role in (Role.GRID, Role.BANK):
        assert dealer.corrections(role, 1)
    for role in (Role.GRID, Role.BANK):
        with pytest.raises(ValueError, match="already dealt"):
            dealer.corrections(role, 1)
    assert dealer.corrections(Role.GRID, 2)


class _AsksTwice:
    def _epoch_masks(self, epoch: int) -> Any:
        masks = super()._epoch_masks(epoch)  # type: ignore[misc]
        if self.role is Role.BANK:  # type: ignore[attr-defined]
            self._coordinator.deal(DealRequest(self.job_id, self.role, epoch))  # type: ignore[attr-defined]
        return masks


class LocalAsksTwice(_AsksTwice, RecordingLocalFit):
    pass


class SharedAsksTwice(_AsksTwice, RecordingSharedFit):
    pass


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_a_party_asking_twice_for_an_epoch_fails_the_job(mode: Mode) -> None:
    grid, bank = make_data(SMALL_ROWS, 4, 3, seed=1)
    cls = LocalAsksTwice if mode is Mode.LOCAL else SharedAsksTwice
    job = run_job(grid, bank, small_settings(mode), psi=False, check=False,
                  fit_classes={Role.BANK: cls})
    assert job.errors and any("already dealt" in str(e) for e in job.errors), job.errors
    assert not job.results
