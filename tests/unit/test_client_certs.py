"""``gridcredit certs --client NAME``: a scoring client's certificate next to the federation's.

It is signed by the CA already in the folder, names ``client:NAME`` (no node role), is for
TLS clients only, and never touches the CA or the node certificates; an existing one is
replaced only with ``--force``.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.cli import main
from federation.transport.certs import is_client_name, write_federation


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_client_certificate_is_issued_by_the_existing_ca_and_touches_nothing_else(
        tmp_path: Path) -> None:
    write_federation(tmp_path)
    before = _snapshot(tmp_path)
    assert main(["certs", "--out", str(tmp_path), "--client", "risk-desk"]) == 0
    after = _snapshot(tmp_path)
    assert set(after) - set(before) == {"client-risk-desk.pem", "client-risk-desk.key"}
    assert all(after[name] == data for name, data in before.items())
    assert stat.S_IMODE((tmp_path / "client-risk-desk.key").stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(before["ca.pem"])
    cert = x509.load_pem_x509_certificate(after["client-risk-desk.pem"])
    cert.verify_directly_issued_by(ca)
    name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert name == "client:risk-desk" and is_client_name(str(name))
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):  # no server name: it cannot pose as a node
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_an_existing_client_certificate_is_replaced_only_with_force(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_federation(tmp_path)
    assert main(["certs", "--out", str(tmp_path), "--client", "desk"]) == 0
    first = _snapshot(tmp_path)
    capsys.readouterr()
    assert main(["certs", "--out", str(tmp_path), "--client", "desk"]) == 2
    line = _one_error_line(capsys)
    assert "already holds client-desk.pem, client-desk.key" in line and "--force" in line
    assert _snapshot(tmp_path) == first
    assert main(["certs", "--out", str(tmp_path), "--client", "desk", "--force"]) == 0
    again = _snapshot(tmp_path)
    assert again["client-desk.pem"] != first["client-desk.pem"]
    assert {k: v for k, v in again.items() if not k.startswith("client-")} == \
        {k: v for k, v in first.items() if not k.startswith("client-")}


def test_a_client_certificate_of_an_earlier_ca_is_replaced_without_force(
        tmp_path: Path) -> None:
    write_federation(tmp_path)
    assert main(["certs", "--out", str(tmp_path), "--client", "desk"]) == 0
    stale = (tmp_path / "client-desk.pem").read_bytes()
    write_federation(tmp_path, force=True)  # as a re-run of simulate into the same folder does
    assert main(["certs", "--out", str(tmp_path), "--client", "desk"]) == 0
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    fresh = (tmp_path / "client-desk.pem").read_bytes()
    assert fresh != stale
    x509.load_pem_x509_certificate(fresh).verify_directly_issued_by(ca)


def test_a_client_needs_a_ca_in_the_folder(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", "--out", str(tmp_path), "--client", "desk"]) == 2
    line = _one_error_line(capsys)
    assert "no federation CA to sign with" in line and "gridcredit certs --out" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["", "_x", ".x", "a b", "bank/../x", "x" * 64])
def test_a_client_name_is_a_plain_word(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       name: str) -> None:
    write_federation(tmp_path)
    assert main(["certs", "--out", str(tmp_path), "--client", name]) == 2
    assert "--client" in _one_error_line(capsys)


@pytest.mark.parametrize("common_name,ok", [("client:desk", True), ("bank", False),
                                            ("client:", False), ("client", False),
                                            ("xclient:desk", False)])
def test_which_names_are_clients(common_name: str, ok: bool) -> None:
    assert is_client_name(common_name) is ok
