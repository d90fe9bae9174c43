"""Local PCA of one party's features: against scikit-learn, and the auto rule."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA as SkPca
from sklearn.preprocessing import StandardScaler

from parties.labels.stages import LoanStage, load_stages, stage_columns
from parties.pca import Pca, fit_pca, parse_components


def data(n: int = 500, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 2))
    return np.column_stack([base[:, 0], base[:, 0] * 2 + 0.1 * rng.normal(size=n),
                            base[:, 1] * 5 + 1, rng.normal(size=n) * 0.01 + 7])


def test_components_match_scikit_learn_up_to_sign_and_are_unit_variance() -> None:
    x = data()
    p = fit_pca(x, 3)
    out = p.apply(x)
    assert out.std(axis=0) == pytest.approx(np.ones(3), rel=1e-9)
    assert np.abs(np.corrcoef(out.T) - np.eye(3)).max() < 1e-9
    sk = SkPca(3).fit(StandardScaler().fit_transform(x))
    ours = p.loadings * np.sqrt(sk.explained_variance_ * (len(x) - 1) / len(x))
    assert np.abs(np.abs(ours) - np.abs(sk.components_.T)).max() < 1e-8
    assert p.explained == pytest.approx(sk.explained_variance_ratio_, rel=1e-9)


def test_auto_keeps_the_fewest_components_for_90_percent() -> None:
    x = data()
    p = fit_pca(x, "auto")
    cum = np.cumsum(fit_pca(x, 4).explained)
    k = int(np.argmax(cum >= 0.9) + 1)
    assert p.loadings.shape[1] == k and 1 <= k < 4


def test_count_is_capped_and_round_trips_and_parsing() -> None:
    x = data()
    assert fit_pca(x, 99).loadings.shape[1] == 4
    p = fit_pca(x, 2)
    q = Pca.from_dict(p.as_dict())
    assert np.array_equal(q.apply(x), p.apply(x))
    assert p.names == ["pc1", "pc2"]
    assert parse_components("auto") == "auto" and parse_components("3") == 3
    assert parse_components(None) is None
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match="--pca"):
            parse_components(bad)
    with pytest.raises(ValueError, match="no feature varies"):
        fit_pca(np.ones((5, 2)), 1)


def test_stage_file_names_the_paper_tables() -> None:
    stages = load_stages()
    grid = stages["grid"]
    pre = sorted(n for n, s in grid.items() if LoanStage.PRE in s)
    assert pre == sorted(["outage_count_12m", "score_diff", "score_vola",
                          "bill_due_vs_industry_12m", "use_growth_avg_12m", "ent_shell_score"])
    post = [n for n, s in grid.items() if LoanStage.POST in s]
    assert len(post) == 12  # Table 7's 13 rows, one of them a duplicate indicator
    cols = ["use_yoy_3m_pct", "use_yoy_3m_pct_missing", "capacity_kva", "late_count_12m"]
    assert stage_columns(cols, "grid", LoanStage.IN) == ["use_yoy_3m_pct",
                                                          "use_yoy_3m_pct_missing"]
    assert stage_columns(cols, "grid", LoanStage.POST) == ["use_yoy_3m_pct",
                                                            "use_yoy_3m_pct_missing",
                                                            "late_count_12m"]


def test_every_staged_indicator_exists_in_the_registries() -> None:
    from parties.labels.bank_indicators import BANK_BY_NAME
    from parties.labels.features import grid_registry

    grid_names = {i.name for i in grid_registry() if i.model_feature}
    stages = load_stages()
    assert set(stages["grid"]) <= grid_names
    assert set(stages["bank"]) == set(BANK_BY_NAME)
