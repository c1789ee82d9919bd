"""Who is calling: the caller's identity, taken from its TLS client certificate.

An interceptor (:class:`AuthInterceptor`) reads the identity of every call and keeps it in a
context variable for the servicer (:func:`current_caller`); the servicer hands it to the engine,
which journals it with every mutating call.
"""

from __future__ import annotations

import contextvars
import logging

from gateway.model import ANONYMOUS, Caller

log = logging.getLogger(__name__)

_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("agw_caller", default=ANONYMOUS)


def current_caller() -> Caller:
    """The caller of the call being served (anonymous when the gateway runs without identities)."""
    return _caller.get()


__all__ = ["current_caller"]
