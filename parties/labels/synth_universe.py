"""The hidden state of a synthetic universe of enterprises (see :mod:`parties.labels.synth`).

What it does: draws each enterprise's industry, province, account age, size, a hidden
business-health factor, a growth / stable / decline regime and, from these, a monthly activity
level and a "distress" path (how deep into a decline it is) that drive everything both
parties record.

What it assumes: numpy's generator is for simulation only (never for masks). A decline
starts between 14 months before and 1 month after the as-of month, so the grid sees many of
them in monthly use before they turn into overdue repayments. Shell companies keep a flat,
near-zero use and a lower health. About 78 % of enterprises are customers of both parties,
12 % bank-only and 10 % grid-only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from parties.labels.schema import parse_month

START_MONTH = "2021-01"
HORIZON_MONTHS = 6


class Regime(enum.IntEnum):
    """Business trajectory of an enterprise over the simulated months."""

    STABLE = 0
    GROWTH = 1
    DECLINE = 2


@dataclass(frozen=True, slots=True)
class Industry:
    """A simulated industry: national standard code, size, seasonality and tariff."""

    code: str
    word: str
    kwh: float  # median monthly use of a normal enterprise
    season: float  # relative amplitude of the yearly cycle
    tariff: float  # yuan per kWh


INDUSTRIES = (
    Industry("C13", "食品", 60_000, 0.15, 0.68), Industry("C17", "纺织", 90_000, 0.10, 0.66),
    Industry("C26", "化工", 250_000, 0.05, 0.62), Industry("C33", "金属制品", 120_000, 0.08, 0.64),
    Industry("C39", "电子", 150_000, 0.06, 0.65), Industry("E47", "建筑", 30_000, 0.30, 0.72),
    Industry("F51", "批发", 12_000, 0.12, 0.80), Industry("I65", "软件", 8_000, 0.05, 0.85),
)
PROVINCES = (("110000", "北京"), ("310000", "上海"), ("330000", "杭州"),
             ("440000", "广州"), ("510000", "成都"), ("130000", "石家庄"))
Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Universe:
    """The hidden state of every simulated enterprise (one entry per enterprise)."""

    start: int  # month ordinal of column 0
    as_of: int
    months: int
    ent_id: npt.NDArray[np.object_]
    industry: npt.NDArray[np.int64]
    province: npt.NDArray[np.int64]
    open_month: npt.NDArray[np.int64]  # may be before ``start`` (old accounts)
    size: Matrix  # typical monthly kWh
    health: Matrix
    regime: npt.NDArray[np.int64]
    shell: npt.NDArray[np.bool_]
    activity: Matrix  # (n, months) multiplicative level of business
    distress: Matrix  # (n, months) 0..1, how deep into a decline the enterprise is
    in_grid: npt.NDArray[np.bool_]
    in_bank: npt.NDArray[np.bool_]


def sigmoid(x: Matrix) -> Matrix:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def _ids(rng: np.random.Generator, province: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
    """18-character unified-social-credit-like codes, unique by construction."""
    serial = rng.choice(10**8, len(province), replace=False)
    codes = [f"91{PROVINCES[p][0]}{s:09d}{s % 10}" for p, s in zip(province, serial, strict=True)]
    return np.array(codes, dtype=object)


def _trajectories(rng: np.random.Generator, regime: npt.NDArray[np.int64], as_of_col: int,
                  months: int) -> tuple[Matrix, Matrix]:
    """Log-trend and distress (n, months) for each regime."""
    n = len(regime)
    t = np.arange(months, dtype=np.float64)[None, :]
    growth = rng.uniform(0.005, 0.03, n)[:, None]
    onset = rng.integers(as_of_col - 14, as_of_col + 2, n)[:, None]
    fall = rng.uniform(0.03, 0.09, n)[:, None]
    since = np.clip(t - onset, 0.0, None)
    log_trend = np.zeros((n, months))
    log_trend = np.where((regime == Regime.GROWTH)[:, None], growth * t, log_trend)
    log_trend = np.where((regime == Regime.DECLINE)[:, None], -fall * since, log_trend)
    distress = np.where((regime == Regime.DECLINE)[:, None], np.clip(since / 8.0, 0, 1), 0.0)
    return log_trend, distress


def draw_universe(n: int, months: int, rng: np.random.Generator,
                  shell_share: float = 0.05) -> Universe:
    """Draw the hidden state of ``n`` enterprises over ``months`` months."""
    start = parse_month(START_MONTH)
    as_of_col = months - 1 - HORIZON_MONTHS
    industry = rng.integers(0, len(INDUSTRIES), n)
    province = rng.integers(0, len(PROVINCES), n)
    shell = rng.random(n) < shell_share
    health = rng.normal(0.0, 1.0, n) - 1.0 * shell
    p_decline = sigmoid(-1.4 - 0.8 * health)
    p_growth = sigmoid(-1.0 + 0.6 * health)
    u = rng.random(n)
    regime = np.where(u < p_decline, Regime.DECLINE,
                      np.where(u < p_decline + p_growth, Regime.GROWTH, Regime.STABLE))
    regime = np.where(shell, Regime.STABLE, regime).astype(np.int64)
    log_trend, distress = _trajectories(rng, regime, as_of_col, months)
    base = np.array([INDUSTRIES[i].kwh for i in industry]) * rng.lognormal(0.0, 0.7, n)
    size = np.where(shell, base * rng.uniform(0.005, 0.03, n), base)
    amplitude = np.array([INDUSTRIES[i].season for i in industry])[:, None]
    calendar = (start + np.arange(months)) % 12
    season = 1.0 + amplitude * np.sin(2 * np.pi * (calendar[None, :] - 3) / 12.0)
    noise_sd = np.where(shell, 0.02, 0.07)[:, None]
    activity = np.exp(log_trend + rng.normal(0.0, 1.0, (n, months)) * noise_sd) * season
    activity = np.where(shell[:, None], np.exp(rng.normal(0, 0.02, (n, months))), activity)
    old = rng.random(n) < 0.75
    open_month = np.where(old, start - rng.integers(1, 180, n),
                          start + rng.integers(0, as_of_col + 4, n)).astype(np.int64)
    side = rng.random(n)
    return Universe(
        start=start, as_of=start + as_of_col, months=months, ent_id=_ids(rng, province),
        industry=industry, province=province, open_month=open_month, size=size,
        health=health, regime=regime, shell=shell, activity=activity, distress=distress,
        in_grid=side >= 0.10, in_bank=side < 0.90,
    )


