"""Tree model files and scoring: each party's file holds its part, the two round-trip, and
scoring from raw values (thresholds, NaN to the right) equals the leaves found in training
from bin codes, in batch and through the serving combiner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from federation.protocol.errors import InputDataError
from federation.protocol.messages import Role
from federation.protocol.schedule import Schedule
from parties.gbdt.core import Owner, TreeParams
from parties.gbdt.grid_side import GridNode
from parties.gbdt.model import GbdtBankModel, GbdtGridModel, load_model
from parties.gbdt.serving import bank_combiner, grid_row_bits
from parties.gbdt.twin import fit_twin


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(3)
    n = 900
    xg, xb = rng.normal(size=(n, 3)), rng.normal(size=(n, 2))
    xg[rng.random(n) < 0.2, 0] = np.nan
    xg[:, 1] = np.round(xg[:, 1])
    logit = 2 * np.nan_to_num(xg[:, 0], nan=1.5) + xg[:, 1] + xb[:, 0]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    s = Schedule(n, 0.2, 64, 1)
    params = TreeParams(trees=6, depth=3, learning_rate=0.3, min_child_weight=0.2,
                        early_stopping_rounds=0)
    boosted, grid_bins, _ = fit_twin(xg, xb, y, s.train_rows, s.validation_rows, params, 8)
    splits = [GridNode(t, i, int(tree.feature[i]), int(tree.slot[i]),
                       float(grid_bins.edges[tree.feature[i]][tree.slot[i]])
                       if tree.slot[i] < len(grid_bins.edges[tree.feature[i]]) else np.inf)
              for t, tree in enumerate(boosted.trees) for i in tree.nodes(Owner.GRID)]
    folder = tmp_path_factory.mktemp("models")
    bank = GbdtBankModel("job", ["b0", "b1"], boosted.base, 3, boosted.trees, 3, {"trees": 6})
    grid = GbdtGridModel("job", ["g0", "g1", "g2"], splits)
    bank.save(folder / "bank.json")
    grid.save(folder / "grid.json")
    return folder, boosted, xg, xb


def test_files_round_trip_and_hold_only_their_partys_part(models) -> None:
    folder, boosted, _, _ = models
    bank = load_model(folder / "bank.json", Role.BANK)
    grid = load_model(folder / "grid.json", Role.GRID)
    assert isinstance(bank, GbdtBankModel) and isinstance(grid, GbdtGridModel)
    for a, b in zip(bank.trees, boosted.trees):
        assert a.same_structure(b) and np.array_equal(a.value, b.value)
    grid_file = json.loads((folder / "grid.json").read_text())
    assert "trees" not in grid_file and all("value" not in s for s in grid_file["splits"])
    bank_file = json.loads((folder / "bank.json").read_text())
    assert all("threshold" not in node for tree in bank_file["trees"] for node in tree
               if node["kind"] == "grid")
    assert {r["feature"] for r in bank.importance()["grid"]} == {"grid#0", "grid#1", "grid#2"}


def test_scoring_from_values_equals_the_training_leaves(models) -> None:
    folder, boosted, xg, xb = models
    bank = GbdtBankModel.load(folder / "bank.json")
    grid = GbdtGridModel.load(folder / "grid.json")
    nodes, bits = grid.left_bits(xg)
    raw = bank.raw(xb, {(int(t), int(i)): bits[j] for j, (t, i) in enumerate(nodes)})
    # the same leaves, added up in another order: equal to the last bits
    np.testing.assert_allclose(raw, boosted.raw(), rtol=0, atol=1e-12)
    combine = bank_combiner(bank, xb)
    rows = np.arange(len(xb))[::-3]
    np.testing.assert_array_equal(combine(rows, grid_row_bits(grid, xg)[rows]), raw[rows])


def test_wrong_role_or_broken_file_is_one_readable_error(models, tmp_path: Path) -> None:
    folder, _, _, _ = models
    with pytest.raises(InputDataError, match="model of the grid"):
        GbdtBankModel.load(folder / "grid.json")
    broken = tmp_path / "m.json"
    broken.write_text(json.dumps({"model": "gbdt", "role": "bank", "trees": "x"}))
    with pytest.raises(InputDataError, match="malformed gbdt model"):
        GbdtBankModel.load(broken)
    broken.write_text("{not json")
    with pytest.raises(InputDataError, match="not a gridcredit model file"):
        load_model(broken, Role.BANK)
