"""PNG plots of a screening: the IV of every indicator, and the WOE and bad rate by bin of one.

Headless like :mod:`parties.plots` (``matplotlib.figure.Figure`` directly, Agg on save,
nothing registered with pyplot). Input is the bank's ``screen.json`` entries; the grid's
bins are anonymous slots in value order (the bank never learns their edges), the missing
bin is drawn last and labelled "missing".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

DPI = 120
PARTY_COLOURS = {"grid": "#2ca02c", "bank": "#1f77b4"}


def plot_iv(entries: Sequence[Mapping[str, Any]], path: Path, kept: set[tuple[str, str]],
            threshold: float) -> Path:
    """Horizontal bars of IV, highest first; kept indicators solid, dropped ones faded."""
    rows = sorted(entries, key=lambda e: -(e["iv"] or 0.0))
    height = max(3.0, 0.22 * len(rows) + 1.2)
    fig = Figure(figsize=(7.0, height), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    labels = [f"{e['party']}: {e['name']}" for e in rows][::-1]
    values = [e["iv"] or 0.0 for e in rows][::-1]
    colours = [PARTY_COLOURS.get(e["party"], "grey") for e in rows][::-1]
    alphas = [1.0 if (e["party"], e["name"]) in kept else 0.35 for e in rows][::-1]
    bars = ax.barh(range(len(rows)), values, color=colours)
    for bar, alpha in zip(bars, alphas):
        bar.set_alpha(alpha)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1,
               label=f"min IV {threshold:g}")
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_xlabel("information value (faded: dropped by a rule)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("IV per indicator (green: grid, blue: bank)")
    fig.savefig(path, dpi=DPI, format="png")
    return path


def plot_woe(entry: Mapping[str, Any], path: Path) -> Path:
    """WOE per bin (bars) and bad rate (line) of one indicator."""
    bins = entry["bins"]
    labels = ["missing" if b["missing"] else str(i + 1) for i, b in enumerate(bins)]
    woe = [b["woe"] if b["woe"] is not None else 0.0 for b in bins]
    rate = [b["bad"] / b["count"] if b["count"] else 0.0 for b in bins]
    fig = Figure(figsize=(6.4, 4.0), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.bar(range(len(bins)), woe, color=["#d62728" if w > 0 else "#1f77b4" for w in woe])
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(bins)), labels)
    ax.set_xlabel("bin (value order; edges known to the indicator's owner only)")
    ax.set_ylabel("WOE = ln(bad share / good share)")
    twin = ax.twinx()
    twin.plot(range(len(bins)), rate, color="black", marker="o", linewidth=1)
    twin.set_ylabel("bad rate")
    ax.set_title(f"{entry['party']}: {entry['name']}  (IV {entry['iv']:.3f}, "
                 f"trend {entry['trend']})")
    fig.savefig(path, dpi=DPI, format="png")
    return path
