"""Uniformity: every ring word a party receives looks uniform on Z_2^64.

What a party receives in a job: E = X - M (masked features), F = d - m (masked residual
shares), z (mode local: the peer's share of the cross term), L (masked loss operands),
W (mode shared: masked weight shares), the final weight shares of the reveal, and the
dealer's corrections c_1. On a 16,000-row job (> 10^5 words per party) two tests run on
those words:

- per-bit frequency: each of the 64 bits is 1 with frequency 1/2, |z| <= 5.5 per bit;
- chi-square on bytes: each of the 8 byte positions, and all bytes pooled, uniform over
  256 values, p >= 10^-8 each.

Both thresholds keep the false-alarm rate of a correct run near 10^-5. The same tests run
on the differences of consecutive vectors of one stream (the next F minus the previous F,
row i + 1 of E minus row i, ...): a mask used twice cancels there and leaves x - x', a
small fixed-point number whose high bits are all equal. Two negative controls run real jobs
with the product's PRG sabotaged and must fail: one vector mask reused for every iteration,
and 32-bit words from numpy's generator with a 16-bit seed (a weak generator).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from federation.protocol.messages import Mode, Role
from tests.privacy.conftest import MODES, small_settings
from tests.privacy.harness import Job, make_data, run_job, sabotaged

Ring = npt.NDArray[np.uint64]
MAX_BIT_Z = 5.5
MIN_P = 1e-8
MIN_WORDS = 100_000


@dataclass
class Uniformity:
    words: int
    max_bit_z: float
    worst_bit: int
    min_byte_p: float

    @property
    def ok(self) -> bool:
        return self.max_bit_z <= MAX_BIT_Z and self.min_byte_p >= MIN_P

    def __str__(self) -> str:
        return (f"{self.words} words, max |z| {self.max_bit_z:.2f} (bit {self.worst_bit}), "
                f"min byte chi-square p {self.min_byte_p:.3g}")


def uniformity(words: Ring) -> Uniformity:
    w = np.ascontiguousarray(words, dtype=np.uint64).ravel()
    n = len(w)
    ones = np.array([np.count_nonzero((w >> np.uint64(b)) & np.uint64(1)) for b in range(64)])
    z = np.abs(ones - n / 2) / np.sqrt(n / 4)
    by_position = w.view(np.uint8).reshape(n, 8)
    pvalues = []
    for column in [*by_position.T, by_position.ravel()]:
        counts = np.bincount(column, minlength=256)
        expected = len(column) / 256
        pvalues.append(stats.chi2.sf(float(np.sum((counts - expected) ** 2) / expected), 255))
    return Uniformity(n, float(z.max()), int(z.argmax()), float(min(pvalues)))


def received_streams(job: Job, role: Role) -> dict[str, list[Ring]]:
    """Every ring vector ``role`` received, by stream (sender, step, tensor name), in order;
    a matrix contributes its rows."""
    streams: dict[str, list[Ring]] = {}
    for msg in job.transcript.to_party(role):
        for name, arr in msg.tensors.items():
            if arr.dtype != np.uint64:
                continue  # PSI points and the X25519 public key are not ring elements
            ring = np.asarray(arr, dtype=np.uint64)
            streams.setdefault(f"{msg.step}/{name}", []).extend(
                list(ring) if ring.ndim == 2 else [ring])
    for deal in job.transcript.dealt(role):
        for product, c1 in deal.corrections.items():
            streams.setdefault(f"dealer/{product}", []).extend(
                list(c1) if c1.ndim == 2 else [c1])
    return streams


def all_words(streams: dict[str, list[Ring]]) -> Ring:
    return np.concatenate([np.concatenate(v) for v in streams.values()])


def differences(streams: dict[str, list[Ring]]) -> Ring:
    """Consecutive differences within each stream, for vectors of equal length."""
    out = [b - a for rows in streams.values() for a, b in itertools.pairwise(rows)
           if a.shape == b.shape]
    return np.concatenate(out)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_what_each_party_receives_is_uniform_per_bit_and_per_byte(
        mode: Mode, big_job: Callable[[Mode], Job]) -> None:
    job = big_job(mode)
    pooled_diffs = []
    for role in (Role.GRID, Role.BANK):
        streams = received_streams(job, role)
        words = all_words(streams)
        report = uniformity(words)
        print(f"\n[uniformity {mode}] {role} received {report}; streams "
              f"{ {k: sum(len(r) for r in v) for k, v in streams.items()} }")
        assert len(words) >= MIN_WORDS
        assert report.ok, f"{role}: {report}"
        # Each stream with enough words on its own, too.
        for name, rows in streams.items():
            part = np.concatenate(rows)
            if len(part) >= 20_000:
                assert uniformity(part).ok, f"{role} {name}: {uniformity(part)}"
        pooled_diffs.append(differences(streams))
    diffs = uniformity(np.concatenate(pooled_diffs))
    print(f"[uniformity {mode}] consecutive differences: {diffs}")
    assert diffs.words >= MIN_WORDS
    assert diffs.ok, diffs


# -- negative controls --------------------------------------------------------------------
@pytest.fixture(scope="module")
def sabotaged_jobs() -> dict[str, Job]:
    out = {}
    for what in ("reused mask", "weak generator"):
        grid, bank = make_data(4_000, 4, 3, seed=5)
        with sabotaged(what):
            out[what] = run_job(grid, bank, small_settings(Mode.LOCAL, batch_size=64),
                                psi=False)
    return out


def test_a_reused_mask_is_caught_by_the_difference_test(
        sabotaged_jobs: dict[str, Job]) -> None:
    job = sabotaged_jobs["reused mask"]
    streams = received_streams(job, Role.GRID)
    diffs = uniformity(differences(streams))
    masked_d = {k: v for k, v in streams.items() if k == "fit/F"}
    print(f"\n[uniformity control: reused mask] grid received {uniformity(all_words(streams))}; "
          f"differences: {diffs}; F alone: {uniformity(all_words(masked_d))}, "
          f"F differences: {uniformity(differences(masked_d))}")
    assert not diffs.ok
    # F_t - F_t' = d_t - d_t', small and of either sign: high bytes only 0x00 or 0xff.
    assert uniformity(differences(masked_d)).min_byte_p < 1e-100
    # The job itself was fine: the sabotage is invisible to the protocol's own checks.
    assert job.coordinator.losses[-1] < job.coordinator.losses[0]


def test_a_weak_generator_is_caught_by_the_bit_test(sabotaged_jobs: dict[str, Job]) -> None:
    job = sabotaged_jobs["weak generator"]
    report = uniformity(all_words(received_streams(job, Role.GRID)))
    print(f"\n[uniformity control: weak generator] grid received {report}")
    assert not report.ok
    assert report.worst_bit >= 32 and report.max_bit_z > 50
    assert job.coordinator.losses[-1] < job.coordinator.losses[0]


def test_the_tests_accept_os_randomness_and_reject_small_biases() -> None:
    """Calibration on 10^5 words: os.urandom passes; one bit set with p = 0.52 fails."""
    import os

    good = np.frombuffer(os.urandom(8 * MIN_WORDS), dtype=np.uint64)
    assert uniformity(good).ok, uniformity(good)
    rng = np.random.default_rng(9)
    biased = good & ~np.uint64(1 << 40)
    biased = biased | (rng.random(MIN_WORDS) < 0.52).astype(np.uint64) << np.uint64(40)
    assert not uniformity(biased).ok
