"""A small certificate authority for the MQTT links: one client certificate per gateway, a CRL.

The CA lives in one directory (the operator's, never a gateway's)::

    ca.key  ca.crt  crl.pem                    the CA key (0600), its certificate, the revocation list
    clients/NAME.key  clients/NAME.crt         a client identity (gateway, cloud service, simulator)
    servers/HOST.key  servers/HOST.crt         a broker's server certificate

Keys are ECDSA P-256, written with mode 0600 and never overwritten. A client certificate's common name is
its identity: Mosquitto's `use_identity_as_username` makes it the MQTT user name the ACL is written for,
so it must be a valid identifier (`shared.topics.IDENT_PATTERN`). Revoking a name adds its serial to
`crl.pem`, re-signed by the CA; the broker refuses that certificate once it has reloaded the CRL.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared import topics
from shared.atomic_files import write_atomically
from shared.errors import ConfigError, ContractError

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CRL_FILE",
    "CRL_VALID_DAYS",
    "Identity",
    "init_ca",
    "issue_client",
    "issue_server",
    "refresh_crl",
    "revoke",
    "revoked_serials",
]

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
CRL_FILE = "crl.pem"
CA_VALID_DAYS = 3650
CERT_VALID_DAYS = 825  # the longest leaf lifetime common TLS clients accept
CRL_VALID_DAYS = 30  # re-sign with `forewarn pki crl` before this runs out: an expired CRL refuses everyone


@dataclass(frozen=True, slots=True)
class Identity:
    """Where a certificate and its private key were written."""

    name: str
    cert_file: Path
    key_file: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` (refusing to replace an existing file) and write `data` durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as exc:
        raise ConfigError("pki", str(path), "exists already; refusing to overwrite it") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    path.chmod(mode)


def _replace(path: Path, data: bytes) -> None:
    """Replace a public file atomically (the broker may read it at any moment)."""
    write_atomically(path, data, make_parents=True)
    path.chmod(0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Forewarn"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _load_ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key = serialization.load_pem_private_key((directory / CA_KEY_FILE).read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((directory / CA_CERT_FILE).read_bytes())
    except OSError as exc:
        raise ConfigError(
            "pki --dir", str(directory), f"holds no CA (run `forewarn pki init`): {exc}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("pki --dir", str(directory), f"{CA_KEY_FILE} must be an EC private key")
    return key, cert


def init_ca(directory: Path, *, common_name: str = "Forewarn MQTT CA", days: int = CA_VALID_DAYS) -> Path:
    """Create a CA (key, self-signed certificate, empty CRL) in `directory`; returns the certificate path.

    Raises:
        ConfigError: a CA exists there already.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_new(directory / CA_KEY_FILE, _key_pem(key), 0o600)
    _write_new(directory / CA_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _replace(directory / CRL_FILE, _crl(key, cert, []))
    return directory / CA_CERT_FILE


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=True,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    directory: Path,
    *,
    subdir: str,
    name: str,
    usage: x509.ObjectIdentifier,
    alt_names: list[x509.GeneralName],
    days: int,
) -> Identity:
    ca_key, ca_cert = _load_ca(directory)
    identity = Identity(name, directory / subdir / f"{name}.crt", directory / subdir / f"{name}.key")
    if identity.cert_file.exists():
        raise ConfigError("pki issue", name, f"{identity.cert_file} exists already; refusing to overwrite it")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_new(identity.key_file, _key_pem(key), 0o600)
    _write_new(identity.cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return identity


def issue_client(directory: Path, name: str, *, days: int = CERT_VALID_DAYS) -> Identity:
    """Issue the client certificate of `name` (a gateway id, or the cloud service's or simulator's name).

    Raises:
        ConfigError: no CA in `directory`, `name` is not an identifier, or it was issued already.
    """
    try:
        topics.check_ident("name", name)
    except ContractError as exc:
        raise ConfigError("pki issue", name, "must be an identifier (it becomes the MQTT user name)") from exc
    return _issue(
        directory, subdir="clients", name=name, usage=ExtendedKeyUsageOID.CLIENT_AUTH, alt_names=[], days=days
    )


def issue_server(directory: Path, host: str, *, days: int = CERT_VALID_DAYS) -> Identity:
    """Issue a broker's server certificate for `host` (a DNS name or an IP address, put in its SAN).

    Raises:
        ConfigError: no CA in `directory`, a bad host name, or it was issued already.
    """
    alt: x509.GeneralName
    try:
        alt = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        try:
            topics.check_ident("host", host)
        except ContractError as exc:
            raise ConfigError("pki issue-server", host, "must be a host name or an IP address") from exc
        alt = x509.DNSName(host)
    return _issue(
        directory,
        subdir="servers",
        name=host,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        alt_names=[alt],
        days=days,
    )


def revoked_serials(directory: Path) -> list[int]:
    """Serial numbers in the CA's current CRL."""
    crl = x509.load_pem_x509_crl((directory / CRL_FILE).read_bytes())
    return [entry.serial_number for entry in crl]


def _crl(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, serials: list[int]) -> bytes:
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(now + datetime.timedelta(days=CRL_VALID_DAYS))
    )
    for serial in sorted(set(serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def revoke(directory: Path, name: str) -> int:
    """Revoke the client (or server) certificate issued as `name`; returns its serial number.

    Raises:
        ConfigError: no CA, or no certificate of that name.
    """
    ca_key, ca_cert = _load_ca(directory)
    candidates = [directory / "clients" / f"{name}.crt", directory / "servers" / f"{name}.crt"]
    existing = [path for path in candidates if path.is_file()]
    if not existing:
        raise ConfigError("pki revoke", name, "no certificate of that name was issued here")
    serial = x509.load_pem_x509_certificate(existing[0].read_bytes()).serial_number
    _replace(directory / CRL_FILE, _crl(ca_key, ca_cert, [*revoked_serials(directory), serial]))
    return serial


def refresh_crl(directory: Path) -> Path:
    """Re-sign the CRL with the same entries and a new validity period (run it well within 30 days)."""
    ca_key, ca_cert = _load_ca(directory)
    _replace(directory / CRL_FILE, _crl(ca_key, ca_cert, revoked_serials(directory)))
    return directory / CRL_FILE
