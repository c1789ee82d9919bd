"""The one place where SNMP failures become :mod:`drivers.errors`.

Three kinds of failure reach the driver:

* an *error-status* in a Response PDU (RFC 3416 §4.2.5): the agent refused the request. The
  index points at the guilty varbind → :class:`DeviceRejectedError` with
  ``DeviceErrorInfo(tag=<status name>, path=<OID>)``;
* an *error indication* from pysnmp's engine: a timeout (no answer within the profile's
  timeout; also what a wrong community or a wrong v3 privacy key looks like, since agents drop
  such messages silently) → :class:`DeviceTimeoutError` (:class:`ConnectError` while opening); USM authentication failures →
  :class:`AuthenticationError`; anything else → :class:`ConnectError`;
* a Python exception from the transport (socket errors, address resolution) →
  :class:`ConnectError`.

Messages never carry a community or a key: only the status, the OID and what it usually means.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

from pysnmp.proto import errind

from drivers.snmp.codec import ReplyError
from drivers.errors import (
    AuthenticationError,
    ConnectError,
    DeviceError,
    DeviceErrorInfo,
    DeviceRejectedError,
    DeviceReplyError,
    DeviceTimeoutError,
    Phase,
)

log = logging.getLogger(__name__)

ERROR_STATUS: tuple[str, ...] = (
    "noError",
    "tooBig",
    "noSuchName",
    "badValue",
    "readOnly",
    "genErr",
    "noAccess",
    "wrongType",
    "wrongLength",
    "wrongEncoding",
    "wrongValue",
    "noCreation",
    "inconsistentValue",
    "resourceUnavailable",
    "commitFailed",
    "undoFailed",
    "authorizationError",
    "notWritable",
    "inconsistentName",
)
"""RFC 3416 error-status names, indexed by their value."""

MEANING: dict[str, str] = {
    "tooBig": "the response would not fit one message; send fewer varbinds",
    "noSuchName": "the object does not exist or is not accessible (SNMPv1)",
    "badValue": "the value is wrong for the object (SNMPv1)",
    "readOnly": "the object is read-only (SNMPv1)",
    "genErr": "the agent failed to process the request",
    "noAccess": "no write access to this object with these credentials (a read-only community or user?)",
    "wrongType": "the value's type is wrong for this object",
    "wrongLength": "the value's length is wrong for this object",
    "wrongEncoding": "the value is encoded wrongly for this object",
    "wrongValue": "the value is not allowed for this object",
    "noCreation": "the object does not exist and cannot be created",
    "inconsistentValue": "the value is inconsistent with the device's current state",
    "resourceUnavailable": "the agent lacks a resource to set this value",
    "commitFailed": "the agent failed to commit the SET; nothing was changed",
    "undoFailed": "the agent failed to commit the SET and could not undo it: the device state is unknown",
    "authorizationError": "the request was not authorized",
    "notWritable": "the object cannot be written",
    "inconsistentName": "the object does not exist and cannot be created now",
}

_AUTH_INDICATIONS = (
    errind.UnknownUserName,
    errind.WrongDigest,
    errind.AuthenticationError,
    errind.AuthenticationFailure,
    errind.UnknownSecurityName,
    errind.UnsupportedSecurityLevel,
    errind.UnsupportedAuthProtocol,
    errind.UnsupportedPrivProtocol,
    errind.DecryptionError,
    errind.UnknownCommunityName,
)


def status_name(status: int) -> str:
    return ERROR_STATUS[status] if 0 <= status < len(ERROR_STATUS) else f"errorStatus({status})"


def translate(
    *,
    device: str,
    phase: Phase,
    operation: str,
    timeout_s: float,
    indication: object = None,
    status: int = 0,
    index: int = 0,
    oids: Sequence[str] = (),
    exc: BaseException | None = None,
) -> DeviceError:
    """Map one SNMP failure to the gateway's error tree. The caller raises it ``from`` the cause."""
    if exc is not None:
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            kind = ConnectError if phase is Phase.CONNECT else DeviceTimeoutError
            return kind(
                f"SNMP {operation}: no answer within {timeout_s:g} s", device=device, phase=phase)
        if isinstance(exc, OSError):
            return ConnectError(
                f"SNMP {operation}: transport error: {exc.strerror or exc.__class__.__name__}",
                device=device, phase=phase)
        if isinstance(exc, ReplyError):  # the agent's reply could not be read
            return DeviceReplyError(f"SNMP {operation}: the agent's reply was refused: {exc}",
                                    device=device, phase=phase, retryable=False)
        return ConnectError(f"SNMP {operation}: {exc.__class__.__name__}: {exc}", device=device, phase=phase)
    if indication is not None:
        text = str(indication)
        if isinstance(indication, errind.RequestTimedOut):
            kind = ConnectError if phase is Phase.CONNECT else DeviceTimeoutError
            return kind(
                f"SNMP {operation}: no answer within {timeout_s:g} s (device down or hung, or it "
                f"silently dropped the request: wrong community or v3 privacy key?)",
                device=device, phase=phase)
        if isinstance(indication, _AUTH_INDICATIONS):
            return AuthenticationError(
                f"SNMP {operation}: the device refused the credentials: {text}", device=device, phase=phase,
                info=DeviceErrorInfo(message=text, tag=indication.__class__.__name__))
        return ConnectError(f"SNMP {operation}: {text}", device=device, phase=phase,
                            info=DeviceErrorInfo(message=text, tag=indication.__class__.__name__))
    name = status_name(status)
    path = oids[index - 1] if 0 < index <= len(oids) else ""
    meaning = MEANING.get(name, "the agent refused the request")
    where = f" at {path}" if path else ""
    return DeviceRejectedError(
        f"SNMP {operation} refused by the device: {name}{where}: {meaning}",
        device=device,
        phase=phase,
        info=DeviceErrorInfo(message=meaning, tag=name, path=path),
        retryable=name in ("resourceUnavailable", "genErr") and operation != "SET",
    )


__all__ = ["ERROR_STATUS", "MEANING", "status_name", "translate"]
