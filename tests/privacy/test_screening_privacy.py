"""Screening's privacy: the grid's view says nothing about the labels, the coordinator's
view is sizes only and does not depend on the data.

- Label inference: everything the grid receives that is per row (the bank's masked
  columns F of both products) is turned into features of the aligned rows, and a
  classifier's out-of-fold predictions (5 folds, every row scored once by a model that
  did not see it) rank the labels at chance: AUC within 4.5 standard deviations of 0.5,
  the deviation a score independent of the labels has on these class counts (about
  +-0.075 on 1,200 rows; such a score leaves that band once in ~150,000 runs, the masks
  being fresh every run). Control: the same classifier on the unmasked values V that F
  hides predicts the labels perfectly, so the attack would see a leak.
- The grid receives no per-bin figure: its messages are the two F matrices, the bank's
  column count and the names of its kept indicators (and nothing else by step name).
- The coordinator: every request it receives is a join, a barrier with sizes only, the
  bank's deal request, no tensor; two jobs on the same IDs with other values and labels
  send byte-identical requests (addresses aside).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from crypto.limbs import unpack
from federation.protocol.messages import (
    DealRequest,
    JoinRequest,
    MatchRequest,
    Role,
    SyncRequest,
    TrainSettings,
)
from parties.screen_step import Sizes
from tests.inprocess.screening_harness import Screening, run_screening, write_table
from tests.privacy.harness import request_wire_bytes

N, SEED = 1200, 7
SIZE_KEYS = {"intersection", "train_rows", "count_bits", "pearson_bits", "columns", "width"}


def job(tmp: Path, seed: int) -> tuple[Screening, list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = [f"91{v:010d}" for v in np.random.default_rng(0).permutation(10**6)[:N]]
    g = rng.normal(size=(N, 5))
    g[rng.random((N, 5)) < 0.1] = np.nan
    b = rng.normal(size=(N, 3))
    y = (rng.random(N) < 1 / (1 + np.exp(-(1.5 * np.nan_to_num(g[:, 0]) + b[:, 0] - 1))))
    grid_csv = write_table(tmp / "grid.csv", ids, g, [f"g{i}" for i in range(5)])
    bank_csv = write_table(tmp / "bank.csv", ids, b, ["b0", "b1", "b2"], y.astype(float))
    result = run_screening(tmp / "run", grid_csv, bank_csv, settings=TrainSettings(seed=SEED))
    assert not result.errors, result.errors
    order = sorted(range(N), key=lambda i: hashlib.sha256(f"{SEED}:{ids[i]}".encode()).digest())
    return result, [ids[i] for i in order], y[order].astype(float)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Screening, list[str],
                                                                  np.ndarray]]:
    return [job(tmp_path_factory.mktemp(f"s{s}"), s) for s in (1, 2)]


def grid_view_per_row(result: Screening, n: int) -> np.ndarray:
    """The per-row part of what the grid received: F of the counts product (all aligned
    rows) and F of the correlation product (training rows, padded with zeros)."""
    from federation.protocol.schedule import Schedule

    sizes = Sizes.of(n, Schedule(n, 0.2, 256, SEED).n_train)
    products = [e for e in result.received[Role.GRID] if e.tag.step == "bins-product"]
    assert len(products) == 2
    counts = unpack(products[0].tensors["F"], sizes.count_bits).astype(np.float64)
    pearson = unpack(products[1].tensors["F"], sizes.pearson_bits).astype(np.float64)
    train = np.sort(Schedule(n, 0.2, 256, SEED).train_rows)
    per_row = np.zeros((n, pearson.shape[1]))
    per_row[train] = pearson
    return np.hstack([counts, per_row])


def out_of_fold_auc(x: np.ndarray, y: np.ndarray) -> float:
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    score = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, score))


def chance_band(y: np.ndarray, sigmas: float = 4.5) -> float:
    """How far from 0.5 the AUC of a score independent of ``y`` strays, ``sigmas``
    standard deviations (the Mann-Whitney statistic's null variance)."""
    bad = float(np.sum(y == 1))
    good = float(len(y) - bad)
    return sigmas * float(np.sqrt((bad + good + 1) / (12 * bad * good)))


def test_the_grids_view_predicts_labels_at_chance(jobs: list[tuple[Screening, list[str],
                                                                       np.ndarray]]) -> None:
    result, _, y = jobs[0]
    view = grid_view_per_row(result, len(y))
    auc, band = out_of_fold_auc(view, y), chance_band(y)
    print(f"\n[screening label inference] grid's view AUC {auc:.4f} (chance band 0.5 +- "
          f"{band:.4f})")
    assert abs(auc - 0.5) < band
    # Control: the same attack on the values F hides (V = [y on training rows, training
    # flag, validation flag]) finds the labels of the training rows.
    from federation.protocol.schedule import Schedule

    train = np.sort(Schedule(len(y), 0.2, 256, SEED).train_rows)
    v = np.column_stack([y[train], np.ones(len(train)), np.zeros(len(train))])
    assert out_of_fold_auc(v, y[train]) > 0.99


def test_the_grid_receives_only_masked_columns_its_kept_names_and_a_size(
        jobs: list[tuple[Screening, list[str], np.ndarray]]) -> None:
    result, _, _ = jobs[0]
    steps = [(e.tag.step, sorted(e.tensors)) for e in result.received[Role.GRID]]
    assert steps[0][0] == "psi-points" or steps[0][0].startswith("psi")
    after_psi = [s for s in steps if not s[0].startswith("psi")]
    assert after_psi == [("bins-product", ["F"]), ("screen-bank_columns", ["bank_columns"]),
                         ("bins-product", ["F"]), ("screen-selection", ["kept"])]
    kept = result.received[Role.GRID][-1].tensors["kept"]
    assert kept.dtype.kind == "U"


def test_the_coordinator_receives_sizes_only_and_the_same_bytes_for_other_data(
        jobs: list[tuple[Screening, list[str], np.ndarray]]) -> None:
    views = []
    for result, ids, _ in jobs:
        view = []
        for role in (Role.GRID, Role.BANK):
            for req in result.links[role].requests:
                if isinstance(req, MatchRequest):  # server-aided PSI: keyed tags, fresh per job
                    assert req.tags.dtype == np.uint8 and req.tags.shape[1] == 16
                    continue  # (what tags reveal is the PSI suites' subject)
                assert isinstance(req, (JoinRequest, SyncRequest, DealRequest)), req
                if isinstance(req, SyncRequest):
                    assert set(req.values) <= SIZE_KEYS and not req.ring_values
                view.append(request_wire_bytes(req))
        views.append(view)
        n = len(ids)
        bank_sync = [r for r in result.links[Role.BANK].requests
                     if isinstance(r, SyncRequest) and r.values][0]
        assert bank_sync.values["intersection"] == n
    assert views[0] == views[1]
    # The grid asks the dealer for nothing; the bank once.
    deals = [r for r in jobs[0][0].links[Role.GRID].requests if isinstance(r, DealRequest)]
    assert deals == []
