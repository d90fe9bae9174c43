"""The three stage models' tables on synthetic data: built at the months each stage implies,
on the same borrowers and labels, with the stage's indicators; and the generator's
mechanism (power signals that strengthen as a default nears) gives the paper's direction,
post-loan >= in-loan >= pre-loan in AUC and Nagelkerke R^2, for a plain centralized LR."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from parties.evaluation.goodness_of_fit import pseudo_r2
from parties.labels.schema import parse_month
from parties.labels.stage_tables import build_stage_tables
from parties.labels.stages import LoanStage, load_stages
from parties.labels.synth import synthesize


@pytest.fixture(scope="module")
def stages() -> tuple[dict[LoanStage, object], int]:
    data = synthesize(4000, 36, 7)
    as_of = parse_month(str(data.manifest["as_of"]))
    return build_stage_tables(data.grid, data.bank, as_of), as_of  # type: ignore[return-value]


def test_stages_share_rows_and_labels_and_are_built_in_time_order(stages: tuple) -> None:
    tables, as_of = stages
    pre, mid, post = (tables[s] for s in (LoanStage.PRE, LoanStage.IN, LoanStage.POST))
    assert list(pre.bank["id"]) == list(mid.bank["id"]) == list(post.bank["id"])
    assert list(pre.grid["id"]) == list(pre.bank["id"])
    assert (pre.bank["y"].to_numpy() == post.bank["y"].to_numpy()).all()
    for i in list(pre.months)[:500]:
        assert pre.months[i] <= mid.months[i] <= post.months[i] == as_of
    assert any(pre.months[i] < as_of - 6 for i in pre.months)
    stage_map = load_stages()
    for stage, t in tables.items():
        wanted = {n for n, s in stage_map["grid"].items() if stage in s}
        base = {c.removesuffix("_missing") for c in t.grid.columns if c != "id"}
        assert base <= wanted and len(base) >= len(wanted) - 1, stage


def _fit(t: object, seed: int) -> tuple[float, float]:
    joined = t.bank.merge(t.grid, on="id")  # type: ignore[attr-defined]
    cols = [c for c in joined.columns if c not in ("id", "y")]
    rng = np.random.default_rng(seed)
    valid = rng.random(len(joined)) < 0.3
    x = joined[cols].to_numpy(float)
    mu, sd = x[~valid].mean(axis=0), x[~valid].std(axis=0)
    z = (x - mu) / np.where(sd > 0, sd, 1.0)
    y = joined["y"].to_numpy(float)
    model = LogisticRegression(max_iter=3000).fit(z[~valid], y[~valid])
    p = model.predict_proba(z[valid])[:, 1]
    return roc_auc_score(y[valid], p), pseudo_r2(y[valid], p)[1]


def test_the_closer_to_default_the_better_the_model(stages: tuple) -> None:
    tables, _ = stages
    result = {s: np.mean([_fit(tables[s], seed) for seed in range(3)], axis=0)
              for s in (LoanStage.PRE, LoanStage.IN, LoanStage.POST)}
    auc = {s: r[0] for s, r in result.items()}
    r2 = {s: r[1] for s, r in result.items()}
    assert auc[LoanStage.POST] > auc[LoanStage.IN] > auc[LoanStage.PRE], auc
    assert r2[LoanStage.POST] > r2[LoanStage.IN] > r2[LoanStage.PRE], r2
