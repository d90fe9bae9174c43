"""PNG plots of the evaluation report: ROC, KS, calibration, score distribution, training loss.

Each function draws one figure from arrays, writes it to ``path`` as PNG (dpi 120) and returns
the path; the maths comes from :mod:`parties.evaluation.metrics`, so the plots show exactly
the numbers in the report.

Assumptions and design:

- Headless. Figures are built with :class:`matplotlib.figure.Figure` directly instead of
  ``pyplot``: saving renders with the Agg canvas, so no display is needed, the process-wide
  backend is never switched (importing this module does not disturb a notebook), and no figure
  enters pyplot's registry, so nothing has to be closed and nothing leaks. It is also safe to
  plot from several threads at once.
- ``y`` is 1 = bad, ``p`` the predicted probability of bad, validated as in
  :mod:`parties.evaluation.metrics` (``ValueError`` on bad input).
- Curves with many points are thinned to at most ``MAX_CURVE_POINTS`` vertices for drawing
  (keeping both ends); the AUC / KS values in the labels use every row.
- The only I/O is writing the PNG; the parent directory must exist.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from parties.evaluation.metrics import (
    FloatArray,
    calibration_by_decile,
    check_labels,
    hosmer_lemeshow,
    ks_curve,
    log_loss,
    roc_auc,
    roc_curve,
)

DPI = 120
MAX_CURVE_POINTS = 4000
LINESTYLES = ("-", "--", "-.", ":")
"""Cycled per ROC series: federated and centralized curves often coincide and must both show."""
GOOD_COLOUR = "#1f77b4"
BAD_COLOUR = "#d62728"

PathLike = str | os.PathLike[str]


def _new_figure(width: float = 6.4, height: float = 4.8) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def _save(fig: Figure, path: PathLike) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ValueError(f"plots are written as PNG, expected a .png path, got {str(out)!r}")
    fig.savefig(out, dpi=DPI, format="png")
    return out


def _thin(n: int) -> npt.NDArray[np.intp]:
    # Evenly spaced vertices including both ends; a drawn curve needs no more than the pixels.
    if n <= MAX_CURVE_POINTS:
        return np.arange(n, dtype=np.intp)
    return np.unique(np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(np.intp))


def plot_roc(curves: Mapping[str, tuple[npt.ArrayLike, npt.ArrayLike]], path: PathLike) -> Path:
    """ROC curves of several models on one axes, each labelled with its AUC.

    Parameters
    ----------
    curves : Mapping[str, tuple[array_like, array_like]]
        Model name (e.g. ``"federated"``, ``"bank only"``, ``"centralized"``) to ``(y, p)``;
        drawn in the mapping's order.
    path : str or os.PathLike
        Output ``.png`` file.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        If ``curves`` is empty, an input is invalid or single-class, or ``path`` is not .png.
    """
    if not curves:
        raise ValueError("plot_roc needs at least one (y, p) pair")
    fig, ax = _new_figure(6.0, 6.0)
    for i, (name, (y, p)) in enumerate(curves.items()):
        roc = roc_curve(y, p)
        keep = _thin(roc.fpr.shape[0])
        ax.plot(
            roc.fpr[keep],
            roc.tpr[keep],
            linewidth=1.8,
            linestyle=LINESTYLES[i % len(LINESTYLES)],
            label=f"{name} (AUC = {roc_auc(y, p):.3f})",
        )
    ax.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="grey", linewidth=1.0, label="chance")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate (share of goods flagged)")
    ax.set_ylabel("True positive rate (share of bads flagged)")
    ax.set_title("ROC curve")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_ks(y: npt.ArrayLike, p: npt.ArrayLike, path: PathLike) -> Path:
    """KS chart: shares of bads and goods flagged at each threshold, and their largest gap.

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad.
    p : array_like
        Predicted probability of bad.
    path : str or os.PathLike
        Output ``.png`` file.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        For invalid or single-class inputs, or a path that is not .png.
    """
    ks = ks_curve(y, p)
    keep = _thin(ks.thresholds.shape[0])
    fig, ax = _new_figure()
    ax.plot(ks.thresholds[keep], ks.cum_bad[keep], color=BAD_COLOUR, label="bads (y = 1)")
    ax.plot(ks.thresholds[keep], ks.cum_good[keep], color=GOOD_COLOUR, label="goods (y = 0)")
    best = int(np.argmax(ks.thresholds <= ks.ks_threshold))  # thresholds decrease
    ax.vlines(
        ks.ks_threshold,
        min(ks.cum_bad[best], ks.cum_good[best]),
        max(ks.cum_bad[best], ks.cum_good[best]),
        colors="black",
        linestyles="--",
        label=f"KS = {ks.ks:.3f} at p = {ks.ks_threshold:.3f}",
    )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("Threshold on predicted probability of bad (flag when p \u2265 threshold)")
    ax.set_ylabel("Cumulative share flagged")
    ax.set_title("Kolmogorov\u2013Smirnov separation")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return _save(fig, path)


def plot_calibration(y: npt.ArrayLike, p: npt.ArrayLike, path: PathLike) -> Path:
    """Observed bad rate against mean predicted probability per decile of risk (HL groups).

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad.
    p : array_like
        Predicted probability of bad.
    path : str or os.PathLike
        Output ``.png`` file.

    Returns
    -------
    pathlib.Path
        The written file; the title carries the Hosmer-Lemeshow statistic when it is defined
        (at least 3 groups).

    Raises
    ------
    ValueError
        For invalid inputs or a path that is not .png.
    """
    table = calibration_by_decile(y, p)
    title = "Calibration by decile of predicted risk"
    if table.count.shape[0] >= 3:
        hl, hl_p = hosmer_lemeshow(y, p)
        title += f"\nHosmer\u2013Lemeshow = {hl:.2f}, {format_p_value(hl_p)}"
    top = 1.05 * float(max(table.mean_predicted.max(), table.observed_rate.max(), 0.01))
    top = min(top, 1.0)
    fig, ax = _new_figure(6.0, 6.0)
    ax.plot([0.0, top], [0.0, top], linestyle="--", color="grey", label="perfect calibration")
    ax.plot(
        table.mean_predicted,
        table.observed_rate,
        marker="o",
        color=BAD_COLOUR,
        label=f"model ({table.count.shape[0]} groups)",
    )
    ax.set_xlim(0.0, top)
    ax.set_ylim(0.0, top)
    ax.set_aspect("equal")
    ax.set_xlabel("Mean predicted probability of bad")
    ax.set_ylabel("Observed bad rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return _save(fig, path)


def _p_value(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def plot_calibration_curves(y: npt.ArrayLike, curves: Mapping[str, npt.ArrayLike],
                            path: PathLike) -> Path:
    """Observed bad rate against mean predicted probability per decile of risk, one line per
    set of probabilities of the same rows (e.g. before and after Platt scaling).

    Each legend entry carries that set's log-loss and Hosmer-Lemeshow statistic and p-value
    (when it has at least 3 groups).

    Raises
    ------
    ValueError
        For no curves, invalid inputs or a path that is not .png.
    """
    if not curves:
        raise ValueError("plot_calibration_curves needs at least one set of probabilities")
    fig, ax = _new_figure(6.0, 6.0)
    top = 0.01
    for i, (name, p) in enumerate(curves.items()):
        table = calibration_by_decile(y, p)
        label = f"{name}: log-loss {log_loss(y, p):.4f}"
        if table.count.shape[0] >= 3:
            hl, hl_p = hosmer_lemeshow(y, p)
            label += f", HL {hl:.1f} ({_p_value(hl_p)})"
        top = max(top, float(table.mean_predicted.max()), float(table.observed_rate.max()))
        ax.plot(table.mean_predicted, table.observed_rate, marker="o",
                linestyle=LINESTYLES[i % len(LINESTYLES)], label=label)
    top = min(1.05 * top, 1.0)
    ax.plot([0.0, top], [0.0, top], linestyle="--", color="grey", label="perfect calibration")
    ax.set_xlim(0.0, top)
    ax.set_ylim(0.0, top)
    ax.set_aspect("equal")
    ax.set_xlabel("Mean predicted probability of bad")
    ax.set_ylabel("Observed bad rate")
    ax.set_title("Calibration by decile of predicted risk")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_score_distribution(
    y: npt.ArrayLike,
    values: npt.ArrayLike,
    path: PathLike,
    *,
    xlabel: str = "Predicted probability of bad",
    bins: int = 40,
) -> Path:
    """Histograms of a score for goods and bads, each normalised to its own class size.

    Parameters
    ----------
    y : array_like
        Labels, 1 = bad.
    values : array_like
        Probabilities or scorecard points, same length as ``y``, finite.
    path : str or os.PathLike
        Output ``.png`` file.
    xlabel : str, default "Predicted probability of bad"
        Axis label; pass e.g. ``"Score (points, higher = lower risk)"`` for points.
    bins : int, default 40
        Number of equal-width bins shared by both classes.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        For invalid labels, a length mismatch, non-finite values, ``bins < 1`` or a path
        that is not .png.
    """
    labels = check_labels(y)
    v = np.asarray(values, dtype=np.float64)
    if v.shape != labels.shape:
        raise ValueError(f"length mismatch: {labels.shape[0]} labels but values of shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("values must be finite")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    lo, hi = float(v.min()), float(v.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    fig, ax = _new_figure()
    for cls, name, colour in (
        (0.0, "goods (y = 0)", GOOD_COLOUR),
        (1.0, "bads (y = 1)", BAD_COLOUR),
    ):
        part = v[labels == cls]
        if part.size == 0:
            continue
        ax.hist(
            part,
            bins=edges.tolist(),
            density=True,
            histtype="stepfilled",
            alpha=0.45,
            color=colour,
            edgecolor=colour,
            label=f"{name}, n = {part.size:,}",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Density within class")
    ax.set_title("Score distribution by class")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return _save(fig, path)


def format_p_value(p: float) -> str:
    """``p = 0.042``, or ``p = 3.1e-04`` / ``p < 1e-300`` where three decimals would read 0."""
    if not math.isfinite(p):
        return "p undefined"
    if p >= 0.001:
        return f"p = {p:.3f}"
    if p > 1e-300:
        return f"p = {p:.1e}"
    return "p < 1e-300"


def plot_loss(losses: Sequence[float] | Mapping[str, Sequence[float]], path: PathLike,
              ylabel: str = "loss") -> Path:
    """Loss per epoch, one line per series.

    Parameters
    ----------
    losses : Sequence[float] or Mapping[str, Sequence[float]]
        Training loss per epoch (epoch 1 first), or several named series, e.g.
        ``{"train": [...], "validation": [...]}``.
    path : str or os.PathLike
        Output ``.png`` file.
    ylabel : str, default "loss"
        What the values are, e.g. "Taylor loss (mean per row)" for the training objective.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        If there is no series, a series is empty or not finite, or the path is not .png.
    """
    series: Mapping[str, Sequence[float]] = (
        losses if isinstance(losses, Mapping) else {"training loss": losses}
    )
    if not series:
        raise ValueError("plot_loss needs at least one series")
    fig, ax = _new_figure()
    for name, values in series.items():
        arr: FloatArray = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0 or not np.isfinite(arr).all():
            raise ValueError(f"loss series {name!r} must be a non-empty list of finite numbers")
        ax.plot(np.arange(1, arr.size + 1), arr, marker="o", markersize=3, label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Epoch")
    ax.set_ylabel(ylabel)
    ax.set_title("Training loss per epoch")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return _save(fig, path)
