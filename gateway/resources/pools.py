"""Pool definitions: what a pool hands out, its bounds, and how its values look. Pure.

A pool is one of four kinds:

=====  ==========================================  =========================================
kind   defined by                                  hands out
=====  ==========================================  =========================================
ipv4   ``prefix: 10.0.0.0/16``                     prefixes of a requested length
                                                   (``10.0.0.4/31``) or single addresses
                                                   (``10.0.0.5``, or ``10.0.0.5/32`` when
                                                   ``prefix_length: 32`` is asked for)
ipv6   ``prefix: 2001:db8::/48``                   the same, 128 bits wide
vlan   ``first: 100, last: 199`` (within 1-4094)   one VLAN id (an integer)
id     ``first: 1000, last: 1999`` (0 .. 2**63-1)  one integer id
=====  ==========================================  =========================================

Every value is a block of integers ``[start, start + size)``: an address is its integer, a
prefix of length N in a pool of W bits is a block of ``2**(W - N)`` integers aligned on its size,
a VLAN or an id is a block of one. The allocator (:mod:`gateway.resources.allocator`) works on
those integers only; this module turns them into the values a template sees and back.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Mapping

MAX_NAME_LENGTH = 63
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}\Z")
"""A pool name: lower-case letters, digits, ``_``, ``.``, ``-``; it appears in parameters, logs and URLs."""
MAX_DESCRIPTION_LENGTH = 256
VLAN_MIN, VLAN_MAX = 1, 4094
ID_MAX = 2**63 - 1
KEY_DIGITS = 32
"""Stored bounds are fixed-width lower-case hex (128 bits): their text order is their numeric order."""


class PoolKind(str, enum.Enum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    VLAN = "vlan"
    ID = "id"

    @property
    def is_ip(self) -> bool:
        return self in (PoolKind.IPV4, PoolKind.IPV6)

    @property
    def bits(self) -> int:
        """Address width of an IP pool (0 for vlan/id)."""
        return {PoolKind.IPV4: 32, PoolKind.IPV6: 128}.get(self, 0)


class PoolDefinitionError(ValueError):
    """A pool definition that is not valid; the message names the field."""


@dataclass(frozen=True, kw_only=True)
class PoolDef:
    """One pool's definition (what a pools file or CreatePool gives)."""

    name: str
    kind: PoolKind
    prefix: str = ""
    """ipv4/ipv6: the pool's network, normalized (``10.0.0.0/16``)."""
    first: int = 0
    """vlan/id: the first value handed out."""
    last: int = 0
    """vlan/id: the last value handed out."""
    description: str = ""

    @property
    def bounds(self) -> tuple[int, int]:
        """The integers the pool covers, inclusive."""
        if self.kind.is_ip:
            net = ipaddress.ip_network(self.prefix)
            return int(net.network_address), int(net.broadcast_address)
        return self.first, self.last

    @property
    def size(self) -> int:
        lo, hi = self.bounds
        return hi - lo + 1

    @property
    def shown_range(self) -> str:
        return self.prefix if self.kind.is_ip else f"{self.first}-{self.last}"

    def same_as(self, other: "PoolDef") -> bool:
        """The same pool (the description aside)."""
        return (self.kind, self.prefix, self.first, self.last) == (other.kind, other.prefix, other.first, other.last)

    def spec(self) -> dict[str, Any]:
        """The definition as plain data (what the journal keeps and a pools file holds)."""
        out: dict[str, Any] = {"kind": self.kind.value}
        if self.kind.is_ip:
            out["prefix"] = self.prefix
        else:
            out["first"], out["last"] = self.first, self.last
        if self.description:
            out["description"] = self.description
        return out

    # -- values ---------------------------------------------------------------------------------
    def block_size(self, prefix_length: int | None) -> int:
        """How many integers one value of ``prefix_length`` takes (None: a single address / value)."""
        if prefix_length is None or not self.kind.is_ip:
            return 1
        return 1 << (self.kind.bits - prefix_length)

    def value(self, start: int, prefix_length: int | None) -> Any:
        """The value a template sees for the block at ``start``: ``10.0.0.4/31``, ``10.0.0.5``, ``100``."""
        if not self.kind.is_ip:
            return start
        address = ipaddress.ip_address(start) if self.kind is PoolKind.IPV4 else ipaddress.IPv6Address(start)
        if prefix_length is None:
            return str(address)
        return f"{address}/{prefix_length}"

    def parse_value(self, text: Any) -> tuple[int, int]:
        """The block ``[start, end]`` a value of this pool names (the value of an allocation);
        raises :class:`PoolDefinitionError` for a value that is no value of this pool."""
        if not self.kind.is_ip:
            if isinstance(text, bool) or not isinstance(text, int):
                raise PoolDefinitionError(f"a {self.kind.value} pool's value is an integer, not {text!r}")
            start = end = text
        else:
            if not isinstance(text, str):
                raise PoolDefinitionError(f"an {self.kind.value} pool's value is an address or a prefix, not {text!r}")
            try:
                if "/" in text:
                    net = ipaddress.ip_network(text, strict=True)
                    start, end = int(net.network_address), int(net.broadcast_address)
                    version = net.version
                else:
                    addr = ipaddress.ip_address(text)
                    start = end = int(addr)
                    version = addr.version
            except ValueError as exc:
                raise PoolDefinitionError(f"{text!r} is not an address or a prefix: {exc}") from None
            if version != (4 if self.kind is PoolKind.IPV4 else 6):
                raise PoolDefinitionError(f"{text!r} is not an {self.kind.value} value")
        lo, hi = self.bounds
        if start < lo or end > hi:
            raise PoolDefinitionError(f"{text!r} is outside pool {self.name} ({self.shown_range})")
        return start, end

    def check_prefix_length(self, prefix_length: int | None) -> str:
        """Why ``prefix_length`` cannot be asked of this pool ("" when it can)."""
        if prefix_length is None:
            return ""
        if not self.kind.is_ip:
            return f"pool {self.name} is a {self.kind.value} pool: it takes no prefix_length"
        net = ipaddress.ip_network(self.prefix)
        if not net.prefixlen <= prefix_length <= self.kind.bits:
            return (f"pool {self.name} ({self.prefix}) hands out prefixes of length {net.prefixlen} to "
                    f"{self.kind.bits}, not {prefix_length}")
        return ""

    def probe(self, prefix_length: int | None) -> Any:
        """The pool's first value of that size: a value of the right shape, for checking a request
        against the service's schema before anything is allocated."""
        return self.value(self.bounds[0], prefix_length)


def key(n: int) -> str:
    """An integer as its stored, sortable text."""
    return format(n, f"0{KEY_DIGITS}x")


def unkey(text: str) -> int:
    return int(text, 16)


def parse_pool(name: Any, data: Any) -> PoolDef:
    """A definition from plain data (``{kind, prefix | first+last, description}``); every problem
    is a :class:`PoolDefinitionError` naming the field."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PoolDefinitionError(f"name: {name!r} is not a pool name (lower-case letters, digits, '_', '.', '-'; "
                                  f"at most {MAX_NAME_LENGTH})")
    if not isinstance(data, Mapping):
        raise PoolDefinitionError(f"{name}: a pool is a mapping (kind, prefix or first/last, description)")
    raw_kind = data.get("kind")
    try:
        kind = PoolKind(raw_kind)
    except ValueError:
        raise PoolDefinitionError(f"{name}.kind: must be one of {', '.join(k.value for k in PoolKind)}, "
                                  f"not {raw_kind!r}") from None
    allowed = {"kind", "description"} | ({"prefix"} if kind.is_ip else {"first", "last"})
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise PoolDefinitionError(f"{name}: unknown field(s) {', '.join(unknown)} for a {kind.value} pool "
                                  f"(allowed: {', '.join(sorted(allowed))})")
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
        raise PoolDefinitionError(f"{name}.description: text of at most {MAX_DESCRIPTION_LENGTH} characters")
    if kind.is_ip:
        prefix = data.get("prefix")
        if not isinstance(prefix, str):
            raise PoolDefinitionError(f"{name}.prefix: required (a network such as 10.0.0.0/16)")
        try:
            net = ipaddress.ip_network(prefix, strict=True)
        except ValueError as exc:
            raise PoolDefinitionError(f"{name}.prefix: {prefix!r} is not a network: {exc}") from None
        if net.version != (4 if kind is PoolKind.IPV4 else 6):
            raise PoolDefinitionError(f"{name}.prefix: {prefix!r} is not an {kind.value} network")
        return PoolDef(name=name, kind=kind, prefix=str(net), description=description)
    first, last = data.get("first"), data.get("last")
    for field, v in (("first", first), ("last", last)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise PoolDefinitionError(f"{name}.{field}: required, an integer")
    assert isinstance(first, int) and isinstance(last, int)
    lo, hi = (VLAN_MIN, VLAN_MAX) if kind is PoolKind.VLAN else (0, ID_MAX)
    if not lo <= first <= last <= hi:
        raise PoolDefinitionError(f"{name}: first and last must satisfy {lo} <= first <= last <= {hi} "
                                  f"(got {first} and {last})")
    return PoolDef(name=name, kind=kind, first=first, last=last, description=description)


__all__ = ["ID_MAX", "KEY_DIGITS", "MAX_NAME_LENGTH", "NAME_RE", "PoolDef", "PoolDefinitionError", "PoolKind",
           "VLAN_MAX", "VLAN_MIN", "key", "parse_pool", "unkey"]
