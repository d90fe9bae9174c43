"""Synthetic raw records for both parties that behave like the real thing.

What it does: :func:`synthesize` draws a universe (:mod:`parties.labels.synth_universe`) and
the tables each side would hold (:mod:`parties.labels.synth_tables`); :func:`write_synth`
writes the grid's ``enterprises``, ``monthly_usage``, ``bills``, ``events`` to ``DIR/grid/``,
the bank's ``loans``, ``repayments``, ``taxes`` to ``DIR/bank/``, ``DIR/manifest.json`` (with
the ``as_of`` month to build features at) and the hidden truth ``DIR/truth/enterprises.csv``
(shell flag, health, regime), which neither party has and only research code and tests read.

What it assumes: the same seed and arguments give byte-identical files; the as-of month
leaves a 6-month label window at the end of the simulated months.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.output import write_json
from parties.labels.schema import (
    BANK_TABLES,
    GRID_TABLES,
    BankRaw,
    GridRaw,
    InputError,
    first_line,
    format_month,
)
from parties.labels.synth_tables import bank_tables, grid_tables
from parties.labels.synth_universe import (
    HORIZON_MONTHS,
    START_MONTH,
    Regime,
    Universe,
    draw_universe,
)

OVERDUE_DAYS = 30
MIN_MONTHS = 24 + HORIZON_MONTHS  # 24 months of history before the label window

# Which indicators the generator drives from the hidden risk state, by mechanism (what a
# screening should find): a decline (distress) cuts use and brings late bills and overdue
# repayments; bad health brings late bills, overdue repayments and lower taxes; shell
# companies use little, flat, with many outages. NOT_DRIVEN lists indicators no hidden
# risk factor touches (their IV is noise).
RISK_SIGNALS: dict[str, tuple[str, ...]] = {
    "usage decline": ("use_yoy_3m_pct", "use_yoy_12m_pct", "use_mom_3m_pct",
                      "use_growth_avg_12m", "use_last_vs_mean_12m", "use_yoy_index_12m",
                      "use_utilization_12m"),
    "late bills": ("late_count_12m", "late_days_12m", "late_amount_12m", "late_fee_12m",
                   "current_arrears", "last_default_days"),
    "shell": ("outage_count_12m", "score_diff", "score_vola", "ent_shell_score"),
    "repayment history": ("overdue_count_12m", "overdue_max_days_12m", "overdue_30_count_24m",
                          "repaid_ratio_12m"),
    "taxes": ("tax_yoy_12m_pct", "tax_h2h_6m_pct", "tax_last_3m_vs_mean_12m", "tax_mean_12m"),
}
NOT_DRIVEN = ("capacity_kva", "loan_count")


@dataclass(frozen=True, slots=True)
class SynthData:
    """Everything :func:`synthesize` produces, in memory."""

    universe: Universe
    grid: GridRaw
    bank: BankRaw
    manifest: dict[str, object]


def synthesize(enterprises: int, months: int = 36, seed: int = 7,
               shell_share: float = 0.05) -> SynthData:
    """Draw a universe and both parties' raw tables, deterministically per ``seed``.

    Parameters
    ----------
    enterprises
        Size of the universe (both sides together).
    months
        Simulated months from 2021-01; at least 30 (24 of history and a 6-month horizon).
    seed
        Seed of numpy's generator; each component gets its own child stream.
    shell_share
        Share of shell companies (flat, near-zero use, many outages).

    Raises
    ------
    InputError
        If ``enterprises`` < 10, ``months`` < 30 or ``shell_share`` is outside [0, 1).
    """
    if enterprises < 10:
        raise InputError(f"--enterprises: expected an integer >= 10, got {enterprises}")
    if months < MIN_MONTHS:
        raise InputError(f"--months: expected an integer >= {MIN_MONTHS}, got {months}")
    if not 0.0 <= shell_share < 1.0:
        raise InputError(f"--shell-share: expected a share in [0, 1), got {shell_share}")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
    universe = draw_universe(enterprises, months, streams[0], shell_share)
    manifest: dict[str, object] = {
        "as_of": format_month(universe.as_of), "start": START_MONTH, "months": months,
        "enterprises": enterprises, "seed": seed, "shell_share": shell_share,
        "horizon_months": HORIZON_MONTHS, "overdue_days": OVERDUE_DAYS,
        "generator": "parties.labels.synth",
    }
    return SynthData(universe, grid_tables(universe, streams[1]),
                     bank_tables(universe, streams[2]), manifest)


def truth_table(universe: Universe) -> pd.DataFrame:
    """The hidden state per enterprise: for research code and tests, never for a party."""
    return pd.DataFrame({
        "ent_id": universe.ent_id, "is_shell": universe.shell.astype(np.int64),
        "health": np.round(universe.health, 6),
        "regime": [Regime(r).name.lower() for r in universe.regime],
        "in_grid": universe.in_grid.astype(np.int64), "in_bank": universe.in_bank.astype(np.int64),
    })


SPECS = {"grid": GRID_TABLES, "bank": BANK_TABLES}


def raw_frames(data: SynthData) -> dict[str, dict[str, pd.DataFrame]]:
    """Both parties' typed raw tables by side and table name (as the files name them)."""
    g, b = data.grid, data.bank
    return {"grid": {"enterprises": g.enterprises, "monthly_usage": g.usage, "bills": g.bills,
                     "events": g.events},
            "bank": {"loans": b.loans, "repayments": b.repayments, "taxes": b.taxes}}


def write_synth(data: SynthData, out: pathlib.Path, fmt: str = "csv") -> pathlib.Path:
    """Write ``grid/``, ``bank/`` tables, ``truth/`` CSV and ``manifest.json`` under ``out``.

    Parameters
    ----------
    fmt
        ``csv`` (``<table>.csv``) or ``parquet`` (``<table>.parquet``, typed columns).

    Returns
    -------
    pathlib.Path
        The manifest's path.
    """
    from parties.labels.writers import write_csv_fast, write_raw

    for side, frames in raw_frames(data).items():
        for name, frame in frames.items():
            write_raw(out / side / f"{name}.{fmt}", frame, SPECS[side][name], fmt)
    write_csv_fast(out / "truth" / "enterprises.csv", truth_table(data.universe))
    return write_json(out / "manifest.json", data.manifest)


def load_synth_postgres(data: SynthData, dsn: str, schemas: dict[str, str]) -> None:
    """Create the grid's and the bank's tables in their schemas of a PostgreSQL database and
    load them, in one transaction (nothing is left half-written on failure).

    Parameters
    ----------
    dsn
        ``postgresql://`` connection string.
    schemas
        ``{"grid": name, "bank": name}``; created if missing, tables must not exist yet.

    Raises
    ------
    InputError
        The server cannot be reached or a table exists already.
    """
    import psycopg
    from psycopg import sql

    from parties.labels.writers import copy_to_postgres

    try:
        conn = psycopg.connect(dsn, connect_timeout=10)
    except psycopg.Error as e:
        first = first_line(e)
        raise InputError(f"--to: cannot connect to postgresql ({first})") from e
    with conn, conn.transaction():
        for side, frames in raw_frames(data).items():
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(schemas[side])))
            for name, frame in frames.items():
                copy_to_postgres(conn, schemas[side], name, frame, SPECS[side][name])
