"""``gridcredit serve``'s quota flags: explained in ``--help``, a bad value is one line."""

from __future__ import annotations

import pytest

from federation.serve_cli import main


def test_help_explains_each_quota_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--max-rows-per-session", "1000000"),
                          ("--max-requests-per-minute", "6000"),
                          ("--max-opens-per-minute", "10")):
        assert flag in text
        assert f"(default: {default})" in text
    assert "RESOURCE_EXHAUSTED" in text


@pytest.mark.parametrize("flag", ["--max-rows-per-session", "--max-requests-per-minute",
                                  "--max-opens-per-minute"])
def test_a_quota_below_one_is_one_error_line(capsys: pytest.CaptureFixture[str],
                                             flag: str) -> None:
    code = main(["serve", "--role", "grid", "--model", "m.json", "--data", "d.csv",
                 "--tls-dir", "certs", flag, "0"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {flag} must be at least 1, got 0"]
