"""Grid indicators against values computed by hand on the conftest fixture."""

from __future__ import annotations

import itertools
import math
import pathlib

import numpy as np
import pandas as pd
import pytest

from parties.labels.features import build_grid_features
from parties.labels.grid_indicators import GRID_BY_NAME, group_mean, pct_change
from parties.labels.panel import build_grid_panel
from parties.labels.registry import build_table
from parties.labels.schema import load_grid, parse_month
from tests.unit.labels.conftest import A_2023, AS_OF


@pytest.fixture
def table(grid_dir: pathlib.Path) -> pd.DataFrame:
    panel = build_grid_panel(load_grid(grid_dir), parse_month(AS_OF))
    frame = build_table(list(GRID_BY_NAME.values()), panel, panel.ids, model_only=False)
    return frame.set_index("id")


def test_enterprise_opening_after_as_of_is_left_out(table: pd.DataFrame) -> None:
    assert list(table.index) == ["A", "B", "C"]


def test_twelve_month_usage_statistics(table: pd.DataFrame) -> None:
    a = table.loc["A"]
    assert a["use_max_12m"] == 250 and a["use_min_12m"] == 90
    assert a["use_mean_12m"] == pytest.approx(1400 / 12)
    assert a["use_std_12m"] == pytest.approx(float(np.std(A_2023)))
    assert a["use_last_month"] == 250  # not the 99999 of 2024-01
    assert a["use_last_vs_mean_12m"] == pytest.approx(250 / (1400 / 12))
    rates = [100 * (b - a_) / a_ for a_, b in itertools.pairwise(A_2023)]
    assert a["use_growth_avg_12m"] == pytest.approx(sum(rates) / 11)
    assert a["score_diff"] == pytest.approx((250 - 90) / (1400 / 12))


def test_connected_eight_months_leaves_twelve_month_indicators_missing(
        table: pd.DataFrame) -> None:
    b = table.loc["B"]
    assert b["account_age_months"] == 8
    twelve = [name for name, ind in GRID_BY_NAME.items()
              if ind.window >= 12 and name != "use_industry_std_12m"]  # an industry value
    assert len(twelve) > 20
    assert b[twelve].isna().all(), b[twelve][b[twelve].notna()]
    assert b["use_last_month"] == 50
    assert b["use_mom_3m_pct"] == 0.0  # 6 months needed, 8 connected
    assert b["breach_count_6m"] == 1 and b["breach_amount_6m"] == 300


def test_paper_example_120_plus_90_late_days_is_210(table: pd.DataFrame) -> None:
    a = table.loc["A"]
    assert a["late_days_12m"] == 210
    assert a["late_count_12m"] == 2
    assert a["late_amount_12m"] == 3000  # principal of the two late bills
    assert a["late_fee_12m"] == 900  # 2022-06's fee is outside the window
    assert a["last_default_days"] == 90


def test_bill_paid_after_as_of_counts_as_open(table: pd.DataFrame) -> None:
    c = table.loc["C"]
    assert c["late_days_12m"] == 21  # 2023-12-10 .. 2023-12-31, not the file's 41
    assert c["late_fee_12m"] == 0  # charged only in 2024
    assert c["late_count_12m"] == 1
    assert c["current_arrears"] == 500
    assert math.isnan(table.loc["A", "current_arrears"])  # no bill row in the as-of month


def test_year_on_year_and_sequential_changes(table: pd.DataFrame) -> None:
    a, c = table.loc["A"], table.loc["C"]
    assert a["use_yoy_12m_pct"] == pytest.approx(100 * 200 / 1200)
    assert a["use_mom_12m_pct"] == a["use_yoy_12m_pct"]
    assert a["use_yoy_3m_pct"] == pytest.approx(100 * 200 / 300)
    assert a["use_mom_3m_pct"] == pytest.approx(100 * 200 / 300)
    # growth per month vs 2022: 0, +10, -10, 0 x 7, +50, +150 -> 0.1 - 0.1 + 0.5 + 2
    assert a["use_yoy_index_12m"] == pytest.approx(2.5)
    assert c["use_yoy_index_12m"] == 0 and c["use_yoy_12m_pct"] == 0


def test_rank_within_province_and_industry(table: pd.DataFrame) -> None:
    assert table.loc["C", "use_rank_pct_12m"] == 50.0  # 2400 kWh: first of two
    assert table.loc["A", "use_rank_pct_12m"] == 100.0  # 1400 kWh: second of two
    assert math.isnan(table.loc["B", "use_rank_pct_12m"])


def test_events_in_six_and_twelve_month_windows(table: pd.DataFrame) -> None:
    a = table.loc["A"]
    assert (a["theft_count_6m"], a["theft_amount_6m"]) == (1, 5000)
    assert (a["theft_count_12m"], a["theft_amount_12m"]) == (2, 6000)
    assert a["breach_count_12m"] == 0 and a["outage_count_12m"] == 2


def test_industry_std_is_the_std_of_the_industry_mean_series(table: pd.DataFrame) -> None:
    # months with readings: A and C (B has NaN until May, then 50 from 2023-05)
    series = [(A_2023[j] + 200 + (50 if j >= 4 else 0)) / (3 if j >= 4 else 2)
              for j in range(12)]
    assert table.loc["A", "use_industry_std_12m"] == pytest.approx(float(np.std(series)))
    assert table.loc["A", "score_vola"] == pytest.approx(
        float(np.std(A_2023)) / float(np.std(series)))


def test_pct_change_and_group_mean_edge_cases() -> None:
    new, old = np.array([0.0, 5.0, 11.0]), np.array([0.0, 0.0, 10.0])
    got = pct_change(new, old)
    assert got[0] == 0 and math.isnan(got[1]) and got[2] == 10.0
    means = group_mean(np.array([1.0, np.nan, 3.0, 10.0]), np.array([0, 0, 0, 1]))
    assert means.tolist() == [2.0, 2.0, 2.0, 10.0]


def test_feature_build_keeps_missing_values_and_adds_shell_score(grid_dir: pathlib.Path) -> None:
    build = build_grid_features(load_grid(grid_dir), parse_month(AS_OF))
    assert "use_mom_12m_pct" not in build.table.columns  # duplicate of use_yoy_12m_pct
    assert build.table["use_max_12m"].isna().sum() == 1
    score = build.table.set_index("id")["ent_shell_score"]
    assert 0 <= score["A"] <= 100 and math.isnan(score["B"])
    dictionary = build.dictionary.set_index("name")
    assert dictionary.loc["use_max_12m", "missing_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert dictionary.loc["use_yoy_index_12m", "window_months"] == 24
