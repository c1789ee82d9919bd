"""One SSH CLI session over scrapli 2.x (libscrapli, a native library with an async API).

scrapli 2.x does its I/O in its own native thread and wakes asyncio through a file descriptor,
so nothing here blocks the event loop and no thread pool is needed. Every call is bounded twice:
by libscrapli's operation timeout and by ``asyncio.timeout`` (cancelling the asyncio task
cancels the native operation). After a timeout or a transport error the session's state is
unknown (a half-read prompt, a line maybe applied), so it is closed and marked broken; the driver
opens a fresh one on its next operation.

This module is the one place where scrapli's exceptions become :mod:`gateway.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import AsyncIterator, Sequence

from gateway.errors import (
    AuthenticationError,
    ConnectError,
    DeviceError,
    DeviceTimeoutError,
    Phase,
    SessionLostError,
)
from gateway.secrets import Secret

log = logging.getLogger(__name__)

_NS = 1_000_000_000
CLOSE_TIMEOUT_S = 2.0


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


def _translate(exc: BaseException, *, device: str, phase: Phase, what: str, timeout_s: float) -> DeviceError:
    """scrapli / OS errors → gateway.errors (the one translation point of this driver)."""
    from scrapli import exceptions as sx

    text = str(exc) or type(exc).__name__
    low = text.lower()
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
        self._cli: object | None = None
        self._broken = False

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
        transport = TransportSsh2Options() if o.transport == "ssh2" else TransportBinOptions(enable_strict_key=False)
        cli = Cli(
            o.host,
            port=o.port,
            definition_file_or_name=LoadedDefinition(platform_name=f"agw_{o.platform}", definition=o.definition),
            auth_options=AuthOptions(
                username=o.username,
                password=o.password.reveal() if o.password else None,
                private_key_path=o.private_key_path or None,
            ),
            session_options=ScrapliSessionOptions(operation_timeout_ns=int(o.connect_timeout_s * _NS)),
            transport_options=transport,
            logging_uid=o.device,
        )
        what = f"connect to {o.host}:{o.port}"
        try:
            async with asyncio.timeout(o.connect_timeout_s):
                await cli.open_async(operation_timeout_ns=int(o.connect_timeout_s * _NS))
        except Exception as exc:
            await self._force_close(cli)
            raise _translate(exc, device=o.device, phase=Phase.CONNECT, what=what, timeout_s=o.connect_timeout_s) from exc
        self._cli = cli
        self._broken = False
        log.debug("%s: CLI session open (%s transport)", o.device, o.transport)

    async def close(self) -> None:
        cli, self._cli = self._cli, None
        if cli is not None:
            await self._force_close(cli, graceful=not self._broken)

    @staticmethod
    async def _force_close(cli: object, *, graceful: bool = False) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await cli.close_async(force=not graceful)  # type: ignore[attr-defined]
        except Exception as exc:  # closing never raises (cancellation still passes through)
            log.debug("CLI session close: %s", exc)

    @contextlib.asynccontextmanager
    async def _operation(self, *, phase: Phase, what: str, timeout_s: float) -> AsyncIterator[object]:
        if not self.is_open:
            raise SessionLostError(f"{what}: the session is not open", device=self.options.device, phase=phase)
        try:
            async with asyncio.timeout(timeout_s):
                yield self._cli
        except DeviceError:
            raise
        except asyncio.CancelledError:
            self._broken = True  # cancelled from outside mid-operation: state unknown
            raise
        except Exception as exc:
            self._broken = True
            err = _translate(exc, device=self.options.device, phase=phase, what=what, timeout_s=timeout_s)
            log.warning("%s: %s; closing the session", self.options.device, err.message)
            await self.close()
            raise err from exc

    async def send(self, command: str, *, timeout_s: float, phase: Phase) -> str:
        """Run one exec-mode command; its output (the device's text, prompt removed)."""
        async with self._operation(phase=phase, what=f"command {command!r}", timeout_s=timeout_s) as cli:
            result = await cli.send_input_async(  # type: ignore[attr-defined]
                input_=command, requested_mode="privileged_exec", operation_timeout_ns=int(timeout_s * _NS)
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
            result = await cli.send_inputs_async(  # type: ignore[attr-defined]
                inputs=list(lines), requested_mode="configuration", stop_on_indicated_failure=True,
                operation_timeout_ns=int(timeout_s * _NS),
            )
            # always leave configuration mode (profile's config_exit), also after a rejected line
            await cli.enter_mode_async(  # type: ignore[attr-defined]
                requested_mode="privileged_exec", operation_timeout_ns=int(timeout_s * _NS)
            )
            outputs = [str(r) for r in result.results]
            return list(zip(lines, outputs))


__all__ = ["CliSession", "SessionOptions"]
