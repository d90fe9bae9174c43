"""Mode ``shared`` over an in-memory channel against its plaintext twins and mode ``local``.

The coordinator is the real ``Coordinator`` with its dealer swapped for ``SharedDealer``
(the lead wires that by ``settings.mode``). Tolerances, with f = 16 fraction bits
(ulp = 2^-16 ~ 1.5e-5) unless a test says otherwise:

- against ``shared_sgd`` (same fixed point, its own draw of the truncation shares):
  16 ulps with SGD, 64 with momentum (which scales step rounding by 1/(1 - mu) = 10);
  measured at most 5 and 20 over 4 seeds;
- against plain float Taylor SGD with f = 20, f_x = 12: 3e-5 absolute with SGD, 1.5e-4 with
  momentum (measured at most 6e-6 and 2.8e-5);
- the opened epoch loss against the twin's: relative 2e-4 (measured at most 3e-5);
- validation AUC on default_credit: within 0.002 of mode ``local`` with the default clip
  |x| <= 8 (measured +0.0017: clipping changes the model, 0.14% of the bank's standardized
  values exceed 8), within 1e-4 without clipping (|x| <= 128; measured 8e-6).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from crypto.ring import encode, truncate_share
from federation.coordinator import Coordinator
from federation.dealer_shared import SharedDealer
from federation.job_stages import JobStage
from federation.protocol.errors import ConfigError
from federation.protocol.messages import (
    Envelope,
    JoinRequest,
    Mode,
    Optimizer,
    Role,
    SyncReply,
    SyncRequest,
    TrainSettings,
)
from federation.protocol.schedule import Schedule, min_batch_size
from federation.transport.channel import InMemoryChannel
from parties.local_fit import FitResult, LocalFit, with_intercept
from parties.reference import shared_sgd, taylor_sgd
from parties.shared_fit import SharedFit
from parties.shared_params import wrap_probability
from tests.conftest import fate_file

JOB = "job-shared"
ULP = 2.0**-16


@dataclass(frozen=True, slots=True)
class Settings(TrainSettings):
    """TrainSettings with the fields the lead will add (read with getattr by SharedFit)."""

    feature_frac_bits: int = 8
    feature_clip: float = 8.0


class SharedCoordinator(Coordinator):
    """The real coordinator, dealing mode shared's corrections."""

    def _on_aligned(self, round_: int, arrived: dict[Role, SyncRequest]) -> SyncReply:
        reply = super()._on_aligned(round_, arrived)
        if self._schedule is not None:
            columns = {role: r.n_columns for role, r in self._joined.items()}
            self._dealer = SharedDealer(self._seeds, self._schedule, columns)  # type: ignore[assignment]
        return reply


def _data(n: int = 800, k_g: int = 5, k_b: int = 3, seed: int = 1):
    rng = np.random.default_rng(seed)
    xg, xb = rng.normal(size=(n, k_g)), rng.normal(size=(n, k_b))
    logit = xg @ rng.normal(size=k_g) + xb @ rng.normal(size=k_b) - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return xg, with_intercept(xb), y


def run_federated(xg, xb, y, settings: TrainSettings, *, reveal: str = "own",
                  observers: list[Any] | None = None):
    shared = settings.mode is Mode.SHARED
    coordinator = (SharedCoordinator if shared else Coordinator)(JOB, settings,
                                                                 barrier_timeout=60)
    grid_ch, bank_ch = InMemoryChannel.pair(JOB)
    for observe in observers or []:
        grid_ch.observers.append(observe)
        bank_ch.observers.append(observe)
    results: dict[Role, FitResult] = {}
    errors: list[BaseException] = []

    def party(role: Role, x, labels, channel) -> None:
        try:
            plan = coordinator.join(JoinRequest(JOB, role, "mem", len(x), x.shape[1]))
            reply = coordinator.sync(SyncRequest(JOB, role, 0, "aligned",
                                                 {"intersection": len(x)}))
            schedule = Schedule(len(x), settings.validation_fraction, settings.batch_size,
                                settings.seed, int(reply.values["min_batch"]))
            args = (role, JOB, settings, schedule, plan.dealer_seed, x, labels, channel,
                    coordinator)
            fit = SharedFit(*args, reveal=reveal) if shared else LocalFit(*args)
            results[role] = fit.run()
        except BaseException as exc:  # noqa: BLE001 - surfaced in the main thread
            errors.append(exc)
            channel.abort(str(exc))

    threads = [threading.Thread(target=party, args=(Role.GRID, xg, None, grid_ch)),
               threading.Thread(target=party, args=(Role.BANK, xb, y, bank_ch))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results[Role.GRID], results[Role.BANK], coordinator


def _twin_and_schedule(xg, xb, y, settings: TrainSettings, seed: int = 0):
    schedule = Schedule(len(y), settings.validation_fraction, settings.batch_size, settings.seed,
                        min_batch_size([xg.shape[1], xb.shape[1]]))  # as the coordinator
    return shared_sgd(xg, xb, y, schedule, settings, np.random.default_rng(seed),
                      getattr(settings, "feature_frac_bits", 8),
                      getattr(settings, "feature_clip", 8.0)), schedule


@pytest.mark.parametrize(("optimizer", "ulps"), [(Optimizer.SGD, 16), (Optimizer.MOMENTUM, 64)])
def test_shared_fit_matches_its_fixed_point_twin_within_ulps(optimizer: Optimizer,
                                                             ulps: int) -> None:
    xg, xb, y = _data()
    settings = Settings(mode=Mode.SHARED, epochs=3, batch_size=64, learning_rate=0.1, l2=0.01,
                        optimizer=optimizer, tolerance=0.0, seed=5)
    grid, bank, coordinator = run_federated(xg, xb, y, settings)
    twin, _ = _twin_and_schedule(xg, xb, y, settings)
    np.testing.assert_allclose(grid.theta, twin.theta_grid, rtol=0, atol=ulps * ULP)
    np.testing.assert_allclose(bank.theta, twin.theta_bank, rtol=0, atol=ulps * ULP)
    np.testing.assert_allclose(coordinator.losses, twin.losses, rtol=2e-4)
    assert coordinator.stage is JobStage.EVALUATE
    assert grid.epochs_run == bank.epochs_run == 3 and grid.losses == coordinator.losses


@pytest.mark.parametrize(("optimizer", "atol"), [(Optimizer.SGD, 3e-5),
                                                  (Optimizer.MOMENTUM, 1.5e-4)])
def test_shared_fit_matches_plain_float_taylor_sgd(optimizer: Optimizer, atol: float) -> None:
    xg, xb, y = _data()
    settings = Settings(mode=Mode.SHARED, epochs=3, batch_size=64, learning_rate=0.1, l2=0.01,
                        optimizer=optimizer, tolerance=0.0, seed=3, frac_bits=20,
                        feature_frac_bits=12)
    grid, bank, _ = run_federated(xg, xb, y, settings)
    schedule = Schedule(len(y), settings.validation_fraction, settings.batch_size, settings.seed)
    tg, tb, _ = taylor_sgd(xg, xb, y, schedule, settings, frac_bits=None)
    np.testing.assert_allclose(grid.theta, tg, rtol=0, atol=atol)
    np.testing.assert_allclose(bank.theta, tb, rtol=0, atol=atol)


def test_truncation_is_within_one_ulp_and_unbiased_over_1e5_samples() -> None:
    f, n = 16, 100_000
    rng = np.random.default_rng(11)
    x = encode(rng.uniform(-50, 50, n), 2 * f)  # 2f-bit products, as the protocol's
    x_0 = rng.integers(0, 2**64, n, dtype=np.uint64)
    out = truncate_share(0, x_0, f) + truncate_share(1, x - x_0, f)
    exact = x.view(np.int64).astype(np.float64) / 2.0**f  # in ulps of the f-bit result
    err = out.view(np.int64).astype(np.float64) - exact
    assert np.all(np.abs(err) < 1.0)
    # floor or ceil, ceil with probability frac(x): mean 0, std <= 1/2, so 5 sigma is 0.008.
    assert abs(err.mean()) < 5 * 0.5 / math.sqrt(n)
    floor_err = np.floor(exact) - exact  # control: a plain shift is biased by -1/2 ulp
    assert floor_err.mean() < -0.45


def test_measured_wrap_rate_matches_the_formula_on_a_small_ring_budget() -> None:
    """f = 29: 2f-bit values of |v| <= 4 use 60 of the 64 bits, so wraps are frequent."""
    f, n = 29, 100_000
    rng = np.random.default_rng(12)
    x = encode(rng.uniform(-4, 4, n), 2 * f)
    x_0 = rng.integers(0, 2**64, n, dtype=np.uint64)
    out = truncate_share(0, x_0, f) + truncate_share(1, x - x_0, f)
    off = out.view(np.int64) - (x.view(np.int64) >> f)
    failures = int(np.count_nonzero((off < 0) | (off > 1)))
    expected = float(np.sum(wrap_probability(x)))  # sum |x| / 2^64, about 3125 here
    assert expected > 1000
    assert abs(failures - expected) < 5 * math.sqrt(expected)


def test_wrap_bound_covers_the_exact_expectation_and_both_parties_agree() -> None:
    xg, xb, y = _data()
    settings = Settings(mode=Mode.SHARED, epochs=3, batch_size=64, learning_rate=0.1, l2=0.01,
                        optimizer=Optimizer.MOMENTUM, tolerance=0.0, seed=5)
    grid, bank, _ = run_federated(xg, xb, y, settings)
    twin, _ = _twin_and_schedule(xg, xb, y, settings)
    assert grid.expected_wrap_failures == bank.expected_wrap_failures
    assert twin.wraps == 0
    assert 0 < twin.expected_wrap_failures <= grid.expected_wrap_failures < 1e-4


def _observe(log: list[tuple[str, Envelope]]):
    def observe(direction: str, env: Envelope) -> None:
        if direction == "sent":
            log.append((direction, env))
    return observe


def test_messages_are_ring_arrays_of_the_expected_shapes_and_one_per_iteration() -> None:
    xg, xb, y = _data()
    settings = Settings(mode=Mode.SHARED, epochs=2, batch_size=64, tolerance=0.0, seed=2)
    sent: list[tuple[str, Envelope]] = []
    grid, bank, _ = run_federated(xg, xb, y, settings, observers=[_observe(sent)],
                                  reveal="none")
    schedule = Schedule(len(y), settings.validation_fraction, settings.batch_size, settings.seed)
    k = {Role.GRID: xg.shape[1], Role.BANK: xb.shape[1]}
    sizes = {schedule.batch_size_of(j) for j in range(schedule.n_batches)}
    counts: dict[tuple[Role, str], int] = {}
    for _, env in sent:
        key = (env.sender, env.tag.step)
        counts[key] = counts.get(key, 0) + 1
        if env.tag.step == "pair-key":
            assert env.tensors["public"].dtype == np.uint8
            continue
        for name, arr in env.tensors.items():
            assert arr.dtype == np.uint64, (env.tag, name, arr.dtype)
        receiver = Role.BANK if env.sender is Role.GRID else Role.GRID
        shapes = {name: arr.shape for name, arr in env.tensors.items()}
        if env.tag.step == "masked-x":
            assert shapes == {"E": (schedule.n_train, k[env.sender])}
        elif env.tag.step == "fit-start":
            assert shapes == {"W": (k[receiver],)}
        else:
            assert env.tag.step == "fit"
            n = shapes["F"][0]
            assert n in sizes and shapes["L"] == (n,) and shapes.get("W", (k[receiver],)) == (
                k[receiver],)
    iterations = settings.epochs * schedule.n_batches
    for role in (Role.GRID, Role.BANK):
        assert counts[(role, "fit")] == iterations
        assert counts[(role, "fit-start")] == settings.epochs
        assert (role, "reveal") not in counts
    # With reveal "none" the final shares never travel, and each owner sees only NaN weights.
    for _, env in sent:
        for arr in env.tensors.values():
            for result in (grid, bank):
                for share in result.weight_shares.values():
                    assert arr.dtype != np.uint64 or not np.isin(share, arr).any()
    assert np.isnan(grid.theta).all() and np.isnan(bank.theta).all()


def test_reveal_none_keeps_shares_that_reconstruct_the_model() -> None:
    xg, xb, y = _data()
    settings = Settings(mode=Mode.SHARED, epochs=2, batch_size=64, tolerance=0.0, seed=4)
    grid, bank, _ = run_federated(xg, xb, y, settings, reveal="none")
    twin, _ = _twin_and_schedule(xg, xb, y, settings)
    for block, want in (("grid", twin.theta_grid), ("bank", twin.theta_bank)):
        joint = grid.weight_shares[block] + bank.weight_shares[block]
        np.testing.assert_allclose(joint.view(np.int64) / 2.0**16, want, atol=16 * ULP)


@pytest.mark.parametrize("change", [{"optimizer": Optimizer.ADAM}, {"l1": 0.01},
                                    {"feature_clip": 0.5}, {"feature_frac_bits": 0}])
def test_what_mode_shared_does_not_do_is_refused(change: dict[str, Any]) -> None:
    xg, _, _ = _data(n=100)
    settings = Settings(mode=Mode.SHARED, **change)
    schedule = Schedule(100, settings.validation_fraction, settings.batch_size, settings.seed)
    with pytest.raises(ConfigError):
        SharedFit(Role.GRID, JOB, settings, schedule, b"s" * 32, xg, None,
                  InMemoryChannel.pair(JOB)[0], Coordinator(JOB, settings))


def test_unknown_reveal_choice_is_refused() -> None:
    xg, _, _ = _data(n=100)
    settings = Settings(mode=Mode.SHARED)
    schedule = Schedule(100, settings.validation_fraction, settings.batch_size, settings.seed)
    with pytest.raises(ConfigError, match="reveal"):
        SharedFit(Role.GRID, JOB, settings, schedule, b"s" * 32, xg, None,
                  InMemoryChannel.pair(JOB)[0], Coordinator(JOB, settings), reveal="all")


def _default_credit():
    from parties.data import Standardizer, load_party_csv

    grid = load_party_csv(fate_file("default_credit_hetero_host.csv"))
    bank = load_party_csv(fate_file("default_credit_hetero_guest.csv"), label_column="y")
    common = sorted(set(grid.ids) & set(bank.ids))
    pos_g = {v: i for i, v in enumerate(grid.ids)}
    pos_b = {v: i for i, v in enumerate(bank.ids)}
    grid = grid.take(np.array([pos_g[i] for i in common], dtype=np.int64))
    bank = bank.take(np.array([pos_b[i] for i in common], dtype=np.int64))
    return grid, bank, Standardizer


@pytest.mark.parametrize(("clip", "gap"), [(8.0, 0.002), (128.0, 1e-4)])
def test_default_credit_validation_auc_matches_mode_local(clip: float, gap: float) -> None:
    from crypto.sigmoid import sigmoid
    from parties.evaluation.metrics import roc_auc

    grid, bank, standardizer = _default_credit()
    settings = Settings(epochs=3, batch_size=1024, tolerance=0.0, feature_clip=clip)
    schedule = Schedule(len(grid.ids), settings.validation_fraction, settings.batch_size,
                        settings.seed)
    zg = standardizer.fit(grid.x[schedule.train_rows]).apply(grid.x)
    zb = with_intercept(standardizer.fit(bank.x[schedule.train_rows]).apply(bank.x))
    if bank.y is None:
        raise AssertionError("the bank file has labels")
    valid, auc = schedule.validation_rows, {}
    for mode in (Mode.LOCAL, Mode.SHARED):
        g, b, _ = run_federated(zg, zb, bank.y, Settings(
            mode=mode, epochs=3, batch_size=1024, tolerance=0.0, feature_clip=clip))
        auc[mode] = roc_auc(bank.y[valid], sigmoid(zg[valid] @ g.theta + zb[valid] @ b.theta))
    assert abs(auc[Mode.SHARED] - auc[Mode.LOCAL]) <= gap, auc
    assert auc[Mode.LOCAL] > 0.7
