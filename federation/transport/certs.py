"""A federation CA and node certificates (the ``cryptography`` package).

Every node's certificate is signed by the federation CA and names its role twice: as
the subject common name (which a server reads from the client's certificate) and as a
DNS subject-alternative name (which a client checks as the server's host name). The
SANs also carry ``localhost`` and 127.0.0.1 for loopback simulations. Keys are ECDSA
P-256, which gRPC's TLS stack accepts everywhere.

A scoring client's certificate (``gridcredit certs --client NAME``, :func:`write_client`) is
signed by the same CA and named ``client:NAME``: no role of a node, so every node service
refuses it except the bank's ``Score``; it is for TLS clients only (no server name, extended
key usage client authentication), so it cannot stand in for a node either.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from federation.protocol.errors import ConfigError
from federation.protocol.files import CONFIDENTIAL, SHARED, write_atomic
from federation.protocol.messages import Role

ROLES = (Role.COORDINATOR, Role.GRID, Role.BANK)
CLIENT_PREFIX = "client:"
CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


@dataclass(frozen=True)
class NodeCerts:
    """Paths of one node's TLS material."""

    ca: Path
    cert: Path
    key: Path

    @staticmethod
    def in_dir(directory: Path, role: Role) -> NodeCerts:
        return NodeCerts(directory / "ca.pem", directory / f"{role.value}.pem",
                         directory / f"{role.value}.key")

    @staticmethod
    def for_client(directory: Path, name: str) -> NodeCerts:
        """A scoring client's files, as :func:`write_client` names them."""
        return NodeCerts(directory / "ca.pem", directory / f"client-{name}.pem",
                         directory / f"client-{name}.key")

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(ca, cert, key) PEM bytes; a missing file is a ConfigError naming it."""
        out = []
        for path in (self.ca, self.cert, self.key):
            try:
                out.append(path.read_bytes())
            except OSError as exc:
                raise ConfigError(f"TLS file {path}: {exc.strerror}") from exc
        return out[0], out[1], out[2]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gridcredit federation"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(days: int = 365, name: str = "gridcredit federation CA"
            ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_node_cert(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, role: str,
                   *, days: int = 30, valid_from: dt.datetime | None = None
                   ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate naming ``role``, signed by the CA (``valid_from`` lets tests expire one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = valid_from or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    sans: list[x509.GeneralName] = [x509.DNSName(role), x509.DNSName("localhost"),
                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(_name(role)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Keys are created 0600 (never readable by others, not even for a moment)."""
    write_atomic(path, data, CONFIDENTIAL if private else SHARED)


MAX_DAYS = 36_500  # the CA is valid twice as long; datetime stops at the year 9999


def check_days(days: int) -> None:
    """A validity the CLI accepts: 1 to ``MAX_DAYS`` days (0 would write expired ones)."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"--days {days}: certificates must be valid for 1 to {MAX_DAYS} "
                          "days")


def write_federation(directory: Path, roles: tuple[Role, ...] = ROLES, days: int = 30,
                     force: bool = False) -> None:
    """Write ca.pem, ca.key and <role>.pem / <role>.key for each role into ``directory``.

    An existing CA or node certificate there is never replaced silently (the copies on other
    hosts would stop matching): it is a ConfigError unless ``force``.
    """
    check_days(days)
    names = ["ca.pem", "ca.key"] + [f"{r.value}.{ext}" for r in roles for ext in ("pem", "key")]
    present = [n for n in names if (directory / n).exists()]
    if present and not force:
        raise ConfigError(f"{directory}: already holds {', '.join(present)}; replacing a CA "
                          "breaks the certificates already issued (use a new folder, or "
                          "--force to replace them)")
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = make_ca(days=days * 2)
    _write(directory / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(directory / "ca.key", _pem_key(ca_key), private=True)
    for role in roles:
        cert, key = make_node_cert(ca_cert, ca_key, role.value, days=days)
        _write(directory / f"{role.value}.pem", cert.public_bytes(serialization.Encoding.PEM))
        _write(directory / f"{role.value}.key", _pem_key(key), private=True)


def is_client_name(common_name: str) -> bool:
    """Whether a certificate's common name is a scoring client's (``client:NAME``)."""
    rest = common_name.removeprefix(CLIENT_PREFIX)
    return rest != common_name and CLIENT_NAME.fullmatch(rest) is not None


def make_client_cert(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                     name: str, *, days: int = 30
                     ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A client-only certificate named ``client:NAME``, signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(_name(CLIENT_PREFIX + name))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def write_client(directory: Path, name: str, days: int = 30, force: bool = False) -> NodeCerts:
    """Issue ``client-NAME.pem`` / ``.key`` with the CA already in ``directory``.

    The CA and the node certificates are read, never written. An existing certificate of
    this client is a ConfigError unless ``force``.

    Raises
    ------
    ConfigError
        A bad name, no CA (or a CA key that does not match it) in ``directory``, or the
        client's files already there.
    """
    check_days(days)
    if not CLIENT_NAME.fullmatch(name):
        raise ConfigError(f"--client {name!r}: a name is 1-63 letters, digits, '.', '_' or "
                          "'-', starting with a letter or digit")
    certs = NodeCerts.for_client(directory, name)
    try:
        ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    except OSError as exc:
        raise ConfigError(f"{directory}: no federation CA to sign with ({exc.strerror}: "
                          f"{exc.filename}); make one first with gridcredit certs --out "
                          f"{directory}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{directory}: cannot read ca.pem / ca.key: {exc}") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or \
            ca_key.public_key().public_bytes(*spki) != ca_cert.public_key().public_bytes(*spki):
        raise ConfigError(f"{directory}: ca.key does not belong to ca.pem")
    present = [p.name for p in (certs.cert, certs.key) if p.exists()]
    # One from an earlier CA of this folder (simulate makes a new CA per run) serves no client.
    if present and not force and _issued_by(certs.cert, ca_cert):
        raise ConfigError(f"{directory}: already holds {', '.join(present)}; a client already "
                          "using it would stop working (another --client name, or --force)")
    cert, key = make_client_cert(ca_cert, ca_key, name, days=days)
    _write(certs.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write(certs.key, _pem_key(key), private=True)
    return certs


def _issued_by(path: Path, ca: x509.Certificate) -> bool:
    """Whether the certificate in ``path`` exists and carries ``ca``'s signature."""
    try:
        x509.load_pem_x509_certificate(path.read_bytes()).verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_own_certificate(certs: NodeCerts, role: Role) -> None:
    """Fail early, with a readable line, if this node's own certificate cannot work."""
    ca_pem, cert_pem, _ = certs.read()
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ConfigError(f"TLS: cannot parse {certs.ca} or {certs.cert}: {exc}") from exc
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ConfigError(f"TLS: certificate {certs.cert} is not valid now (valid "
                          f"{cert.not_valid_before_utc:%Y-%m-%d} to "
                          f"{cert.not_valid_after_utc:%Y-%m-%d})")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != role.value:
        got = names[0].value if names else "none"
        raise ConfigError(f"TLS: certificate {certs.cert} names role {got!r}, this node is "
                          f"{role.value!r}")
    try:
        cert.verify_directly_issued_by(ca)  # the signature, not just the issuer's name
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ConfigError(f"TLS: certificate {certs.cert} was not issued by the CA in "
                          f"{certs.ca}") from exc
