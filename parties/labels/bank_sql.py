"""The bank's indicators and label as SQL, for DuckDB and Spark alike.

What it does: :func:`tax_facts` pivots 24 months of taxes per enterprise (``t0`` is the
as-of month), :func:`repayment_facts` aggregates the repayments as known at the as-of month
and the label window after it, :func:`borrowers` lists the population (enterprises with a loan
started by the as-of month, in the order the loans table first names them), and
:func:`indicator_query` derives every indicator of
:data:`~parties.labels.bank_indicators.BANK_INDICATORS` and the label ``y``.

What it assumes: the rules of :mod:`parties.labels.bank_indicators` (the reference): a
repayment of month ``m`` falls due on the last day of ``m`` and its days overdue are known up
to the as-of month's last day, one still overdue then counts as unpaid; a tax window needs a
row for each of its months.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parties.labels.checks import flag_aggregates
from parties.labels.panel import HISTORY
from parties.labels.schema import BANK_TABLES, month_end
from parties.labels.sqlkit import (
    Column,
    cols,
    exact_sum,
    lit,
    mean,
    pct_change,
    present,
    ratio,
    stage_query,
    total,
    when,
)

REPAYMENT_COLUMNS = ("r_due0", "r_due12", "r_paid12", "r_over_n12", "r_over_max12",
                     "r_over30_n24", "r_label_worst")


def tax_facts(typed: str, as_of: int) -> str:
    """Per enterprise: row and distinct-month counts, flags, ``t0`` .. ``t23``."""
    pivot = [f"max(tax_amount) FILTER (WHERE month = {as_of - k}) AS t{k}"
             for k in range(HISTORY)]
    return (f"SELECT ent_id, count(*) AS _rows, count(DISTINCT month) AS _keys, "
            f"{', '.join([*flag_aggregates(BANK_TABLES['taxes']), *pivot])} "
            f"FROM {typed} AS t GROUP BY ent_id")


def _known_days(as_of: int) -> str:
    """Days from the end of month ``as_of - k`` to the end of the as-of month, by ``k``."""
    ends = month_end(np.arange(as_of - HISTORY + 1, as_of + 1))
    days = (ends[-1] - ends).astype(np.int64)
    arms = " ".join(f"WHEN {HISTORY - 1 - j} THEN {int(d)}" for j, d in enumerate(days))
    return f"CASE {as_of} - month {arms} END"


def repayment_facts(typed: str, as_of: int, horizon: int) -> str:
    """Per enterprise: the repayment figures at ``as_of`` and the worst days overdue of the
    ``horizon`` months after it (the label)."""
    known = _known_days(as_of)
    pit = (f"SELECT *, least(days_overdue, {known}) AS days, CASE WHEN days_overdue > {known} "
           f"THEN 0E0 ELSE amount_paid END AS paid FROM {typed} AS t")
    k12 = f"month BETWEEN {as_of - 11} AND {as_of}"
    k24 = f"month BETWEEN {as_of - HISTORY + 1} AND {as_of}"
    aggs = [
        f"{exact_sum('amount_due', f'month = {as_of}')} AS r_due0",
        f"{exact_sum('amount_due', k12)} AS r_due12",
        f"{exact_sum('paid', k12)} AS r_paid12",
        f"count(DISTINCT month) FILTER (WHERE {k12} AND days > 0) AS r_over_n12",
        f"max(days) FILTER (WHERE {k12}) AS r_over_max12",
        f"count(DISTINCT month) FILTER (WHERE {k24} AND days >= 30) AS r_over30_n24",
        f"max(days_overdue) FILTER (WHERE month > {as_of} AND month <= {as_of + horizon}) "
        "AS r_label_worst",
    ]
    return (f"SELECT ent_id, {', '.join([*flag_aggregates(BANK_TABLES['repayments']), *aggs])} "
            f"FROM ({pit}) AS p GROUP BY ent_id")


def borrowers(loans: str, as_of: int) -> str:
    """Enterprises with a loan started by ``as_of``: order, loan count, active principal and
    months since the latest loan."""
    active = f"CASE WHEN start_month + term_months > {as_of} THEN amount ELSE 0E0 END"
    return (f"SELECT ent_id, min(_ord) AS _ord, count(*) AS n_loans, "
            f"{exact_sum(active)} AS active_amount, "
            f"{as_of} - max(start_month) AS since_loan FROM {loans} AS l "
            f"WHERE start_month <= {as_of} GROUP BY ent_id")


def _indicators() -> list[list[Column]]:
    t12, t24 = cols("t", 12), cols("t", 24)
    first = [
        ("tax_mean_12m", when(present(t12), mean(t12))),
        ("tax_yoy_12m_pct", when(present(t24), pct_change(total(t12), total(cols("t", 12, 12))))),
        ("tax_h2h_6m_pct", when(present(t12), pct_change(total(cols("t", 6)),
                                                         total(cols("t", 6, 6))))),
        ("loan_count", "CAST(n_loans AS DOUBLE)"),
        ("loan_amount_active", "active_amount"),
        ("amount_due_month", "coalesce(r_due0, 0E0)"),
        ("months_since_last_loan", "CAST(since_loan AS DOUBLE)"),
        ("overdue_count_12m", "CAST(coalesce(r_over_n12, 0) AS DOUBLE)"),
        ("overdue_max_days_12m", "CAST(coalesce(r_over_max12, 0) AS DOUBLE)"),
        ("overdue_30_count_24m", "CAST(coalesce(r_over30_n24, 0) AS DOUBLE)"),
        ("repaid_ratio_12m", ratio("coalesce(r_paid12, 0E0)", "coalesce(r_due12, 0E0)")),
    ]
    t3 = cols("t", 3)
    second = [("tax_last_3m_vs_mean_12m",
               when(present(t3), ratio(total(t3), f"{lit(3.0)} * tax_mean_12m")))]
    return [first, second]


def indicator_query(population: str, repayments: str, taxes: str, names: Sequence[str],
                    overdue_days: int) -> str:
    """One row per borrower: ``id``, ``y`` (1.0, 0.0 or NULL without a repayment due in the
    label window) and the indicators ``names``, in the population's order."""
    facts = [*(f"r.{c}" for c in REPAYMENT_COLUMNS), *(f"x.t{k}" for k in range(HISTORY))]
    base = (f"SELECT p.*, {', '.join(facts)} FROM {population} AS p "
            f"LEFT JOIN {repayments} AS r ON r.ent_id = p.ent_id "
            f"LEFT JOIN {taxes} AS x ON x.ent_id = p.ent_id")
    query = stage_query(base, _indicators())
    values = ", ".join(f"CAST({n} AS DOUBLE) AS {n}" for n in names)
    label = (f"CASE WHEN r_label_worst IS NULL THEN NULL WHEN r_label_worst >= {overdue_days} "
             "THEN 1E0 ELSE 0E0 END")
    return f"SELECT ent_id AS id, {label} AS y, {values} FROM (\n{query}\n) AS final ORDER BY _ord"
