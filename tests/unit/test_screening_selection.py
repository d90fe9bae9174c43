"""Selection rules: TOML parsing and the order in which rules drop indicators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from parties.evaluation.screening.selection import (
    Candidate,
    Rules,
    load_rules,
    select,
    selection_document,
)


def cand(party: str, name: str, iv: float, missing: float = 0.0, psi: float = 0.0,
         monotone: bool = True) -> Candidate:
    return Candidate(party, name, iv, missing, psi, monotone)


def test_each_rule_drops_and_names_itself() -> None:
    cands = [
        cand("grid", "late", 0.50),
        cand("grid", "late_copy", 0.45),  # rho 0.95 with late: correlation
        cand("grid", "empty", 0.30, missing=0.9),  # missing
        cand("grid", "noise", 0.01),  # iv
        cand("bank", "drift", 0.20, psi=0.4),  # psi
        cand("bank", "tax", 0.10),
        cand("bank", "zigzag", 0.08, monotone=False),  # kept: monotone not required
    ]
    r = np.eye(len(cands))
    r[0, 1] = r[1, 0] = 0.95
    r[5, 6] = r[6, 5] = -0.3
    kept, dropped = select(cands, r, Rules())
    assert [c.name for c in kept] == ["late", "tax", "zigzag"]
    rules = {d.name: d.rule for d in dropped}
    assert rules == {"late_copy": "correlation", "empty": "missing", "noise": "iv",
                     "drift": "psi"}
    detail = {d.name: d.detail for d in dropped}
    assert "with grid:late" in detail["late_copy"] and "0.950 > 0.8" in detail["late_copy"]
    strict = select(cands, r, Rules(require_monotone=True))[1]
    assert {d.name: d.rule for d in strict}["zigzag"] == "monotone"


def test_the_higher_iv_survives_a_correlated_pair_across_parties() -> None:
    cands = [cand("grid", "use_drop", 0.10), cand("bank", "tax_drop", 0.30)]
    r = np.array([[1.0, -0.85], [-0.85, 1.0]])
    kept, dropped = select(cands, r, Rules())
    assert [c.name for c in kept] == ["tax_drop"]
    assert dropped[0].name == "use_drop" and dropped[0].rule == "correlation"


def test_vif_drops_a_combination_that_pairwise_correlation_misses() -> None:
    # c = (a + b) / sqrt(2): pairwise rho 0.707 < 0.8, but c is a combination of a and b.
    s = 1 / np.sqrt(2)
    r = np.array([[1.0, 0.0, s], [0.0, 1.0, s], [s, s, 1.0]])
    cands = [cand("grid", "a", 0.3), cand("bank", "b", 0.2), cand("grid", "c", 0.1)]
    kept, dropped = select(cands, r, Rules())
    assert [c.name for c in kept] == ["a", "b"]  # all three are inf: the lowest IV goes
    assert [(d.name, d.rule) for d in dropped] == [("c", "vif")]


def test_selection_document_lists_each_party() -> None:
    cands = [cand("grid", "g1", 0.3), cand("grid", "g2", 0.001), cand("bank", "b1", 0.2)]
    kept, dropped = select(cands, np.eye(3), Rules())
    doc = selection_document(kept, dropped, Rules())
    assert doc["parties"]["grid"] == {
        "kept": ["g1"], "dropped": [{"name": "g2", "rule": "iv",
                                     "detail": "IV 0.0010 < 0.02"}]}
    assert doc["parties"]["bank"]["kept"] == ["b1"]
    assert doc["rules"]["min_iv"] == 0.02


def test_rules_toml(tmp_path: Path) -> None:
    assert load_rules(None) == Rules()
    f = tmp_path / "rules.toml"
    f.write_text("[rules]\nmin_iv = 0.05\nrequire_monotone = true\n", encoding="utf-8")
    assert load_rules(f) == Rules(min_iv=0.05, require_monotone=True)
    f.write_text("max_vif = 5\n", encoding="utf-8")  # top-level keys work too
    assert load_rules(f).max_vif == 5.0
    f.write_text("[rules]\nmin_ivv = 0.05\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown rule 'min_ivv'"):
        load_rules(f)
    f.write_text("[rules]\nmax_psi = \"high\"\n", encoding="utf-8")
    with pytest.raises(ValueError, match="max_psi = 'high': expected a finite number >= 0"):
        load_rules(f)
    f.write_text("[rules\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_rules(f)


@pytest.mark.parametrize(("line", "expected"), [
    ("max_missing = 1.5", "a share in [0, 1]"), ("max_missing = -0.1", "a share in [0, 1]"),
    ("max_vif = 0.5", ">= 1"), ("max_correlation = 0", "(0, 1]"),
    ("max_correlation = 1.2", "(0, 1]"), ("min_iv = nan", "finite"),
    ("min_iv = -1", ">= 0"), ("max_psi = inf", "finite"), ("max_vif = nan", "finite"),
    ('min_iv = "0.1"', "finite"),
])
def test_rules_out_of_range_name_file_key_and_value(tmp_path: Path, line: str,
                                                    expected: str) -> None:
    f = tmp_path / "rules.toml"
    f.write_text(f"[rules]\n{line}\n", encoding="utf-8")
    key, value = (part.strip() for part in line.split("="))
    with pytest.raises(ValueError) as info:
        load_rules(f)
    message = str(info.value)
    assert message.startswith(f"{f}: {key} = ") and expected in message
    assert value.strip('"') in message and "\n" not in message


def test_rules_at_the_ends_of_their_ranges_are_accepted(tmp_path: Path) -> None:
    f = tmp_path / "rules.toml"
    f.write_text("[rules]\nmin_iv = 0\nmax_missing = 1\nmax_correlation = 1\nmax_vif = 1\n"
                 "max_psi = 0\n", encoding="utf-8")
    assert load_rules(f) == Rules(min_iv=0, max_missing=1, max_correlation=1, max_vif=1,
                                  max_psi=0)
