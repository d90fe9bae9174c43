"""Label inference on the grid's view: can the grid learn the bank's labels from what it
received during training?

The attack, the same for both modes: for every training row, collect what the grid
received about that row, i.e. the bank's masked features (E row), per epoch the masked
residual share F and masked loss operand L at the row's position, and the dealer's
per-row corrections (mode shared, forward product); each 64-bit word as three numbers (its
signed value, its low and its middle 16 bits). Per batch the grid also holds a k_G-vector
that involves the bank's residual share: in mode local its opened gradient X_G^T d (from
the bank's z and F) minus its own part X_G^T (u_G / 4), i.e. X_G^T d_B; in mode shared its
share of the gradient. The least-squares solution of X_G^T r = that vector gives one more
number per row and epoch (exactly d_B = u_B/4 + 1/2 - y when |I| <= k_G). The grid's own
features are left out: they predict labels through the model, not through a leak. A
logistic regression is trained on half of the rows and scored on the other half.

Mode shared: held-out AUC <= 0.55 (1,600 held-out rows), at the small batch where mode
local breaks and at a guarded one. Mode local with |I| = k_G (LocalFit driven directly, the
coordinator's 4x guard switched off): the attack recovers the labels (AUC >= 0.95), which
is why the guard exists. At the guard's minimum (|I| = 16) mode local still leaks: measured
0.88 against 0.81 for the grid's own features fitted to the true labels (the reference
printed with the numbers); only the ordering (guarded < small batch) is asserted.

The partition's last batch (issue 9, item 1): with 3,204 training rows and batch 16 it
used to hold 3,204 mod 16 = 4 = k_G rows, and the grid solved its opened gradient for the
bank's residuals d_B of those rows exactly, every epoch (the sign of d_B is the label).
Now a short remainder joins the previous batch: no batch the grid sees has fewer than 16
rows and no label is pinned down. The control runs today's partition (both guards off).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from crypto.ring import decode
from federation.protocol.messages import Mode, Role
from tests.privacy.harness import (
    Job,
    JobCoordinator,
    fixed_randomness,
    make_data,
    run_job,
    settings,
    signed,
)

Float = npt.NDArray[np.float64]
ROWS = 4_000
K_GRID, K_BANK = 4, 3
SMALL_BATCH = K_GRID  # X_G^T is square: the grid's gradient pins the bank's residual down
GUARDED_BATCH = 4 * (K_BANK + 1)  # the coordinator's minimum for these shapes
MAX_SHARED_AUC = 0.55  # measured 0.521 (batch 4) and 0.506 (batch 16)
MIN_LOCAL_SMALL_BATCH_AUC = 0.95  # measured 1.000


def word_features(words: npt.NDArray[np.uint64]) -> Float:
    w = np.asarray(words, dtype=np.uint64)
    return np.stack([w.view(np.int64) / 2.0**63,
                     (w & np.uint64(0xFFFF)).astype(np.float64) / 2.0**16,
                     ((w >> np.uint64(24)) & np.uint64(0xFFFF)).astype(np.float64) / 2.0**16],
                    axis=-1)


def grid_view(job: Job) -> tuple[Float, Float]:
    """Per training row (in schedule order): the attack's features and the true label."""
    s, grid = job.schedule, job.fits[Role.GRID]
    n = s.n_train
    position = np.empty(s.n_rows, dtype=np.int64)
    position[s.train_rows] = np.arange(n)
    columns: list[Float] = []
    inbound = job.transcript.to_party(Role.GRID)
    e_bank = np.asarray(next(m for m in inbound if m.step == "masked-x").tensors["E"],
                        dtype=np.uint64)
    columns.extend(word_features(e_bank).reshape(n, -1).T)
    fit = {m.round: m.tensors for m in inbound if m.step == "fit"}
    dealt = job.transcript.dealt(Role.GRID)
    f = job.settings.frac_bits
    fx = int(getattr(job.settings, "feature_frac_bits", 8))
    x_grid = job.data[Role.GRID].x
    epochs = sorted({st.epoch for st in grid.steps})
    for epoch in epochs:
        per_row: dict[str, npt.NDArray[np.uint64]] = {}
        solved = np.zeros(n)
        for st in (st for st in grid.steps if st.epoch == epoch):
            at = position[st.rows]
            for name in ("F", "L"):
                per_row.setdefault(name, np.zeros(n, dtype=np.uint64))[at] = fit[st.round][name]
            if job.mode is Mode.SHARED:
                c1 = dealt[epoch - 1].corrections["fwd_bank"][st.t, : len(at)]
                per_row.setdefault("c1", np.zeros(n, dtype=np.uint64))[at] = c1
                view = signed(st.grad[Role.GRID], f + fx)  # the grid's share of X_G^T d
                own = decode(st.d, f)  # its share of d
            else:
                view = st.grad * len(at)  # the opened X_G^T d
                own = st.u / 4  # its own residual share, u_G / 4
            xg = x_grid[st.rows]
            solved[at] = np.linalg.lstsq(xg.T, view - xg.T @ own, rcond=None)[0]
        for words in per_row.values():
            columns.extend(word_features(words).T)
        columns.append(np.clip(solved, -10, 10))
    y = job.data[Role.BANK].y
    assert y is not None
    return np.column_stack(columns), y[s.train_rows]


def held_out_auc(x: Float, y: Float) -> float:
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[: len(y) // 2], order[len(y) // 2 :]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(x[train], y[train])
    return float(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))


def attack_auc(job: Job) -> float:
    return held_out_auc(*grid_view(job))


def own_features_auc(job: Job) -> float:
    """Reference, not a leak: the grid's own features fitted to the true labels."""
    _, y = grid_view(job)
    return held_out_auc(job.data[Role.GRID].x[job.schedule.train_rows], y)


def run(mode: Mode, batch: int) -> Job:
    grid, bank = make_data(ROWS, K_GRID, K_BANK, seed=21)
    cfg = settings(mode, epochs=2, batch_size=batch, learning_rate=0.15, l2=0.001,
                   tolerance=0.0, seed=8)
    with fixed_randomness(f"label-inference/{mode.value}/{batch}"):  # a reproducible AUC
        return run_job(grid, bank, cfg, psi=False, guard=False, evaluate=False)


@pytest.fixture(scope="module")
def aucs() -> dict[tuple[Mode, int], float]:
    out = {}
    for mode in (Mode.LOCAL, Mode.SHARED):
        for batch in (SMALL_BATCH, GUARDED_BATCH):
            job = run(mode, batch)
            out[(mode, batch)] = attack_auc(job)
    reference = own_features_auc(job)
    n_test = job.schedule.n_train - job.schedule.n_train // 2
    print(f"\n[label inference] held-out AUC ({n_test} rows) of the grid's attack on the "
          "bank's labels: " + ", ".join(f"{m.value} batch {b}: {a:.3f}"
                                       for (m, b), a in out.items())
          + f"; reference (the grid's own features fitted to the true labels): {reference:.3f}")
    out[(Mode.LOCAL, 0)] = reference
    return out


@pytest.mark.parametrize("batch", [SMALL_BATCH, GUARDED_BATCH])
def test_mode_shared_gives_the_grid_nothing_about_the_labels(
        aucs: dict[tuple[Mode, int], float], batch: int) -> None:
    assert aucs[(Mode.SHARED, batch)] <= MAX_SHARED_AUC


def test_mode_local_with_a_batch_of_k_grid_rows_leaks_the_labels(
        aucs: dict[tuple[Mode, int], float]) -> None:
    """Why the coordinator refuses batches below 4x the larger column count."""
    small, guarded = aucs[(Mode.LOCAL, SMALL_BATCH)], aucs[(Mode.LOCAL, GUARDED_BATCH)]
    assert small >= MIN_LOCAL_SMALL_BATCH_AUC
    assert small > aucs[(Mode.SHARED, SMALL_BATCH)] + 0.3
    assert small > aucs[(Mode.LOCAL, 0)] + 0.1  # far beyond what its own features tell
    assert guarded < small  # the guard helps (but see the printed numbers)


def test_the_coordinator_refuses_the_small_batch() -> None:
    grid, bank = make_data(200, K_GRID, K_BANK, seed=21)
    cfg = settings(Mode.LOCAL, epochs=1, batch_size=SMALL_BATCH)
    with pytest.raises(Exception,
                       match=r"below the minimum batch \d+ \(4x the larger party's \d+ columns"):
        run_job(grid, bank, cfg, psi=False)


TAIL_ROWS = 4_005  # 3,204 training rows: batches of 16 leave 4 = K_GRID rows over
TAIL_EPOCHS = 3


def labels_pinned_down(job: Job) -> tuple[int, int]:
    """(labels the grid reads off batches whose d_B it solves exactly, its smallest batch):
    for every step, the least-squares solution of X_G^T r = X_G^T d_B."""
    grid, bank = job.fits[Role.GRID], job.fits[Role.BANK]
    bank_u = {(st.epoch, st.batch): st.u for st in bank.steps}
    y = job.data[Role.BANK].y
    assert y is not None
    x_grid, pinned = job.data[Role.GRID].x, 0
    for st in grid.steps:
        xg = x_grid[st.rows]
        solved = np.linalg.lstsq(xg.T, st.grad * len(st.rows) - xg.T @ (st.u / 4),
                                 rcond=None)[0]
        d_bank = bank_u[(st.epoch, st.batch)] / 4 + 0.5 - y[st.rows]
        if np.max(np.abs(solved - d_bank)) < 1e-3:  # the whole batch, not a coincidence
            pinned += int(np.sum((solved < 0) == (y[st.rows] == 1)))
    return pinned, min(len(st.rows) for st in grid.steps)


@pytest.mark.parametrize("guarded", [False, True], ids=["control-today", "guarded"])
def test_the_last_batch_no_longer_gives_the_grid_the_labels(guarded: bool) -> None:
    grid, bank = make_data(TAIL_ROWS, K_GRID, K_BANK, seed=21)
    cfg = settings(Mode.LOCAL, epochs=TAIL_EPOCHS, batch_size=GUARDED_BATCH,
                   learning_rate=0.15, l2=0.001, tolerance=0.0, seed=8)
    assert cfg.validation_fraction == 0.2
    with fixed_randomness("label-inference/tail"):
        job = run_job(grid, bank, cfg, psi=False, guard=guarded, evaluate=False)
    pinned, smallest = labels_pinned_down(job)
    if guarded:
        assert smallest >= GUARDED_BATCH and pinned == 0
    else:  # today's partition: the 4 tail rows, every epoch
        assert smallest == K_GRID and pinned == K_GRID * TAIL_EPOCHS


def test_a_party_refuses_a_short_last_batch_even_if_the_coordinator_allows_it() -> None:
    """The coordinator's guard off: the parties' own check refuses in one line."""
    grid, bank = make_data(TAIL_ROWS, K_GRID, K_BANK, seed=21)
    cfg = settings(Mode.LOCAL, epochs=1, batch_size=GUARDED_BATCH, tolerance=0.0, seed=8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(JobCoordinator, "_min_batch", lambda self, columns: 1)
        job = run_job(grid, bank, cfg, psi=False, evaluate=False, check=False)
    messages = sorted(str(e) for e in job.errors if "refuses to train" in str(e))
    assert messages, [str(e) for e in job.errors]
    assert "\n" not in messages[0]
    assert "has 4 rows, below the minimum batch 16 (4x the larger party's 4 columns)" \
        in messages[0]
