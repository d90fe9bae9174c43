"""Every [job] value has a flag (README: "every value can be overridden by a flag"): a party's
``--deadline`` and ``--barrier-timeout``, the coordinator's ``--barrier-timeout`` and
``--job-timeout``; a flag wins over the config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.cli import build_parser
from federation.cli_flags import network
from federation.protocol.messages import Role


def _job(argv: list[str], role: Role) -> dict[str, object]:
    _, raw, _ = network(build_parser().parse_args(argv), role)
    return dict(raw.get("job", {}))


def test_party_deadline_and_barrier_timeout_flags_override_the_job_table(
        tmp_path: Path) -> None:
    config = tmp_path / "grid.toml"
    config.write_text("[job]\ndeadline = 30.0\nbarrier_timeout = 600.0\n")
    base = ["party", "--role", "grid", "--job-id", "j", "--out", str(tmp_path / "o"),
            "--tls-dir", str(tmp_path), "--config", str(config)]
    assert _job(base, Role.GRID) == {"deadline": 30.0, "barrier_timeout": 600.0}
    assert _job([*base, "--deadline", "5", "--barrier-timeout", "7.5"], Role.GRID) == {
        "deadline": 5.0, "barrier_timeout": 7.5}


def test_coordinator_barrier_and_job_timeout_flags_set_the_job_table(tmp_path: Path) -> None:
    argv = ["coordinator", "--job-id", "j", "--out", str(tmp_path / "o"), "--tls-dir",
            str(tmp_path), "--barrier-timeout", "45", "--job-timeout", "900"]
    assert _job(argv, Role.COORDINATOR) == {"barrier_timeout": 45.0, "job_timeout": 900.0}


@pytest.mark.parametrize(("command", "flags"), [
    (["party", "--role", "bank"], ["--deadline", "--barrier-timeout"]),
    (["coordinator"], ["--barrier-timeout", "--job-timeout"]),
])
def test_job_flags_are_in_the_help(capsys: pytest.CaptureFixture[str], command: list[str],
                                   flags: list[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command[0], "--help"])
    text = capsys.readouterr().out
    assert "override the [job] table" in text
    for flag in flags:
        assert flag in text


@pytest.mark.parametrize("value", ["0", "-1", "thirty", "nan", "inf"])
def test_a_deadline_that_is_no_number_of_seconds_is_refused(
        capsys: pytest.CaptureFixture[str], value: str) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["party", "--role", "grid", "--deadline", value])
    assert caught.value.code == 2
    assert "--deadline: expected a number of seconds" in capsys.readouterr().err
