"""Selection rules (TOML) and the selection they make from screening statistics.

What it does: :func:`load_rules` reads a rules file (every key optional, defaults below);
:func:`select` applies the rules in a fixed order and returns, per party, the indicators
kept and, for each one dropped, the rule that dropped it:

1. ``missing``: missing rate above ``max_missing``;
2. ``iv``: information value below ``min_iv``;
3. ``psi``: stability index above ``max_psi`` (the largest of train vs validation and,
   when given, between the two as-of months);
4. ``monotone``: with ``require_monotone``, a bad rate that is not monotone over the bins;
5. ``correlation``: |rho| above ``max_correlation`` with an indicator of higher IV that
   was kept (indicators visited by decreasing IV, across both parties);
6. ``vif``: the largest VIF among the kept set above ``max_vif``, dropped one at a time.

What it assumes: the caller (the bank) holds the statistics of every indicator of both
parties and the full correlation matrix; indicators are identified by (party, name).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from parties.evaluation.screening.redundancy import vif_filter


@dataclass(frozen=True, slots=True)
class Rules:
    """Thresholds of the selection; the defaults are the usual credit-scoring ones."""

    min_iv: float = 0.02
    max_missing: float = 0.8
    max_correlation: float = 0.8
    max_vif: float = 10.0
    max_psi: float = 0.25
    require_monotone: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# Each threshold's range: (low, low included, high, high included, what it is).
RANGES: dict[str, tuple[float, bool, float, bool, str]] = {
    "min_iv": (0.0, True, np.inf, False, "a finite number >= 0"),
    "max_missing": (0.0, True, 1.0, True, "a share in [0, 1]"),
    "max_correlation": (0.0, False, 1.0, True, "an absolute correlation in (0, 1]"),
    "max_vif": (1.0, True, np.inf, False, "a finite number >= 1 (a VIF is never below 1)"),
    "max_psi": (0.0, True, np.inf, False, "a finite number >= 0"),
}


def _in_range(key: str, value: float) -> bool:
    low, low_in, high, high_in, _ = RANGES[key]
    above = value >= low if low_in else value > low
    below = value <= high if high_in else value < high
    return bool(np.isfinite(value)) and above and below


def rules_from(table: Mapping[str, Any], where: str = "rules") -> Rules:
    """Rules from a mapping (unknown keys, wrong types and values out of range (NaN and
    infinity included) are errors naming ``where``, the key and the value)."""
    known = {f.name: f for f in fields(Rules)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ValueError(f"{where}: unknown rule {key!r} (known: {', '.join(known)})")
        if key == "require_monotone":
            if not isinstance(value, bool):
                raise ValueError(f"{where}: {key} must be true or false, got {value!r}")
        elif (isinstance(value, bool) or not isinstance(value, (int, float))
              or not _in_range(key, float(value))):
            raise ValueError(f"{where}: {key} = {value!r}: expected {RANGES[key][4]}")
        values[key] = value if key == "require_monotone" else float(value)
    return Rules(**values)


def load_rules(path: Path | None) -> Rules:
    """The rules of a TOML file (a ``[rules]`` table or top-level keys); defaults if None."""
    if path is None:
        return Rules()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the rules file ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from exc
    table = data.get("rules", data)
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [rules] must be a table")
    return rules_from(table, str(path))


@dataclass(frozen=True, slots=True)
class Candidate:
    """The statistics selection needs for one indicator."""

    party: str
    name: str
    iv: float
    missing_rate: float
    psi: float
    monotone: bool


@dataclass(frozen=True, slots=True)
class Dropped:
    party: str
    name: str
    rule: str
    detail: str


def _first_rule(c: Candidate, rules: Rules) -> Dropped | None:
    if c.missing_rate > rules.max_missing:
        return Dropped(c.party, c.name, "missing",
                       f"missing rate {c.missing_rate:.3f} > {rules.max_missing:g}")
    if c.iv < rules.min_iv:
        return Dropped(c.party, c.name, "iv", f"IV {c.iv:.4f} < {rules.min_iv:g}")
    if c.psi > rules.max_psi:
        return Dropped(c.party, c.name, "psi", f"PSI {c.psi:.4f} > {rules.max_psi:g}")
    if rules.require_monotone and not c.monotone:
        return Dropped(c.party, c.name, "monotone", "bad rate not monotone over the bins")
    return None


def select(candidates: Sequence[Candidate], corr: npt.ArrayLike,
           rules: Rules) -> tuple[list[Candidate], list[Dropped]]:
    """Apply ``rules``; ``corr`` is the correlation matrix in ``candidates``' order.

    Returns
    -------
    tuple[list[Candidate], list[Dropped]]
        Kept candidates by decreasing IV, and the dropped ones with their rule.
    """
    r = np.asarray(corr, dtype=np.float64)
    if r.shape != (len(candidates), len(candidates)):
        raise ValueError(f"correlation matrix {r.shape} does not match {len(candidates)} "
                         "indicators")
    dropped: list[Dropped] = []
    survivors: list[int] = []
    for i, c in enumerate(candidates):
        verdict = _first_rule(c, rules)
        if verdict is None:
            survivors.append(i)
        else:
            dropped.append(verdict)
    # Decreasing IV; equal IVs keep the input order, so the outcome is deterministic.
    survivors.sort(key=lambda i: -candidates[i].iv)
    kept: list[int] = []
    for i in survivors:
        clash = [j for j in kept if abs(r[i, j]) > rules.max_correlation]
        if clash:
            j = clash[0]
            other = candidates[j]
            dropped.append(Dropped(candidates[i].party, candidates[i].name, "correlation",
                                   f"|rho| {abs(r[i, j]):.3f} > {rules.max_correlation:g} "
                                   f"with {other.party}:{other.name} (IV {other.iv:.4f})"))
        else:
            kept.append(i)
    labels = [f"{i}" for i in kept]
    left, by_vif = vif_filter(r[np.ix_(kept, kept)], labels, rules.max_vif)
    for label, value in by_vif.items():
        c = candidates[int(label)]
        dropped.append(Dropped(c.party, c.name, "vif", f"VIF {value:.2f} > {rules.max_vif:g}"))
    return [candidates[int(label)] for label in left], dropped


def selection_document(kept: Sequence[Candidate], dropped: Sequence[Dropped], rules: Rules,
                       parties: Sequence[str] = ("grid", "bank")) -> dict[str, Any]:
    """``selection.json``: the rules, and per party the kept names and the dropped ones."""
    out: dict[str, Any] = {"rules": rules.as_dict(), "parties": {}}
    for party in parties:
        out["parties"][party] = {
            "kept": [c.name for c in kept if c.party == party],
            "dropped": [{"name": d.name, "rule": d.rule, "detail": d.detail}
                        for d in dropped if d.party == party],
        }
    return out


MISSING_SUFFIX = "_missing"


def kept_names(document: Mapping[str, Any], party: str, where: str = "selection") -> list[str]:
    """``party``'s kept indicator names from a ``selection.json`` document."""
    try:
        kept = document["parties"][party]["kept"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{where}: no parties.{party}.kept list (not a selection.json "
                         "written by gridcredit screen)") from exc
    if not isinstance(kept, list) or not all(isinstance(k, str) for k in kept):
        raise ValueError(f"{where}: parties.{party}.kept must be a list of names")
    return list(kept)


def selected_columns(header: Sequence[str], kept: Sequence[str], where: str) -> list[str]:
    """The columns of a trainer-ready table that a selection keeps: the kept indicators and
    their ``<name>_missing`` flags, in table order.

    Raises
    ------
    ValueError
        If a kept indicator is not a column of the table (naming ``where``).
    """
    names = set(kept)
    absent = [k for k in kept if k not in header]
    if absent:
        raise ValueError(f"{where}: no column(s) {absent} that the selection keeps")
    return [c for c in header if c in names
            or (c.endswith(MISSING_SUFFIX) and c[: -len(MISSING_SUFFIX)] in names)]
