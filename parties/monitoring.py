"""Post-loan monitoring, the bank's state per period (no gRPC, no engine).

Each period (a month) the bank holds, per borrower of its active loan book, the joint score
(probability, points, band) and the grid's Table 7 rating (or ``no grid record``). This
module turns them into warning levels by rules from TOML, compares with the previous period
(alerts: ``new alert``, ``rating worsened``, ``score drop``), measures drift (population
stability index of the points against the first period; of each of the bank's model
indicators against the training period, :mod:`parties.monitoring_drift`) and keeps the
folder the bank looks at: ``periods/<YYYY-MM>/`` (book.csv, summary.json, drift.csv;
written atomically: a period exists whole or not at all) and ``alerts.jsonl`` (one line per
alert, keyed by (period, id, kind), never written twice), so a monitor killed mid-period
redoes that period on restart without duplicate alerts.

Assumes: a period's inputs are a function of the raw data at that month (a replay gives the
same book twice); periods are processed in increasing order.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from federation.protocol.errors import ConfigError, InputDataError
from federation.protocol.files import open_log, write_atomic
from parties.model import PartyModel
from parties.monitoring_drift import PSI_BINS, baseline_bins, stability
from parties.outputs import NO_GRID_RECORD

RATINGS = ("stable", "expansion", "shrink", "alert")  # order of parties.labels.warning.Rating
# The grid's rating codes on the wire: a Rating, or one past them for 'unrated' (nothing above
# stable and an indicator missing, as gridcredit warn says; no Table 7 rating to act on).
WIRE_RATINGS = (*RATINGS, "unrated")
# Best to worst, for "rating worsened". RATINGS is Table 7's order of *precedence* (which
# rating an enterprise gets when several indicators fire), not of severity: expansion
# (growing usage) is the best outlook, then stable, shrink (usage falling), alert (README,
# "Early warning": overdue rate expansion 4 %, stable 10 %, shrink 9 %, alert 43 %).
SEVERITY = ("expansion", "stable", "shrink", "alert")
UNRATED = "unrated"  # no grid record that month: no joint score, so no level to judge
LEVELS = ("normal", "watch", "alert", UNRATED)
NEW_ALERT = "new alert"
RATING_WORSENED = "rating worsened"
SCORE_DROP = "score drop"
BOOK_COLUMNS = ["id", "probability", "points", "band", "rating", "level", "change",
                "previous_level"]
MISSING_SUFFIX = "_missing"


@dataclass(frozen=True)
class WarningRules:
    """How the bank turns a rating and a score into a warning level (``[alert]``/``[watch]``).

    A borrower is at level alert if its rating is one of ``alert_ratings``, or its points are
    below ``alert_below``, or they dropped by at least ``alert_drop`` since the last period;
    else watch by the same tests with the ``watch_*`` values; else normal. A borrower the
    grid has no record of is rated ``no grid record``, is not scored and gets the level
    ``unrated`` (never counted as normal).
    ``score_drop`` is the drop (points) that raises a ``score drop`` alert.
    """

    alert_ratings: tuple[str, ...] = ("alert",)
    alert_below: float = -math.inf
    alert_drop: float = math.inf
    watch_ratings: tuple[str, ...] = ("shrink",)
    watch_below: float = -math.inf
    watch_drop: float = math.inf
    score_drop: float = 30.0


POINTS_RANGE = (-1000.0, 3000.0)  # a 'below' outside it is a typo (600/50:1/20: ~0 to 1200)


def load_warning_rules(path: pathlib.Path | None,
                       points_range: tuple[float, float] = POINTS_RANGE) -> WarningRules:
    """Rules from TOML (``[alert] ratings, below, drop``; ``[watch]`` the same;
    ``[alerts] score_drop``); defaults where absent, and for ``path=None``.

    ``points_range``: the points a borrower can get (the node passes its scorecard's); a
    ``below`` outside it would rate every borrower or none.

    Raises
    ------
    ConfigError
        Unreadable file, unknown key or rating, a value of the wrong type, a number that is
        not finite, a drop that is not positive, a ``below`` outside ``points_range``, or a
        ``[watch]`` threshold stricter than ``[alert]``'s (watch would never fire first).
    """
    if path is None:
        return WarningRules()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read warning rules: {exc}") from exc
    values: dict[str, object] = {}
    for table, keys in (("alert", ("ratings", "below", "drop")),
                        ("watch", ("ratings", "below", "drop")), ("alerts", ("score_drop",))):
        body = doc.pop(table, {})
        if not isinstance(body, dict) or set(body) - set(keys):
            raise ConfigError(f"{path}: [{table}] takes only {', '.join(keys)}")
        for key, value in body.items():
            name = key if table == "alerts" else f"{table}_{key}"
            if key == "ratings":
                if not isinstance(value, list) or any(v not in RATINGS for v in value):
                    raise ConfigError(f"{path}: [{table}] ratings must be a list of {RATINGS}")
                values[name] = tuple(value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                values[name] = _checked(path, table, key, float(value), points_range)
            else:
                raise ConfigError(f"{path}: [{table}] {key} must be a number, got {value!r}")
    if doc:
        raise ConfigError(f"{path}: unknown table(s) {sorted(doc)}; expected alert, watch, alerts")
    rules = WarningRules(**values)  # type: ignore[arg-type]
    for key, watch, alert in (("below", -rules.watch_below, -rules.alert_below),
                              ("drop", rules.watch_drop, rules.alert_drop)):
        if "watch_" + key in values and "alert_" + key in values and watch > alert:
            raise ConfigError(
                f"{path}: [watch] {key} = {values['watch_' + key]:g} is stricter than [alert] "
                f"{key} = {values['alert_' + key]:g}; watch must catch a borrower before alert "
                f"(watch {key} {'>=' if key == 'below' else '<='} alert {key})")
    return rules


def _checked(path: pathlib.Path, table: str, key: str, value: float,
             points_range: tuple[float, float]) -> float:
    """``value`` of ``[table] key`` if sensible, else a ConfigError naming file, key, value."""
    where = f"{path}: [{table}] {key} = {value:g}"
    if not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number")
    if key != "below" and value <= 0:
        raise ConfigError(f"{where}: a drop in points must be positive (a drop of {value:g} "
                          "would fire for borrowers whose points did not fall)")
    low, high = points_range
    if key == "below" and not low <= value <= high:
        raise ConfigError(f"{where}: outside the points a borrower can get ({low:.0f} to "
                          f"{high:.0f}); it would rate every borrower or none")
    return value


def model_matrix(table: pd.DataFrame, model: PartyModel, where: str) -> npt.NDArray[np.float64]:
    """The model's feature matrix from an indicator table (rows as ``table``).

    A feature ``<name>_missing`` is 1 where indicator ``<name>`` is missing; a missing
    indicator value is filled with the training mean (so it adds nothing to the logit),
    as training filled it with a central value and flagged it.

    Raises
    ------
    InputDataError
        The table lacks an indicator the model uses.
    """
    columns = []
    for j, name in enumerate(model.features):
        base = name.removesuffix(MISSING_SUFFIX)
        if name in table.columns:
            values = table[name].to_numpy(np.float64)
            columns.append(np.where(np.isnan(values), model.mean[j], values))
        elif name.endswith(MISSING_SUFFIX) and base in table.columns:
            columns.append(table[base].isna().to_numpy(np.float64))
        else:
            raise InputDataError(f"{where}: the model's feature {name!r} is not an indicator "
                                 "built from the raw tables")
    if not columns:
        return np.zeros((len(table), 0))
    return np.column_stack(columns).astype(np.float64)


def warning_levels(book: pd.DataFrame, drop: npt.NDArray[np.float64],
                   rules: WarningRules) -> list[str]:
    """The level of each row of ``book`` (columns rating, points) given its points drop;
    ``unrated`` for a borrower without a grid record or a score."""
    points = book["points"].to_numpy(np.float64)
    rating = book["rating"].astype(str).to_numpy()
    out = []
    for r, p, d in zip(rating, points, drop, strict=True):
        if r == NO_GRID_RECORD or math.isnan(p):
            out.append(UNRATED)
        elif r in rules.alert_ratings or p < rules.alert_below or d >= rules.alert_drop:
            out.append("alert")
        elif r in rules.watch_ratings or p < rules.watch_below or d >= rules.watch_drop:
            out.append("watch")
        else:
            out.append("normal")
    return out


def rating_worsened(before: str, after: str) -> bool:
    """Whether Table 7 rating ``after`` is worse than ``before`` (:data:`SEVERITY`); False
    when either is not a rating (no grid record, or not rated last period)."""
    if before not in SEVERITY or after not in SEVERITY:
        return False
    return SEVERITY.index(after) > SEVERITY.index(before)


def compare(book: pd.DataFrame, previous: pd.DataFrame | None,
            rules: WarningRules) -> tuple[pd.DataFrame, list[tuple[str, str, str]]]:
    """Levels, the change in points since ``previous`` and this period's alerts.

    Returns the book with ``level``, ``change`` (points now minus last period; empty if the
    borrower was not scored both times) and ``previous_level``, and the alerts as
    (id, kind, before -> after) triples.
    """
    prev = previous.set_index("id") if previous is not None else pd.DataFrame(
        columns=BOOK_COLUMNS[1:], index=pd.Index([], name="id"))
    before = prev.reindex(book["id"])
    change = book["points"].to_numpy(np.float64) - before["points"].to_numpy(np.float64)
    drop = np.where(np.isnan(change), -np.inf, -change)
    book = book.copy()
    book["level"] = warning_levels(book, drop, rules)
    book["change"] = change
    book["previous_level"] = before["level"].fillna("").astype(str).to_numpy()
    alerts: list[tuple[str, str, str]] = []
    old_rating = before["rating"].fillna("").astype(str).to_numpy()
    for i, row in enumerate(book.itertuples(index=False)):
        was = book["previous_level"].iat[i]
        if row.level == "alert" and was != "alert":
            alerts.append((row.id, NEW_ALERT, f"{was or 'none'} -> alert"))
        if rating_worsened(old_rating[i], str(row.rating)):
            alerts.append((row.id, RATING_WORSENED, f"{old_rating[i]} -> {row.rating}"))
        if drop[i] >= rules.score_drop:
            old = before["points"].iat[i]
            alerts.append((row.id, SCORE_DROP, f"{old:.1f} -> {row.points:.1f}"))
    return book[BOOK_COLUMNS], alerts


def population_stability(expected: npt.ArrayLike, actual: npt.ArrayLike,
                         bins: int = PSI_BINS) -> float:
    """PSI of ``actual`` over the decile bins of ``expected`` (the recipe of
    :mod:`parties.monitoring_drift`); NaN if either has no number."""
    return stability(baseline_bins(expected, bins), actual)


class MonitorStore:
    """The bank's monitoring folder: periods written whole, alerts written once."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.periods = root / "periods"
        self.alerts_path = root / "alerts.jsonl"  # nothing is created before a write
        self.outbox_path = root / "outbox.jsonl"  # alerts the webhook has not taken yet

    def done(self) -> list[str]:
        """The completed periods, oldest first."""
        if not self.periods.is_dir():
            return []
        return sorted(p.name for p in self.periods.iterdir()
                      if p.is_dir() and (p / "book.csv").is_file())

    def book(self, period: str) -> pd.DataFrame | None:
        """A completed period's book (None if not completed)."""
        path = self.periods / period / "book.csv"
        if not path.is_file():
            return None
        return pd.read_csv(path, dtype={"id": str, "rating": str, "level": str, "band": str,
                                        "previous_level": str}, keep_default_na=False,
                           na_values={"probability": [""], "points": [""], "change": [""]})

    def alerts(self) -> list[dict[str, str]]:
        """Every alert written so far, in order."""
        if not self.alerts_path.is_file():
            return []
        lines = self.alerts_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip().endswith("}")]

    def add_alerts(self, period: str, alerts: Sequence[tuple[str, str, str]], *,
                   queue: bool = False) -> list[dict[str, str]]:
        """Append the alerts not already written (keyed by period, id, kind); the new ones.

        With ``queue`` (a webhook is configured) the new ones go into the outbox first: a
        process killed between the two writes then finds them again on its rerun of the
        period (they are not in ``alerts.jsonl`` yet), and the outbox drops the repeat. The
        other order lost them: written, never queued, and no longer new on the rerun."""
        seen = {(a["period"], a["id"], a["kind"]) for a in self.alerts()}
        new = []
        for ident, kind, what in alerts:
            if (period, ident, kind) in seen:
                continue
            seen.add((period, ident, kind))
            before, _, after = what.partition(" -> ")
            new.append({"period": period, "id": ident, "kind": kind, "before": before,
                        "after": after})
        if new and queue:
            self.set_pending(self.pending() + new)
        if new:
            with open_log(self.alerts_path, append=True) as f:  # private: IDs and ratings
                f.write("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in new))
                f.flush()
                os.fsync(f.fileno())
        return new

    def pending(self) -> list[dict[str, str]]:
        """The alerts waiting for the webhook, oldest first."""
        if not self.outbox_path.is_file():
            return []
        lines = self.outbox_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def set_pending(self, alerts: Sequence[dict[str, str]]) -> None:
        """Replace the outbox by ``alerts`` (deduplicated by period, id, kind; atomic; none:
        the outbox file, which only this class creates, is removed)."""
        unique = list({(a["period"], a["id"], a["kind"]): a for a in alerts}.values())
        if not unique:
            self.outbox_path.unlink(missing_ok=True)
            return
        write_atomic(self.outbox_path, "".join(json.dumps(a, ensure_ascii=False) + "\n"
                                               for a in unique))

    def write_period(self, period: str, book: pd.DataFrame, summary: dict[str, object],
                     drift: pd.DataFrame | None = None) -> None:
        """Write ``periods/<period>/`` (book.csv, summary.json, drift.csv if given) at once:
        a temporary folder renamed into place."""
        final = self.periods / period
        self.periods.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{period}.", dir=self.periods))
        try:
            book.to_csv(tmp / "book.csv", index=False, float_format="%.6f")
            if drift is not None:
                drift.to_csv(tmp / "drift.csv", index=False, float_format="%.6f")
            (tmp / "summary.json").write_text(json.dumps(summary, indent=1) + "\n",
                                              encoding="utf-8")
            if final.exists():  # a stale, incomplete copy of this period (no book.csv)
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def summaries(self) -> list[dict[str, object]]:
        """The summary.json of every completed period, oldest first."""
        out = []
        for period in self.done():
            path = self.periods / period / "summary.json"
            if path.is_file():
                out.append(json.loads(path.read_text(encoding="utf-8")))
        return out


def summarize(period: str, book: pd.DataFrame, baseline: pd.DataFrame | None,
              new_alerts: int) -> dict[str, object]:
    """Counts per level and rating, alert count, points histogram and drift of a period."""
    levels = book["level"].value_counts().to_dict()
    no_grid = int((book["rating"] == NO_GRID_RECORD).sum())
    points = book["points"].to_numpy(np.float64)
    ok = points[~np.isnan(points)]
    hist, edges = np.histogram(ok, bins=20) if len(ok) else (np.zeros(0), np.zeros(0))
    psi = math.nan if baseline is None else population_stability(baseline["points"], points)
    return {
        "period": period, "borrowers": len(book), "no_grid_record": no_grid,
        "levels": {k: int(levels.get(k, 0)) for k in LEVELS},
        "ratings": {k: int(v) for k, v in book["rating"].value_counts().items()},
        "alerts": new_alerts, "psi_points": None if math.isnan(psi) else psi,
        "points_hist": [int(h) for h in hist], "points_edges": [float(e) for e in edges],
    }
