"""Mode ``local`` over an in-memory channel against its plaintext twins."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from federation.coordinator import Coordinator
from federation.job_stages import JobStage
from federation.protocol.errors import ProtocolAbort, TrainingDiverged
from federation.protocol.messages import (
    JoinRequest,
    Mode,
    Optimizer,
    Role,
    SyncRequest,
    TrainSettings,
)
from federation.protocol.schedule import Schedule
from federation.transport.channel import InMemoryChannel
from parties.divergence import LogitGuard, square_limit
from parties.local_fit import LocalFit, with_intercept
from parties.reference import taylor_sgd

JOB = "job-test"


def _data(n: int = 600, k_g: int = 5, k_b: int = 3, seed: int = 1):
    rng = np.random.default_rng(seed)
    xg, xb = rng.normal(size=(n, k_g)), rng.normal(size=(n, k_b))
    logit = xg @ rng.normal(size=k_g) + xb @ rng.normal(size=k_b) - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return xg, with_intercept(xb), y


def run_federated(xg, xb, y, settings: TrainSettings):
    coordinator = Coordinator(JOB, settings, barrier_timeout=20)
    grid_ch, bank_ch = InMemoryChannel.pair(JOB)
    results: dict[Role, object] = {}
    errors: list[BaseException] = []

    def party(role: Role, x, labels, channel) -> None:
        try:
            plan = coordinator.join(JoinRequest(JOB, role, "mem", len(x), x.shape[1]))
            reply = coordinator.sync(SyncRequest(JOB, role, 0, "aligned",
                                                 {"intersection": len(x)}))
            if reply.reason:  # the coordinator refused the job at alignment
                raise ProtocolAbort(reply.reason)
            schedule = Schedule(len(x), settings.validation_fraction, settings.batch_size,
                                settings.seed, int(reply.values["min_batch"]))
            fit = LocalFit(role, JOB, settings, schedule, plan.dealer_seed, x, labels, channel,
                           coordinator)
            results[role] = fit.run()
        except BaseException as exc:  # noqa: BLE001 - surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=party, args=(Role.GRID, xg, None, grid_ch)),
               threading.Thread(target=party, args=(Role.BANK, xb, y, bank_ch))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results[Role.GRID], results[Role.BANK], coordinator


@pytest.mark.parametrize("optimizer", [Optimizer.SGD, Optimizer.ADAM, Optimizer.MOMENTUM])
def test_local_fit_equals_fixed_point_twin_bit_for_bit(optimizer: Optimizer) -> None:
    xg, xb, y = _data()
    settings = TrainSettings(mode=Mode.LOCAL, epochs=3, batch_size=64, learning_rate=0.1,
                             optimizer=optimizer,
                             l2=0.01, tolerance=0.0, seed=5)
    grid, bank, coordinator = run_federated(xg, xb, y, settings)
    schedule = Schedule(len(y), settings.validation_fraction, settings.batch_size, settings.seed)
    tg, tb, losses = taylor_sgd(xg, xb, y, schedule, settings, frac_bits=settings.frac_bits)
    np.testing.assert_array_equal(grid.theta, tg)
    np.testing.assert_array_equal(bank.theta, tb)
    # The opened epoch loss is the Taylor loss of the same iterates, up to fixed-point rounding.
    np.testing.assert_allclose(coordinator.losses, losses, rtol=1e-4)
    assert coordinator.stage is JobStage.EVALUATE


def test_a_short_last_batch_is_folded_alike_by_parties_dealer_and_reference() -> None:
    """480 training rows by 52 leave 12 < 20 = 4x the grid's 5 columns: 9 batches, the last
    of 64 rows; the weights are still the fixed-point twin's on the same partition."""
    xg, xb, y = _data()
    settings = TrainSettings(mode=Mode.LOCAL, epochs=2, batch_size=52, learning_rate=0.1,
                             l2=0.01, tolerance=0.0, seed=5)
    grid, bank, _ = run_federated(xg, xb, y, settings)
    schedule = Schedule(len(y), settings.validation_fraction, settings.batch_size,
                        settings.seed, 20)
    assert schedule.n_batches == 9 and schedule.batch_size_of(8) == 64
    tg, tb, _ = taylor_sgd(xg, xb, y, schedule, settings, frac_bits=settings.frac_bits)
    np.testing.assert_array_equal(grid.theta, tg)
    np.testing.assert_array_equal(bank.theta, tb)


def test_local_fit_matches_plain_float_sgd_within_1e_6() -> None:
    xg, xb, y = _data()
    settings = TrainSettings(mode=Mode.LOCAL, epochs=3, batch_size=64, learning_rate=0.1,
                             l2=0.01,
                             tolerance=0.0, seed=3, frac_bits=24)
    grid, bank, _ = run_federated(xg, xb, y, settings)
    schedule = Schedule(len(y), settings.validation_fraction, settings.batch_size, settings.seed)
    tg, tb, _ = taylor_sgd(xg, xb, y, schedule, settings, frac_bits=None)
    np.testing.assert_allclose(grid.theta, tg, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(bank.theta, tb, rtol=1e-6, atol=1e-9)


def test_small_batch_is_refused_for_gradient_leakage() -> None:
    xg, xb, y = _data(k_g=20)
    settings = TrainSettings(epochs=1, batch_size=32)
    with pytest.raises(Exception,
                       match=r"below the minimum batch \d+ \(4x the larger party's \d+ columns"):
        run_federated(xg, xb, y, settings)


def test_a_training_split_smaller_than_the_minimum_batch_is_refused() -> None:
    """One batch of 16 rows is all there is: its gradient would pin the residuals down."""
    xg, xb, y = _data(n=20)
    settings = TrainSettings(mode=Mode.LOCAL, epochs=1, batch_size=64)
    with pytest.raises(Exception, match=r"the training split has 16 rows, fewer than the "
                                        r"minimum batch 20; per-batch gradients could reveal"):
        run_federated(xg, xb, y, settings)


def test_local_fit_stops_with_one_line_when_partial_logits_leave_the_fixed_point_range() -> None:
    xg, xb, y = _data()
    settings = TrainSettings(mode=Mode.LOCAL, epochs=50, batch_size=64, learning_rate=40.0,
                             tolerance=0.0, seed=5, deadline_seconds=5.0)
    with pytest.raises(TrainingDiverged) as info:
        run_federated(xg, xb, y, settings)
    message = str(info.value)
    assert "\n" not in message and message.startswith("training diverged: in epoch ")
    assert "partial logits reached an RMS of" in message
    assert message.endswith("try a smaller --learning-rate (now 40)")


def test_logit_guard_limit_keeps_every_epoch_sum_inside_the_ring() -> None:
    for frac_bits, n in ((16, 24_000), (16, 455), (20, 2_000), (24, 2_000), (16, 10**6)):
        limit = square_limit(frac_bits, n)
        worst = limit / 2 + n * np.log(2.0) + np.sqrt(n * limit)
        assert worst <= 2.0 ** (62 - 2 * frac_bits) * (1 + 1e-9)
        assert limit > 4.0 * n  # an RMS logit of 2 always fits at these sizes
    guard = LogitGuard(Role.GRID, 16, 1000, 0.5)
    guard.start(3)
    guard.add(np.full(1000, 1.0e3))  # RMS 1,000: sum 1e9 < limit 2.1e9
    with pytest.raises(TrainingDiverged, match="in epoch 3 the grid's partial logits reached"):
        guard.add(np.full(500, 3.0e3))
    guard.start(4)
    with pytest.raises(TrainingDiverged, match="RMS of nan"):
        guard.add(np.array([np.nan]))
