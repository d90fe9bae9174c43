"""The bundled synthetic demo: trainer-ready feature files and a plain-LR lift check.

What it does: :func:`build_demo_features` synthesizes both parties' raw records, builds their
feature tables at the manifest's as-of month, imputes them for training and writes
``grid_features.csv`` (``id`` + grid features) and ``bank_features.csv`` (``id``, ``y`` + bank
features). ``gridcredit simulate`` uses them when the user gives no data.
:func:`compare_auc` fits plain (non-federated) logistic regressions on the aligned rows, bank
features alone and bank + grid, and returns both validation AUCs.

What it assumes: the demo keeps a curated subset of grid indicators (no exact or near
duplicates, so a few thousand rows are enough to fit them); missing values are median-filled
with ``<name>_missing`` flags here only, the raw build keeps them missing.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.features import build_bank_features, build_grid_features
from parties.labels.output import write_csv
from parties.labels.registry import impute_for_training
from parties.labels.schema import parse_month
from parties.labels.synth import synthesize

DEMO_GRID_FEATURES = (
    "use_yoy_3m_pct", "use_yoy_12m_pct", "use_mom_3m_pct", "use_yoy_index_12m",
    "use_growth_avg_12m", "use_last_vs_mean_12m", "use_utilization_12m", "use_rank_pct_12m",
    "late_count_12m", "late_days_12m", "late_amount_12m", "late_fee_12m", "current_arrears",
    "last_default_days", "bill_due_vs_industry_12m", "bill_fluct_12m",
    "cost_per_kwh_vs_industry_12m", "outage_count_12m", "theft_count_12m", "breach_count_12m",
    "account_age_months", "score_vola", "ent_shell_score",
)


def demo_tables(enterprises: int = 3000, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trainer-ready grid and bank tables of the synthetic demo (in memory)."""
    data = synthesize(enterprises, 36, seed)
    as_of = parse_month(str(data.manifest["as_of"]))
    grid = build_grid_features(data.grid, as_of).table[["id", *DEMO_GRID_FEATURES]]
    bank = build_bank_features(data.bank, as_of).table
    return impute_for_training(grid), impute_for_training(bank)


def build_demo_features(out_dir: pathlib.Path, enterprises: int = 3000,
                        seed: int = 7) -> tuple[pathlib.Path, pathlib.Path]:
    """Write ``out_dir/grid_features.csv`` and ``out_dir/bank_features.csv``.

    Parameters
    ----------
    out_dir
        Created if missing; the two files are written atomically.
    enterprises
        Size of the synthetic universe (about 86 % are bank borrowers, 86 % grid customers).
    seed
        Generator seed; the same seed gives the same files.

    Returns
    -------
    tuple[pathlib.Path, pathlib.Path]
        ``(grid_csv, bank_csv)``.
    """
    grid, bank = demo_tables(enterprises, seed)
    return (write_csv(out_dir / "grid_features.csv", grid),
            write_csv(out_dir / "bank_features.csv", bank))


def compare_auc(grid: pd.DataFrame, bank: pd.DataFrame, seed: int = 0,
                validation: float = 0.3) -> dict[str, float]:
    """Validation AUC of plain L2 logistic regressions: bank-only vs bank + grid.

    Both are fitted on the same stratified split of the IDs the two tables share (what PSI
    would align), on z-scored features.

    Returns
    -------
    dict[str, float]
        ``bank_only``, ``bank_grid``, ``lift`` and the row counts ``aligned``, ``validation``.
    """
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped, unused-ignore]
    from sklearn.metrics import roc_auc_score  # type: ignore[import-untyped, unused-ignore]
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped, unused-ignore]

    aligned = bank.merge(grid, on="id")
    bank_cols = [c for c in bank.columns if c not in ("id", "y")]
    grid_cols = [c for c in grid.columns if c != "id"]
    train, valid = train_test_split(aligned, test_size=validation, random_state=seed,
                                    stratify=aligned["y"])
    auc = {}
    for name, cols in (("bank_only", bank_cols), ("bank_grid", bank_cols + grid_cols)):
        mu, sd = train[cols].mean(), train[cols].std().replace(0.0, 1.0)
        lr = LogisticRegression(C=1.0, max_iter=2000)
        lr.fit(((train[cols] - mu) / sd).to_numpy(), train["y"].to_numpy())
        p = lr.predict_proba(((valid[cols] - mu) / sd).to_numpy())[:, 1]
        auc[name] = float(roc_auc_score(valid["y"].to_numpy(), p))
    return {**auc, "lift": auc["bank_grid"] - auc["bank_only"],
            "aligned": float(len(aligned)), "validation": float(len(valid))}


def mean_lift(enterprises: int, seed: int = 7, splits: int = 5) -> dict[str, float]:
    """:func:`compare_auc` averaged over ``splits`` validation splits of one dataset."""
    grid, bank = demo_tables(enterprises, seed)
    runs = [compare_auc(grid, bank, s) for s in range(splits)]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
