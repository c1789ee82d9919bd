"""``agw pki``: a development PKI for the gateway's TLS (see :mod:`gateway.pki`)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Iterator

import click


@contextlib.contextmanager
def _pki_errors() -> Iterator[None]:
    from gateway.errors import AgwError

    try:
        yield
    except AgwError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@click.group()
def pki() -> None:
    """A development PKI for the gateway's TLS: a CA, a server certificate, client certificates.

    \b
    agw pki dev --dir var/pki        # CA + server (localhost, 127.0.0.1) + admin, orchestrator, operator, reader
    agw serve --tls-cert var/pki/server.pem --tls-key var/pki/server.key --client-ca var/pki/ca.pem
    agw list --ca var/pki/ca.pem --cert var/pki/admin.pem --key var/pki/admin.key
    """


_PKI_DIR = click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default="var/pki",
                        show_default=True, help="Where the CA and the certificates live (created 0700).")


def _issued(items: dict[str, Any]) -> None:
    for what, issued in items.items():
        click.echo(f"{what:14} {issued.cert}  (key {issued.key})")


@pki.command("dev")
@_PKI_DIR
@click.option("--client", "clients", multiple=True, help="Client certificates to issue (default: admin, "
              "orchestrator, operator, reader).")
@click.option("--server-name", "names", multiple=True, help="DNS name of the server (default localhost).")
@click.option("--server-ip", "ips", multiple=True, help="IP address of the server (default 127.0.0.1).")
def pki_dev(directory: Path, clients: tuple[str, ...], names: tuple[str, ...], ips: tuple[str, ...]) -> None:
    """The CA (kept if it exists), a server certificate and client certificates, at once."""
    from gateway import pki as p

    with _pki_errors():
        _issued(p.development_pki(directory, clients=clients or ("admin", "orchestrator", "operator", "reader"),
                                  server_names=names or ("localhost",), server_ips=ips or ("127.0.0.1",)))


@pki.command("init")
@_PKI_DIR
@click.option("--force", is_flag=True, help="Make a new CA even if one exists.")
def pki_init(directory: Path, force: bool) -> None:
    """A self-signed CA (ca.pem, ca.key)."""
    from gateway import pki as p

    with _pki_errors():
        _issued({"ca": p.init_ca(directory, force=force)})


@pki.command("server")
@_PKI_DIR
@click.option("--name", "names", multiple=True, help="DNS name (repeatable; default localhost).")
@click.option("--ip", "ips", multiple=True, help="IP address (repeatable; default 127.0.0.1).")
def pki_server(directory: Path, names: tuple[str, ...], ips: tuple[str, ...]) -> None:
    """A server certificate (server.pem, server.key) signed by the CA."""
    from gateway import pki as p

    with _pki_errors():
        _issued({"server": p.issue_server(directory, names=names or ("localhost",), ips=ips or ("127.0.0.1",))})


@pki.command("client")
@click.argument("name")
@_PKI_DIR
@click.option("--uri", default="", help="The identity (SAN URI); default spiffe://agw.local/NAME.")
def pki_client(name: str, directory: Path, uri: str) -> None:
    """A client certificate NAME.pem / NAME.key: CN NAME and SAN URI (the caller's identity)."""
    from gateway import pki as p

    with _pki_errors():
        _issued({name: p.issue_client(directory, name, uri=uri)})


