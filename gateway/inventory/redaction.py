"""A logging filter that masks every known secret value.

:class:`gateway.secrets.Secret` already masks itself; this filter is the second line of defence
for a value that escaped as a plain string (a library logging its arguments, an exception text
quoting a device's reply...). It rewrites the message, its arguments and any exception or stack
text of a record before a handler formats it.

Install it on *handlers*: a filter on a logger only sees records logged on that very logger,
while a handler's filters see every record that reaches the handler.
"""

from __future__ import annotations

import logging
import re
from typing import Callable, Iterable, Protocol, Union

from gateway.secrets import MASK

log = logging.getLogger(__name__)


class SecretsProvider(Protocol):
    def known_secrets(self) -> Iterable[str]: ...


ProviderLike = Union[SecretsProvider, Callable[[], Iterable[str]]]


class RedactingFilter(logging.Filter):
    """Replace every value ``provider`` knows with ``'********'`` in log records.

    ``provider`` is an object with ``known_secrets()`` (a :class:`CredentialResolver`) or a
    callable returning the values. The filter never drops a record and never raises.
    """

    def __init__(self, provider: ProviderLike) -> None:
        super().__init__()
        self._provider = provider
        self._key: frozenset[str] | None = None
        self._pattern: re.Pattern[str] | None = None
        self._formatter = logging.Formatter()

    def _current(self) -> re.Pattern[str] | None:
        get = getattr(self._provider, "known_secrets", None)
        values = get() if callable(get) else self._provider()  # type: ignore[operator]
        key = values if isinstance(values, frozenset) else frozenset(values)
        if key != self._key:
            secrets = sorted((v for v in key if v), key=len, reverse=True)  # longest first
            self._pattern = re.compile("|".join(re.escape(s) for s in secrets)) if secrets else None
            self._key = key
        return self._pattern

    def redact(self, text: str) -> str:
        pattern = self._current()
        return pattern.sub(MASK, text) if pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            pattern = self._current()
            if pattern is None:
                return True
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string: let the handler report it
                message = None
            if message is not None:
                redacted = pattern.sub(MASK, message)
                if redacted != message:
                    record.msg, record.args = redacted, None
            if record.exc_info and not record.exc_text:
                record.exc_text = self._formatter.formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = pattern.sub(MASK, record.exc_text)
            if record.stack_info:
                record.stack_info = pattern.sub(MASK, record.stack_info)
        except Exception:  # noqa: BLE001 - a logging filter must never break logging
            log.debug("redaction filter failed", exc_info=False)
        return True


def install_redaction(provider: ProviderLike, *, logger: logging.Logger | None = None) -> RedactingFilter:
    """Add one :class:`RedactingFilter` to every handler of ``logger`` (default: the root
    logger) and return it; add it to handlers created later with ``handler.addFilter``."""
    target = logger if logger is not None else logging.getLogger()
    flt = RedactingFilter(provider)
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) and f._provider is provider for f in handler.filters):
            handler.addFilter(flt)
    return flt


__all__ = ["RedactingFilter", "SecretsProvider", "install_redaction"]
