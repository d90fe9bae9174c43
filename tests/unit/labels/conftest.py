"""A tiny hand-written grid and bank, as CSV files, for hand-computed indicator values.

As-of month 2023-12. Grid enterprises (industry C13, province 北京 unless said otherwise):
- A: open 2020-01; 2022 use 100 every month; 2023 use 100,110,90,100,100,100,100,100,100,
  100,150,250. Bills: 2023-01 paid 120 days late, 2023-02 paid 90 days late (the paper's
  120 + 90 = 210), 2023-03 on time, 2022-06 10 days late (outside 12 months). Events: theft
  2023-02 (1000) and 2023-08 (5000), outages 2023-03 and 2023-04, breach 2022-11 (outside),
  and a theft 2024-01 after the as-of month.
- B: open 2023-05, connected 8 months; use 50 every month; breach 2023-10 (300).
- C: open 2019-03; use 200 every month 2022-01..2023-12; bill 2023-11 due 2023-12-10, paid
  2024-01-20 (after the as-of month): still open at the as-of month, 21 days late; bill
  2023-12 not yet due; arrears 500 recorded at the end of 2023-12.
- D: opens 2024-02, after the as-of month: not in any table built at 2023-12.
Rows after the as-of month exist on purpose (A's use 2024-01 = 99999).
"""

from __future__ import annotations

import pathlib

import pytest

AS_OF = "2023-12"
A_2023 = [100, 110, 90, 100, 100, 100, 100, 100, 100, 100, 150, 250]


def _months(year: int, first: int = 1, last: int = 12) -> list[str]:
    return [f"{year}-{m:02d}" for m in range(first, last + 1)]


def grid_csvs() -> dict[str, str]:
    ents = ["ent_id,name,legal_person_id,industry_code,province,account_open_date,capacity_kva",
            "A,张三丰,110101199003071234,C13,北京,2020-01-10,100",
            "B,李四有限公司,110101198501011111,C13,北京,2023-05-03,50",
            "C,王五,31010119800101222X,C13,北京,2019-03-01,200",
            "D,赵六,110101199912121212,C13,北京,2024-02-01,10"]
    usage = ["ent_id,month,kwh"]
    usage += [f"A,{m},100" for m in _months(2022)]
    usage += [f"A,{m},{v}" for m, v in zip(_months(2023), A_2023, strict=True)]
    usage += ["A,2024-01,99999"]
    usage += [f"B,{m},50" for m in _months(2023, 5)]
    usage += [f"C,{m},200" for m in _months(2022) + _months(2023)]
    bills = [("ent_id,month,amount_due,amount_paid,due_date,paid_date,late_days,late_fee,"
              "arrears_after"),
             "A,2022-06,800,800,2022-07-15,2022-07-25,10,24,0",
             "A,2023-01,1000,1000,2023-02-15,2023-06-15,120,360,1000",
             "A,2023-02,2000,2000,2023-03-15,2023-06-13,90,540,3000",
             "A,2023-03,1500,1500,2023-04-15,2023-04-10,0,0,0",
             "C,2023-11,500,500,2023-12-10,2024-01-20,41,99,0",
             "C,2023-12,600,600,2024-01-15,2024-01-10,0,0,500"]
    events = ["ent_id,date,type,amount,note",
              "A,2022-11-20,breach,700,outside the window",
              "A,2023-02-01,theft,1000,",
              "A,2023-03-03,outage,,",
              "A,2023-04-04,outage,0,",
              "A,2023-08-05,theft,5000,meter bypass",
              "A,2024-01-05,theft,77777,after as-of",
              "B,2023-10-01,breach,300,"]
    return {"enterprises": "\n".join(ents), "monthly_usage": "\n".join(usage),
            "bills": "\n".join(bills), "events": "\n".join(events)}


def bank_csvs() -> dict[str, str]:
    """E1: overdue 40 days 2023-10, 45 days 2023-12 (not yet known at the as-of month), 30
    days 2024-02 (label 1). E2: clean (label 0). E3: loan ended 2023-10 (no label)."""
    loans = ["ent_id,loan_id,start_month,amount,term_months",
             "E1,L1,2023-06,120000,12", "E2,L2,2023-01,60000,24", "E3,L3,2022-11,10000,12"]
    days = {"2023-10": 40, "2023-12": 45, "2024-02": 30}
    rep = ["ent_id,loan_id,month,amount_due,amount_paid,days_overdue"]
    rep += [f"E1,L1,{m},10000,10000,{days.get(m, 0)}" for m in _months(2023, 6) +
            _months(2024, 1, 5)]
    rep += [f"E2,L2,{m},2600,2600,0" for m in _months(2023) + _months(2024)]
    rep += [f"E3,L3,{m},900,900,0" for m in _months(2022, 11) + _months(2023, 1, 10)]
    taxes = ["ent_id,month,tax_amount"]
    taxes += [f"E1,{m},100" for m in _months(2022)] + [f"E1,{m},120" for m in _months(2023)]
    taxes += [f"E2,{m},50" for m in _months(2023, 3)]
    return {"loans": "\n".join(loans), "repayments": "\n".join(rep), "taxes": "\n".join(taxes)}


def write_tables(directory: pathlib.Path, tables: dict[str, str]) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in tables.items():
        (directory / f"{name}.csv").write_text(text + "\n", encoding="utf-8")
    return directory


@pytest.fixture
def grid_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    return write_tables(tmp_path / "grid", grid_csvs())


@pytest.fixture
def bank_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    return write_tables(tmp_path / "bank", bank_csvs())
