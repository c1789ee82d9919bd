"""SSH host-key checking, shared by the SSH drivers (NETCONF over asyncssh, CLI over scrapli).

The inventory names the known_hosts file that holds each device's key (:attr:`Endpoint.known_hosts`,
per inventory or per device) or turns the check off for one device (``host_key_check: false``).
Each driver checks the key in the same SSH connection that authenticates, after the key exchange
and before any credential is sent, and refuses an unknown or changed key with
:class:`~drivers.errors.HostKeyError` (:meth:`~drivers.errors.HostKeyError.refused`).

Plain helpers here; each driver still translates its own library's errors in its one place.
"""

from __future__ import annotations

import asyncio
import logging
import os

import asyncssh

from drivers.errors import ConfigurationError, Phase

log = logging.getLogger(__name__)

SSH_DEFAULT_PORT = 22
FINGERPRINT_TIMEOUT_S = 3.0


def known_hosts_for(device: str, known_hosts: str, *, check: bool) -> str | None:
    """The known_hosts file to check a device's key against (:attr:`Endpoint.known_hosts`); None
    when the inventory turned the check off for the device (``check`` False). Called before
    connecting: a device with no file named, or with a file that cannot be read, is refused
    (:class:`ConfigurationError`) and nothing is sent to it."""
    if not check:
        return None
    if not known_hosts:
        raise ConfigurationError(
            f"device {device!r}: no known_hosts file names its SSH host key, so it cannot be "
            "authenticated; add `known_hosts: /path/to/known_hosts` to the inventory (top level, or on "
            f"device {device}), or, to connect without checking its key, `host_key_check: false` "
            f"on device {device}",
            device=device, phase=Phase.CONNECT,
        )
    if not os.path.isfile(known_hosts) or not os.access(known_hosts, os.R_OK):
        reason = "does not exist" if not os.path.exists(known_hosts) else "is not a readable file"
        raise ConfigurationError(
            f"device {device!r}: its known_hosts file {known_hosts} {reason} (named by the inventory)",
            device=device, phase=Phase.CONNECT,
        )
    return known_hosts


def fingerprint(key: asyncssh.SSHKey) -> str:
    """``ssh-ed25519 SHA256:...``, as ``ssh-keygen -lf`` shows it."""
    return f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"


def _known(known_hosts: str, host: str, port: int) -> tuple[list[asyncssh.SSHKey], bool]:
    """The keys ``known_hosts`` holds for host:port, and whether it names a CA for it."""
    try:
        trusted, cas, *_ = asyncssh.match_known_hosts(
            known_hosts, host, host, None if port == SSH_DEFAULT_PORT else port
        )
    except (OSError, ValueError) as exc:
        log.debug("reading %s: %s", known_hosts, exc)
        return [], False
    return list(trusted), bool(cas)


def holds_key_for(known_hosts: str, host: str, port: int) -> bool:
    """True when ``known_hosts`` has a key (or a CA) for host:port, so a refused key is a changed
    one rather than an unknown one. Never raises (False when the file cannot be read)."""
    keys, ca = _known(known_hosts, host, port)
    return bool(keys) or ca


def trusts(known_hosts: str, host: str, port: int, key: asyncssh.SSHKey) -> bool:
    """True when ``known_hosts`` holds ``key`` itself for host:port."""
    return key in _known(known_hosts, host, port)[0]


async def offered_key(host: str, port: int, *, timeout_s: float = FINGERPRINT_TIMEOUT_S) -> asyncssh.SSHKey | None:
    """The key the server offers, read by a key exchange alone (no authentication is attempted),
    with asyncssh's preferred key type. For diagnosis only: never used to trust anything. None
    when it cannot be read."""
    try:
        async with asyncio.timeout(timeout_s):
            return await asyncssh.get_server_host_key(host, port, config=[])
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        log.debug("reading the host key of %s:%s: %s", host, port, exc)
        return None


async def offered_fingerprint(host: str, port: int, *, timeout_s: float = FINGERPRINT_TIMEOUT_S) -> str:
    """:func:`fingerprint` of :func:`offered_key`, for an error message; empty when not read."""
    key = await offered_key(host, port, timeout_s=timeout_s)
    return fingerprint(key) if key is not None else ""


__all__ = ["fingerprint", "holds_key_for", "known_hosts_for", "offered_fingerprint", "offered_key", "trusts"]
