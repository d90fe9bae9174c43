"""--model gbdt settings: defaults, checks, the example TOML, the wire round trip."""

from __future__ import annotations

import pytest

from federation.cli_flags import training_values
from federation.config import load_toml, settings_from
from federation.protocol.errors import ConfigError
from federation.protocol.messages import Model, TrainSettings
from federation.transport import wire
from tests.conftest import REPO


def test_gbdt_has_its_own_learning_rate_and_l2_defaults_unless_given() -> None:
    s = settings_from({"model": "gbdt"})
    assert (s.model, s.learning_rate, s.l2, s.trees, s.depth, s.bins) == \
        (Model.GBDT, 0.1, 1.0, 50, 5, 32)
    s = settings_from({"model": "gbdt", "learning_rate": 0.3})
    assert (s.learning_rate, s.l2) == (0.3, 1.0)
    lr = settings_from({})
    assert (lr.model, lr.learning_rate, lr.l2) == (Model.LR, 0.15, 0.001)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("trees", 0, "trees must be"), ("depth", 13, "depth must be"), ("bins", 1, "bins must be"),
    ("bins", 300, "bins must be"), ("subsample", 0.0, "subsample must be"),
    ("min_child_weight", -1.0, "min_child_weight"), ("early_stopping_rounds", -1, "early"),
    ("model", "forest", "model"),
])
def test_bad_tree_settings_are_one_readable_line(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from({"model": "gbdt", key: value})


def test_example_tree_coordinator_config_loads() -> None:
    raw = load_toml(REPO / "examples" / "coordinator_gbdt.toml")
    s = settings_from(raw["training"])
    assert s.model is Model.GBDT and s.early_stopping_rounds == 10


def test_tree_settings_cross_the_wire() -> None:
    s = TrainSettings(model=Model.GBDT, trees=7, depth=3, bins=16, min_child_weight=0.5,
                      subsample=0.8, early_stopping_rounds=2)
    assert wire.settings_from_proto(wire.settings_to_proto(s)) == s


def test_cli_flags_reach_the_settings() -> None:
    from federation.cli import build_parser

    args = build_parser().parse_args(["simulate", "--model", "gbdt", "--trees", "9",
                                      "--depth", "4", "--bins", "20", "--subsample", "0.5",
                                      "--min-child-weight", "2", "--early-stopping-rounds", "0",
                                      "--no-compare-lr"])
    s = settings_from(training_values(args))
    assert (s.model, s.trees, s.depth, s.bins, s.subsample, s.min_child_weight,
            s.early_stopping_rounds) == (Model.GBDT, 9, 4, 20, 0.5, 2.0, 0)
    assert args.compare_lr is False
