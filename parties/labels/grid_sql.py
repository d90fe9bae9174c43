"""The grid's indicators as SQL: one definition each, evaluated by DuckDB and by Spark.

What it does: :func:`usage_facts`, :func:`bill_facts` and :func:`event_facts` aggregate the raw
tables per enterprise in one scan each (the 24 usage months pivoted to ``u0`` .. ``u23``,
``u0`` being the as-of month; the bills' 12-month sums; event counts), carrying the
validation flags of :mod:`parties.labels.checks`; :func:`enterprise_rows` joins them to the
enterprises and :func:`indicator_query` derives every indicator of
:data:`~parties.labels.grid_indicators.GRID_INDICATORS` (and ENT_SHELL_SCORE), with the same
names, in stages of :func:`~parties.labels.sqlkit.stage_query`.

What it assumes: the rules of :mod:`parties.labels.grid_indicators` and
:mod:`parties.labels.panel`, which stay the reference the tests compare against: point in
time at the as-of month, NULL (NaN) when connected fewer months than a window or a usage
month inside it is missing, never 0; the paper's YoY bucket index; industry figures over
all enterprises of the industry, ranks within province and industry. Industry and rank
figures are computed over the whole population before ``ids`` selects rows, so a subset
gets the values the full table has.
"""

from __future__ import annotations

from collections.abc import Sequence

from parties.labels.checks import flag_aggregates
from parties.labels.grid_indicators import (
    YOY_DROP_EDGES,
    YOY_DROP_WEIGHTS,
    YOY_GROWTH_EDGES,
    YOY_GROWTH_WEIGHTS,
)
from parties.labels.panel import HISTORY
from parties.labels.schema import GRID_TABLES, month_end
from parties.labels.shell import SCORES, ShellModel
from parties.labels.sqlkit import (
    Column,
    Dialect,
    cols,
    date,
    exact_mean,
    exact_sum,
    lit,
    mean,
    pct_change,
    present,
    ratio,
    stage_query,
    std,
    total,
    when,
)

# Months before the as-of month counted as bits when checking for repeated months (the
# word holds 64 months: these and the 16 after the as-of month).
MONTHS_BEFORE = 47
EVENT_WINDOWS = (("theft", 6, True), ("theft", 12, True), ("breach", 6, True),
                 ("breach", 12, True), ("outage", 12, False), ("inspection", 12, False))


def _end_date(as_of: int) -> str:
    return date(str(month_end([as_of])[0]))


def _cell(column: str, month: int) -> str:
    """The group's ``column`` in ``month`` (NULL if none): a pivot cell. Written as a CASE
    rather than a FILTER clause, which DuckDB evaluates at about twice the cost."""
    return f"max(CASE WHEN month = {month} THEN {column} END)"


def usage_facts(d: Dialect, typed: str, as_of: int) -> str:
    """Per enterprise: row and distinct-month counts, flags, and ``u0`` .. ``u23``."""
    pivot = [f"{_cell('kwh', as_of - k)} AS u{k}" for k in range(HISTORY)]
    keys = d.distinct_count("month", as_of - MONTHS_BEFORE)
    return (f"SELECT ent_id, count(*) AS _rows, {keys} AS _keys, "
            f"{', '.join([*flag_aggregates(GRID_TABLES['monthly_usage']), *pivot])} "
            f"FROM {typed} AS t GROUP BY ent_id")


def bill_facts(d: Dialect, typed: str, as_of: int) -> str:
    """Per enterprise: the bills' point-in-time 12-month figures and the last default.

    A bill is settled at the as-of month only if paid by its last day; an open bill has paid
    nothing, no late fee yet, and is late from its due date to that day.
    """
    end = _end_date(as_of)
    settled = f"(paid_date IS NOT NULL AND paid_date <= {end})"
    pit = (f"SELECT *, CASE WHEN {settled} THEN CAST(late_days AS DOUBLE) ELSE "
           f"CAST(greatest(0, {d.days_between('due_date', end)}) AS DOUBLE) END AS late, "
           f"CASE WHEN {settled} THEN amount_paid ELSE 0E0 END AS paid, "
           f"CASE WHEN {settled} THEN late_fee ELSE 0E0 END AS fee FROM {typed} AS t")
    in12 = f"month BETWEEN {as_of - 11} AND {as_of}"
    aggs = [
        f"count(CASE WHEN month <= {as_of} THEN 1 END) AS b_any",
        f"count(CASE WHEN {in12} THEN 1 END) AS b_n12",
        *(f"{_cell('amount_due', as_of - k)} AS d{k}" for k in range(12)),
        f"{exact_sum('paid', in12, d)} AS b_paid12",
        f"count(CASE WHEN {in12} AND late > 0 THEN 1 END) AS b_late_n12",
        f"{exact_sum('amount_due', f'{in12} AND late > 0', d)} AS b_late_due12",
        f"sum(CASE WHEN {in12} THEN late END) AS b_late_days12",  # whole days: exact anyway
        f"{exact_sum('fee', in12, d)} AS b_fee12",
        f"{_cell('arrears_after', as_of)} AS b_arrears0",
        f"max_by(late, month) FILTER (WHERE month <= {as_of} AND late > 0) AS b_last_late",
    ]
    keys = d.distinct_count("month", as_of - MONTHS_BEFORE)
    return (f"SELECT ent_id, count(*) AS _rows, {keys} AS _keys, "
            f"{', '.join([*flag_aggregates(GRID_TABLES['bills']), *aggs])} "
            f"FROM ({pit}) AS p GROUP BY ent_id")


def event_facts(d: Dialect, typed: str, as_of: int) -> str:
    """Per enterprise: event counts (and amounts) by type in 6- and 12-month windows."""
    month = "(year(date) * 12 + month(date) - 1)"
    aggs = []
    for kind, months, amount in EVENT_WINDOWS:
        where = f"type = '{kind}' AND {month} BETWEEN {as_of - months + 1} AND {as_of}"
        aggs.append(f"count(CASE WHEN {where} THEN 1 END) AS e_{kind}_n{months}")
        if amount:
            aggs.append(f"{exact_sum('amount', where, d)} AS e_{kind}_a{months}")
    return (f"SELECT ent_id, {', '.join([*flag_aggregates(GRID_TABLES['events']), *aggs])} "
            f"FROM {typed} AS t GROUP BY ent_id")


def _yoy_weight(growth: str) -> str:
    """Paper Table 6's bucket weight of a year-on-year growth (%); buckets hold their upper
    bound (as :func:`grid_indicators.yoy_bucket_weight`)."""
    arms = [f"WHEN {growth} > {lit(edge)} THEN {lit(w)}" for edge, w in
            reversed(list(zip(YOY_GROWTH_EDGES, YOY_GROWTH_WEIGHTS, strict=True)))]
    arms.append(f"WHEN {growth} = 0 THEN 0E0")
    arms += [f"WHEN {growth} >= {lit(-edge)} THEN {lit(w)}" for edge, w in
             zip(YOY_DROP_EDGES[1:], YOY_DROP_WEIGHTS[:-1], strict=True)]
    return f"CASE WHEN {growth} IS NULL THEN NULL {' '.join(arms)} ELSE {lit(-1.0)} END"


def _need(months: int, *windows: Sequence[str]) -> str:
    """Connected at least ``months`` months and every listed pivot cell present."""
    return " AND ".join([f"connected >= {months}", *(present(w) for w in windows)])


def _sum_change(months: int, back: int) -> str:
    new, old = cols("u", months), cols("u", months, back)
    return when(_need(months + back, new, old), pct_change(total(new), total(old)))


def _helpers() -> list[Column]:
    u12, u24 = cols("u", 12), cols("u", 24)
    out: list[Column] = [
        ("_c12", present(u12)), ("_c24", present(u24)), ("_s12", total(u12)),
        ("_m12", mean(u12)),
        ("_t12", when(_need(12, u12), total(u12))),
        ("_due_m12", when("connected >= 12 AND b_n12 = 12", mean(cols("d", 12)))),
        ("_paid_m12", when("connected >= 12 AND b_n12 = 12", f"b_paid12 / {lit(12)}")),
        ("_cpk12", when(f"connected >= 12 AND b_n12 = 12 AND {present(u12)}",
                        ratio(total(cols("d", 12)), total(u12)))),
    ]
    out += [(f"_g{k}", pct_change(f"u{k}", f"u{k + 1}")) for k in range(11)]
    growth = [(f"_yg{k}", f"CASE WHEN u{k + 12} = 0 AND u{k} = 0 THEN 0E0 "
               f"WHEN u{k + 12} = 0 THEN {lit(1e300)} "
               f"ELSE round({lit(100.0)} * (u{k} - u{k + 12}) / u{k + 12}, 9) END")
              for k in range(12)]
    return out + growth


def _industry_means() -> list[Column]:
    """Means over each industry's enterprises, aggregated from the rows of :func:`_helpers`
    and joined back (a window over the wide rows costs more)."""
    return [*((f"_im{k}", exact_mean(f"u{k}")) for k in range(12)),
            *((f"_i{c}", exact_mean(c)) for c in ("_due_m12", "_paid_m12", "_cpk12"))]


def _industry_figures(rows: str) -> tuple[str, list[str]]:
    """The industry means of :func:`_industry_means` and USE_INDUSTRY_STD_12M (their monthly
    dispersion, one value per industry, computed once per industry rather than per row):
    a query by ``industry_code`` and the names of its columns."""
    means = _industry_means()
    months = [f"_im{k}" for k in range(11, -1, -1)]
    grouped = (f"SELECT industry_code, {', '.join(f'{e} AS {n}' for n, e in means)} "
               f"FROM {rows} AS g GROUP BY industry_code")
    query = (f"SELECT *, {std(months, mean(months))} AS _i_std_12m "
             f"FROM ({grouped}) AS m")
    return query, [*(n for n, _ in means), "_i_std_12m"]


RANKS = ("SELECT ent_id, rank() OVER (PARTITION BY province, industry_code ORDER BY _t12 DESC "
         "NULLS LAST) AS _rank, count(_t12) OVER (PARTITION BY province, industry_code) AS _rank_n")


def _usage_indicators() -> list[Column]:
    u12 = cols("u", 12)
    need12 = _need(12, u12)
    rates = [f"_g{k}" for k in range(10, -1, -1)]
    return [
        ("use_last_month", "u0"),
        ("use_max_12m", when(need12, f"greatest({', '.join(u12)})")),
        ("use_min_12m", when(need12, f"least({', '.join(u12)})")),
        ("use_mean_12m", when(need12, "_m12")),
        ("use_std_12m", when(need12, std(u12, "_m12"))),
        ("use_industry_std_12m", "_i_std_12m"),  # see _industry_figures
        ("use_growth_avg_12m", when(need12, mean(rates))),
        ("use_rank_pct_12m", when(
            "_t12 IS NOT NULL", f"CAST(_rank AS DOUBLE) / _rank_n * {lit(100)}")),
        ("use_yoy_3m_pct", _sum_change(3, 12)),
        ("use_yoy_12m_pct", _sum_change(12, 12)),
        ("use_mom_3m_pct", _sum_change(3, 3)),
        ("use_mom_12m_pct", _sum_change(12, 12)),
        ("use_yoy_index_12m", when("connected >= 24 AND _c24",
                                   total([_yoy_weight(f"_yg{k}") for k in range(11, -1, -1)]))),
    ]


def _bill_and_event_indicators() -> list[Column]:
    def c12(expr: str) -> str:
        return when("connected >= 12", f"CAST(coalesce({expr}, 0) AS DOUBLE)")

    out: list[Column] = [
        ("late_count_12m", c12("b_late_n12")), ("late_amount_12m", c12("b_late_due12")),
        ("late_days_12m", c12("b_late_days12")), ("late_fee_12m", c12("b_fee12")),
        ("current_arrears", "b_arrears0"),
        ("last_default_days", when("b_any > 0", "coalesce(b_last_late, 0E0)")),
        ("bill_due_vs_industry_12m", ratio("_due_m12", "_i_due_m12")),
        ("bill_paid_vs_industry_12m", ratio("_paid_m12", "_i_paid_m12")),
        ("bill_fluct_12m", when("connected >= 12 AND b_n12 = 12",
                                ratio(std(cols("d", 12), "_due_m12"), "_due_m12"))),
        ("cost_per_kwh_vs_industry_12m", ratio("_cpk12", "_i_cpk12")),
    ]
    for kind, months, amount in EVENT_WINDOWS:
        for what, column in (("count", "n"), ("amount", "a")):
            if what == "amount" and not amount:
                continue
            value = f"CAST(coalesce(e_{kind}_{column}{months}, 0) AS DOUBLE)"
            out.append((f"{kind}_{what}_{months}m", when(f"connected >= {months}", value)))
    return out + [("account_age_months", "CAST(connected AS DOUBLE)"),
                  ("capacity_kva", "_capacity")]


def shell_score_sql(model: ShellModel) -> str:
    """ENT_SHELL_SCORE of :func:`parties.labels.shell.shell_score` over indicator columns."""
    terms = []
    for i, name in enumerate(SCORES.values()):
        clipped = (f"CASE WHEN {name} IS NULL THEN NULL ELSE least(greatest({name}, "
                   f"{lit(model.lower[i])}), {lit(model.upper[i])}) END")
        z = f"((coalesce({clipped}, {lit(model.median[i])}) - {lit(model.mean[i])}) / " \
            f"{lit(model.std[i])})"
        terms.append(f"{z} * {lit(model.coef[i])}")
    logit = f"({' + '.join(terms)} + {lit(model.intercept)})"
    nothing = " AND ".join(f"{name} IS NULL" for name in SCORES.values())
    return (f"CASE WHEN {nothing} THEN NULL ELSE round({lit(100.0)} / (1E0 + exp({logit})), 6)"
            " END")


BILL_COLUMNS = ("b_any", "b_n12", *(f"d{k}" for k in range(12)), "b_paid12", "b_late_n12",
                "b_late_due12", "b_late_days12", "b_fee12", "b_arrears0", "b_last_late")
EVENT_COLUMNS = tuple(f"e_{kind}_{c}{months}" for kind, months, amount in EVENT_WINDOWS
                      for c in ("n", "a") if c == "n" or amount)


def indicator_stages(model: ShellModel) -> list[list[Column]]:
    """The derived columns after :func:`_helpers` and :func:`_industry_means`, in dependency
    order; the last stages hold every indicator."""
    derived = [
        ("use_last_vs_mean_12m", when("connected >= 12", ratio("u0", "use_mean_12m"))),
        ("use_utilization_12m", ratio("use_mean_12m", f"_capacity * {lit(730.0)}")),
        ("score_diff", ratio("use_max_12m - use_min_12m", "use_mean_12m")),
        ("score_vola", ratio("use_std_12m", "use_industry_std_12m")),
    ]
    return [_usage_indicators() + _bill_and_event_indicators(), derived,
            [("ent_shell_score", shell_score_sql(model))]]


def enterprise_rows(enterprises: str, usage: str, bills: str, events: str, as_of: int) -> str:
    """One row per enterprise connected by ``as_of``: its facts and the helper columns of
    :func:`_helpers`, for :func:`indicator_query` (computed once, read three times).

    Parameters
    ----------
    enterprises
        Typed enterprises with ``_ord`` (storage order).
    usage, bills, events
        The fact relations of :func:`usage_facts`, :func:`bill_facts`, :func:`event_facts`.
    as_of
        Month ordinal.
    """
    facts = [*(f"u.u{k}" for k in range(HISTORY)), *(f"b.{c}" for c in BILL_COLUMNS),
             *(f"v.{c}" for c in EVENT_COLUMNS)]
    base = (f"SELECT e.ent_id, e._ord, e.industry_code, e.province, e.capacity_kva AS _capacity, "
            f"{as_of} - e.open_month + 1 AS connected, {', '.join(facts)} "
            f"FROM (SELECT ent_id, _ord, industry_code, province, capacity_kva, "
            f"year(account_open_date) * 12 + month(account_open_date) - 1 AS open_month "
            f"FROM {enterprises} AS x) AS e "
            f"LEFT JOIN {usage} AS u ON u.ent_id = e.ent_id "
            f"LEFT JOIN {bills} AS b ON b.ent_id = e.ent_id "
            f"LEFT JOIN {events} AS v ON v.ent_id = e.ent_id "
            f"WHERE e.open_month <= {as_of}")
    return stage_query(base, [_helpers()])


def indicator_query(rows: str, model: ShellModel, names: Sequence[str],
                    ids: str | None = None) -> str:
    """``id`` and the indicators ``names`` of every enterprise of ``rows``, in the enterprises
    table's row order.

    Parameters
    ----------
    rows
        The relation of :func:`enterprise_rows`.
    model
        ENT_SHELL_SCORE's model.
    names
        Indicator columns to return, in order.
    ids
        Relation with a column ``id``: keep only those enterprises (after the industry and
        rank figures are computed over everyone).
    """
    industry, figures = _industry_figures(rows)
    joined = (f"SELECT r.*, {', '.join(f'i.{n}' for n in figures)}, k._rank, k._rank_n "
              f"FROM {rows} AS r JOIN ({industry}) AS i ON i.industry_code = r.industry_code "
              f"JOIN ({RANKS} FROM {rows} AS w) AS k ON k.ent_id = r.ent_id")
    query = stage_query(joined, indicator_stages(model))
    where = f" WHERE ent_id IN (SELECT id FROM {ids} AS i)" if ids else ""
    values = ", ".join(f"CAST({n} AS DOUBLE) AS {n}" for n in names)
    return f"SELECT ent_id AS id, {values} FROM (\n{query}\n) AS final{where} ORDER BY _ord"
