"""Federated screening, in process: the per-bin counts the bank opens equal the counts
computed centrally on the joined data, exactly, for every indicator of both parties
(missing bins, ties at bin edges, a constant and an all-missing column included); the
cross-party correlations equal Pearson's on the joined data; the grid learns its kept
names, and its IVs only when the bank reveals them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from federation.coordinator import JobStage
from federation.protocol.messages import Role, TrainSettings
from federation.protocol.schedule import Schedule
from parties.binning import bin_matrix
from parties.evaluation.screening.redundancy import correlation, standardize
from parties.screen_step import ScreenConfig
from tests.inprocess.screening_harness import Screening, run_screening, write_table

N, EXTRA, SEED = 700, 60, 42
GRID_NAMES = ["ties", "signal", "sparse", "constant", "empty", "noise"]
BANK_NAMES = ["tax", "history", "ties_bank"]


def dataset(seed: int = 0) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    total = N + 2 * EXTRA
    ids = [f"91{v:010d}" for v in rng.permutation(10**6)[:total]]
    g = np.column_stack([
        np.round(rng.normal(size=total) * 2),  # few distinct values: ties at every edge
        rng.normal(size=total),
        np.where(rng.random(total) < 0.5, 0.0, rng.exponential(size=total)),  # half zeros
        np.full(total, 3.0),
        np.full(total, np.nan),
        rng.normal(size=total),
    ])
    g[rng.random((total, g.shape[1])) < 0.12] = np.nan
    g[:, 4] = np.nan
    b = np.column_stack([rng.normal(size=total), rng.poisson(1.0, total).astype(float),
                         np.round(rng.normal(size=total))])
    b[rng.random(total) < 0.1, 0] = np.nan
    logit = 1.4 * np.nan_to_num(g[:, 1]) + 0.8 * b[:, 1] - 2.0
    y = (rng.random(total) < 1 / (1 + np.exp(-logit))).astype(float)
    grid_rows = np.r_[0:N, N:N + EXTRA]
    bank_rows = np.r_[0:N, N + EXTRA:total]
    return {"ids": ids, "g": g, "b": b, "y": y, "grid_rows": grid_rows, "bank_rows": bank_rows}


def run(tmp: Path, data: dict[str, object], bank_cfg: ScreenConfig | None = None) -> Screening:
    ids, g, b, y = data["ids"], data["g"], data["b"], data["y"]
    gr, br = data["grid_rows"], data["bank_rows"]
    assert isinstance(ids, list) and isinstance(g, np.ndarray) and isinstance(b, np.ndarray)
    assert isinstance(y, np.ndarray) and isinstance(gr, np.ndarray) and isinstance(br, np.ndarray)
    grid_csv = write_table(tmp / "in" / "grid.csv", [ids[i] for i in gr], g[gr], GRID_NAMES)
    bank_csv = write_table(tmp / "in" / "bank.csv", [ids[i] for i in br], b[br], BANK_NAMES,
                           y[br])
    result = run_screening(tmp / "run", grid_csv, bank_csv, bank_cfg=bank_cfg,
                           settings=TrainSettings(seed=SEED))
    assert not result.errors, result.errors
    assert result.stage is JobStage.DONE
    return result


def aligned(data: dict[str, object]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid values, bank values and labels of the common enterprises, in the order both
    parties put them (SHA-256 of seed and ID), as a central party holding both would."""
    ids = data["ids"]
    assert isinstance(ids, list)
    common = list(range(N))
    order = sorted(common, key=lambda i: hashlib.sha256(f"{SEED}:{ids[i]}".encode()).digest())
    g, b, y = data["g"], data["b"], data["y"]
    assert isinstance(g, np.ndarray) and isinstance(b, np.ndarray) and isinstance(y, np.ndarray)
    return g[order], b[order], y[order]


@pytest.fixture(scope="module")
def screening(tmp_path_factory: pytest.TempPathFactory) -> tuple[Screening, dict[str, object]]:
    data = dataset()
    return run(tmp_path_factory.mktemp("screen"), data), data


def central_counts(x: np.ndarray, y: np.ndarray, bins: int = 10
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    schedule = Schedule(len(y), 0.2, 256, SEED)
    train, valid = np.sort(schedule.train_rows), schedule.validation_rows
    binned = bin_matrix(x, train, bins, fixed_width=True)
    out = []
    for j in range(x.shape[1]):
        c = binned.codes[:, j]
        w = int(binned.slots[j])
        out.append((np.bincount(c[train], minlength=w), np.bincount(c[train], y[train] == 1,
                                                                     minlength=w).astype(int),
                    np.bincount(c[valid], minlength=w)))
    return out


def test_per_bin_counts_equal_the_central_counts_exactly(
        screening: tuple[Screening, dict[str, object]]) -> None:
    result, data = screening
    g, b, y = aligned(data)
    doc = result.json(Role.BANK, "screen.json")
    by_name = {(e["party"], e["name"]): e for e in doc["indicators"]}
    assert len(by_name) == len(GRID_NAMES) + len(BANK_NAMES)
    checked_missing = 0
    for party, names, x in (("grid", GRID_NAMES, g), ("bank", BANK_NAMES, b)):
        for name, (count, bad, valid) in zip(names, central_counts(x, y)):
            entry = by_name[(party, name)]
            got = {int(bin_["slot"]): bin_ for bin_ in entry["bins"]}
            expected_slots = {i for i in range(len(count)) if count[i] or valid[i]}
            assert set(got) == expected_slots, (party, name)
            for i in expected_slots:
                assert (got[i]["count"], got[i]["bad"], got[i]["validation_count"]) == \
                    (int(count[i]), int(bad[i]), int(valid[i])), (party, name, i)
            checked_missing += int(got.get(len(count) - 1, {"count": 0})["count"] > 0)
    assert checked_missing >= 6  # missing bins took part for most indicators
    empty = by_name[("grid", "empty")]
    assert empty["missing_rate"] == 1.0 and empty["iv"] == 0.0


def test_statistics_come_from_the_counts_and_the_signal_ranks_first(
        screening: tuple[Screening, dict[str, object]]) -> None:
    result, _ = screening
    doc = result.json(Role.BANK, "screen.json")
    iv = {e["name"]: e["iv"] for e in doc["indicators"]}
    assert max(iv, key=lambda k: iv[k]) == "signal"
    assert iv["constant"] < 0.02  # one value bin and a random missing bin
    selection = result.json(Role.BANK, "selection.json")
    assert "signal" in selection["parties"]["grid"]["kept"]
    dropped = {d["name"]: d["rule"] for d in selection["parties"]["grid"]["dropped"]}
    assert dropped["empty"] == "missing" and dropped["constant"] == "iv"


def test_cross_party_correlations_equal_pearson_on_the_joined_rows(
        screening: tuple[Screening, dict[str, object]]) -> None:
    result, data = screening
    g, b, y = aligned(data)
    train = np.sort(Schedule(len(y), 0.2, 256, SEED).train_rows)
    z = standardize(np.hstack([g[train], b[train]]))
    expected = correlation(z, z)
    got = np.array(result.json(Role.BANK, "screen.json")["correlations"]["matrix"], dtype=float)
    # fixed point with 12 fraction bits and 4 printed decimals
    assert np.abs(got - expected).max() < 2e-4
    assert abs(expected[1, len(GRID_NAMES) + 1]) < 0.2  # not all trivially zero
    assert np.abs(expected[:len(GRID_NAMES), len(GRID_NAMES):]).max() > 0.05


def test_the_grid_learns_its_kept_names_and_no_iv_unless_revealed(
        screening: tuple[Screening, dict[str, object]], tmp_path: Path) -> None:
    result, data = screening
    grid_view = result.json(Role.GRID, "screen.json")
    selection = result.json(Role.BANK, "selection.json")
    assert grid_view["kept"] == selection["parties"]["grid"]["kept"]
    assert "iv" not in grid_view
    assert [i["name"] for i in grid_view["indicators"]] == GRID_NAMES
    revealed = run(tmp_path, data, ScreenConfig(reveal_to_grid="summary"))
    view = revealed.json(Role.GRID, "screen.json")
    bank_iv = {e["name"]: e["iv"] for e in revealed.json(Role.BANK, "screen.json")["indicators"]
               if e["party"] == "grid"}
    assert view["iv"] == pytest.approx(bank_iv, abs=1e-6)
