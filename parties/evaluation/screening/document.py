"""The bank's screening document: per-indicator statistics from per-bin counts, the
correlation matrix over both parties, and the selection they imply.

What it does: :func:`indicator_entry` turns one indicator's per-slot counts (training rows:
rows and bads; validation rows: rows) into its ``screen.json`` entry; :func:`screen` puts
the entries of both parties together with the full correlation matrix, applies the
selection rules and returns ``(screen.json, selection.json)`` as dicts.

What it assumes: slots are in value order with the missing slot last (``parties.binning``
with ``fixed_width``); empty slots carry no information and are left out of the bins
list. Every figure here is the bank's: the grid never receives a per-bin number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from parties.evaluation.screening.binstats import bin_stats, merge_counts, monotone_merge
from parties.evaluation.screening.selection import Candidate, Rules, select, selection_document
from parties.evaluation.screening.stability import psi

Counts = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SlotCounts:
    """One indicator's counts per slot (missing slot last)."""

    party: str
    name: str
    count: Counts  # training rows per slot
    bad: Counts  # training bads per slot
    validation: Counts  # validation rows per slot
    psi_months: float | None = None  # PSI against another as-of month, if computed


def _round(x: float, digits: int = 6) -> float | None:
    return None if not np.isfinite(x) else round(float(x), digits)


def indicator_entry(c: SlotCounts, merge: bool = False) -> dict[str, Any]:
    """``screen.json`` entry of one indicator (statistics over the training rows)."""
    count, bad, validation = c.count, c.bad, c.validation
    groups = [[i] for i in range(len(count))]
    if merge:
        groups = monotone_merge(count, bad, missing_bin=True)
        count, bad = merge_counts(c.count, c.bad, groups)
        validation = merge_counts(c.validation, np.zeros_like(c.validation), groups)[0]
    stats = bin_stats(count, bad, missing_bin=True)
    psi_split = psi(count, validation) if validation.sum() > 0 else 0.0
    worst = max(psi_split, c.psi_months or 0.0)
    last = len(count) - 1
    bins = [{"slot": i if not merge else groups[i], "missing": i == last,
             "count": int(count[i]), "bad": int(bad[i]),
             "validation_count": int(validation[i]), "woe": _round(stats.woe[i])}
            for i in range(len(count)) if count[i] > 0 or validation[i] > 0]
    return {
        "party": c.party, "name": c.name, "iv": _round(stats.iv), "ks": _round(stats.ks),
        "auc": _round(stats.auc), "missing_rate": _round(stats.missing_rate),
        "psi": _round(worst), "psi_validation": _round(psi_split),
        "psi_months": None if c.psi_months is None else _round(c.psi_months),
        "monotone": stats.monotone, "trend": stats.trend, "merged": merge, "bins": bins,
    }


def screen(counts: Sequence[SlotCounts], corr: npt.ArrayLike, rules: Rules,
           merge: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(screen.json, selection.json)``; ``corr`` is in the order of ``counts``."""
    entries = [indicator_entry(c, merge) for c in counts]
    candidates = [Candidate(e["party"], e["name"], e["iv"] or 0.0, e["missing_rate"] or 0.0,
                            e["psi"] or 0.0, bool(e["monotone"])) for e in entries]
    kept, dropped = select(candidates, corr, rules)
    r = np.asarray(corr, dtype=np.float64)
    names = [f"{c.party}:{c.name}" for c in counts]
    document = {
        "indicators": entries,
        "correlations": {"names": names,
                         "matrix": [[_round(v, 4) for v in row] for row in r.tolist()]},
        "rules": rules.as_dict(),
        "conventions": {"woe": "ln(bad share / good share), +0.5 on each bin's bad and good "
                        "counts", "ks_auc": "bins ranked by bad rate (WOE transform)",
                        "psi": "max of train vs validation and, if given, between as-of "
                        "months; +0.5 per bin", "correlation": "Pearson of mean-imputed "
                        "values on the training rows"},
    }
    return document, selection_document(kept, dropped, rules)
