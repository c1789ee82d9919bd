"""One SSH CLI session over scrapli 2.x (libscrapli, a native library with an async API).

scrapli 2.x does its I/O in its own native thread and wakes asyncio through a file descriptor,
so nothing here blocks the event loop and no thread pool is needed. Every call is bounded twice:
by libscrapli's operation timeout and by ``asyncio.timeout`` (cancelling the asyncio task
cancels the native operation). After a timeout or a transport error the session's state is
unknown (a half-read prompt, a line maybe applied), so it is closed and marked broken; the driver
opens a fresh one on its next operation.

What the device sends is bounded too: every byte libscrapli reads is counted (its recorder
callback) and an operation that receives more than ``max_output_bytes`` is cancelled at once and
fails with :class:`~drivers.errors.DeviceReplyError`; the session is closed (the rest of the
output is still on its way).

This module is the one place where scrapli's exceptions become :mod:`drivers.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Sequence

from drivers import hostkeys
from drivers.errors import (
    AuthenticationError,
    ConnectError,
    DeviceError,
    DeviceReplyError,
    DeviceTimeoutError,
    HostKeyError,
    Phase,
    SessionLostError,
)
from drivers.secrets import Secret

if TYPE_CHECKING:  # scrapli (a native library) is imported when a session opens, not with this module
    from scrapli import Cli
    from scrapli.ffi_types import Cancel
    from scrapli.transport import Options as TransportOptions

log = logging.getLogger(__name__)

_NS = 1_000_000_000
CLOSE_TIMEOUT_S = 2.0
DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class SessionOptions:
    device: str
    host: str
    port: int
    username: str
    password: Secret | None
    private_key_path: str = ""
    definition: str  # scrapli definition YAML (see drivers.cli.settings.scrapli_definition)
    platform: str
    transport: str = "ssh2"
    connect_timeout_s: float = 10.0
    known_hosts: str = ""
    """The known_hosts file holding the device's host key (from the inventory, through the Endpoint)."""
    host_key_check: bool = True
    """False only when the inventory turns the check off for this device."""
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    """Most bytes one operation (a command, a configuration push) may receive from the device."""


_KEY_MISMATCH = "known host check mismatch"  # libscrapli ssh2 (libssh2_knownhost_checkp): another key is known
_KEY_NOT_FOUND = "known host check not found"  # libscrapli ssh2: no key known for host:port
_KEY_REFUSALS = (_KEY_MISMATCH, _KEY_NOT_FOUND, "initknownhost", "host key verification failed")  # the last: bin (OpenSSH)


def _host_key_refused(exc: BaseException) -> bool:
    """scrapli refused the device's host key (in the key exchange, before authentication)."""
    low = str(exc).lower()
    return any(marker in low for marker in _KEY_REFUSALS)


def _translate(exc: BaseException, *, device: str, phase: Phase, what: str, timeout_s: float,
               host: str = "", port: int = 0, known_hosts: str | None = None, offered: str = "") -> DeviceError:
    """scrapli / OS errors → drivers.errors (the one translation point of this driver). A refused
    host key needs ``known_hosts`` (the file checked) and, for its message, ``offered`` (the
    fingerprint of the key the device offered)."""
    from scrapli import exceptions as sx

    text = str(exc) or type(exc).__name__
    low = text.lower()
    if known_hosts and _host_key_refused(exc):
        if "initknownhost" in low and _KEY_MISMATCH not in low and _KEY_NOT_FOUND not in low:
            # the file could not be read or parsed, or libssh2 failed to check
            return HostKeyError(f"{what}: host key not verifiable with {known_hosts}: {text}", device=device,
                                phase=phase, host=host, port=port, known_hosts=known_hosts)
        # libssh2's "not found" also covers a key of another type than the one known (a device
        # re-keyed with another type), and OpenSSH does not say which: the file does
        changed = _KEY_MISMATCH in low or hostkeys.holds_key_for(known_hosts, host, port)
        return HostKeyError.refused(device=device, host=host, port=port, changed=changed, fingerprint=offered,
                                    known_hosts=known_hosts, phase=phase)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, sx.TimeoutException)) or "timeout" in low or "timed out" in low:
        return DeviceTimeoutError(f"{what}: no answer within {timeout_s:g} s", device=device, phase=phase)
    if "auth" in low or "permission denied" in low or "password" in low:
        return AuthenticationError(f"{what}: the device refused the credentials ({text})", device=device, phase=phase)
    if phase is Phase.CONNECT:
        return ConnectError(f"{what}: {text}", device=device, phase=phase)
    if isinstance(exc, (sx.EOFException, EOFError, sx.NotOpenedException, OSError)) or "eof" in low or "closed" in low:
        return SessionLostError(f"{what}: session lost ({text})", device=device, phase=phase)
    return SessionLostError(f"{what}: {type(exc).__name__}: {text}", device=device, phase=phase)


class CliSession:
    """A pre-opened CLI session: ``send`` (exec mode) and ``configure`` (configuration mode)."""

    def __init__(self, options: SessionOptions) -> None:
        self.options = options
        self._cli: Cli | None = None
        self._broken = False
        self._received = 0  # bytes the current operation has received (from libscrapli's thread)
        self._overflow = False
        self._cancel: Cancel | None = None  # the current operation's scrapli Cancel

    @property
    def is_open(self) -> bool:
        return self._cli is not None and not self._broken

    async def open(self) -> None:
        from scrapli import AuthOptions, Cli, TransportBinOptions, TransportSsh2Options
        from scrapli import SessionOptions as ScrapliSessionOptions
        from scrapli.cli import LoadedDefinition

        if self._cli is not None:
            await self.close()
        o = self.options
        # no known_hosts file named, or an unreadable one: refused before connecting
        known_hosts = hostkeys.known_hosts_for(o.device, o.known_hosts, check=o.host_key_check)
        # ssh2: libssh2_knownhost_checkp after the key exchange, before authentication: an unknown key
        # ("not found") or another one ("mismatch") ends the connection (measured against the lab's sshd:
        # closed [preauth], no password sent). bin: OpenSSH's StrictHostKeyChecking=yes + UserKnownHostsFile.
        if o.transport == "ssh2":
            transport: TransportOptions = TransportSsh2Options(known_hosts_path=known_hosts)
        else:
            transport = TransportBinOptions(enable_strict_key=known_hosts is not None, known_hosts_path=known_hosts)
        cli = Cli(
            o.host,
            port=o.port,
            definition_file_or_name=LoadedDefinition(platform_name=f"agw_{o.platform}", definition=o.definition),
            auth_options=AuthOptions(
                username=o.username,
                password=o.password.reveal() if o.password else None,
                private_key_path=o.private_key_path or None,
            ),
            session_options=ScrapliSessionOptions(operation_timeout_ns=int(o.connect_timeout_s * _NS),
                                                  recorder_callback=self._on_output),
            transport_options=transport,
            logging_uid=o.device,
        )
        what = f"connect to {o.host}:{o.port}"
        try:
            async with asyncio.timeout(o.connect_timeout_s):
                await cli.open_async(operation_timeout_ns=int(o.connect_timeout_s * _NS))
        except Exception as exc:
            await self._force_close(cli)
            offered = ""
            if known_hosts and _host_key_refused(exc):  # for the message only: a key exchange, no authentication
                offered = await hostkeys.offered_fingerprint(o.host, o.port, timeout_s=min(o.connect_timeout_s, 5.0))
            raise _translate(exc, device=o.device, phase=Phase.CONNECT, what=what, timeout_s=o.connect_timeout_s,
                             host=o.host, port=o.port, known_hosts=known_hosts, offered=offered) from exc
        self._cli = cli
        self._broken = False
        log.debug("%s: CLI session open (%s transport)", o.device, o.transport)

    async def close(self) -> None:
        cli, self._cli = self._cli, None
        if cli is not None:
            await self._force_close(cli, graceful=not self._broken)

    @staticmethod
    async def _force_close(cli: Cli, *, graceful: bool = False) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await cli.close_async(force=not graceful)
        except Exception as exc:  # closing never raises (cancellation still passes through)
            log.debug("CLI session close: %s", exc)

    def _on_output(self, text: str) -> None:
        """libscrapli's recorder callback (its own thread): count what the device sent; cancel
        the operation once it is over ``max_output_bytes``."""
        self._received += len(text.encode("utf-8", "surrogateescape"))
        if self._received > self.options.max_output_bytes and not self._overflow:
            self._overflow = True
            cancel = self._cancel
            if cancel is not None:
                cancel.cancel()

    def _too_much(self, *, phase: Phase, what: str) -> DeviceReplyError:
        limit = self.options.max_output_bytes
        return DeviceReplyError(
            f"{what}: the device sent more than {limit} bytes, the limit set by max_output_bytes in the "
            f"settings of its device profile; the session was closed",
            device=self.options.device, phase=phase, retryable=False,
        )

    @contextlib.asynccontextmanager
    async def _operation(self, *, phase: Phase, what: str, timeout_s: float) -> AsyncIterator[Cli]:
        cli = self._cli
        if cli is None or self._broken:  # not is_open
            raise SessionLostError(f"{what}: the session is not open", device=self.options.device, phase=phase)
        from scrapli.ffi_types import Cancel

        self._received = 0
        self._overflow = False
        self._cancel = Cancel()
        try:
            async with asyncio.timeout(timeout_s):
                yield cli
                if self._overflow:  # complete, but over the limit all the same
                    raise self._too_much(phase=phase, what=what)
        except DeviceReplyError as err:
            self._broken = True
            log.warning("%s: %s; closing the session", self.options.device, err.message)
            await self.close()
            raise
        except DeviceError:
            raise
        except asyncio.CancelledError:
            self._broken = True  # cancelled from outside mid-operation: state unknown
            raise
        except Exception as exc:
            self._broken = True
            if self._overflow:  # the operation was cancelled by _on_output
                error: DeviceError = self._too_much(phase=phase, what=what)
            else:
                error = _translate(exc, device=self.options.device, phase=phase, what=what, timeout_s=timeout_s)
            log.warning("%s: %s; closing the session", self.options.device, error.message)
            await self.close()
            raise error from exc

    async def send(self, command: str, *, timeout_s: float, phase: Phase) -> str:
        """Run one exec-mode command; its output (the device's text, prompt removed)."""
        async with self._operation(phase=phase, what=f"command {command!r}", timeout_s=timeout_s) as cli:
            result = await cli.send_input_async(
                input_=command, requested_mode="privileged_exec", operation_timeout_ns=int(timeout_s * _NS),
                cancel=self._cancel,
            )
            return str(result.result)

    async def configure(self, lines: Sequence[str], *, timeout_s: float, phase: Phase) -> list[tuple[str, str]]:
        """Send ``lines`` in configuration mode, then leave it (also when a line fails).

        Returns (line, output) for every line sent. scrapli stops at the first output matching
        one of the profile's literal error prefixes; the caller checks every output in full.
        """
        if not lines:
            return []
        async with self._operation(phase=phase, what=f"configuration push ({len(lines)} lines)", timeout_s=timeout_s) as cli:
            # A timeout or transport error here breaks the session and _operation closes it,
            # which also ends configuration mode; a rejected line returns normally.
            result = await cli.send_inputs_async(
                inputs=list(lines), requested_mode="configuration", stop_on_indicated_failure=True,
                operation_timeout_ns=int(timeout_s * _NS), cancel=self._cancel,
            )
            # always leave configuration mode (profile's config_exit), also after a rejected line
            await cli.enter_mode_async(
                requested_mode="privileged_exec", operation_timeout_ns=int(timeout_s * _NS), cancel=self._cancel
            )
            outputs = [str(r) for r in result.results]
            return list(zip(lines, outputs))


__all__ = ["CliSession", "SessionOptions"]
