"""Transcript: no secret value crosses a link, in any encoding, beyond docs/design.md's reveals.

A whole job (PSI, training, and in mode local the evaluation message) runs on 400 common
rows, 4 + 3 features, with each PSI protocol (server-aided: the tags to the coordinator are
searched as well; ECDH). Every payload a party sends, to its peer (each tensor's bytes) or to
the coordinator (each value field: loss share, delta_sq, counts, address, reason), is cut
into all its 8-byte windows (every byte offset) and looked up among the secrets:

- both parties' raw features (aligned rows), the bank's labels (and 1/2 - y), the IDs;
- per iteration: u_G and u_B, the Taylor residual d (each party's share and the whole),
  the loss operands, the gradients (mean and sum) and the weights before and after;
- mode shared: each party's shares (residual, weights of both blocks, steps, gradients)
  as exact ring words, and the reconstructed weights, u, d, gradients and steps;

each real value encoded at f and 2f fraction bits (and f_x in mode shared) and as float64.

Revealed by design, and so excluded explicitly by step name, never by value:
- mode local, step ``evaluate``: the grid's partial logits u_G of every aligned row go to
  the bank for evaluation (as parties.node sends them after a mode local fit; the harness
  sends no evaluation message in mode shared, where no logit is to be opened);
- mode shared, step ``reveal``: each party sends the other its share of the other's weight
  block (``--reveal-weights own``), so each owner learns only its own weights.
The epoch loss reaches the coordinator only as the sum of two masked shares (revealed).
Both exclusions are also positive controls: the search must find those values there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from crypto.sigmoid import taylor_loss
from federation.protocol.messages import Mode, PsiProtocol, Role
from parties.shared_params import encode_features
from tests.privacy.conftest import MODES, PSI
from tests.privacy.harness import (
    COORDINATOR,
    Catalog,
    Job,
    local_catalog,
    shared_catalog,
    signed,
)

# (mode, step) -> the secret names that step reveals by design.
REVEALED = {
    (Mode.LOCAL, "evaluate"): {"grid.u_evaluation@float64"},
    (Mode.SHARED, "reveal"): {"grid.weights_share[bank]@ring", "bank.weights_share[grid]@ring"},
}


def catalog_of(job: Job) -> Catalog:
    return local_catalog(job) if job.mode is Mode.LOCAL else shared_catalog(job)


PSI_STEPS = {PsiProtocol.ECDH: {"psi/blinded", "psi/double"},
             PsiProtocol.SERVER_AIDED: {"psi/key", "psi/match", "psi/confirm"}}


@pytest.mark.parametrize("psi", PSI, ids=lambda p: p.value)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_no_secret_word_appears_in_any_message_to_the_peer_or_the_coordinator(
        mode: Mode, psi: PsiProtocol, small_job: Callable[..., Job]) -> None:
    job = small_job(mode, psi)
    cat = catalog_of(job)
    leaks: list[str] = []
    revealed: Counter[str] = Counter()
    messages = Counter[str]()
    windows = 0
    for msg in job.transcript.messages:
        messages[f"{msg.sender}->{msg.receiver}"] += 1
        windows += sum(max(0, len(p) - 7) for p in msg.parts)
        allowed = REVEALED.get((mode, msg.step), set())
        for name, offset in cat.find(msg.parts):
            if name in allowed and msg.receiver is not COORDINATOR:
                revealed[name] += 1
            else:
                leaks.append(f"{name} in {msg.kind} {msg.sender}->{msg.receiver} step "
                             f"{msg.step!r} round {msg.round} at byte {offset}")
    secret_words = len(cat.words)
    print(f"\n[transcript {mode} {psi}] {sum(messages.values())} messages ({dict(messages)}), "
          f"{sum(m.payload_bytes for m in job.transcript.messages)} payload bytes, "
          f"{windows} 8-byte windows, {len(cat)} secret values ({secret_words} distinct "
          f"words) in {len(cat.sets)} kinds; revealed by design: {dict(revealed)}")
    assert not leaks, "\n".join(leaks[:20])
    # The counts are not trivial: every kind of message was there and searched.
    steps = Counter(m.step for m in job.transcript.messages)
    assert steps["fit"] == 2 * sum(1 for _ in job.fits[Role.GRID].steps)
    assert PSI_STEPS[psi] | {"pair-key", "masked-x", "epoch", "aligned"} <= set(steps)
    assert messages[f"{Role.GRID}->{COORDINATOR}"] >= 8
    # Server-aided PSI sends 16 bytes per ID once, ECDH 32 bytes twice.
    assert windows > (100_000 if psi is PsiProtocol.ECDH else 60_000)
    assert secret_words > 20_000
    # Positive control: the step revealed by design does carry those values, all of them.
    if mode is Mode.LOCAL:
        assert revealed["grid.u_evaluation@float64"] == len(job.data[Role.GRID].ids)
    else:
        k = job.n_columns
        assert revealed == {"grid.weights_share[bank]@ring": k[Role.BANK],
                            "bank.weights_share[grid]@ring": k[Role.GRID]}


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_the_search_finds_a_secret_planted_in_a_masked_tensor(
        mode: Mode, small_job: Callable[[Mode], Job]) -> None:
    """Negative control: unmasked values in the same messages would be caught, in every
    encoding the suite claims to cover."""
    job = small_job(mode)
    cat = catalog_of(job)
    fit = next(m for m in job.transcript.messages if m.step == "fit" and m.sender is Role.BANK)
    names = [n for n in cat.sets if n.startswith(("bank.labels", "joint.residual", "bank.u"))
             and not n.endswith("@ring")]
    assert len(names) >= 6
    for name in names:
        planted = np.array(fit.tensors["F"], copy=True)
        planted[5] = cat.sets[name][-1]
        assert (name, 40) in cat.find([planted.tobytes()]), name
    # float64 planted into a byte-unaligned position of a uint8 tensor is found as well.
    psi = next(m for m in job.transcript.messages if m.step == "psi/blinded")
    raw = bytearray(psi.parts[0])
    raw[13:21] = cat.sets["bank.labels@float64"][:1].tobytes()
    assert ("bank.labels@float64", 13) in cat.find([bytes(raw)])


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_the_recorded_secrets_are_the_values_the_parties_computed(
        mode: Mode, small_job: Callable[[Mode], Job]) -> None:
    """The catalog is only as good as the recorder: its values must be the product's own.
    (The triple-reuse suite checks the recorded residual shares bit for bit: share minus
    payload is exactly the dealt mask row.)"""
    job = small_job(mode)
    grid, bank = job.fits[Role.GRID], job.fits[Role.BANK]
    y = job.data[Role.BANK].y
    f = job.settings.frac_bits
    assert y is not None and len(grid.steps) == len(bank.steps) == 30
    if mode is Mode.LOCAL:
        for role in (Role.GRID, Role.BANK):
            np.testing.assert_array_equal(job.fits[role].steps[-1].theta_after,
                                          job.results[role].theta)
        batch_losses = [signed(g.loss + b.loss, 2 * f)[0] for g, b in zip(grid.steps,
                                                                          bank.steps)]
        want = [taylor_loss(g.u + b.u, y[g.rows]) for g, b in zip(grid.steps, bank.steps)]
    else:
        for role in (Role.GRID, Role.BANK):
            joint = grid.steps[-1].theta_after[role] + bank.steps[-1].theta_after[role]
            np.testing.assert_array_equal(signed(joint, f), job.results[role].theta)
        batch_losses, want = [], []
        for g, b in zip(grid.steps, bank.steps):
            d = signed(g.d + b.d, f)
            u = np.zeros(len(g.rows)) + sum(
                signed(encode_features(job.data[r].x[g.rows], 8, 8.0), 8)
                @ signed(g.theta[r] + b.theta[r], f) for r in (Role.GRID, Role.BANK))
            np.testing.assert_allclose(d, u / 4 + 0.5 - y[g.rows], atol=4 * 2.0**-f)
            batch_losses.append(signed(g.loss + b.loss, 2 * f)[0] + len(g.rows) * (
                np.log(2) - 0.5))
            want.append(taylor_loss(u, y[g.rows]))
    np.testing.assert_allclose(batch_losses, want, rtol=1e-3)
    # The coordinator's epoch losses are sums of these batch losses.
    per_epoch = np.add.reduceat(batch_losses, np.arange(0, 30, 10)) / job.schedule.n_train
    np.testing.assert_allclose(per_epoch, job.coordinator.losses, rtol=1e-6)
