"""Federated boosting over an in-memory channel, coordinator and dealer in process:
every tree equals its plaintext twin's (same splits, same leaf values: both add up the
same integers), and the kept trees follow the same early stopping."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from federation.coordinator import Coordinator, JobStage
from federation.protocol.messages import JoinRequest, Model, Role, SyncRequest, TrainSettings
from federation.protocol.schedule import Schedule
from federation.transport.channel import InMemoryChannel
from parties.gbdt.core import Owner
from parties.gbdt.fit import fit_bank, fit_grid, tree_params
from parties.gbdt.twin import fit_twin

JOB = "gbdt-test"


def _data(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xg, xb = rng.normal(size=(n, 4)), rng.normal(size=(n, 3))
    xg[:, 1] = np.round(xg[:, 1])          # ties
    xg[rng.random(n) < 0.2, 2] = np.nan     # missing values on the grid
    xb[rng.random(n) < 0.1, 0] = np.nan
    logit = 1.5 * np.nan_to_num(xg[:, 0]) - np.nan_to_num(xg[:, 1]) + xb[:, 1] \
        + np.isnan(xg[:, 2]) - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return xg, xb, y


def run_federated(xg: np.ndarray, xb: np.ndarray, y: np.ndarray, settings: TrainSettings
                  ) -> tuple[Any, Any, Coordinator]:
    coordinator = Coordinator(JOB, settings, barrier_timeout=30)
    grid_ch, bank_ch = InMemoryChannel.pair(JOB)
    results: dict[Role, Any] = {}
    errors: list[BaseException] = []

    def party(role: Role, x: np.ndarray, channel: InMemoryChannel) -> None:
        try:
            plan = coordinator.join(JoinRequest(JOB, role, "mem", len(x), x.shape[1]))
            reply = coordinator.sync(SyncRequest(JOB, role, 0, "aligned",
                                                 {"intersection": len(x)}))
            schedule = Schedule(len(x), settings.validation_fraction, settings.batch_size,
                                settings.seed)
            if role is Role.GRID:
                results[role] = fit_grid(JOB, settings, schedule, plan.dealer_seed, x,
                                         channel, coordinator)
            else:
                results[role] = fit_bank(JOB, settings, schedule,
                                         int(reply.values["grid_width"]), plan.dealer_seed,
                                         x, y, channel, coordinator)
        except BaseException as exc:  # noqa: BLE001 - surfaced in the main thread
            errors.append(exc)
            channel.abort(str(exc))

    threads = [threading.Thread(target=party, args=(Role.GRID, xg, grid_ch)),
               threading.Thread(target=party, args=(Role.BANK, xb, bank_ch))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results[Role.GRID], results[Role.BANK], coordinator


@pytest.mark.parametrize(("subsample", "depth", "min_child_weight"),
                         [(1.0, 3, 0.5), (0.7, 3, 0.5), (1.0, 6, 12.0)])
def test_federated_trees_equal_the_plaintext_twin(subsample: float, depth: int,
                                                  min_child_weight: float) -> None:
    xg, xb, y = _data(1200)
    settings = TrainSettings(model=Model.GBDT, trees=5, depth=depth, bins=8,
                             learning_rate=0.3, l2=1.0, min_child_weight=min_child_weight,
                             subsample=subsample, early_stopping_rounds=0, seed=7)
    grid, bank, coordinator = run_federated(xg, xb, y, settings)
    schedule = Schedule(len(y), settings.validation_fraction, settings.batch_size,
                        settings.seed)
    twin, twin_grid, _ = fit_twin(xg, xb, y, schedule.train_rows, schedule.validation_rows,
                                  tree_params(settings), settings.bins)
    fed = bank.boosted
    assert len(fed.trees) == len(twin.trees) == 5
    owners = set()
    for a, b in zip(fed.trees, twin.trees):
        assert a.same_structure(b)
        np.testing.assert_array_equal(a.value, b.value)
        np.testing.assert_array_equal(a.gain, b.gain)
        owners.update(a.owner.tolist())
    assert {Owner.BANK, Owner.GRID} <= owners  # both parties' features were used
    np.testing.assert_array_equal(fed.raw(), twin.raw())
    # the grid kept exactly the grid splits of the bank's trees, with its thresholds
    grid_nodes = {(t, n) for t, tree in enumerate(fed.trees) for n in tree.nodes(Owner.GRID)}
    assert {(s.tree, s.node) for s in grid.result.splits} == grid_nodes
    for s in grid.result.splits:
        edges = twin_grid.edges[s.feature]
        assert s.threshold == (edges[s.slot] if s.slot < len(edges) else np.inf)
    assert coordinator.stage is JobStage.EVALUATE and len(coordinator.losses) == 5
    if depth == 6:  # heavy children: branches stop before full depth, trees differ in depth
        deepest = [max(int(i + 1).bit_length() - 1 for i in np.flatnonzero(t.owner))
                   for t in fed.trees]
        assert min(deepest) < depth


def test_early_stopping_keeps_the_best_trees_on_both_sides() -> None:
    xg, xb, y = _data(600, seed=3)
    settings = TrainSettings(model=Model.GBDT, trees=30, depth=4, bins=16, learning_rate=0.8,
                             l2=0.1, min_child_weight=0.1, early_stopping_rounds=2, seed=2)
    grid, bank, coordinator = run_federated(xg, xb, y, settings)
    schedule = Schedule(len(y), settings.validation_fraction, settings.batch_size,
                        settings.seed)
    twin, _, _ = fit_twin(xg, xb, y, schedule.train_rows, schedule.validation_rows,
                          tree_params(settings), settings.bins)
    kept = len(bank.boosted.trees)
    assert kept == len(twin.trees) == grid.result.trees == coordinator.kept_trees
    assert len(coordinator.losses) < 30  # it stopped early
    best = int(np.argmin(coordinator.validation_losses)) + 1
    assert kept == best
    assert all(s.tree < kept for s in grid.result.splits)
