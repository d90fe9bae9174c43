"""Bank indicators and label on the conftest fixture (as-of 2023-12, horizon 6 months)."""

from __future__ import annotations

import math
import pathlib

import pytest

from parties.labels.features import build_bank_features
from parties.labels.schema import load_bank, parse_month
from tests.unit.labels.conftest import AS_OF


def test_label_tax_and_repayment_history(bank_dir: pathlib.Path) -> None:
    build = build_bank_features(load_bank(bank_dir), parse_month(AS_OF))
    table = build.table.set_index("id")
    assert list(table.columns[:1]) == ["y"] and list(table.index) == ["E1", "E2"]
    assert build.excluded == 1  # E3's loan ended before the label window
    e1, e2 = table.loc["E1"], table.loc["E2"]
    assert (e1["y"], e2["y"]) == (1, 0)  # 30 days in 2024-02 counts (>= 30)
    assert e1["tax_mean_12m"] == 120 and e1["tax_yoy_12m_pct"] == 20.0
    assert math.isnan(e2["tax_mean_12m"])  # no tax rows for 2023-01..02
    assert math.isnan(e2["tax_h2h_6m_pct"])  # 10 tax months: the previous 6 are incomplete
    # 2023-10's 40 days are known at the as-of month; 2023-12's are not (due 2023-12-31)
    assert e1["overdue_count_12m"] == 1 and e1["overdue_max_days_12m"] == 40
    assert e1["overdue_30_count_24m"] == 1
    assert e1["amount_due_month"] == 10_000 and e1["loan_amount_active"] == 120_000
    assert e1["months_since_last_loan"] == 6 and e1["loan_count"] == 1
    # 2023-12 falls due on the as-of day and is paid 45 days later: not yet repaid then
    assert e1["repaid_ratio_12m"] == pytest.approx(6 / 7)


def test_threshold_and_horizon_are_configurable(bank_dir: pathlib.Path) -> None:
    raw = load_bank(bank_dir)
    strict = build_bank_features(raw, parse_month(AS_OF), overdue_days=31).table
    assert strict.set_index("id").loc["E1", "y"] == 0
    short = build_bank_features(raw, parse_month(AS_OF), horizon=1).table
    assert short.set_index("id").loc["E1", "y"] == 0  # the overdue month is 2024-02
