"""Batch scoring's ``scores.csv`` agrees with online scoring: same points, same band."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from federation.protocol.errors import InputDataError
from parties.data import PartyData, load_party_csv
from parties.evaluation.scorecard import Scorecard, band_of
from parties.outputs import NO_GRID_RECORD, write_scores


def test_scores_csv_has_full_precision_points_and_the_serve_band(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    ids = [f"e{i}" for i in range(50)]
    data = PartyData("bank.csv", ids, ["x"], rng.normal(size=(50, 1)), None)
    rows = np.arange(0, 50, 2, dtype=np.intp)  # every other enterprise has a grid record
    p = rng.uniform(0.001, 0.999, len(rows))
    write_scores(tmp_path, data, rows, p)
    with (tmp_path / "scores.csv").open(newline="") as handle:
        got = list(csv.DictReader(handle))
    assert list(got[0]) == ["id", "status", "probability", "points", "band"]
    card = Scorecard()
    for r, q in zip(rows, p):
        line = got[int(r)]
        assert line["status"] == "scored" and float(line["probability"]) == q
        points = card.points(np.array([q]))
        assert float(line["points"]) == points[0]  # not rounded
        assert line["band"] == str(band_of(points)[0])  # what serve answers for this ID alone
    assert all(got[i]["status"] == NO_GRID_RECORD and got[i]["band"] == ""
               for i in range(1, 50, 2))


def test_a_bad_label_is_named_plainly(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text("id,y,x\na,0,1.0\nb,2,2.0\n")
    with pytest.raises(InputDataError) as info:
        load_party_csv(path, "id", "y")
    assert "got '2'" in str(info.value) and "np." not in str(info.value)


def test_a_missing_value_suggests_impute_median(tmp_path: Path) -> None:
    path = tmp_path / "grid.csv"
    path.write_text("id,a,b\ne1,1.0,2.0\ne2,,3.0\n")
    with pytest.raises(InputDataError) as info:
        load_party_csv(path, "id")
    message = str(info.value)
    assert "row 3, column 'a': missing value" in message and "--impute median" in message
