"""SSH transport for NETCONF: an asyncssh connection and one ``netconf`` subsystem channel.

Bytes only: framing and request/reply live in :mod:`drivers.netconf.session`. The channel is
driven through asyncssh's protocol callbacks (no stream readers, no polling, no extra task), so
a reply is handed to the session in the same event-loop turn it arrives in.

Errors are asyncssh's / the OS's own, except a refused host key: that one leaves as
:class:`HostKeyRefused`, carrying the key the server offered and whether the known_hosts file held
another key for it. The driver translates them all (one place).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable

import asyncssh

from drivers import hostkeys
from drivers.secrets import Secret

log = logging.getLogger(__name__)

SUBSYSTEM = "netconf"


@dataclass(frozen=True, kw_only=True)
class SshOptions:
    """How to reach one device's NETCONF SSH server."""

    host: str
    port: int = 830
    username: str
    password: Secret | None = None
    private_key_path: str = ""
    host_key_check: bool = True
    """When True, the server's host key must be in ``known_hosts`` (or ~/.ssh/known_hosts). It is
    checked after the key exchange and before authentication: a refused key sends no credential."""
    known_hosts: str = ""
    """Path of a known_hosts file, read at every connect; empty: the user's default one. Ignored
    without host_key_check."""
    connect_timeout_s: float = 10.0
    keepalive_interval_s: float = 0.0
    """SSH keepalive interval (0 = off); a dead peer is then noticed between operations."""
    ciphers: tuple[str, ...] = ()
    """SSH encryption algorithms in order of preference (empty: asyncssh's default order)."""

    def connection_options(self) -> asyncssh.SSHClientConnectionOptions:
        """asyncssh options, built once per device (building them costs CPU)."""
        if self.host_key_check:
            known_hosts: str | tuple[()] | None = self.known_hosts or ()  # (): ~/.ssh/known_hosts
        else:
            known_hosts = None
        return asyncssh.SSHClientConnectionOptions(
            username=self.username,
            password=self.password.reveal() if self.password else None,
            client_keys=[self.private_key_path] if self.private_key_path else None,
            known_hosts=known_hosts,
            agent_path=None,
            config=[],
            connect_timeout=self.connect_timeout_s,
            keepalive_interval=self.keepalive_interval_s or None,
            encryption_algs=list(self.ciphers) or (),
            preferred_auth=("publickey", "password") if self.private_key_path else ("password",),
        )


class HostKeyRefused(Exception):
    """asyncssh refused the server's host key: the known_hosts file holds no key for the server
    (``changed`` False) or another one (``changed`` True). No credential was sent."""

    def __init__(self, reason: str, *, host: str, port: int, known_hosts: str, offered: str, changed: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.host, self.port, self.known_hosts = host, port, known_hosts
        self.offered = offered
        """Fingerprint of the key the server offered (empty when not known)."""
        self.changed = changed


_DROPPED = (asyncssh.ConnectionLost, ConnectionResetError, BrokenPipeError)
"""How a server that found no common host-key type ends the connection (no message; which one
the client sees is a race)."""


class _HostKeyWitness(asyncssh.SSHClient):
    """Keeps the key asyncssh found in no trusted known_hosts entry (and refuses it, as the
    default client does): the error message can then name what the server offered."""

    def __init__(self) -> None:
        self.refused: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.refused = key
        return False


class ChannelProtocol(asyncssh.SSHClientSession[bytes]):
    """Forwards channel events to the session's callbacks."""

    def __init__(self, on_data: Callable[[bytes], None], on_lost: Callable[[BaseException | None], None]) -> None:
        self._on_data = on_data
        self._on_lost = on_lost

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype is None:  # stdout of the subsystem; stderr (EXTENDED_DATA) is ignored
            self._on_data(data)

    def eof_received(self) -> bool:
        return False  # close the channel

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(exc)


class Transport:
    """One SSH connection carrying one NETCONF channel."""

    def __init__(self, conn: asyncssh.SSHClientConnection, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self._conn = conn
        self._chan = chan

    @classmethod
    async def open(
        cls,
        options: SshOptions,
        *,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[BaseException | None], None],
        conn_options: asyncssh.SSHClientConnectionOptions | None = None,
    ) -> "Transport":
        """Connect, authenticate and start the ``netconf`` subsystem (the caller bounds the time)."""
        witness = _HostKeyWitness()
        try:
            conn = await asyncssh.connect(
                options.host, options.port, options=conn_options or options.connection_options(),
                client_factory=lambda: witness,
            )
        except (asyncssh.HostKeyNotVerifiable, asyncssh.KeyExchangeFailed, *_DROPPED) as exc:
            refused = await _host_key_refused(options, exc, witness.refused)
            if refused is None:
                raise
            raise refused from exc
        try:
            chan, _ = await conn.create_session(
                lambda: ChannelProtocol(on_data, on_lost), subsystem=SUBSYSTEM, encoding=None
            )
        except BaseException:
            conn.abort()
            raise
        log.debug("ssh channel open to %s:%s", options.host, options.port)
        return cls(conn, chan)

    def write(self, data: bytes) -> None:
        self._chan.write(data)

    @property
    def closing(self) -> bool:
        return self._chan.is_closing()

    def abort(self) -> None:
        """Drop the connection now, without waiting for the peer (a hung device)."""
        self._conn.abort()

    async def close(self, *, timeout_s: float = 2.0) -> None:
        """Close politely; abort if the peer does not finish closing in time. Never raises."""
        try:
            self._chan.close()
            self._conn.close()
            await asyncio.wait_for(self._conn.wait_closed(), timeout_s)
        except Exception:  # noqa: BLE001 - closing must never fail
            self._conn.abort()


async def _host_key_refused(
    options: SshOptions, exc: Exception, offered: asyncssh.SSHKey | None
) -> HostKeyRefused | None:
    """:class:`HostKeyRefused` for a key asyncssh did not trust; or for a key exchange that found
    none of the key types known_hosts holds for the server: its key was replaced by one of another
    type (asyncssh offers only the known types; sshd then drops the connection without a word, so
    a lost connection is checked by reading the server's key alone). None for any other failure."""
    if not options.host_key_check or not options.known_hosts:
        return None
    known = hostkeys.holds_key_for(options.known_hosts, options.host, options.port)
    if isinstance(exc, (asyncssh.KeyExchangeFailed, *_DROPPED)):
        if not known or (isinstance(exc, asyncssh.KeyExchangeFailed) and "host key" not in exc.reason):
            return None
        key = await hostkeys.offered_key(options.host, options.port)
        if key is None or hostkeys.trusts(options.known_hosts, options.host, options.port, key):
            return None  # not a host-key problem: the connection was lost for another reason
        fingerprint = hostkeys.fingerprint(key)
    elif offered is not None:
        fingerprint = hostkeys.fingerprint(offered)
    else:  # revoked, or a certificate: asyncssh's own reason says which
        return None
    reason = exc.reason if isinstance(exc, asyncssh.Error) else str(exc)
    return HostKeyRefused(reason, host=options.host, port=options.port, known_hosts=options.known_hosts,
                          offered=fingerprint, changed=known)


__all__ = ["ChannelProtocol", "HostKeyRefused", "SshOptions", "Transport"]
