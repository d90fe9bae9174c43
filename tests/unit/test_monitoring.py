"""parties.monitoring: warning levels, alerts against the last period, PSI, the store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from federation.protocol.errors import ConfigError, InputDataError
from parties.model import PartyModel
from parties.monitoring import (
    NEW_ALERT,
    RATING_WORSENED,
    SCORE_DROP,
    UNRATED,
    MonitorStore,
    WarningRules,
    compare,
    load_warning_rules,
    model_matrix,
    population_stability,
    rating_worsened,
    summarize,
)
from parties.outputs import NO_GRID_RECORD


def _book(rows: list[tuple[str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame({"id": [r[0] for r in rows], "probability": 0.1,
                         "points": [r[1] for r in rows], "band": "",
                         "rating": [r[2] for r in rows]})


def test_levels_and_alerts_against_the_previous_period() -> None:
    rules = WarningRules(alert_below=450.0, watch_below=500.0, alert_drop=40.0, score_drop=25.0)
    first, alerts = compare(_book([("a", 600, "stable"), ("b", 520, "shrink"),
                                   ("c", 610, "stable"), ("d", 480, "stable")]),
                            None, rules)
    assert first["level"].tolist() == ["normal", "watch", "normal", "watch"]
    assert alerts == []
    second, alerts = compare(_book([("a", 590, "alert"), ("b", 470, "shrink"),
                                    ("c", 565, "stable"), ("d", 440, "stable"),
                                    ("e", 600, "stable")]), first, rules)
    assert second["level"].tolist() == ["alert", "alert", "alert", "alert", "normal"]
    np.testing.assert_allclose(second["change"].to_numpy()[:4], [-10, -50, -45, -40])
    assert math.isnan(second["change"].iat[4])
    assert sorted(alerts) == sorted([
        ("a", NEW_ALERT, "normal -> alert"), ("a", RATING_WORSENED, "stable -> alert"),
        ("b", NEW_ALERT, "watch -> alert"), ("b", SCORE_DROP, "520.0 -> 470.0"),
        ("c", NEW_ALERT, "normal -> alert"),
        ("c", SCORE_DROP, "610.0 -> 565.0"), ("d", NEW_ALERT, "watch -> alert"),
        ("d", SCORE_DROP, "480.0 -> 440.0")])
    third, alerts = compare(_book([("a", 590, "alert")]), second, rules)
    assert alerts == []  # still alert: no new alert


def test_rating_worsened_follows_severity_not_table7_precedence() -> None:
    # Table 7's precedence is stable < expansion < shrink < alert; severity is expansion
    # (growing usage, the best) < stable < shrink < alert.
    before = _book([("up", 600, "stable"), ("down", 600, "expansion"),
                    ("same", 600, "shrink"), ("worse", 600, "stable"),
                    ("better", 600, "alert"), ("gone", 600, "stable")])
    first, _ = compare(before, None, WarningRules())
    _, alerts = compare(_book([("up", 600, "expansion"), ("down", 600, "stable"),
                               ("same", 600, "shrink"), ("worse", 600, "shrink"),
                               ("better", 600, "stable"), ("gone", 600, NO_GRID_RECORD)]),
                        first, WarningRules())
    worsened = sorted((i, w) for i, k, w in alerts if k == RATING_WORSENED)
    assert worsened == [("down", "expansion -> stable"), ("worse", "stable -> shrink")]
    assert rating_worsened("stable", "alert") and not rating_worsened("alert", "expansion")
    assert not rating_worsened("stable", "expansion")
    assert not rating_worsened(NO_GRID_RECORD, "alert")


def test_a_borrower_without_grid_record_is_unrated_and_not_counted_normal() -> None:
    book = _book([("a", 600, "stable"), ("b", math.nan, NO_GRID_RECORD),
                  ("c", math.nan, NO_GRID_RECORD)])
    first, alerts = compare(book, None, WarningRules())
    assert first["level"].tolist() == ["normal", UNRATED, UNRATED]
    assert alerts == []
    summary = summarize("2024-01", first, None, 0)
    assert summary["levels"] == {"normal": 1, "watch": 0, "alert": 0, UNRATED: 2}
    assert summary["no_grid_record"] == 2
    # a borrower rated again later: its previous level says it was unrated
    second, alerts = compare(_book([("b", 600, "alert")]), first, WarningRules())
    assert second["previous_level"].tolist() == [UNRATED]
    assert alerts == [("b", NEW_ALERT, f"{UNRATED} -> alert")]


def test_population_stability() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(500, 30, 5000)
    assert population_stability(base, rng.normal(500, 30, 5000)) < 0.01
    assert population_stability(base, rng.normal(540, 30, 5000)) > 0.5
    assert math.isnan(population_stability(base, [np.nan]))


def test_rules_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[alert]\nratings = ["alert", "shrink"]\nbelow = 480\ndrop = 50\n'
                    "[alerts]\nscore_drop = 15\n")
    rules = load_warning_rules(path)
    assert rules.alert_ratings == ("alert", "shrink") and rules.alert_below == 480.0
    assert rules.alert_drop == 50.0 and rules.score_drop == 15.0
    for bad in ('[alert]\nratings = ["panic"]\n', "[alert]\nfoo = 1\n", "[x]\n",
                '[alert]\nbelow = "low"\n', "not toml ["):
        path.write_text(bad)
        with pytest.raises(ConfigError, match="rules.toml"):
            load_warning_rules(path)


def test_model_matrix_fills_missing_with_the_mean_and_flags_them() -> None:
    model = PartyModel("grid", "j", "shared", ["x", "x_missing"], [5.0, 0.0], [1.0, 1.0],
                       [1.0, 1.0])
    table = pd.DataFrame({"x": [1.0, np.nan]})
    np.testing.assert_array_equal(model_matrix(table, model, "t"), [[1.0, 0.0], [5.0, 1.0]])
    with pytest.raises(InputDataError, match="'y'"):
        model_matrix(table, PartyModel("grid", "j", "shared", ["y"], [0.0], [1.0], [1.0]), "t")


def test_store_writes_alerts_once_and_periods_whole(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path)
    alerts = [("a", NEW_ALERT, "none -> alert"), ("b", SCORE_DROP, "600.0 -> 550.0")]
    assert len(store.add_alerts("2024-01", alerts)) == 2
    assert store.add_alerts("2024-01", alerts) == []
    assert len(store.add_alerts("2024-02", alerts[:1])) == 1
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert lines[1] == {"period": "2024-01", "id": "b", "kind": SCORE_DROP, "before": "600.0",
                        "after": "550.0"}
    assert store.done() == []
    (tmp_path / "periods" / "2024-01").mkdir(parents=True)  # left half-written by a crash
    book, _ = compare(_book([("a", 600, "stable")]), None, WarningRules())
    store.write_period("2024-01", book, {"period": "2024-01"})
    assert store.done() == ["2024-01"]
    assert store.book("2024-01")["id"].tolist() == ["a"]  # type: ignore[index]
    assert [p.name for p in (tmp_path / "periods").iterdir()] == ["2024-01"]


@pytest.mark.parametrize(("text", "says"), [
    ("[alerts]\nscore_drop = -30\n", "[alerts] score_drop = -30: a drop in points must be"),
    ("[alert]\ndrop = 0\n", "[alert] drop = 0: a drop in points must be positive"),
    ("[alert]\nbelow = nan\n", "[alert] below = nan: must be a finite number"),
    ("[watch]\ndrop = inf\n", "[watch] drop = inf: must be a finite number"),
    ("[alert]\nbelow = 1e9\n", "[alert] below = 1e+09: outside the points"),
    ("[alert]\nbelow = 480\n[watch]\nbelow = 450\n",
     "[watch] below = 450 is stricter than [alert] below = 480"),
    ("[alert]\ndrop = 20\n[watch]\ndrop = 40\n",
     "[watch] drop = 40 is stricter than [alert] drop = 20"),
])
def test_rules_refuse_values_that_make_no_sense(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_warning_rules(path, (0.0, 1200.0))
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and says in message and "\n" not in message


def test_rules_accept_the_readme_example(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[alert]\nratings = ["alert"]\nbelow = 480\ndrop = 40\n'
                    '[watch]\nratings = ["shrink"]\nbelow = 500\n[alerts]\nscore_drop = 30\n')
    rules = load_warning_rules(path, (0.0, 1200.0))
    assert (rules.alert_below, rules.watch_below, rules.alert_drop) == (480.0, 500.0, 40.0)
