"""A small expression layer that renders the indicator library as SQL for DuckDB and Spark.

What it does: helpers that write SQL text (literals, sums over pivoted month columns,
percent changes, ratios, completeness checks) and :class:`Dialect`, the handful of functions
whose spelling differs between the engines. :func:`stage_query` nests stages of derived
columns (``SELECT *, expr AS name FROM (previous)``) so that later columns can name earlier
ones, window functions included.

What it assumes: every definition is written once, in the SQL both engines share (CTE-free
subqueries, ``FILTER`` clauses, ``CASE``, window functions, ``greatest`` / ``least`` over
non-null arguments); NULL is the SQL spelling of the library's NaN and is turned into NaN when
results leave the engine. Divisions are always guarded (DuckDB divides by zero to infinity,
Spark in ANSI mode raises).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

Column = tuple[str, str]  # (name, SQL expression)


class Engine(enum.StrEnum):
    """Where ``features build`` evaluates the indicators."""

    DUCKDB = "duckdb"  # embedded, the default
    SPARK = "spark"  # a Spark cluster (or local[N])
    PANDAS = "pandas"  # the numpy reference implementation


@dataclass(frozen=True, slots=True)
class Dialect:
    """Spellings that differ between the SQL engines."""

    name: str
    text_type: str  # the string type in CAST
    regex_template: str  # full match of {expr} against {pattern}

    def matches(self, expr: str, pattern: str) -> str:
        """True where ``expr`` matches ``pattern`` entirely (no backslashes in patterns)."""
        return self.regex_template.format(expr=expr, pattern=pattern)

    def quote(self, name: str) -> str:
        """A quoted identifier."""
        mark = "`" if self.name == "spark" else '"'
        return mark + name.replace(mark, mark + mark) + mark

    def distinct_count(self, expr: str, low: int | None = None) -> str:
        """``count(DISTINCT expr)`` of a whole-number ``expr`` as an aggregate.

        DuckDB counts a list's distinct values, which spares the join its planner adds for
        a distinct aggregate; given ``low``, the values in ``low .. low + 63`` (most of them,
        months around an as-of month) are counted as the bits of one 64-bit word instead,
        without building a list, and only the others go into the list.
        """
        if self.name == "spark":
            return f"count(DISTINCT {expr})"
        if low is None:
            return f"CAST(list_unique(list({expr})) AS BIGINT)"
        inside = f"{expr} BETWEEN {low} AND {low + 63}"
        # The shift is computed for every row (the filter applies after): clamped to 0 .. 63.
        shift = f"CAST(least(greatest({expr} - {low}, 0), 63) AS UBIGINT)"
        bits = (f"coalesce(bit_count(bit_or(CAST(1 AS UBIGINT) << {shift}) "
                f"FILTER (WHERE {inside})), 0)")
        rest = f"coalesce(list_unique(list({expr}) FILTER (WHERE NOT ({inside}))), 0)"
        return f"CAST({bits} + {rest} AS BIGINT)"

    def days_between(self, start: str, end: str) -> str:
        """Whole days from DATE ``start`` to DATE ``end`` (negative if ``end`` is earlier)."""
        if self.name == "spark":
            return f"datediff({end}, {start})"
        return f"date_diff('day', {start}, {end})"


DUCKDB = Dialect("duckdb", "VARCHAR", "regexp_full_match({expr}, '{pattern}')")
SPARK = Dialect("spark", "STRING", "({expr} RLIKE '^(?:{pattern})$')")


def lit(x: float) -> str:
    """A DOUBLE literal (a bare ``1.5`` would be DECIMAL in both engines)."""
    text = repr(float(x))
    if text in ("inf", "-inf", "nan"):
        raise ValueError(f"no SQL literal for {text}")
    return text if "e" in text else text + "E0"


def text(s: str) -> str:
    """A string literal."""
    return "'" + s.replace("'", "''") + "'"


def date(day: str) -> str:
    """A DATE literal from ``YYYY-MM-DD``."""
    return f"DATE {text(day)}"


def cols(prefix: str, months: int, offset: int = 0) -> list[str]:
    """Pivot columns ``prefix{k}`` of ``months`` months ending ``offset`` months before the
    as-of month, oldest first (``prefix0`` is the as-of month)."""
    return [f"{prefix}{k}" for k in range(offset + months - 1, offset - 1, -1)]


def total(columns: Sequence[str]) -> str:
    """Their sum (NULL if any is NULL), added in the order numpy's pairwise summation adds a
    row of up to 128 values, so that sums over pivoted months equal the reference's bits."""
    terms = [f"({c})" for c in columns]
    if len(terms) < 8:
        return "(" + " + ".join(terms) + ")"
    blocks = len(terms) - len(terms) % 8
    acc = list(terms[:8])
    for i in range(8, blocks, 8):
        acc = [f"({acc[j]} + {terms[i + j]})" for j in range(8)]
    out = (f"((({acc[0]} + {acc[1]}) + ({acc[2]} + {acc[3]})) + "
           f"(({acc[4]} + {acc[5]}) + ({acc[6]} + {acc[7]})))")
    for term in terms[blocks:]:
        out = f"({out} + {term})"
    return out


def present(columns: Sequence[str]) -> str:
    """True where none of ``columns`` is NULL."""
    return "(" + " AND ".join(f"{c} IS NOT NULL" for c in columns) + ")"


def when(condition: str, value: str) -> str:
    """``value`` where ``condition`` holds, else NULL."""
    return f"CASE WHEN {condition} THEN {value} END"


def ratio(num: str, den: str) -> str:
    """``num / den``, NULL where ``den`` is not positive (as :func:`grid_indicators.ratio`)."""
    return f"CASE WHEN {den} > 0 THEN ({num}) / ({den}) END"


def pct_change(new: str, old: str) -> str:
    """``100 (new - old) / old`` rounded to 9 decimals; 0 if both are 0, NULL if only old is."""
    return (f"CASE WHEN {old} = 0 AND {new} = 0 THEN {lit(0.0)} WHEN {old} = 0 THEN NULL "
            f"ELSE round({lit(100.0)} * (({new}) - ({old})) / ({old}), 9) END")


def mean(columns: Sequence[str]) -> str:
    """Arithmetic mean (NULL if any is NULL)."""
    return f"({total(columns)} / {lit(len(columns))})"


def std(columns: Sequence[str], center: str) -> str:
    """Population standard deviation around the precomputed mean ``center``."""
    squares = total([f"(({c}) - {center}) * (({c}) - {center})" for c in columns])
    return f"sqrt({squares} / {lit(len(columns))})"


EXACT = "DECIMAL(38, 14)"


CENTS_BOUND = "1099511627776E0"  # 2^40: below it doubles are 2^-12 apart, < half a cent


def _to_exact(expr: str) -> str:
    # Through the number's decimal text: Spark converts a DOUBLE to DECIMAL that way, DuckDB
    # by a multiplication that can differ in the last digit; the text makes them agree.
    # Printing a double is slow, so a whole number of cents k (the double nearest k / 100,
    # tested by dividing back) is built from k instead: below 2^40 no other number of at most
    # two decimals is that near, so k / 100 is the shortest text of the double, which both
    # engines print, and the decimal is the same.
    k = f"round({expr} * 100E0)"
    cents = f"abs({expr}) < {CENTS_BOUND} AND {k} / 100E0 = {expr}"
    return (f"CASE WHEN {cents} THEN CAST(CAST(CAST({k} AS BIGINT) AS DECIMAL(18, 0)) * "
            f"CAST(0.01 AS DECIMAL(3, 2)) AS {EXACT}) "
            f"ELSE CAST(CAST({expr} AS STRING) AS {EXACT}) END")


def _from_exact(expr: str) -> str:
    return f"CAST(CAST({expr} AS STRING) AS DOUBLE)"  # correctly rounded on both engines


def exact_sum(expr: str, where: str | None = None, d: Dialect | None = None) -> str:
    """``sum(expr)`` (optionally filtered) in decimal arithmetic: the same bits whatever the
    order rows arrive in, on every engine and every run (a float sum over rows depends on how
    the engine splits the work).

    On DuckDB (``d``) the same decimal is summed in two parts: whole numbers of cents as
    64-bit integers (most amounts; no per-row decimal), the other values as decimals.
    """
    filtered = f" FILTER (WHERE {where})" if where else ""
    if d is None or d.name == "spark":
        return _from_exact(f"sum({_to_exact(expr)}){filtered}")
    k = f"round({expr} * 100E0)"
    cents = f"abs({expr}) < {CENTS_BOUND} AND {k} / 100E0 = {expr}"
    # In the CASE rather than a FILTER clause, which costs more. The decimal part adds 0 for
    # the cents, so that it is NULL exactly when no row counts (as the plain sum is).
    scope = f"({where}) AND " if where else ""
    whole = f"sum(CASE WHEN {scope}{cents} THEN CAST({k} AS BIGINT) END)"
    rest = (f"CASE WHEN {cents} THEN CAST(0 AS {EXACT}) "
            f"ELSE CAST(CAST({expr} AS STRING) AS {EXACT}) END")
    other = f"sum(CASE WHEN {where} THEN {rest} END)" if where else f"sum({rest})"
    return _from_exact(f"CAST(coalesce(CAST({whole} AS DECIMAL(38, 0)) * CAST(0.01 AS "
                       f"DECIMAL(3, 2)), 0) + {other} AS {EXACT})")


def exact_mean(expr: str) -> str:
    """Mean of the non-null ``expr`` of a group (NULL if none), an aggregate summed exactly as
    :func:`exact_sum` (its shared spelling: over a few values per row, as the industry means
    are, DuckDB's split one plans slower and runs no faster)."""
    return f"({exact_sum(expr)} / count({expr}))"


def stage_query(base: str, stages: Sequence[Sequence[Column]]) -> str:
    """Nest ``stages`` of derived columns over the ``base`` query.

    Each stage's expressions may name the base's columns and every earlier stage's columns.
    """
    query = base
    for depth, stage in enumerate(stages):
        exprs = ",\n  ".join(f"{expr} AS {name}" for name, expr in stage)
        query = f"SELECT *,\n  {exprs}\nFROM (\n{query}\n) AS s{depth}"
    return query
