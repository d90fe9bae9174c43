"""Pre-loan shell-company scores (paper Table 5) and the fitted ENT_SHELL_SCORE.

What it does: maps the five Table 5 scores onto grid indicators (SCORE_OUTAGE = outages in 12
months, SCORE_DIFF = (max - min) / mean use, SCORE_VOLA = own use std / industry use std,
SCORE_LEVEL = own mean bill / industry mean bill, SCORE_INREA = mean monthly growth of use),
and combines them into ENT_SHELL_SCORE = 100 * (1 - P(shell)) with a logistic regression
fitted on labelled enterprises (the synthetic generator labels its shells). Lower is more
shell-like. The fitted model (clip bounds, medians, standardization, coefficients) is saved as
TOML; the packaged ``shell_model.toml`` was fitted on synthetic data (see its header).

What it assumes: each score is clipped to the 1st-99th percentiles seen in fitting (the
ratios are heavy-tailed), a missing score is replaced by its fitting median, then
standardized; an enterprise with all five scores missing gets a missing ENT_SHELL_SCORE.
"""

from __future__ import annotations

import pathlib
import tomllib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.options import DEFAULT_MODEL
from parties.labels.output import write_text
from parties.labels.panel import GridPanel
from parties.labels.registry import Indicator, Values, from_function
from parties.labels.schema import InputError

# Table 5 score -> the grid indicator that computes it exactly as the table defines.
SCORES: dict[str, str] = {
    "SCORE_OUTAGE": "outage_count_12m",
    "SCORE_DIFF": "score_diff",
    "SCORE_VOLA": "score_vola",
    "SCORE_LEVEL": "bill_due_vs_industry_12m",
    "SCORE_INREA": "use_growth_avg_12m",
}
_FIELDS = ("lower", "upper", "median", "mean", "std", "coef")


@dataclass(frozen=True, slots=True)
class ShellModel:
    """Per-score preprocessing and logistic-regression coefficients (one entry per score)."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    median: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    note: str = ""


def score_matrix(table: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The five Table 5 scores (columns in :data:`SCORES` order) from a grid feature table."""
    return np.asarray(table[list(SCORES.values())].to_numpy(np.float64), np.float64)


def _standardize(model: ShellModel, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    clipped = np.clip(x, model.lower, model.upper)
    filled = np.where(np.isnan(clipped), np.asarray(model.median), clipped)
    return np.asarray((filled - np.asarray(model.mean)) / np.asarray(model.std), np.float64)


def shell_score(model: ShellModel, x: npt.NDArray[np.float64]) -> Values:
    """ENT_SHELL_SCORE in [0, 100] per row of ``x``; lower is more shell-like."""
    logit = _standardize(model, x) @ np.asarray(model.coef) + model.intercept
    score = 100.0 / (1.0 + np.exp(logit))  # 100 * (1 - P(shell))
    return np.asarray(np.where(np.isnan(x).all(axis=1), np.nan, np.round(score, 6)), np.float64)


def _rounded(values: npt.ArrayLike) -> tuple[float, ...]:
    return tuple(round(float(v), 10) for v in np.asarray(values, np.float64))


def fit_shell_model(x: npt.NDArray[np.float64], is_shell: npt.NDArray[np.int64],
                    note: str = "") -> ShellModel:
    """Fit the preprocessing and an L2 logistic regression (C = 1) of shell on the scores.

    Parameters
    ----------
    x
        ``(n, 5)`` scores from :func:`score_matrix`.
    is_shell
        0/1 labels; both classes must be present.
    """
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped, unused-ignore]

    if len(np.unique(is_shell)) != 2:
        raise ValueError("fit_shell_model needs both shell and non-shell enterprises")
    lower, upper = np.nanpercentile(x, 1, axis=0), np.nanpercentile(x, 99, axis=0)
    clipped = np.clip(x, lower, upper)
    median = np.nanmedian(clipped, axis=0)
    filled = np.where(np.isnan(clipped), median, clipped)
    mean, std = filled.mean(axis=0), np.where(filled.std(axis=0) > 0, filled.std(axis=0), 1.0)
    lr = LogisticRegression(C=1.0, max_iter=1000)
    lr.fit((filled - mean) / std, is_shell)  # type: ignore[no-untyped-call, unused-ignore]
    return ShellModel(_rounded(lower), _rounded(upper), _rounded(median), _rounded(mean),
                      _rounded(std), _rounded(lr.coef_[0]), round(float(lr.intercept_[0]), 10),
                      note)


def save_shell_model(model: ShellModel, path: pathlib.Path) -> pathlib.Path:
    """Write ``model`` as TOML (atomically), one array per field in :data:`SCORES` order."""
    lines = [f"# {line}" for line in model.note.splitlines()]
    lines += [f"scores = {list(SCORES)!r}".replace("'", '"'), f"intercept = {model.intercept!r}"]
    lines += [f"{name} = {list(getattr(model, name))!r}" for name in _FIELDS]
    return write_text(path, "\n".join(lines) + "\n")


def load_shell_model(path: pathlib.Path = DEFAULT_MODEL) -> ShellModel:
    """Read a model written by :func:`save_shell_model`.

    Raises
    ------
    InputError
        Missing file, TOML syntax error, or fields that do not match :data:`SCORES`.
    """
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: {e}") from e
    if data.get("scores") != list(SCORES):
        raise InputError(f"{path}: column 'scores': expected {list(SCORES)}")
    fields = {}
    for name in _FIELDS:
        values = data.get(name)
        if not isinstance(values, list) or len(values) != len(SCORES):
            raise InputError(f"{path}: column '{name}': expected {len(SCORES)} numbers")
        fields[name] = tuple(float(v) for v in values)
    return ShellModel(fields["lower"], fields["upper"], fields["median"], fields["mean"],
                      fields["std"], fields["coef"], float(data.get("intercept", 0.0)))


def shell_indicator(model: ShellModel) -> Indicator[GridPanel]:
    """ENT_SHELL_SCORE as a grid indicator, evaluating ``model`` on the five scores."""
    from parties.labels.grid_indicators import GRID_BY_NAME

    def ent_shell_score(p: GridPanel) -> Values:
        """ENT_SHELL_SCORE: 100 * (1 - P(shell)) from the five Table 5 scores (lower: shell)."""
        x = np.column_stack([GRID_BY_NAME[name].compute(p) for name in SCORES.values()])
        return shell_score(model, x)

    return from_function("ent_shell_score", ent_shell_score, 12, "paper Table 5")
