"""SNMP varbinds as plain data: the rendered change, the canonical snapshot text, and their diff.

Pure functions only (no pysnmp, no I/O), so every rule here is unit-tested on its own.

A service template renders a YAML list of varbinds (JSON is YAML, so ``|tojson`` values are safe)::

    - {"oid": "1.3.6.1.2.1.1.4.0", "type": "OctetString", "value": "noc@example.net"}
    - {"oid": "1.3.6.1.2.1.1.6.0", "type": "OctetString", "value": "rack 9"}

A snapshot is one ``OID = TYPE: value`` line per OID, sorted in OID order, for example::

    1.3.6.1.2.1.1.4.0 = OctetString: "noc@example.net"
    1.3.6.1.2.1.1.9.1.2.1 = ObjectIdentifier: 1.3.6.1.6.3.1
    1.3.6.1.2.1.1.99.0 = noSuchObject

OctetString values are written as a JSON string when they are UTF-8, else as ``0x`` + hex, so a
line never contains a raw newline and two snapshots are equal exactly when the values are.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import yaml

from drivers.errors import FieldViolation, InputError

log = logging.getLogger(__name__)

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

OCTET_STRING = "OctetString"
INTEGER = "Integer"
COUNTER32 = "Counter32"
GAUGE32 = "Gauge32"
TIMETICKS = "TimeTicks"
IP_ADDRESS = "IpAddress"
OBJECT_IDENTIFIER = "ObjectIdentifier"
UNSIGNED32 = "Unsigned32"
COUNTER64 = "Counter64"
OPAQUE = "Opaque"

SETTABLE_TYPES: tuple[str, ...] = (
    OCTET_STRING,
    INTEGER,
    COUNTER32,
    GAUGE32,
    TIMETICKS,
    IP_ADDRESS,
    OBJECT_IDENTIFIER,
    UNSIGNED32,
)
"""The types a rendered varbind may carry."""

TYPE_ALIASES: Mapping[str, str] = {"Integer32": INTEGER}
"""Accepted spellings that mean the same type on the wire."""

WIRE_TYPE: Mapping[str, str] = {UNSIGNED32: GAUGE32}
"""Types that share one wire tag (RFC 2578: Unsigned32 and Gauge32 are indistinguishable);
snapshots always show the left-hand name as the right-hand one."""

EXCEPTIONS: tuple[str, ...] = ("noSuchObject", "noSuchInstance", "endOfMibView")
"""RFC 3416 exception values a GET can return in place of a value."""

MAX_VARBINDS = 64
MAX_OCTETS = 65535
_INT32 = (-(2**31), 2**31 - 1)
_UINT32 = (0, 2**32 - 1)
_UINT64 = (0, 2**64 - 1)
_OID_RE = re.compile(r"^\.?(?:0|[1-9]\d*)(?:\.(?:0|[1-9]\d*))+$")


class SnapshotFormatError(ValueError):
    """A snapshot text that this module did not write (corrupt journal row, wrong driver)."""


@dataclass(frozen=True, kw_only=True)
class Varbind:
    """One OID with a typed value, or with an RFC 3416 exception (``type`` is then the exception)."""

    oid: str
    type: str
    value: bytes | int | str | None = None

    @property
    def is_exception(self) -> bool:
        return self.type in EXCEPTIONS

    @property
    def text(self) -> str:
        """``TYPE: value`` (or the exception name): what a snapshot line holds after ``=``."""
        if self.is_exception:
            return self.type
        return f"{wire_type(self.type)}: {format_value(self.type, self.value)}"

    @property
    def line(self) -> str:
        return f"{self.oid} = {self.text}"


# -- OIDs -------------------------------------------------------------------------------------

def normalize_oid(oid: str) -> str:
    """``.1.3.6.1.2.1.1.4.0`` → ``1.3.6.1.2.1.1.4.0``. Raises ValueError if it is not numeric."""
    if not isinstance(oid, str) or not _OID_RE.match(oid.strip()):
        raise ValueError(f"not a numeric OID: {oid!r} (use dotted numbers such as 1.3.6.1.2.1.1.4.0)")
    text = oid.strip().lstrip(".")
    first, second = (int(p) for p in text.split(".")[:2])
    if first > 2 or (first < 2 and second > 39):
        raise ValueError(f"not a valid OID: {oid!r} (first arcs must be 0-2, then 0-39)")
    return text


def oid_key(oid: str) -> tuple[int, ...]:
    """Sort key giving OID (lexicographic by arc) order: 1.3.6.1.2 < 1.3.6.1.10."""
    return tuple(int(p) for p in oid.split("."))


def sort_oids(oids: Iterable[str]) -> list[str]:
    return sorted(set(oids), key=oid_key)


def wire_type(type_name: str) -> str:
    return WIRE_TYPE.get(type_name, type_name)


# -- values -----------------------------------------------------------------------------------

def format_value(type_name: str, value: bytes | int | str | None) -> str:
    """The canonical text of a typed value (the right-hand side of a snapshot line)."""
    if type_name == OCTET_STRING or type_name == OPAQUE:
        assert isinstance(value, bytes)
        try:
            return json.dumps(value.decode("utf-8"))  # ASCII-only: no line separators
        except UnicodeDecodeError:
            return "0x" + value.hex()
    return str(value)


def parse_value(type_name: str, text: str) -> bytes | int | str:
    """Inverse of :func:`format_value`. Raises ValueError."""
    if type_name in (OCTET_STRING, OPAQUE):
        if text.startswith('"'):
            decoded = json.loads(text)
            if not isinstance(decoded, str):
                raise ValueError(f"bad OctetString text {text!r}")
            return decoded.encode("utf-8")
        if text.startswith("0x"):
            return bytes.fromhex(text[2:])
        raise ValueError(f"bad OctetString text {text!r} (want a JSON string or 0x-hex)")
    if type_name in (IP_ADDRESS,):
        return str(ipaddress.IPv4Address(text))
    if type_name == OBJECT_IDENTIFIER:
        return normalize_oid(text)
    if type_name in (INTEGER, COUNTER32, GAUGE32, TIMETICKS, UNSIGNED32, COUNTER64):
        return int(text)
    raise ValueError(f"unknown SNMP type {type_name!r}")


def _check_value(type_name: str, value: Any) -> tuple[bytes | int | str | None, str | None]:
    """Validate a rendered value for its type: (typed value, None) or (None, reason)."""
    if type_name == OCTET_STRING:
        if not isinstance(value, str):
            return None, f"OctetString needs a string, got {type(value).__name__} {value!r}"
        raw = value.encode("utf-8")
        if len(raw) > MAX_OCTETS:
            return None, f"OctetString longer than {MAX_OCTETS} bytes"
        return raw, None
    if type_name in (INTEGER, COUNTER32, GAUGE32, TIMETICKS, UNSIGNED32):
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"{type_name} needs an integer, got {type(value).__name__} {value!r}"
        low, high = _INT32 if type_name == INTEGER else _UINT32
        if not low <= value <= high:
            return None, f"{type_name} value {value} is outside {low}..{high}"
        return value, None
    if type_name == IP_ADDRESS:
        try:
            return str(ipaddress.IPv4Address(value if isinstance(value, str) else "")), None
        except ValueError:
            return None, f"IpAddress needs a dotted IPv4 address string, got {value!r}"
    if type_name == OBJECT_IDENTIFIER:
        try:
            return normalize_oid(value), None
        except ValueError as exc:
            return None, str(exc)
    return None, f"unknown type {type_name!r}"  # pragma: no cover - callers check the type first


# -- rendered change → varbinds ---------------------------------------------------------------

def parse_varbinds(content: str, *, field: str = "content") -> tuple[Varbind, ...]:
    """Parse a rendered change into typed varbinds, in the rendered order.

    Raises :class:`InputError` listing *every* problem (field ``content[i].oid`` etc.). Results
    are cached by content (a change is parsed by read, load and verify alike).
    """
    return _parse_varbinds(content, field)


@functools.lru_cache(maxsize=512)
def _parse_varbinds(content: str, field: str) -> tuple[Varbind, ...]:
    try:
        doc = yaml.load(content, Loader=_Loader) if content.strip() else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InputError([FieldViolation(field, f"rendered varbinds are not valid YAML{where}: "
                                                f"{getattr(exc, 'problem', None) or exc}")]) from exc
    if doc is None:
        raise InputError([FieldViolation(field, "the template rendered no varbinds (give at least one parameter)")])
    if not isinstance(doc, list):
        raise InputError([FieldViolation(field, f"rendered varbinds must be a YAML list, got {type(doc).__name__}")])
    if len(doc) > MAX_VARBINDS:
        raise InputError([FieldViolation(field, f"{len(doc)} varbinds; at most {MAX_VARBINDS} fit one SET")])
    problems: list[FieldViolation] = []
    result: list[Varbind] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(doc):
        here = f"{field}[{i}]"
        if not isinstance(item, dict):
            problems.append(FieldViolation(here, f"a varbind must be a mapping with oid, type, value; got {item!r}"))
            continue
        unknown = sorted(set(map(str, item)) - {"oid", "type", "value"})
        if unknown:
            problems.append(FieldViolation(here, f"unknown key(s) {', '.join(unknown)} (allowed: oid, type, value)"))
        missing = [k for k in ("oid", "type", "value") if k not in item]
        if missing:
            problems.append(FieldViolation(here, f"missing {', '.join(missing)}"))
            continue
        oid: str | None = None
        try:
            oid = normalize_oid(item["oid"])
        except ValueError as exc:
            problems.append(FieldViolation(f"{here}.oid", str(exc)))
        if oid is not None and oid in seen:
            problems.append(FieldViolation(f"{here}.oid", f"OID {oid} is set twice (also {field}[{seen[oid]}])"))
            continue
        if oid is not None:
            seen[oid] = i
        type_name = TYPE_ALIASES.get(str(item["type"]), item["type"])
        if type_name not in SETTABLE_TYPES:
            problems.append(FieldViolation(
                f"{here}.type", f"unknown SNMP type {item['type']!r}; one of: {', '.join(SETTABLE_TYPES)}"))
            continue
        value, reason = _check_value(type_name, item["value"])
        if reason is not None:
            problems.append(FieldViolation(f"{here}.value", f"{reason} (OID {oid or item['oid']})"))
            continue
        if oid is None:
            continue
        result.append(Varbind(oid=oid, type=type_name, value=value))
    if problems:
        raise InputError(problems)
    return tuple(result)


# -- snapshots --------------------------------------------------------------------------------

def format_scope(oids: Iterable[str]) -> str:
    """The Snapshot.scope text: the OIDs read, one per line, in OID order."""
    return "\n".join(sort_oids(oids))


def parse_scope(scope: str) -> list[str]:
    try:
        return sort_oids(normalize_oid(line) for line in scope.split() if line)
    except ValueError as exc:
        raise SnapshotFormatError(f"bad SNMP snapshot scope: {exc}") from exc


def format_snapshot(varbinds: Iterable[Varbind]) -> str:
    """Canonical snapshot text: one line per OID, sorted, newline-terminated lines joined."""
    by_oid = {vb.oid: vb for vb in varbinds}
    return "\n".join(by_oid[oid].line for oid in sort_oids(by_oid))


def parse_snapshot(content: str) -> dict[str, Varbind]:
    """Inverse of :func:`format_snapshot`: OID → Varbind. Raises SnapshotFormatError."""
    out: dict[str, Varbind] = {}
    for n, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        oid_text, sep, rest = line.partition(" = ")
        try:
            if not sep:
                raise ValueError("missing ' = '")
            oid = normalize_oid(oid_text)
            if rest in EXCEPTIONS:
                out[oid] = Varbind(oid=oid, type=rest)
                continue
            type_name, sep, value_text = rest.partition(": ")
            if not sep:
                raise ValueError("missing 'TYPE: value'")
            out[oid] = Varbind(oid=oid, type=type_name, value=parse_value(type_name, value_text))
        except ValueError as exc:
            raise SnapshotFormatError(f"bad SNMP snapshot line {n} {line!r}: {exc}") from exc
    return out


def intended(snapshot: Mapping[str, Varbind], change: Iterable[Varbind]) -> dict[str, Varbind]:
    """The state after applying ``change`` on top of ``snapshot``."""
    out = dict(snapshot)
    out.update({vb.oid: vb for vb in change})
    return out


def diff_varbinds(before: Mapping[str, Varbind], after: Mapping[str, Varbind]) -> str:
    """A line diff over OIDs: ``- OID = old`` then ``+ OID = new`` for each OID that differs."""
    lines: list[str] = []
    for oid in sort_oids(set(before) | set(after)):
        old, new = before.get(oid), after.get(oid)
        if old is not None and new is not None and old.text == new.text:
            continue
        if old is not None:
            lines.append(f"- {old.line}")
        if new is not None:
            lines.append(f"+ {new.line}")
    return "\n".join(lines)


def diff_snapshots(before: str, after: str) -> str:
    return diff_varbinds(parse_snapshot(before), parse_snapshot(after))


__all__ = [
    "EXCEPTIONS",
    "SETTABLE_TYPES",
    "SnapshotFormatError",
    "Varbind",
    "diff_snapshots",
    "diff_varbinds",
    "format_scope",
    "format_snapshot",
    "format_value",
    "intended",
    "normalize_oid",
    "oid_key",
    "parse_scope",
    "parse_snapshot",
    "parse_value",
    "parse_varbinds",
    "sort_oids",
    "wire_type",
]
