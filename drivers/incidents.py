"""Incident ids: an error's full text goes to the log under a short id; a caller sees only the id.

A driver that meets something it cannot classify (a bug, an exception it has no translation for)
must not put that exception's text in the error it raises: the text may name files, addresses or
anything else, and a driver's error message reaches callers. It logs the text under an incident
id and raises an error that names only the id::

    except Exception as exc:  # the driver's one translation point, last resort
        raise DeviceError(f"unexpected error in the FOO driver: {internal_text(exc)}", device=..., phase=...,
                          retryable=False) from exc

The id is kept on the exception, so one exception is one incident wherever it is shown (the
gateway's :mod:`gateway.incidents` decides what else callers see, and uses these ids too).
"""

from __future__ import annotations

import logging
import uuid

from drivers.errors import HostKeyError

log = logging.getLogger(__name__)

_ATTR = "_agw_incident"


def incident(exc: BaseException, *, logger: logging.Logger | None = None) -> str:
    """The incident id of ``exc``; the first call logs the error with it (the full text, and the
    traceback unless it is a :class:`~drivers.errors.HostKeyError`) to ``logger`` (default: this
    module's)."""
    found = getattr(exc, _ATTR, None)
    if isinstance(found, str):
        return found
    new = uuid.uuid4().hex[:12]
    try:
        setattr(exc, _ATTR, new)
    except (AttributeError, TypeError):  # pragma: no cover - an exception type without a __dict__
        pass
    out = logger or log
    if isinstance(exc, HostKeyError):
        out.warning("incident %s: %s", new, exc)
    else:
        out.error("incident %s: %s: %s", new, type(exc).__name__, exc, exc_info=exc)
    return new


def see_log(exc: BaseException, *, logger: logging.Logger | None = None) -> str:
    """`` (incident 3f2a9c1d7e01; see the gateway log)``: what follows a caller's text in place of
    ``exc``'s own."""
    return f" (incident {incident(exc, logger=logger)}; see the gateway log)"


def internal_text(exc: BaseException, *, logger: logging.Logger | None = None) -> str:
    """What a caller may see of an unexpected exception (a bug): ``internal error (incident …)``."""
    return "internal error" + see_log(exc, logger=logger)


__all__ = ["incident", "internal_text", "see_log"]
