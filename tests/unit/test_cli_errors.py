"""Bad ``--out`` and existing folders: one ``error:`` line, exit 2, nothing deleted or replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.cli import main
from federation.transport.certs import write_federation


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    write_federation(folder)
    return folder


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("command", ["simulate", "coordinator", "party", "score", "evaluate",
                                     "certs"])
def test_out_pointing_at_a_file_is_one_line(tmp_path: Path, certs: Path, command: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "a-file"
    target.write_text("mine")
    data = tmp_path / "p.csv"
    data.write_text("id,y,probability\na,1,0.5\n")
    argv = {
        "simulate": ["simulate", "--quiet"],
        "coordinator": ["coordinator", "--job-id", "j", "--tls-dir", str(certs)],
        "party": ["party", "--role", "grid", "--job-id", "j", "--tls-dir", str(certs),
                  "--coordinator", "127.0.0.1:9", "--data", str(data)],
        "score": ["score", "--run", str(tmp_path), "--bank-data", str(data)],
        "evaluate": ["evaluate", "--predictions", str(data)],
        "certs": ["certs"],
    }[command]
    assert main([*argv, "--out", str(target)]) == 2
    line = _one_error_line(capsys)
    assert f"{target}: is a file, not a folder" in line, line
    assert target.read_text() == "mine"


def test_simulate_refuses_a_folder_that_is_not_a_run_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "mychart.png").write_bytes(b"mine")
    assert main(["simulate", "--quiet", "--out", str(tmp_path)]) == 2
    line = _one_error_line(capsys)
    assert "not a gridcredit run folder" in line and "--force" in line
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mychart.png", "plots"]


def test_certs_refuses_to_replace_an_existing_ca(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", "--out", str(tmp_path)]) == 0
    ca = (tmp_path / "ca.pem").read_bytes()
    capsys.readouterr()
    assert main(["certs", "--out", str(tmp_path)]) == 2
    line = _one_error_line(capsys)
    assert "already holds ca.pem" in line and "--force" in line
    assert (tmp_path / "ca.pem").read_bytes() == ca
    assert main(["certs", "--out", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "ca.pem").read_bytes() != ca


@pytest.mark.parametrize("flags,expected", [
    (["--threshold", "2"], "--threshold 2: a probability threshold is in [0, 1]"),
    (["--grid-data", "{tmp}/nope.csv", "--bank-data", "{tmp}/b.csv"],
     "--grid-data {tmp}/nope.csv: file not found"),
    (["--grid-data", "{tmp}", "--bank-data", "{tmp}/b.csv"],
     "--grid-data {tmp}: is a folder, not a CSV file"),
])
def test_simulate_checks_its_flags_before_any_node_starts(
        tmp_path: Path, flags: list[str], expected: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "b.csv").write_text("id,y,x\na,1,0.5\n")
    out = tmp_path / "run"
    argv = ["simulate", "--quiet", "--out", str(out), *(f.format(tmp=tmp_path) for f in flags)]
    assert main(argv) == 2
    assert _one_error_line(capsys) == f"error: {expected.format(tmp=tmp_path)}"
    assert not out.exists()  # refused before the run folder was made


def test_a_bad_flag_value_is_one_line_naming_the_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["simulate", "--epochs", "abc"])
    assert stopped.value.code == 2
    assert _one_error_line(capsys) == ("error: gridcredit simulate: argument --epochs: invalid "
                                       "int value: 'abc' (see gridcredit simulate --help)")


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    data = tmp_path / "p.csv"
    data.write_text("id,y,probability\n" + "".join(
        f"e{i},{i % 2},{0.2 + 0.6 * (i % 2) - 0.001 * i}\n" for i in range(60)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "federation.cli", "evaluate", "--predictions", str(data),
         "--out", str(tmp_path / "e")], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as 'head' does after its first line: no one reads what it prints
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err
