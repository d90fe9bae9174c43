"""Post-loan early warning: paper Table 7 as an editable rule set (patent 002's threshold
"verification model").

What it does: loads rules from TOML (default: the packaged ``warning_rules.toml``), rates
each indicator of each enterprise as expansion / stable / shrink / alert by the interval its
value falls in, and rates the enterprise: alert if any indicator is alert, else shrink if any
is shrink, else expansion if any is expansion, else stable (paper section 4.3). With
``unrated`` (``gridcredit warn``), an enterprise with no indicator rated above stable and any
indicator missing is ``unrated``, never stable: the missing one could have raised it (e.g. the
first months of the records, before any year-on-year usage exists).

What it assumes: an indicator whose value is missing is skipped and listed, never rated;
a value in none of an indicator's intervals rates nothing (the table leaves those cells
"-"); the intervals of one indicator do not overlap, so a value has at most one rating.
"""

from __future__ import annotations

import enum
import pathlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from parties.labels.options import DEFAULT_RULES
from parties.labels.schema import InputError

_NUMBER = r"[-+]?(?:inf|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
_INTERVAL = re.compile(rf"^\s*([\[(])\s*({_NUMBER})\s*,\s*({_NUMBER})\s*([\])])\s*$")


# The value of ``rating`` when it cannot be computed; not a Rating (it has no precedence).
UNRATED = "unrated"
# Every value ``rate`` writes to ``rating``.
RATING_NAMES = (UNRATED, "stable", "expansion", "shrink", "alert")


class Rating(enum.IntEnum):
    """Ratings in order of precedence: the enterprise gets the highest one triggered."""

    STABLE = 0
    EXPANSION = 1
    SHRINK = 2
    ALERT = 3


@dataclass(frozen=True, slots=True)
class Interval:
    """A real interval with each end open or closed."""

    lower: float
    upper: float
    lower_closed: bool
    upper_closed: bool

    def contains(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """Elementwise membership; NaN is in no interval."""
        above = x >= self.lower if self.lower_closed else x > self.lower
        below = x <= self.upper if self.upper_closed else x < self.upper
        return np.asarray(above & below, dtype=bool)

    def overlaps(self, other: Interval) -> bool:
        """Whether some real number lies in both intervals."""
        lo, hi = max(self.lower, other.lower), min(self.upper, other.upper)
        if lo < hi:
            return True
        if lo > hi:
            return False
        return all(i.contains(np.array([lo]))[0] for i in (self, other))


def parse_interval(text: str) -> Interval:
    """Parse ``"[a, b)"``-style notation; ``inf``/``-inf`` for unbounded ends.

    Raises
    ------
    ValueError
        If the text is not an interval or its lower end exceeds its upper end.
    """
    match = _INTERVAL.match(text)
    if match is None:
        raise ValueError(f"expected an interval like \"[10, 20)\", got {text!r}")
    left, lo, hi, right = match.groups()
    interval = Interval(float(lo), float(hi), left == "[", right == "]")
    point = interval.lower == interval.upper and interval.lower_closed and interval.upper_closed
    if interval.lower > interval.upper or (interval.lower == interval.upper and not point):
        raise ValueError(f"empty interval {text!r}")
    return interval


@dataclass(frozen=True, slots=True)
class Rule:
    """The intervals of one indicator, one per rating the table gives it."""

    indicator: str
    bands: tuple[tuple[Rating, Interval], ...]
    description: str = ""


def _parse_rule(name: str, body: object, path: pathlib.Path, known: set[str]) -> Rule:
    where = f"{path}: rule '{name}'"
    if name not in known:
        raise InputError(f"{where}, column 'indicator': unknown indicator")
    if not isinstance(body, dict):
        raise InputError(f"{where}: expected a table of intervals")
    bands: list[tuple[Rating, Interval]] = []
    for key, value in body.items():
        if key == "table7":
            continue
        if key.upper() not in Rating.__members__ or not isinstance(value, str):
            raise InputError(f"{where}, column '{key}': expected one of "
                             "expansion|stable|shrink|alert = \"interval\"")
        try:
            interval = parse_interval(value)
        except ValueError as e:
            raise InputError(f"{where}, column '{key}': {e}") from e
        for rating, other in bands:
            if interval.overlaps(other):
                raise InputError(f"{where}, column '{key}': overlaps {rating.name.lower()}")
        bands.append((Rating[key.upper()], interval))
    return Rule(name, tuple(bands), str(body.get("table7", "")))


def load_rules(known: Iterable[str], path: pathlib.Path = DEFAULT_RULES) -> tuple[Rule, ...]:
    """Read and check a rule file.

    Parameters
    ----------
    known
        Indicator names a rule may refer to.
    path
        The TOML file; the packaged Table 7 by default.

    Raises
    ------
    InputError
        Missing file, TOML syntax, unknown indicator or rating, bad or overlapping interval.
    """
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: {e}") from e
    rules = data.get("rules")
    if not isinstance(rules, dict) or not rules:
        raise InputError(f"{path}: column 'rules': expected [rules.<indicator>] tables")
    names = set(known)
    return tuple(_parse_rule(name, body, path, names) for name, body in rules.items())


def rate_indicator(rule: Rule, values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Per value: the :class:`Rating` of its interval, -1 if in none, -2 if missing."""
    out = np.where(np.isnan(values), -2, -1).astype(np.int64)
    for rating, interval in rule.bands:
        out = np.where(interval.contains(values), int(rating), out)
    return out


def _joined(masks: list[npt.NDArray[np.bool_]], names: list[str]) -> list[str]:
    parts = np.array([[name if hit else "" for hit in mask] for mask, name in
                      zip(masks, names, strict=True)], dtype=object).reshape(len(names), -1)
    return [";".join(p for p in column if p) for column in parts.T]


def rate(table: pd.DataFrame, rules: tuple[Rule, ...], *, unrated: bool = False
         ) -> pd.DataFrame:
    """Rate every row of ``table`` (one column per rule indicator).

    ``unrated=True`` (what ``gridcredit warn`` uses) rates ``unrated`` a row with nothing above
    stable and some indicator missing; the default keeps the older reading, ``stable``, for
    callers whose vocabulary is :class:`Rating` only (the monitor's rating codes).

    Returns
    -------
    pandas.DataFrame
        ``rating`` (lower-case name, or ``unrated``: nothing above stable and some indicator
        missing), ``triggered`` (the indicators rated at the enterprise's rating,
        ``;``-separated; empty when unrated) and ``missing`` (indicators skipped), in
        ``table``'s order.
    """
    per = np.column_stack([rate_indicator(r, table[r.indicator].to_numpy(np.float64))
                           for r in rules]) if rules else np.zeros((len(table), 0), np.int64)
    final = np.maximum(per.max(axis=1, initial=-1), int(Rating.STABLE))
    if unrated:
        none = (final == int(Rating.STABLE)) & (per == -2).any(axis=1)
        final = np.where(none, -3, final)  # -3 matches no indicator's rating
    names = [r.indicator for r in rules]
    return pd.DataFrame({
        "rating": [UNRATED if v < 0 else Rating(int(v)).name.lower() for v in final],
        "triggered": _joined([per[:, j] == final for j in range(len(rules))], names),
        "missing": _joined([per[:, j] == -2 for j in range(len(rules))], names),
    }, index=table.index)
