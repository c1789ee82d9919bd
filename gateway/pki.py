"""A development PKI for the gateway's gRPC TLS: a CA, a server certificate and client certificates.

For the lab, the tests and a first deployment; production uses the operator's own CA. Made with
the ``cryptography`` package (ECDSA P-256, SHA-256, which every gRPC TLS stack takes). Private
keys are written with mode 0600, in a directory created 0700.

* the **CA**: ``ca.pem`` (give it to clients as ``--ca`` and to the server as ``--client-ca``) and
  ``ca.key``;
* a **server** certificate (``server.pem`` / ``server.key``) for DNS names and IP addresses
  (default ``localhost`` and ``127.0.0.1``);
* a **client** certificate per caller (``<name>.pem`` / ``<name>.key``): subject CN ``<name>`` and
  a SAN URI (default ``spiffe://agw.local/<name>``) — the identity the gateway reads
  (:mod:`gateway.api.auth`) and a policy names.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.errors import ConfigurationError
from gateway.permissions import private_dir

log = logging.getLogger(__name__)

DEFAULT_TRUST_DOMAIN = "agw.local"
DEFAULT_DAYS = 825
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(path, 0o644)


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{directory}: no usable CA (ca.pem, ca.key): {exc}; run `agw pki init` first") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"{key_path}: not an EC private key")
    return cert, key


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def init_ca(directory: Path, *, name: str = "agw development CA", days: int = 3650, force: bool = False) -> Issued:
    """A self-signed CA in ``directory`` (kept when it exists, unless ``force``)."""
    private_dir(directory, what="PKI directory")
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    if cert_path.exists() and key_path.exists() and not force:
        _load_ca(directory)
        return Issued(cert=cert_path, key=key_path)
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    log.info("created CA %s", cert_path)
    return Issued(cert=cert_path, key=key_path)


def _issue(directory: Path, stem: str, *, common_name: str, sans: list[x509.GeneralName],
           usage: x509.ObjectIdentifier, days: int) -> Issued:
    if not _NAME_RE.match(stem):
        raise ConfigurationError(f"certificate name {stem!r}: letters, digits, '.', '_' and '-' only")
    ca_cert, ca_key = _load_ca(directory)
    key = _key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    log.info("issued %s", cert_path)
    return Issued(cert=cert_path, key=key_path)


def issue_server(directory: Path, *, names: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = ("127.0.0.1",),
                 stem: str = "server", days: int = DEFAULT_DAYS) -> Issued:
    """A server certificate for DNS ``names`` and IP addresses ``ips``."""
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    try:
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    except ValueError as exc:
        raise ConfigurationError(f"server certificate: {exc}") from None
    if not sans:
        raise ConfigurationError("a server certificate needs at least one DNS name or IP address")
    return _issue(directory, stem, common_name=(names or ips)[0], sans=sans, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                  days=days)


def issue_client(directory: Path, name: str, *, uri: str = "", days: int = DEFAULT_DAYS) -> Issued:
    """A client certificate: CN ``name`` and SAN URI ``uri`` (default ``spiffe://agw.local/<name>``)."""
    uri = uri or f"spiffe://{DEFAULT_TRUST_DOMAIN}/{name}"
    if "://" not in uri:
        raise ConfigurationError(f"client identity {uri!r} must be a URI (e.g. spiffe://{DEFAULT_TRUST_DOMAIN}/{name})")
    return _issue(directory, name, common_name=name, sans=[x509.UniformResourceIdentifier(uri)],
                  usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days)


def development_pki(directory: Path, *, clients: tuple[str, ...] = ("admin", "orchestrator", "operator", "reader"),
                    server_names: tuple[str, ...] = ("localhost",), server_ips: tuple[str, ...] = ("127.0.0.1",)) -> dict[str, Issued]:
    """CA (kept if present), a server certificate and the named client certificates."""
    out = {"ca": init_ca(directory), "server": issue_server(directory, names=server_names, ips=server_ips)}
    for name in clients:
        out[name] = issue_client(directory, name)
    return out


__all__ = ["DEFAULT_TRUST_DOMAIN", "Issued", "development_pki", "init_ca", "issue_client", "issue_server"]
