"""``gridcredit stages``: the paper's pre-, in- and post-loan models, trained federated.

What it does: reads both parties' raw records (a ``gridcredit synth`` folder), builds each
stage's indicators at the month the stage implies for each loan
(``parties.labels.stage_tables``), runs one federated training per stage as three local
processes (``run_simulation``, each party on its own principal components by default, as the
paper fits its stage models on principal components), and writes ``OUT/stages.json`` and a
Table-2-style ``OUT/summary.md`` comparing the three, next to the three run folders.

What it assumes: research use, like ``simulate``: one machine holds both parties' raw data.
Fit statistics (chi-square, Hosmer-Lemeshow, -2LL, pseudo R^2) are reported on the
validation rows (out of sample) and, as the paper reports them, on the training rows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from federation.protocol.errors import ConfigError
from federation.protocol.files import SHARED, write_atomic
from federation.protocol.messages import TrainSettings
from federation.run_folder import RunFolder, in_run_folder
from federation.simulate import SimulationSpec, run_simulation
from parties.evaluation.goodness_of_fit import chi2_survival
from parties.model import PartyModel, atomic_write_text

if TYPE_CHECKING:
    from parties.labels.schema import BankRaw, GridRaw
    from parties.labels.stage_tables import StageTables
    from parties.labels.stages import LoanStage

STAGE_NAMES = {"pre": "Pre-loan", "in": "In-loan", "post": "Post-loan"}
# A URL scheme, also as argparse's Path leaves it ("postgresql:/user:pw@host/db").
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")
FIT_KEYS = ("model_chi2", "hosmer_lemeshow_p", "minus_2_log_likelihood", "cox_snell_r2",
            "nagelkerke_r2", "accuracy", "auc")


@dataclass(frozen=True)
class StagesSpec:
    raw: Path
    out: Path
    as_of: str | None = None
    horizon: int = 6
    overdue_days: int = 30
    pca: str | None = "auto"
    settings: TrainSettings = field(default_factory=TrainSettings)
    quiet: bool = False
    force: bool = False


def _coefficients(run: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for party in ("grid", "bank"):
        model = json.loads((run / party / "model.json").read_text(encoding="utf-8"))
        m = PartyModel(**model)
        out[party] = dict(zip(m.input_names, m.weights))
        if m.intercept is not None:
            out["constant"] = m.intercept
    return out


def _fit(metrics: dict[str, Any], df: int) -> dict[str, Any]:
    chi2 = float(metrics["model_chi2"])
    return {"chi2": chi2, "chi2_df": df, "chi2_p": chi2_survival(chi2, df),
            **{k: metrics[k] for k in FIT_KEYS if k != "model_chi2"}}


def stage_result(run: Path, report: dict[str, Any], months: dict[str, int]) -> dict[str, Any]:
    """One stage's entry of ``stages.json`` from its run folder and report."""
    coefficients = _coefficients(run)
    df = len(coefficients["grid"]) + len(coefficients["bank"])
    month_values = sorted(months.values())
    return {
        "coefficients": coefficients,
        **_fit(report["validation"], df),
        "bank_only_auc": report["bank_only"]["validation"]["auc"],
        "centralized_auc": report["centralized"]["validation"]["auc"],
        "train": _fit(report["train"], df),
        "rows": report["intersection_size"],
        "n_validation": int(report["validation"]["n"]),
        "as_of_months": {"min": month_values[0], "max": month_values[-1]},
        "run": str(run),
    }


def raw_folder(raw: Path, command: str) -> Path:
    """``--raw`` as a local folder of raw tables.

    Raises
    ------
    ConfigError
        ``raw`` is a database DSN or a cluster URL (named without the URL: a DSN may hold a
        password), or not a folder.
    """
    if _URL.match(str(raw)):
        raise ConfigError(f"--raw: {command} reads a folder of both parties' raw tables (a "
                          "'gridcredit synth' folder), and the address given is a database or "
                          "URL (left out here: it may hold a password); 'gridcredit features "
                          "build --raw postgresql://...' reads a database")
    if not raw.is_dir():
        raise ConfigError(f"--raw {raw}: no such folder")
    return raw


def load_raw(raw: Path) -> tuple[GridRaw, BankRaw]:
    """Both parties' raw tables from ``--raw`` (a ``synth`` root or a folder with both),
    once :func:`raw_folder` has accepted it."""
    from parties.labels.schema import load_bank, load_grid, resolve_raw_dir

    return (load_grid(resolve_raw_dir(raw, "grid", "enterprises.csv")),
            load_bank(resolve_raw_dir(raw, "bank", "loans.csv")))


def check_month(month: int, grid_raw: GridRaw, bank_raw: BankRaw, raw: Path,
                flag: str = "--as-of") -> None:
    """Refuse a month before the first or after the last month of the monthly records."""
    from parties.labels.schema import format_month

    months = [t["month"] for t in (grid_raw.usage, grid_raw.bills,
                                   bank_raw.repayments, bank_raw.taxes) if len(t)]
    if not months:
        raise ConfigError(f"--raw {raw}: no monthly records (usage, bills, repayments, taxes)")
    first, last = min(int(m.min()) for m in months), max(int(m.max()) for m in months)
    if not first <= month <= last:
        where = "before the first" if month < first else "after the last"
        raise ConfigError(f"{flag} {format_month(month)}: {where} month of the data in {raw} "
                          f"({format_month(first)} to {format_month(last)})")


def run_stages(spec: StagesSpec) -> dict[str, Any]:
    """Build, train and compare the three stages; returns ``stages.json`` as a dict."""
    from parties.labels.schema import format_month
    from parties.labels.stage_tables import build_stage_tables
    from parties.pca import parse_components

    if spec.pca is not None:
        parse_components(spec.pca)
    raw_folder(spec.raw, "stages")
    as_of = _as_of(spec)
    grid_raw, bank_raw = load_raw(spec.raw)
    check_month(as_of, grid_raw, bank_raw, spec.raw)
    tables = build_stage_tables(grid_raw, bank_raw, as_of, spec.horizon, spec.overdue_days)
    # Like simulate's: refuse a folder of the user's own files, list what this run wrote.
    folder = RunFolder.open(spec.out, "stages", force=spec.force)
    return in_run_folder(folder, lambda: _train_stages(spec, tables, format_month(as_of)))


def _train_stages(spec: StagesSpec, tables: dict[LoanStage, StageTables],
                  as_of: str) -> dict[str, Any]:
    from parties.labels.schema import format_month

    result: dict[str, Any] = {"as_of": as_of, "pca": spec.pca,
                              "settings": spec.settings.as_dict()}
    for stage, t in tables.items():
        data = spec.out / "data" / stage.value
        data.mkdir(parents=True, exist_ok=True)
        grid_csv, bank_csv = data / "grid_features.csv", data / "bank_features.csv"
        write_atomic(grid_csv, t.grid.to_csv(index=False, lineterminator="\n"))  # private
        write_atomic(bank_csv, t.bank.to_csv(index=False, lineterminator="\n"))
        run = spec.out / stage.value
        report = run_simulation(SimulationSpec(
            run, grid_csv, bank_csv, settings=replace(spec.settings), quiet=spec.quiet,
            pca=spec.pca))
        entry = stage_result(run, report, t.months)
        entry["as_of_months"] = {k: format_month(v) for k, v in entry["as_of_months"].items()}
        entry["indicators"] = {"grid": [c for c in t.grid.columns if c != "id"],
                               "bank": [c for c in t.bank.columns if c not in ("id", "y")]}
        result[stage.value] = entry
    atomic_write_text(spec.out / "stages.json", json.dumps(result, indent=2) + "\n", SHARED)
    atomic_write_text(spec.out / "summary.md", summary_markdown(result), SHARED)
    return result


def _as_of(spec: StagesSpec) -> int:
    from parties.labels.schema import InputError, parse_month

    text = spec.as_of
    if text is None:
        for manifest in (spec.raw / "manifest.json", spec.raw.parent / "manifest.json"):
            if manifest.is_file():
                text = str(json.loads(manifest.read_text(encoding="utf-8")).get("as_of"))
                break
        else:
            raise InputError(f"--as-of: not given and no manifest.json in {spec.raw}")
    try:
        return parse_month(text)
    except InputError as e:
        raise InputError(f"--as-of: {e}") from None


def _cell(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def summary_markdown(r: dict[str, Any]) -> str:
    """Table 2 of the paper, for the three federated stage models."""
    stages = [s for s in ("pre", "in", "post") if s in r]
    head = "| | " + " | ".join(STAGE_NAMES[s] for s in stages) + " |"
    rule = "|---|" + "---:|" * len(stages)
    lines = [f"# Stage models (as of {r['as_of']}, PCA {r['pca'] or 'off'})", "",
             "Each column is one federated logistic regression (grid + bank, three processes) "
             "on the stage's indicators, built at the month the stage implies for each loan: "
             "pre-loan at the loan's start, in-loan halfway to the as-of month, post-loan at "
             "the as-of month, just before the label window. Same enterprises and label in "
             "all three. Statistics on the validation rows unless marked (train).", "",
             head, rule]
    rows: list[tuple[str, list[Any]]] = []
    width = max(len(r[s]["coefficients"]["grid"]) for s in stages)
    for i in range(width):
        rows.append((f"grid F_{i + 1}", [_nth(r[s]["coefficients"]["grid"], i) for s in stages]))
    width = max(len(r[s]["coefficients"]["bank"]) for s in stages)
    for i in range(width):
        rows.append((f"bank F_{i + 1}", [_nth(r[s]["coefficients"]["bank"], i) for s in stages]))
    rows.append(("Constant", [r[s]["coefficients"].get("constant") for s in stages]))
    for label, key, where in (
            ("Chi-square (train)", "chi2", "train"), ("Hosmer & Lemeshow sig (train)",
                                                      "hosmer_lemeshow_p", "train"),
            ("-2 log likelihood (train)", "minus_2_log_likelihood", "train"),
            ("Cox-Snell R² (train)", "cox_snell_r2", "train"),
            ("Nagelkerke R² (train)", "nagelkerke_r2", "train"),
            ("Chi-square", "chi2", ""), ("Hosmer & Lemeshow sig", "hosmer_lemeshow_p", ""),
            ("-2 log likelihood", "minus_2_log_likelihood", ""),
            ("Cox-Snell R²", "cox_snell_r2", ""), ("Nagelkerke R²", "nagelkerke_r2", ""),
            ("Accuracy (p ≥ 0.5)", "accuracy", ""), ("AUC", "auc", ""),
            ("AUC, bank only", "bank_only_auc", ""), ("AUC, centralized", "centralized_auc", "")):
        rows.append((label, [(r[s][where] if where else r[s])[key] for s in stages]))
    for label, values in rows:
        lines.append(f"| {label} | " + " | ".join(_cell(v) for v in values) + " |")
    lines += ["", "Rows: " + ", ".join(f"{STAGE_NAMES[s]} {r[s]['rows']} aligned "
                                       f"({r[s]['n_validation']} validation)" for s in stages),
              "", "Indicators per stage: " + "; ".join(
                  f"{STAGE_NAMES[s]}: {len(r[s]['indicators']['grid'])} grid + "
                  f"{len(r[s]['indicators']['bank'])} bank columns" for s in stages), ""]
    return "\n".join(lines)


def _nth(coefficients: dict[str, float], i: int) -> float | None:
    values = list(coefficients.values())
    return values[i] if i < len(values) else None
