"""Both parties' raw tables drawn from a synthetic universe.

What it does: turns the hidden monthly activity and distress of each enterprise into the
grid's usage, bills (with late payments and arrears), events and customer master data, and
into the bank's loans, repayments (with days overdue) and taxes, as typed frames shaped like
:mod:`parties.labels.schema` returns them; :func:`to_csv_frames` formats them for writing.

What it assumes: the data snapshot is the last day of the last simulated month, so bills paid
after it are unpaid in the files; bills are due on the 15th of the following month; a late
fee is 0.3 % of the bill per late day (a common enterprise rate); taxes are paid monthly by
half of the enterprises and quarterly by the other half; every bank customer has a loan that
is repaid through the 6-month label window.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.schema import BankRaw, GridRaw, format_month
from parties.labels.synth_universe import INDUSTRIES, PROVINCES, Matrix, Universe, sigmoid

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国"
BRANDS = "华鑫盛达恒通瑞丰宏远信诚永泰金源博海天润"
ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
ID_CHECK = "10X98765432"


def _dates(months: npt.NDArray[np.int64], day: npt.ArrayLike) -> npt.NDArray[np.datetime64]:
    """Day ``day`` (1-based) of each month ordinal, as datetime64[D]."""
    first = (np.asarray(months) - 1970 * 12).astype("datetime64[M]").astype("datetime64[D]")
    return np.asarray(first + (np.asarray(day, dtype=np.int64) - 1), dtype="datetime64[D]")


def _people(rng: np.random.Generator, n: int, prov: npt.NDArray[np.int64]) -> tuple[list[str],
                                                                                   list[str]]:
    """Company names and 18-digit legal-person ID numbers with valid check digits."""
    birth = _dates(rng.integers(1960 * 12, 1995 * 12, n), rng.integers(1, 29, n))
    seq = rng.integers(0, 1000, n)
    brand = rng.integers(0, len(BRANDS), (n, 2))
    # The check digit from the 17 digits of the body, computed on whole columns at once.
    year = birth.astype("datetime64[Y]").astype(np.int64) + 1970
    month = birth.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (birth - birth.astype("datetime64[M]")).astype(np.int64) + 1
    region = np.array([[int(c) for c in code[:4]] for code, _ in PROVINCES])[prov]
    digits = np.column_stack([region, np.zeros(n, np.int64), np.ones(n, np.int64),
                              year // 1000, year // 100 % 10, year // 10 % 10, year % 10,
                              month // 10, month % 10, day // 10, day % 10,
                              seq // 100, seq // 10 % 10, seq % 10])
    check = np.array(list(ID_CHECK))[(digits @ ID_WEIGHTS) % 11]
    cities = np.array([city for _, city in PROVINCES], dtype=object)[prov]
    regions = np.array([code[:4] for code, _ in PROVINCES], dtype=object)[prov]
    names = [f"{c}{BRANDS[a]}{BRANDS[b]}实业有限公司"
             for c, a, b in zip(cities, brand[:, 0].tolist(), brand[:, 1].tolist(), strict=True)]
    ids = [f"{r}01{y:04d}{m:02d}{d:02d}{q:03d}{k}" for r, y, m, d, q, k in
           zip(regions, year.tolist(), month.tolist(), day.tolist(), seq.tolist(),
               check.tolist(), strict=True)]
    return names, ids


def _enterprises(u: Universe, g: npt.NDArray[np.int64], rng: np.random.Generator,
                 ) -> pd.DataFrame:
    n = len(g)
    names, legal = _people(rng, n, u.province[g])
    # Capacity is sized for a ~30 % load factor at the enterprise's nominal size: shells keep
    # a normal-looking transformer while using almost nothing through it.
    nominal = np.array([i.kwh for i in INDUSTRIES])[u.industry[g]] * rng.lognormal(0, 0.5, n)
    nominal = np.where(u.shell[g], nominal, u.size[g])
    capacity = np.maximum(30.0, np.round(nominal / (730 * 0.3) / 10.0) * 10.0)
    return pd.DataFrame({
        "ent_id": u.ent_id[g], "name": names, "legal_person_id": legal,
        "industry_code": np.array([i.code for i in INDUSTRIES], dtype=object)[u.industry[g]],
        "province": np.array([p[1] for p in PROVINCES], dtype=object)[u.province[g]],
        "account_open_date": pd.to_datetime(_dates(u.open_month[g], rng.integers(1, 29, n))),
        "capacity_kva": capacity,
    })


def _cells(u: Universe, g: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64],
                                                          npt.NDArray[np.int64]]:
    """(row in g, month column) of every connected enterprise-month."""
    months = u.start + np.arange(u.months)
    return np.nonzero(months[None, :] >= u.open_month[g][:, None])  # type: ignore[return-value]


def _bills(u: Universe, g: npt.NDArray[np.int64], rows: npt.NDArray[np.int64],
           cols: npt.NDArray[np.int64], kwh: Matrix, capacity: Matrix,
           rng: np.random.Generator) -> pd.DataFrame:
    k = len(rows)
    ent = g[rows]
    tariff = np.array([i.tariff for i in INDUSTRIES])[u.industry[ent]]
    due = np.round(kwh * tariff + capacity[rows] * 25.0, 2)
    distress = u.distress[ent, cols]
    p_late = sigmoid(-3.8 - 0.9 * u.health[ent] + 3.5 * distress + 1.0 * u.shell[ent])
    late = rng.random(k) < p_late
    late_days = np.where(late, rng.geometric(1.0 / (12.0 + 60.0 * distress), k), 0)
    month = u.start + cols
    due_date = _dates(month + 1, 15)
    paid_date = np.where(late, due_date + late_days, due_date - rng.integers(0, 12, k))
    snapshot = _dates(np.array([u.start + u.months]), 1)[0] - 1
    paid = paid_date <= snapshot
    late_days = np.where(paid, late_days, (snapshot - due_date).astype(np.int64).clip(0))
    # Arrears at the end of month t: bills already due and not yet paid (+ at the due month,
    # - at the payment month), accumulated over the months.
    pay_col = np.where(paid, (paid_date.astype("datetime64[M]").astype(np.int64)
                              + 1970 * 12 - u.start), u.months)
    diff = np.zeros((len(g), u.months + 2))
    np.add.at(diff, (rows, np.minimum(cols + 1, u.months + 1)), due)
    np.add.at(diff, (rows, np.minimum(pay_col, u.months + 1)), -due)
    arrears = np.cumsum(diff, axis=1)[rows, cols]
    return pd.DataFrame({
        "ent_id": u.ent_id[ent], "month": month, "amount_due": due,
        "amount_paid": np.where(paid, due, 0.0),
        "due_date": pd.to_datetime(due_date), "paid_date": pd.to_datetime(
            np.where(paid, paid_date, np.datetime64("NaT"))),
        "late_days": late_days.astype(np.int64),
        "late_fee": np.where(paid & late, np.round(due * 0.003 * late_days, 2), 0.0),
        "arrears_after": np.round(np.maximum(arrears, 0.0), 2),
    })


EVENT_RATES = {  # monthly Poisson rates: base, per shell, per unit of distress, per bad health
    "outage": (0.03, 0.5, 0.25, 0.0),
    "theft": (0.0015, 0.0, 0.004, 0.006),
    "breach": (0.003, 0.0, 0.01, 0.004),
    "inspection": (0.02, 0.02, 0.02, 0.0),
}
EVENT_AMOUNTS = {"outage": (0, 0), "theft": (2_000, 80_000), "breach": (1_000, 30_000),
                 "inspection": (0, 0)}


def _events(u: Universe, g: npt.NDArray[np.int64], rows: npt.NDArray[np.int64],
            cols: npt.NDArray[np.int64], rng: np.random.Generator) -> pd.DataFrame:
    ent = g[rows]
    parts = []
    for kind, (base, shell, distress, bad) in EVENT_RATES.items():
        lam = (base + shell * u.shell[ent] + distress * u.distress[ent, cols]
               + bad * (u.health[ent] < -1.2))
        count = rng.poisson(lam)
        at = np.repeat(np.arange(len(rows)), count)
        low, high = EVENT_AMOUNTS[kind]
        parts.append(pd.DataFrame({
            "ent_id": u.ent_id[ent[at]],
            "date": pd.to_datetime(_dates(u.start + cols[at], rng.integers(1, 29, len(at)))),
            "type": kind,
            "amount": np.round(rng.uniform(low, high, len(at)), 0) if high else 0.0,
            "note": "",
        }))
    return pd.concat(parts).sort_values(["date", "ent_id"], kind="stable").reset_index(drop=True)


def grid_tables(u: Universe, rng: np.random.Generator) -> GridRaw:
    """The grid's four raw tables for the enterprises that are its customers."""
    g = np.flatnonzero(u.in_grid)
    ents = _enterprises(u, g, rng)
    rows, cols = _cells(u, g)
    outage_days = rng.binomial(30, np.minimum(0.5, 0.02 + 0.2 * u.shell[g[rows]]))
    kwh = np.round(u.size[g[rows]] * u.activity[g[rows], cols] * (1 - outage_days / 30.0), 0)
    usage = pd.DataFrame({"ent_id": u.ent_id[g[rows]], "month": u.start + cols, "kwh": kwh})
    capacity = ents["capacity_kva"].to_numpy(np.float64)
    bills = _bills(u, g, rows, cols, kwh, capacity, rng)
    return GridRaw(ents, usage, bills, _events(u, g, rows, cols, rng))


def _loans(u: Universe, b: npt.NDArray[np.int64], rng: np.random.Generator) -> pd.DataFrame:
    as_of_col = u.as_of - u.start
    n = len(b)
    scale = np.array([INDUSTRIES[i].kwh for i in u.industry[b]]) * rng.lognormal(0, 0.6, n)
    current = pd.DataFrame({
        "ent": b, "start_col": as_of_col - rng.integers(1, 21, n),
        "amount": np.round(scale * rng.uniform(2, 8, n), -3) + 10_000,
        "term_months": rng.choice(np.array([24, 36]), n),
    })
    has_old = rng.random(n) < 0.6
    m = int(has_old.sum())
    old = pd.DataFrame({
        "ent": b[has_old], "start_col": rng.integers(0, as_of_col - 11, m),
        "amount": np.round(scale[has_old] * rng.uniform(1, 4, m), -3) + 10_000,
        "term_months": np.full(m, 12),
    })
    loans = pd.concat([old, current]).sort_values(["ent", "start_col"], kind="stable")
    loans = loans.reset_index(drop=True)
    loans["loan_id"] = [f"L{i:08d}" for i in range(len(loans))]
    return loans


def _repayments(u: Universe, loans: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    term = loans["term_months"].to_numpy(np.int64)
    length = np.minimum(term, u.months - loans["start_col"].to_numpy(np.int64))
    at = np.repeat(np.arange(len(loans)), length)
    offset = np.arange(len(at)) - np.repeat(np.cumsum(length) - length, length)
    cols = loans["start_col"].to_numpy(np.int64)[at] + offset
    ent = loans["ent"].to_numpy(np.int64)[at]
    installment = loans["amount"].to_numpy(np.float64) * (1 + 0.05 * term / 12) / term
    due = np.round(installment[at], 2)
    p_overdue = sigmoid(-4.2 - 0.9 * u.health[ent] + 3.5 * u.distress[ent, cols]
                        + 1.2 * u.shell[ent])
    overdue = rng.random(len(at)) < p_overdue
    days = np.where(overdue, rng.geometric(1 / 35, len(at)), 0)
    return pd.DataFrame({
        "ent_id": u.ent_id[ent], "loan_id": loans["loan_id"].to_numpy(object)[at],
        "month": u.start + cols, "amount_due": due,
        "amount_paid": np.where(days >= 90, np.round(due * 0.5, 2), due),
        "days_overdue": days.astype(np.int64),
    })


def _taxes(u: Universe, b: npt.NDArray[np.int64], rng: np.random.Generator) -> pd.DataFrame:
    n, t = len(b), u.months
    revenue = u.size[b][:, None] * u.activity[b] * 8.0  # yuan of sales per kWh used
    monthly = revenue * 0.03 * np.exp(0.25 * u.health[b])[:, None]
    monthly = monthly * rng.lognormal(0.0, 0.5, (n, t))
    quarterly = rng.random(n) < 0.5
    calendar = (u.start + np.arange(t)) % 12
    three = monthly + np.roll(monthly, 1, axis=1) + np.roll(monthly, 2, axis=1)
    tax = np.where(quarterly[:, None], np.where(calendar[None, :] % 3 == 2, three, 0.0), monthly)
    return pd.DataFrame({
        "ent_id": np.repeat(u.ent_id[b], t), "month": np.tile(u.start + np.arange(t), n),
        "tax_amount": np.round(tax.ravel(), 2),
    })


def bank_tables(u: Universe, rng: np.random.Generator) -> BankRaw:
    """The bank's three raw tables for the enterprises that are its customers."""
    b = np.flatnonzero(u.in_bank)
    loans = _loans(u, b, rng)
    repayments = _repayments(u, loans, rng)
    out = pd.DataFrame({
        "ent_id": u.ent_id[loans["ent"].to_numpy(np.int64)], "loan_id": loans["loan_id"],
        "start_month": u.start + loans["start_col"].to_numpy(np.int64),
        "amount": loans["amount"].to_numpy(np.float64),
        "term_months": loans["term_months"].to_numpy(np.int64),
    })
    return BankRaw(out, repayments, _taxes(u, b, rng))


def _strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Months as YYYY-MM, dates as YYYY-MM-DD (empty where missing), the rest unchanged."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if column in ("month", "start_month"):
            lo = int(values.min()) if len(values) else 0
            names = np.array([format_month(m) for m in range(lo, int(values.max()) + 1)]
                             if len(values) else [], dtype=object)
            out[column] = names[values.to_numpy(np.int64) - lo]
        elif pd.api.types.is_datetime64_any_dtype(values):
            text = np.datetime_as_string(values.to_numpy("datetime64[D]"))
            out[column] = np.where(values.isna(), "", text)
    return out


def to_csv_frames(grid: GridRaw, bank: BankRaw) -> dict[str, dict[str, pd.DataFrame]]:
    """The raw tables formatted as the CSV files of :mod:`parties.labels.schema`."""
    return {
        "grid": {"enterprises": _strings(grid.enterprises),
                 "monthly_usage": _strings(grid.usage), "bills": _strings(grid.bills),
                 "events": _strings(grid.events)},
        "bank": {"loans": _strings(bank.loans), "repayments": _strings(bank.repayments),
                 "taxes": _strings(bank.taxes)},
    }
