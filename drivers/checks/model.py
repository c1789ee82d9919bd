"""The service-check model (:mod:`drivers.checks`): kinds, limits and the frozen dataclasses. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

CLI = "cli"
NETCONF = "netconf"
SNMP = "snmp"
KINDS = (CLI, NETCONF, SNMP)
"""The kinds of query a check can make; a driver declares the ones it runs (``check_kinds``)."""

MIN_INTERVAL_S = 0.2
MAX_TIMEOUT_S = 300.0
MAX_TOTAL_WAIT_S = 600.0
"""The checks of one change wait at most this long together (the verify phase's own bound)."""
DEFAULT_SETTLE_S = 2.0
DEFAULT_INTERVAL_S = 0.5
MAX_CHECKS = 16
"""Checks per change."""
MAX_RECORDS = 1000
"""Records one poll may read; more fails the check (narrow the query)."""
MAX_OUTPUT_CHARS = 1024 * 1024
"""Characters of command output (CLI) a check parses; more fails the check."""
MAX_TEXT = 4096
"""Longest check text field kept (a command, a value); a TTP template or filter may be 64 KiB."""
MAX_QUERY = 64 * 1024
MAX_FIELDS = 32
MAX_SHOWN = 240
"""Characters of observed records shown in a mismatch."""

Record = Mapping[str, str]


class CheckError(ValueError):
    """A rendered check that is not a valid check (the reason names the field)."""


class TooMuch(ValueError):
    """A query read more than a check may look at (records, output)."""


@dataclass(frozen=True, kw_only=True)
class Wait:
    timeout_s: float
    interval_s: float


@dataclass(frozen=True, kw_only=True)
class CliQuery:
    command: str
    ttp: str = ""
    json: bool = False


@dataclass(frozen=True, kw_only=True)
class NetconfQuery:
    get: str
    """A subtree filter (its top-level elements), read with ``<get>`` (state and configuration)."""


@dataclass(frozen=True, kw_only=True)
class SnmpQuery:
    get: tuple[tuple[str, str], ...] = ()
    """(field, oid) read with one GET: one record; a list of OIDs gives one record per OID
    (fields ``oid`` and ``value``)."""
    walk: tuple[tuple[str, str], ...] = ()
    """(field, column oid) walked together: one record per row index (field ``index`` too)."""
    per_oid: bool = False
    """``get`` was a list: one record {oid, value} per OID."""


Query = CliQuery | NetconfQuery | SnmpQuery


@dataclass(frozen=True, kw_only=True)
class Condition:
    expect: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(field, wanted values): a record matches when each field equals one of its values."""
    absent: bool = False

    def matches(self, record: Record) -> bool:
        return all(field_ in record and record[field_] in wanted for field_, wanted in self.expect)

    def closeness(self, record: Record) -> tuple[bool, ...]:
        """Which expected fields ``record`` has equal, in ``expect``'s order: sorting by it puts
        first the records that match the first fields (name the key first: ``{name: eth1, ...}``)."""
        return tuple(field_ in record and record[field_] in wanted for field_, wanted in self.expect)

    def describe(self) -> str:
        parts = [f"{k}={v[0]}" if len(v) == 1 else f"{k} in {list(v)}" for k, v in self.expect]
        what = ", ".join(parts) if parts else "any record"
        return f"no record with {what}" if self.absent else f"a record with {what}"


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    kind: str
    query: Query
    condition: Condition
    wait: Wait
    index: int = 0
    """Its position in the service's checks for this platform (``checks[i]``)."""


@dataclass(frozen=True, kw_only=True)
class Outcome:
    ok: bool
    observed: str
    """A short view of what the last poll read."""
    polls: int = 1
    elapsed_s: float = 0.0


def text_of(value: Any) -> str:
    """How a value compares: booleans as ``true``/``false``, None as empty, the rest as ``str``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


__all__ = [
    "CLI", "DEFAULT_INTERVAL_S", "DEFAULT_SETTLE_S", "KINDS", "MAX_CHECKS", "MAX_FIELDS", "MAX_OUTPUT_CHARS",
    "MAX_QUERY", "MAX_RECORDS", "MAX_SHOWN", "MAX_TEXT", "MAX_TIMEOUT_S", "MAX_TOTAL_WAIT_S", "MIN_INTERVAL_S",
    "NETCONF", "SNMP", "Check", "CheckError", "CliQuery", "Condition", "NetconfQuery", "Outcome", "Query",
    "Record", "SnmpQuery", "TooMuch", "Wait", "text_of",
]
