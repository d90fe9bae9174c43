"""``certs --days``: 1 to 36500 days, else one error line and nothing written (``--days 0``
used to write already-expired certificates with exit 0, ``--days -5`` printed the
cryptography library's own message)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from federation.cli import main


@pytest.mark.parametrize("days", ["0", "-5", "36501", "99999999999"])
@pytest.mark.parametrize("client", [False, True])
def test_days_out_of_range_is_one_line_and_writes_no_certificate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], days: str, client: bool) -> None:
    out = tmp_path / "pki"
    if client:
        assert main(["certs", "--out", str(out)]) == 0
        capsys.readouterr()
    before = sorted(p.name for p in out.glob("*")) if out.exists() else []
    extra = ["--client", "scorer"] if client else []
    assert main(["certs", "--out", str(out), "--days", days, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --days {days}: certificates must be valid for 1 to 36500 days"], err
    after = sorted(p.name for p in out.glob("*")) if out.exists() else []
    assert after == before
    assert out.exists() == client  # no empty folder left behind either


def test_one_day_is_valid_from_now(tmp_path: Path) -> None:
    assert main(["certs", "--out", str(tmp_path), "--days", "1"]) == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "grid.pem").read_bytes())
    assert cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)
