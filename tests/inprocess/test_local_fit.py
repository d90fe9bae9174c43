"""Mode ``local`` over an in-memory channel against its plaintext twins."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from federation.coordinator import Coordinator, JobStage
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
            coordinator.sync(SyncRequest(JOB, role, 0, "aligned", {"intersection": len(x)}))
            schedule = Schedule(len(x), settings.validation_fraction, settings.batch_size,
                                settings.seed)
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
