"""What a caller may see of an error; the rest goes to the gateway log under an incident id.

A caller (a gRPC client, anyone reading a task result from the journal through Get or Watch)
sees an error's own text when that text is about the request or the device: a violation, an
unknown activation, a NETCONF rpc-error, a refused CLI line, a timeout. Three kinds of error are
the gateway's own business and their text stays in the log:

=========================  ===========================================================
error                      what the caller sees instead
=========================  ===========================================================
ConfigurationError         "gateway configuration error" (its text names credential
                           references, files, the profile and template directories)
JournalError               "the journal is unavailable" (database error text, the journal path)
anything not an AgwError   "internal error" (a bug: its text may hold anything)
=========================  ===========================================================

each followed by ``(incident 3f2a9c1d7e01; see the gateway log)``. The log line, at ERROR with the
traceback, carries the same id and the full text. A :class:`~gateway.errors.HostKeyError` keeps
its message (the caller needs "unknown host key" and the fingerprint) with the known_hosts file's
path replaced, and an incident id pointing to the log line that names the file.

One exception gets one incident id, however many times it is shown (the id is kept on the
exception), so a task's error, its event message and the gRPC status all name the same incident.
The id itself is the driver SDK's (:mod:`drivers.incidents`: a driver's catch-all logs a bug under
an id the same way); what a caller may see is decided here.
"""

from __future__ import annotations

import logging

from drivers import incidents as _sdk
from gateway.errors import AgwError, ConfigurationError, HostKeyError, JournalError

log = logging.getLogger(__name__)

KNOWN_HOSTS_PUBLIC = "the gateway's known_hosts file"
INTERNAL_KIND = "InternalError"
"""The error kind a caller sees for an exception that is not an AgwError (a bug)."""


def _stable_text(exc: BaseException) -> str | None:
    """The caller's text for an internal error, or None when the error's own text is public."""
    if isinstance(exc, ConfigurationError):
        return "gateway configuration error"
    if isinstance(exc, JournalError):
        return "the journal is unavailable" if exc.retryable else "journal error"
    if not isinstance(exc, AgwError):
        return "internal error"
    return None


def is_internal(exc: BaseException) -> bool:
    """True when the caller must not see ``exc``'s own text."""
    return _stable_text(exc) is not None


def incident(exc: BaseException) -> str:
    """The incident id of ``exc``; the first call logs the error with it (the full text, and the
    traceback for an internal error). The SDK's :func:`drivers.incidents.incident`, logged here:
    an id a driver gave an exception is the same id."""
    return _sdk.incident(exc, logger=log)


def _suffix(exc: BaseException) -> str:
    return _sdk.see_log(exc, logger=log)


def public_message(exc: BaseException) -> str:
    """What a caller may see of ``exc``, like :attr:`AgwError.message` (no device/phase prefix)."""
    stable = _stable_text(exc)
    if stable is not None:
        return stable + _suffix(exc)
    assert isinstance(exc, AgwError)
    if isinstance(exc, HostKeyError) and exc.known_hosts and exc.known_hosts in exc.message:
        return exc.message.replace(exc.known_hosts, KNOWN_HOSTS_PUBLIC) + _suffix(exc)
    return exc.message


def public_text(exc: BaseException) -> str:
    """What a caller may see of ``exc``, like ``str(exc)`` (an AgwError's device and phase first)."""
    message = public_message(exc)
    if isinstance(exc, AgwError):
        where = []
        if exc.device:
            where.append(f"device {exc.device}")
        if exc.phase:
            where.append(f"phase {exc.phase.value}")
        if where:
            return f"[{', '.join(where)}] {message}"
    return message


def public_kind(exc: BaseException) -> str:
    """The error kind a caller sees: the AgwError class name, or :data:`INTERNAL_KIND`."""
    return type(exc).__name__ if isinstance(exc, AgwError) else INTERNAL_KIND


__all__ = ["INTERNAL_KIND", "incident", "is_internal", "public_kind", "public_message", "public_text"]
