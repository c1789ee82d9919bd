"""TLS for the gRPC edge: server credentials, client credentials, and where plain text is allowed.

* ``--tls-cert``/``--tls-key``: the server speaks TLS.
* ``--client-ca``: mutual TLS; every call needs a client certificate issued by that CA (a missing
  one, or one from another CA, fails the TLS handshake: the client sees UNAVAILABLE with a
  handshake error, and nothing reaches the gateway). The caller's identity is then read from the
  certificate (:mod:`gateway.api.auth`).
* Plain text only on a loopback address (with a warning); a non-loopback address without TLS is
  refused unless ``--insecure`` is given.

Files are read once at start; a problem names the file.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from gateway.errors import ConfigurationError

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


@dataclass(frozen=True, kw_only=True)
class ServerTls:
    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        cert, key = _read(self.cert, "TLS certificate"), _read(self.key, "TLS private key")
        ca = _read(self.client_ca, "client CA") if self.client_ca is not None else None
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


@dataclass(frozen=True, kw_only=True)
class ClientTls:
    """What the ``agw`` client uses: the CA that signed the server, and its own certificate."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str = ""
    """Expected name in the server certificate when it differs from the address dialled."""

    @property
    def enabled(self) -> bool:
        return self.ca is not None or self.cert is not None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise ConfigurationError("a client certificate needs its key: give both --cert and --key")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "CA") if self.ca is not None else None,
            private_key=_read(self.key, "client private key") if self.key is not None else None,
            certificate_chain=_read(self.cert, "client certificate") if self.cert is not None else None,
        )

    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def _read(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    if b"-----BEGIN" not in data:
        raise ConfigurationError(f"{what} {path}: not a PEM file")
    return data


def host_of(listen: str) -> str:
    """The host part of ``host:port`` / ``[v6]:port``."""
    if listen.startswith("["):
        return listen[1:].split("]", 1)[0]
    return listen.rsplit(":", 1)[0] if ":" in listen else listen


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(listen: str, *, tls: ServerTls | None, insecure: bool, warn: bool = True) -> None:
    """Refuse plain text beyond loopback (unless ``insecure``); warn whenever it is plain text."""
    if tls is not None:
        return
    host = host_of(listen)
    if is_loopback(host):
        if warn:
            log.warning("serving gRPC in plain text on %s (loopback only): no TLS, no caller identities", listen)
        return
    if not insecure:
        raise ConfigurationError(
            f"refusing to serve plain text on {listen}, which is not a loopback address: give --tls-cert and "
            "--tls-key (and --client-ca for caller identities), or --insecure to accept the risk")
    if warn:
        log.warning("serving gRPC in PLAIN TEXT on %s (--insecure): anyone who can reach it can change the network",
                    listen)


__all__ = ["ClientTls", "ServerTls", "check_listen", "host_of", "is_loopback"]
