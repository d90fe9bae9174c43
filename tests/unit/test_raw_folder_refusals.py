"""``stages``, ``screen`` and ``synth`` on bad ``--raw``, ``--as-of`` and ``--out``: one
``error:`` line naming the flag, exit code 2, no password shown, and a folder of the user's
own files left byte for byte as it was."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli

DSN = "postgresql://analyst:rightpw@127.0.0.1:9/gridcredit"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "synth"
    result = run_cli("synth", "--enterprises", "150", "--months", "30", "--seed", "3",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def _user_folder(root: Path) -> dict[Path, bytes]:
    files = {root / "summary.md": b"my own notes\n", root / "manifest.json": b'{"mine": 1}\n',
             root / "grid" / "bills.csv": b"my,own\n1,2\n"}
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    err = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and "Traceback" not in err[0]
    return str(err[0])


@pytest.mark.parametrize("command", ["stages", "screen"])
def test_a_database_as_raw_is_refused_without_showing_the_password(
        tmp_path: Path, command: str) -> None:
    result = run_cli(command, "--raw", DSN, "--as-of", "2022-12", "--out", str(tmp_path / "o"))
    line = _one_line(result)
    assert "--raw" in line and "rightpw" not in result.stderr + result.stdout
    assert "analyst" not in line and not (tmp_path / "o").exists()


def test_stages_refuses_a_folder_of_the_users_files(tmp_path: Path, raw: Path) -> None:
    files = _user_folder(tmp_path / "mine")
    line = _one_line(run_cli("stages", "--raw", str(raw), "--out", str(tmp_path / "mine"),
                             "--epochs", "1", "--quiet"))
    assert "--out" in line and "--force" in line
    assert {p: p.read_bytes() for p in files} == files
    assert sorted(p.name for p in (tmp_path / "mine").rglob("*")) == [
        "bills.csv", "grid", "manifest.json", "summary.md"]


def test_synth_refuses_a_folder_of_the_users_files_and_force_deletes_nothing(
        tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    files = _user_folder(mine)
    line = _one_line(run_cli("synth", "--enterprises", "30", "--out", str(mine)))
    assert "--out" in line and "--force" in line
    assert {p: p.read_bytes() for p in files} == files
    (mine / "grid" / "bills.csv").unlink()
    (mine / "manifest.json").unlink()
    result = run_cli("synth", "--enterprises", "30", "--out", str(mine), "--force")
    assert result.returncode == 0, result.stderr
    assert (mine / "summary.md").read_bytes() == files[mine / "summary.md"]
    # An earlier synth folder is the program's own: written again without --force.
    again = run_cli("synth", "--enterprises", "30", "--seed", "2", "--out", str(mine))
    assert again.returncode == 0, again.stderr
    assert (mine / "summary.md").read_bytes() == files[mine / "summary.md"]


@pytest.mark.parametrize("as_of", ["2025-01", "2020-01"])
def test_stages_refuses_a_month_outside_the_data(tmp_path: Path, raw: Path, as_of: str) -> None:
    line = _one_line(run_cli("stages", "--raw", str(raw), "--as-of", as_of, "--out",
                             str(tmp_path / "o"), "--quiet"))
    assert f"--as-of {as_of}" in line and "2021-01 to 2023-06" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags", [["--as-of", "2025-01"],
                                   ["--as-of", "2022-06", "--compare-as-of", "2030-01"]])
def test_screen_refuses_a_month_outside_the_data_before_writing(
        tmp_path: Path, raw: Path, flags: list[str]) -> None:
    line = _one_line(run_cli("screen", "--raw", str(raw), *flags, "--out", str(tmp_path / "o"),
                             "--quiet"))
    assert f"{flags[-2]} {flags[-1]}: after the last month" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["stages", "screen"])
def test_a_bad_month_names_the_flag(tmp_path: Path, raw: Path, command: str) -> None:
    line = _one_line(run_cli(command, "--raw", str(raw), "--as-of", "2022-13", "--out",
                             str(tmp_path / "o")))
    assert line == "error: --as-of: expected a month YYYY-MM, got '2022-13'"
    line = _one_line(run_cli("screen", "--raw", str(raw), "--compare-as-of", "2022-13", "--out",
                             str(tmp_path / "o")))
    assert line.startswith("error: --compare-as-of: ")
