"""Convert between :class:`~drivers.snmp.varbinds.Varbind` and pysnmp's pyasn1 values.

Numeric OIDs only: no MIB is resolved or loaded, ever. Values are matched by their BER tag, so
what the agent sends back is named the same way whatever pysnmp class decoded it.

What the agent sends is untrusted: a reply pysnmp cannot decode (malformed BER, a value outside
its type's constraints) is dropped by pysnmp and the request times out; one it decodes is bounded
by the UDP datagram; a value this module cannot read (an unknown type, a value-less ASN.1 object)
is a :class:`ReplyError`, which the session translates — never a pyasn1 error escaping the driver.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

from pyasn1.error import PyAsn1Error
from pysnmp.proto import rfc1902, rfc1905

from drivers.snmp.varbinds import (
    COUNTER32,
    COUNTER64,
    GAUGE32,
    INTEGER,
    IP_ADDRESS,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    OPAQUE,
    TIMETICKS,
    UNSIGNED32,
    Varbind,
)

log = logging.getLogger(__name__)

_ENCODERS: dict[str, Any] = {
    OCTET_STRING: rfc1902.OctetString,
    INTEGER: rfc1902.Integer32,
    COUNTER32: rfc1902.Counter32,
    GAUGE32: rfc1902.Gauge32,
    TIMETICKS: rfc1902.TimeTicks,
    IP_ADDRESS: rfc1902.IpAddress,
    OBJECT_IDENTIFIER: rfc1902.ObjectName,
    UNSIGNED32: rfc1902.Unsigned32,
    COUNTER64: rfc1902.Counter64,
    OPAQUE: rfc1902.Opaque,
}

_BY_TAG: dict[Any, str] = {
    rfc1902.OctetString.tagSet: OCTET_STRING,
    rfc1902.Integer32.tagSet: INTEGER,
    rfc1902.Counter32.tagSet: COUNTER32,
    rfc1902.Gauge32.tagSet: GAUGE32,  # also Unsigned32: same tag
    rfc1902.TimeTicks.tagSet: TIMETICKS,
    rfc1902.IpAddress.tagSet: IP_ADDRESS,
    rfc1902.ObjectIdentifier.tagSet: OBJECT_IDENTIFIER,
    rfc1902.Counter64.tagSet: COUNTER64,
    rfc1902.Opaque.tagSet: OPAQUE,
    rfc1905.NoSuchObject.tagSet: "noSuchObject",
    rfc1905.NoSuchInstance.tagSet: "noSuchInstance",
    rfc1905.EndOfMibView.tagSet: "endOfMibView",
}


class ReplyError(ValueError):
    """The agent's reply cannot be used: an unreadable value, or not the OIDs asked for."""


def to_wire(varbinds: Iterable[Varbind]) -> list[tuple[Any, Any]]:
    """Varbinds → (ObjectName, value) pairs for a SET PDU."""
    out = []
    for vb in varbinds:
        if vb.is_exception:
            raise ValueError(f"{vb.oid}: cannot SET an exception value ({vb.type})")
        value = vb.value
        if vb.type == IP_ADDRESS:
            value = rfc1902.IpAddress(str(value))
        else:
            value = _ENCODERS[vb.type](value)
        out.append((rfc1902.ObjectName(vb.oid), value))
    return out


def get_request(oids: Sequence[str]) -> list[tuple[Any, Any]]:
    """OIDs → (ObjectName, Null) pairs for a GET PDU."""
    return [(rfc1902.ObjectName(oid), rfc1902.Null()) for oid in oids]


def from_wire(oid: Any, value: Any) -> Varbind:
    """One response (ObjectName, value) pair → Varbind; :class:`ReplyError` for anything unreadable."""
    try:
        return _from_wire(oid, value)
    except PyAsn1Error as exc:
        raise ReplyError(f"unreadable SNMP varbind from the agent: {type(exc).__name__}: {exc}") from exc


def _from_wire(oid: Any, value: Any) -> Varbind:
    name = str(oid)
    kind = _BY_TAG.get(getattr(value, "tagSet", None))
    if kind is None:
        raise ReplyError(f"{name}: unsupported SNMP value type {value.__class__.__name__}")
    if kind in ("noSuchObject", "noSuchInstance", "endOfMibView"):
        return Varbind(oid=name, type=kind)
    if kind in (OCTET_STRING, OPAQUE):
        return Varbind(oid=name, type=kind, value=bytes(value))
    if kind == IP_ADDRESS:
        return Varbind(oid=name, type=kind, value=".".join(str(b) for b in bytes(value)))
    if kind == OBJECT_IDENTIFIER:
        return Varbind(oid=name, type=kind, value=str(value))
    return Varbind(oid=name, type=kind, value=int(value))


def decode_reply(oids: Sequence[str], pairs: Iterable[tuple[Any, Any]]) -> list[Varbind]:
    """A GET response → Varbinds, checked to answer exactly the OIDs asked, in order."""
    got = [from_wire(name, value) for name, value in pairs]
    if [vb.oid for vb in got] != list(oids):
        raise ReplyError(f"the agent answered for {[vb.oid for vb in got]}, asked for {list(oids)}")
    return got


__all__ = ["ReplyError", "decode_reply", "from_wire", "get_request", "to_wire"]
