"""The synth / features build / warn commands end to end, masking, hashing, atomic output."""

from __future__ import annotations

import pathlib

import pandas as pd
import pytest

from parties.labels import output
from parties.labels.cli import main
from parties.labels.mask import hash_ids, mask_id_number, mask_name

KEY = "federation-key-0123456789"


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--enterprises", "300", "--seed", "2", "--out", str(out)]) == 0
    return out


def _read(path: pathlib.Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"id": str}, keep_default_na=False, na_values=[""])


def test_features_build_both_roles(synth_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    for role in ("grid", "bank"):
        out = tmp_path / f"{role}.csv"
        assert main(["features", "build", "--role", role, "--raw", str(synth_dir),
                     "--out", str(out)]) == 0
        table = _read(out)
        assert table.columns[0] == "id" and table["id"].is_unique
        dictionary = _read(tmp_path / f"{role}.dictionary.csv")
        assert list(dictionary.columns) == ["name", "definition", "window_months", "source",
                                            "missing_rate"]
        assert set(dictionary["name"]) == set(table.columns[1:])
    assert _read(tmp_path / "bank.csv").columns[1] == "y"
    assert _read(tmp_path / "grid.csv").isna().any().any()  # missing stays missing


def test_impute_and_hash_ids_give_trainer_ready_joinable_files(
        synth_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    for role in ("grid", "bank"):
        assert main(["features", "build", "--role", role, "--raw", str(synth_dir / role),
                     "--as-of", "2023-06", "--impute", "median", "--hash-ids-key", KEY,
                     "--out", str(tmp_path / f"{role}.csv")]) == 0
    grid, bank = _read(tmp_path / "grid.csv"), _read(tmp_path / "bank.csv")
    for table in (grid, bank):
        assert not table.isna().any().any()
        assert table["id"].str.fullmatch("[0-9a-f]{64}").all()
        assert (table.drop(columns="id").nunique() > 1).all()
    assert bank["id"].isin(grid["id"]).mean() > 0.8


def test_warn_masks_names_and_reports_unknown_ids(synth_dir: pathlib.Path,
                                                  tmp_path: pathlib.Path) -> None:
    ents = pd.read_csv(synth_dir / "grid" / "enterprises.csv", dtype=str)
    ids = tmp_path / "borrowers.csv"
    pd.DataFrame({"id": [*ents["ent_id"].head(5), "NOT-A-CUSTOMER"]}).to_csv(ids, index=False)
    out = tmp_path / "ratings.csv"
    assert main(["warn", "--raw", str(synth_dir), "--ids", str(ids), "--out", str(out)]) == 0
    ratings = _read(out).fillna("")
    assert len(ratings) == 6 and ratings["found"].tolist() == [1] * 5 + [0]
    assert set(ratings["rating"][:5]) <= {"alert", "shrink", "expansion", "stable", "unrated"}
    assert ratings["missing"].iloc[5] == "no grid record"
    assert ratings["name"][:5].str.fullmatch(".[*][*]").all()


def test_no_output_holds_an_unmasked_name_or_legal_person_id(
        synth_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    main(["warn", "--raw", str(synth_dir), "--out", str(tmp_path / "r.csv")])
    main(["features", "build", "--role", "grid", "--raw", str(synth_dir),
          "--out", str(tmp_path / "g.csv")])
    ents = pd.read_csv(synth_dir / "grid" / "enterprises.csv", dtype=str)
    text = "".join(p.read_text(encoding="utf-8") for p in tmp_path.glob("*.csv"))
    assert "**" in text
    assert not any(v in text for v in [*ents["name"], *ents["legal_person_id"]])


@pytest.mark.parametrize(("argv", "message"), [
    (["features", "build", "--role", "grid", "--raw", "NOPE", "--as-of", "2023-06"],
     "--raw NOPE: no such folder"),
    (["features", "build", "--role", "grid", "--as-of", "2023-13"], "--as-of: expected a month"),
    (["warn", "--hash-ids-key", "short"], "at least 16 bytes"),
    (["synth", "--enterprises", "3"], "--enterprises"),
    (["features", "build", "--role", "grid", "--as-of", "2020-01"],
     "--as-of 2020-01: before the first month of the data"),
    (["features", "build", "--role", "grid", "--as-of", "2030-01"],
     "--as-of 2030-01: after the last month of the data"),
    (["features", "build", "--role", "bank", "--as-of", "2020-12"],
     "--as-of 2020-12: before the first month of the data"),
    (["warn", "--as-of", "2020-01"], "--as-of 2020-01: before the first month of the data"),
])
def test_bad_input_prints_error_and_exits_2(synth_dir: pathlib.Path, tmp_path: pathlib.Path,
                                            capsys: pytest.CaptureFixture[str],
                                            argv: list[str], message: str) -> None:
    if "--raw" not in argv and argv[0] != "synth":
        argv = [*argv, "--raw", str(synth_dir)]
    argv = [*argv, "--out", str(tmp_path / "x.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.csv").exists()


def test_failed_write_leaves_no_file(tmp_path: pathlib.Path) -> None:
    def explode(stream: object) -> None:
        stream.write("id,half")  # type: ignore[attr-defined]
        raise RuntimeError("disk full")

    target = tmp_path / "features.csv"
    with pytest.raises(RuntimeError):
        output.write_atomic(target, explode)
    assert list(tmp_path.iterdir()) == []


def test_masks_and_keyed_hash() -> None:
    assert mask_name("张三丰") == "张**" and mask_name("") == ""
    assert mask_id_number("110101199003071234") == "1101**********1234"
    ids = pd.Series(["A", "B"])
    one, two = hash_ids(ids, b"k" * 16), hash_ids(ids, b"j" * 16)
    assert one[0] != one[1] and one[0] != two[0] and len(one[0]) == 64
    assert hash_ids(ids, b"k" * 16).equals(one)


@pytest.mark.parametrize("role", ["grid", "bank"])
def test_features_build_on_a_missing_raw_folder_is_one_line(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], role: str) -> None:
    missing = tmp_path / "nowhere"
    assert main(["features", "build", "--role", role, "--raw", str(missing), "--as-of",
                 "2023-06", "--out", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --raw {missing}: no such folder"]
    assert not (tmp_path / "f.csv").exists()


@pytest.mark.parametrize(("role", "as_of"), [("grid", "2030-01"), ("bank", "2030-01"),
                                              ("bank", "2023-12")])
def test_features_build_past_the_data_fails_instead_of_writing_nothing(
        synth_dir: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
        role: str, as_of: str) -> None:
    out = tmp_path / "f.csv"
    assert main(["features", "build", "--role", role, "--raw", str(synth_dir), "--as-of",
                 as_of, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --as-of {as_of}: "), err
    assert not out.exists() and not (tmp_path / "f.dictionary.csv").exists()


def test_messages_carry_no_placeholder_row_or_column(tmp_path: pathlib.Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "grid").mkdir()
    assert main(["features", "build", "--role", "grid", "--raw", str(tmp_path / "grid"),
                 "--as-of", "2023-06", "--out", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err
    assert "enterprises.csv: file not found" in err
    assert "row -" not in err and "column -" not in err


def test_warn_in_the_first_month_rates_nobody_stable_without_usage(
        synth_dir: pathlib.Path, tmp_path: pathlib.Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ratings.csv"
    assert main(["warn", "--raw", str(synth_dir), "--as-of", "2021-01", "--out", str(out)]) == 0
    ratings = _read(out).fillna("")
    no_usage = ratings["missing"].str.contains("use_yoy_12m_pct")
    assert no_usage.all() and "stable" not in set(ratings["rating"])
    assert "unrated" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["", "id\n"])
def test_warn_refuses_an_ids_file_without_ids(synth_dir: pathlib.Path, tmp_path: pathlib.Path,
                                              capsys: pytest.CaptureFixture[str],
                                              text: str) -> None:
    ids = tmp_path / "ids.csv"
    ids.write_text(text, encoding="utf-8")
    assert main(["warn", "--raw", str(synth_dir), "--ids", str(ids), "--out",
                 str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --ids {ids}: ") and err.count("\n") == 1
    assert not (tmp_path / "r.csv").exists()


def test_warn_summary_names_ids_not_found(synth_dir: pathlib.Path, tmp_path: pathlib.Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    ids = tmp_path / "ids.csv"
    ids.write_text("id\nNOT-A-CUSTOMER\nNOR-THIS\n", encoding="utf-8")
    assert main(["warn", "--raw", str(synth_dir), "--ids", str(ids), "--out",
                 str(tmp_path / "r.csv")]) == 0
    assert "{'not found': 2}" in capsys.readouterr().out


def test_impute_names_dropped_columns_and_keeps_the_missing_rate(
        synth_dir: pathlib.Path, tmp_path: pathlib.Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    base = ["features", "build", "--role", "grid", "--raw", str(synth_dir), "--as-of", "2021-06"]
    assert main([*base, "--out", str(tmp_path / "raw.csv")]) == 0
    capsys.readouterr()
    assert main([*base, "--impute", "median", "--out", str(tmp_path / "imp.csv")]) == 0
    out = capsys.readouterr().out
    assert "--impute median dropped" in out and "use_yoy_12m_pct" in out
    assert "use_yoy_12m_pct" not in _read(tmp_path / "imp.csv").columns
    before = _read(tmp_path / "raw.dictionary.csv").set_index("name")["missing_rate"]
    after = _read(tmp_path / "imp.dictionary.csv").set_index("name")["missing_rate"]
    imputed = [c for c in after.index if f"{c}_missing" in after.index]
    assert imputed and (after[imputed] > 0).all()
    assert after[imputed].tolist() == before[imputed].tolist()
