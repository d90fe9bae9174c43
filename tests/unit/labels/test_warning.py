"""Table 7 rules: every boundary as the packaged TOML reads the table, and the rating order."""

from __future__ import annotations

import math
import pathlib
import re

import numpy as np
import pandas as pd
import pytest

from parties.labels.features import grid_registry
from parties.labels.schema import InputError
from parties.labels.warning import (
    RATING_NAMES,
    Rating,
    load_rules,
    parse_interval,
    rate,
    rate_indicator,
)

E, S, K, A = Rating.EXPANSION, Rating.STABLE, Rating.SHRINK, Rating.ALERT
PCT = [(20, E), (19.999, S), (-10, S), (-10.001, K), (-20, K), (-20.001, A), (500, E)]
CASES: dict[str, list[tuple[float, Rating | None]]] = {
    "use_rank_pct_12m": [(0, E), (30, E), (30.001, S), (60, S), (60.001, K), (90, K),
                         (90.001, A), (100, A)],
    "use_yoy_index_12m": [(2.4, E), (24, E), (2.399, S), (1.2, S), (1.199, K), (-1.2, K),
                          (-1.201, A), (-12, A)],
    "use_yoy_3m_pct": PCT, "use_yoy_12m_pct": PCT, "use_mom_3m_pct": PCT,
    "use_mom_12m_pct": PCT,
    "late_days_12m": [(0, None), (29, None), (30, K), (90, K), (91, A), (210, A)],
    "late_amount_12m": [(9999.99, None), (10_000, K), (500_000, K), (500_000.01, A)],
    "late_count_12m": [(0, None), (1, None), (2, K), (3, A)],
    "current_arrears": [(9999, None), (10_000, K), (100_000, K), (100_000.5, A)],
    "breach_count_6m": [(0, None), (1, A), (4, A)],
    "breach_count_12m": [(0, None), (1, K), (2, A)],
    "theft_count_6m": [(0, None), (1, A)],
}


@pytest.fixture(scope="module")
def rules() -> dict[str, object]:
    return {r.indicator: r for r in load_rules(ind.name for ind in grid_registry())}


def test_packaged_rules_cover_table_7(rules: dict[str, object]) -> None:
    assert set(rules) == set(CASES)


@pytest.mark.parametrize(("indicator", "value", "expected"),
                         [(i, v, e) for i, cases in CASES.items() for v, e in cases])
def test_boundary(rules: dict[str, object], indicator: str, value: float,
                  expected: Rating | None) -> None:
    got = rate_indicator(rules[indicator], np.array([value]))[0]  # type: ignore[arg-type]
    assert got == (-1 if expected is None else int(expected))


def test_missing_value_is_skipped_not_rated(rules: dict[str, object]) -> None:
    got = rate_indicator(rules["late_days_12m"], np.array([np.nan]))  # type: ignore[arg-type]
    assert got[0] == -2


def test_enterprise_rating_order_alert_shrink_expansion_stable_unrated(
        rules: dict[str, object]) -> None:
    names = list(CASES)
    base = {n: np.nan for n in names}
    rows = [
        {**base, "use_yoy_3m_pct": 25.0, "theft_count_6m": 1.0},  # expansion + alert
        {**base, "use_yoy_3m_pct": 25.0, "late_count_12m": 2.0},  # expansion + shrink
        {**base, "use_yoy_3m_pct": 25.0, "use_yoy_12m_pct": 0.0},  # expansion + stable
        {**base, "use_yoy_12m_pct": 0.0, "late_count_12m": 0.0},  # stable + no band + missing
        {**base, "late_count_12m": 0.0},  # no band only, the rest missing
        base,  # everything missing
    ]
    table = pd.DataFrame(rows)[names]
    old = rate(table, tuple(rules.values()))  # type: ignore[arg-type]
    assert old["rating"].tolist()[3:] == ["stable"] * 3  # the Rating-only reading (monitor)
    out = rate(table, tuple(rules.values()), unrated=True)  # type: ignore[arg-type]
    # Nothing above stable with some indicator missing cannot be called stable.
    assert out["rating"].tolist() == ["alert", "shrink", "expansion", "unrated", "unrated",
                                      "unrated"]
    assert out["triggered"].tolist() == ["theft_count_6m", "late_count_12m", "use_yoy_3m_pct",
                                         "", "", ""]
    assert out.loc[5, "missing"].split(";") == names
    assert "use_yoy_3m_pct" not in out.loc[0, "missing"]
    assert set(out["rating"]) <= set(RATING_NAMES)


def test_stable_needs_every_indicator(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[rules.late_days_12m]\nstable = "[0, 30)"\nalert = "[200, inf)"\n'
                    '[rules.theft_count_6m]\nstable = "[0, 0]"\nalert = "[1, inf)"\n',
                    encoding="utf-8")
    rules = load_rules([ind.name for ind in grid_registry()], path)
    table = pd.DataFrame({"late_days_12m": [5.0, 5.0, np.nan, 250.0],
                          "theft_count_6m": [0.0, np.nan, np.nan, np.nan]})
    out = rate(table, rules, unrated=True)
    assert out["rating"].tolist() == ["stable", "unrated", "unrated", "alert"]
    assert out["triggered"].tolist() == ["late_days_12m;theft_count_6m", "", "",
                                         "late_days_12m"]
    assert out["missing"].tolist() == ["", "theft_count_6m", "late_days_12m;theft_count_6m",
                                       "theft_count_6m"]


@pytest.mark.parametrize(("text", "lo", "hi", "lo_closed", "hi_closed"), [
    ("[0, 30]", 0, 30, True, True), ("(30,60]", 30, 60, False, True),
    ("(-inf, -1.2)", -math.inf, -1.2, False, False), ("[2.4, inf)", 2.4, math.inf, True, False),
    ("[2, 2]", 2, 2, True, True), ("[1e4, 5e5]", 1e4, 5e5, True, True),
])
def test_parse_interval(text: str, lo: float, hi: float, lo_closed: bool,
                        hi_closed: bool) -> None:
    i = parse_interval(text)
    assert (i.lower, i.upper, i.lower_closed, i.upper_closed) == (lo, hi, lo_closed, hi_closed)


@pytest.mark.parametrize("text", ["0, 30", "[30, 0]", "(2, 2]", "[a, 1]", "[1; 2]"])
def test_parse_interval_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_interval(text)


@pytest.mark.parametrize(("body", "message"), [
    ('[rules.late_days_12m]\nshrink = "[30, 90]"\nalert = "[90, inf)"\n', "overlaps shrink"),
    ('[rules.no_such_indicator]\nalert = "[1, inf)"\n', "unknown indicator"),
    ('[rules.late_days_12m]\nsevere = "[1, inf)"\n', "expected one of"),
    ('[rules.late_days_12m]\nalert = "1 or more"\n', "expected an interval"),
    ('[rules.late_days_12m\n', "Expected ']'"),
    ('title = "no rules"\n', "expected [rules.<indicator>]"),
])
def test_bad_rule_files_raise_input_error(tmp_path: pathlib.Path, body: str,
                                          message: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(message)) as info:
        load_rules([ind.name for ind in grid_registry()], path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert "row -" not in str(info.value) and "column -" not in str(info.value)


def test_an_edited_rule_file_changes_the_rating(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[rules.late_days_12m]\nalert = "[200, inf)"\n', encoding="utf-8")
    rules = load_rules([ind.name for ind in grid_registry()], path)
    out = rate(pd.DataFrame({"late_days_12m": [210.0, 199.0]}), rules)
    assert out["rating"].tolist() == ["alert", "stable"]
