"""Secrets that cannot leak by accident (driver SDK; the gateway re-exports them as :mod:`gateway.secrets`).

A :class:`Secret` never shows its value in ``str``/``repr``/format, so a credential that reaches
a log line, an event, an error message or a journal row shows ``'********'``. Code that really
needs the value (a driver opening a session) calls :meth:`Secret.reveal`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MASK = "********"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:  # pickling would write the clear value: refuse
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True, kw_only=True)
class Credential:
    """Resolved credentials of one device endpoint. Fields a protocol does not use stay empty.

    ``ref`` is the reference it was resolved from (safe to log); the values are Secrets.
    """

    ref: str
    username: str = ""
    password: Secret | None = None
    private_key_path: str = ""
    # SNMP
    community: Secret | None = None
    auth_key: Secret | None = None
    priv_key: Secret | None = None
    auth_protocol: str = ""  # SHA, SHA256, MD5 ...
    priv_protocol: str = ""  # AES, AES256, DES ...
    extra: dict[str, Secret] = field(default_factory=dict)

    def secrets(self) -> list[str]:
        """Every clear value held, for the log redaction filter."""
        vals = [s.reveal() for s in (self.password, self.community, self.auth_key, self.priv_key) if s]
        vals.extend(s.reveal() for s in self.extra.values())
        return [v for v in vals if v]


__all__ = ["MASK", "Credential", "Secret"]
