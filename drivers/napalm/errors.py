"""The one place where NAPALM (and thread-pool) failures become :mod:`drivers.errors`.

``napalm.base.exceptions`` → gateway errors:

* ``ConnectAuthError``                         → :class:`AuthenticationError`
* ``ConnectTimeoutError``                      → :class:`DeviceTimeoutError` (retryable)
* ``ConnectionClosedException``                → :class:`SessionLostError` (retryable)
* other ``ConnectionException``                → :class:`ConnectError` while opening, else :class:`SessionLostError`
* ``MergeConfigException`` / ``ReplaceConfigException`` / ``CommitError`` / ``CommitConfirmException``
  / ``CommandErrorException`` / ``ValidationException`` → :class:`DeviceRejectedError` with
  ``DeviceErrorInfo(tag=<exception name>, message=<device text>)``
* ``LockError`` / ``SessionLockedException`` / ``UnlockError`` → :class:`LockDeniedError` (retryable)
* ``CommandTimeoutException``, ``TimeoutError``, ``socket.timeout`` → :class:`DeviceTimeoutError`
* ``ModuleImportError`` (NAPALM driver not installed) → :class:`DriverUnavailableError` naming the package
* ``NotImplementedError`` (e.g. ``revert_in`` on iosxr)  → :class:`UnsupportedOperationError`
* ``OSError``                                  → :class:`ConnectError` / :class:`SessionLostError`
* anything else                                → :class:`DeviceError`

Messages never carry a credential: every clear secret of the endpoint is masked out of the text.
"""

from __future__ import annotations

import logging
from typing import Iterable

from napalm.base import exceptions as nx

from drivers.errors import (
    AgwError,
    AuthenticationError,
    ConnectError,
    DeviceError,
    DeviceErrorInfo,
    DeviceRejectedError,
    DeviceTimeoutError,
    DriverUnavailableError,
    LockDeniedError,
    Phase,
    SessionLostError,
    UnsupportedOperationError,
)
from drivers.secrets import MASK

log = logging.getLogger(__name__)

_REJECTED = (
    nx.MergeConfigException,
    nx.ReplaceConfigException,
    nx.CommitError,
    nx.CommitConfirmException,
    nx.CommandErrorException,
    nx.ValidationException,
)
_LOCKED = (nx.LockError, nx.UnlockError, nx.SessionLockedException)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def translate(
    exc: BaseException,
    *,
    device: str,
    phase: Phase,
    napalm_driver: str,
    secrets: Iterable[str] = (),
) -> AgwError:
    """The gateway error for a failure of a NAPALM call (the caller raises it ``from exc``)."""
    if isinstance(exc, AgwError):
        return exc
    kind = type(exc).__name__
    text = _scrub(str(exc).strip() or kind, list(secrets))
    where = f"NAPALM {napalm_driver!r}"
    if isinstance(exc, nx.ModuleImportError):
        return DriverUnavailableError(
            f"{where}: the NAPALM driver is not installed ({text}); install it with: "
            f"pip install napalm-{napalm_driver.replace('_', '-')} (core drivers come with: pip install "
            f"'activation-gateway[napalm]')",
            device=device, phase=phase)
    if isinstance(exc, nx.ConnectAuthError):
        return AuthenticationError(f"{where}: authentication refused: {text}", device=device, phase=phase)
    if isinstance(exc, nx.ConnectTimeoutError):
        return DeviceTimeoutError(f"{where}: connect timed out: {text}", device=device, phase=phase)
    if isinstance(exc, nx.ConnectionClosedException):
        return SessionLostError(f"{where}: the session is closed: {text}", device=device, phase=phase)
    if isinstance(exc, nx.ConnectionException):
        cls = ConnectError if phase is Phase.CONNECT else SessionLostError
        return cls(f"{where}: connection failed: {text}", device=device, phase=phase)
    if isinstance(exc, _REJECTED):
        return DeviceRejectedError(
            f"{where}: the device refused the change ({kind}): {text}",
            device=device, phase=phase, info=DeviceErrorInfo(message=text, tag=kind))
    if isinstance(exc, _LOCKED):
        return LockDeniedError(f"{where}: configuration lock: {kind}: {text}", device=device, phase=phase)
    if isinstance(exc, (nx.CommandTimeoutException, TimeoutError)):
        return DeviceTimeoutError(f"{where}: timed out: {text}", device=device, phase=phase)
    if isinstance(exc, NotImplementedError):
        return UnsupportedOperationError(f"{where}: not supported by this NAPALM driver: {text}",
                                         device=device, phase=phase)
    if isinstance(exc, OSError):
        cls = ConnectError if phase is Phase.CONNECT else SessionLostError
        return cls(f"{where}: {kind}: {text}", device=device, phase=phase)
    log.debug("untyped NAPALM failure on %s in %s: %s", device, phase.value, kind)
    return DeviceError(f"{where}: {kind}: {text}", device=device, phase=phase)


__all__ = ["translate"]
