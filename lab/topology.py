"""Topology files in containerlab's format, parsed and validated before anything is started.

::

    name: basic
    mgmt: {ipv4-subnet: 198.18.0.0/15}          # optional: the lab address range
    topology:
      defaults: {credentials: {...}}             # applied to every node
      kinds: {router: {credentials: {...}}}       # applied to every node of a kind
      nodes:
        r1: {kind: router, startup-config: {cli: r1-frr.conf}, credentials: {snmp: {community_rw: s3cret}}}
      links:
        - endpoints: ["r1:eth1", "cli1:eth1"]

Kinds: ``netconf`` (netconfd behind sshd:830), ``cli`` (FRR + vtysh behind sshd:22),
``snmp`` (snmpd:161) and ``router`` (all three). Every error names the file, the field and the
reason, and all errors are reported at once (:class:`lab.errors.TopologyError`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import FieldViolation
from lab.errors import TopologyError

KIND_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "netconf": ("netconf",),
    "cli": ("cli",),
    "snmp": ("snmp",),
    "router": ("netconf", "cli", "snmp"),
}
PORTS = {"netconf": 830, "cli": 22, "snmp": 161}
DEFAULT_RANGE = "198.18.0.0/15"
DEFAULT_CREDENTIALS: dict[str, dict[str, str]] = {
    "netconf": {"username": "labadmin", "password": "labpass"},
    "cli": {"username": "labcli", "password": "labpass"},
    "snmp": {
        "community_ro": "public",
        "community_rw": "private",
        "v3_user": "labv3",
        "v3_auth_key": "labauthpass",
        "v3_priv_key": "labprivpass",
    },
}
NODE_KEYS = {"kind", "credentials", "startup-config", "image", "labels", "oper-state"}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
IFNAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$")
SAFE_VALUE_RE = re.compile(r"^[\x21-\x7e]{1,64}$")


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    name: str
    kind: str
    credentials: dict[str, dict[str, str]]
    startup: dict[str, str] = field(default_factory=dict)  # protocol -> file contents
    oper_state: bool = False
    """netconfd serves ietf-interfaces ``interfaces-state`` read from the node's namespace (the
    ietf-interfaces SIL; :func:`lab.daemons.netconfd_spec`)."""

    @property
    def protocols(self) -> tuple[str, ...]:
        return KIND_PROTOCOLS[self.kind]


@dataclass(frozen=True, kw_only=True)
class LinkSpec:
    a: tuple[str, str]  # (node, interface)
    b: tuple[str, str]


@dataclass(frozen=True, kw_only=True)
class Topology:
    name: str
    file: str
    range: ipaddress.IPv4Network
    nodes: tuple[NodeSpec, ...]
    links: tuple[LinkSpec, ...] = ()
    digest: str = ""

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(path: Path | str, *, name: str | None = None) -> Topology:
    """Read and validate a topology file. Raises TopologyError naming the file, field and reason."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise TopologyError(str(p), [FieldViolation("file", f"cannot read: {exc.strerror or exc}")]) from exc
    return parse(text, file=str(p), base_dir=p.parent, name=name)


def parse(text: str, *, file: str = "<string>", base_dir: Path | None = None, name: str | None = None) -> Topology:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "yaml"
        problem = getattr(exc, "problem", None) or str(exc)
        if "duplicate key" in str(problem):
            where = f"{where} (a node or key is defined twice)"
        raise TopologyError(file, [FieldViolation(where, f"YAML error: {problem}")]) from exc
    if name is not None and isinstance(data, dict):
        data = {**data, "name": name}
    return from_dict(data, file=file, base_dir=base_dir)


def from_dict(data: Any, *, file: str = "<dict>", base_dir: Path | None = None) -> Topology:
    errs: list[FieldViolation] = []

    def bad(fld: str, reason: str) -> None:
        errs.append(FieldViolation(fld, reason))

    if not isinstance(data, dict):
        raise TopologyError(file, [FieldViolation("(document)", "must be a mapping with name and topology")])
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        bad("name", f"must be 1-31 of [a-z0-9_-] starting with a letter or digit, got {name!r}")
        name = "invalid"
    unknown_top = set(data) - {"name", "topology", "mgmt", "prefix"}
    for k in sorted(unknown_top):
        bad(k, "unknown top-level field")
    rng = ipaddress.IPv4Network(DEFAULT_RANGE)
    mgmt = data.get("mgmt") or {}
    if not isinstance(mgmt, dict):
        bad("mgmt", "must be a mapping")
    elif "ipv4-subnet" in mgmt:
        try:
            rng = ipaddress.IPv4Network(str(mgmt["ipv4-subnet"]), strict=True)
            if rng.prefixlen > 29:
                bad("mgmt.ipv4-subnet", "range must be /29 or larger")
            if rng.is_loopback or rng.is_multicast or rng.is_unspecified:
                bad("mgmt.ipv4-subnet", f"{rng} cannot be used as a lab range")
        except ValueError as exc:
            bad("mgmt.ipv4-subnet", f"not an IPv4 network: {exc}")
    topo = data.get("topology")
    if not isinstance(topo, dict):
        bad("topology", "missing, or not a mapping with nodes")
        raise TopologyError(file, errs)
    for k in sorted(set(topo) - {"defaults", "kinds", "nodes", "links"}):
        bad(f"topology.{k}", "unknown field")
    defaults = topo.get("defaults") or {}
    kinds = topo.get("kinds") or {}
    if not isinstance(defaults, dict):
        bad("topology.defaults", "must be a mapping")
        defaults = {}
    if not isinstance(kinds, dict):
        bad("topology.kinds", "must be a mapping")
        kinds = {}
    for k in kinds:
        if k not in KIND_PROTOCOLS:
            bad(f"topology.kinds.{k}", f"unknown kind (known: {', '.join(sorted(KIND_PROTOCOLS))})")
    raw_nodes = topo.get("nodes")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        bad("topology.nodes", "missing or empty: a topology needs at least one node")
        raw_nodes = {}
    nodes: list[NodeSpec] = []
    for nname, nd in raw_nodes.items():
        where = f"topology.nodes.{nname}"
        if not isinstance(nname, str) or not NAME_RE.match(nname):
            bad(where, "node name must be 1-31 of [a-z0-9_-] starting with a letter or digit")
            continue
        if not isinstance(nd, dict):
            bad(where, "must be a mapping with at least kind")
            continue
        for k in sorted(set(nd) - NODE_KEYS):
            bad(f"{where}.{k}", f"unknown field (allowed: {', '.join(sorted(NODE_KEYS))})")
        kind = nd.get("kind", defaults.get("kind"))
        if kind not in KIND_PROTOCOLS:
            bad(f"{where}.kind", f"unknown kind {kind!r} (known: {', '.join(sorted(KIND_PROTOCOLS))})")
            continue
        creds = _merge_credentials(
            [defaults.get("credentials"), (kinds.get(kind) or {}).get("credentials"), nd.get("credentials")],
            where=f"{where}.credentials",
            bad=bad,
        )
        startup = _startup(nd.get("startup-config"), kind, where=f"{where}.startup-config", base_dir=base_dir, bad=bad)
        oper = nd.get("oper-state", False)
        if not isinstance(oper, bool):
            bad(f"{where}.oper-state", "must be true or false")
            oper = False
        elif oper and "netconf" not in KIND_PROTOCOLS[kind]:
            bad(f"{where}.oper-state", f"kind {kind} has no netconf protocol (oper-state is netconfd's interfaces-state)")
            oper = False
        nodes.append(NodeSpec(name=nname, kind=kind, credentials=creds, startup=startup, oper_state=oper))
    _check_users(nodes, bad)
    links = _links(topo.get("links") or [], {n.name for n in nodes} | set(raw_nodes), bad)
    if len(nodes) > (rng.num_addresses // 4):
        bad("mgmt.ipv4-subnet", f"{rng} holds {rng.num_addresses // 4} /30 subnets, the topology has {len(nodes)} nodes")
    if errs:
        raise TopologyError(file, errs)
    digest = hashlib.sha256(repr((name, str(rng), nodes, links)).encode()).hexdigest()[:16]
    return Topology(name=name, file=file, range=rng, nodes=tuple(nodes), links=tuple(links), digest=digest)


def _merge_credentials(layers: list[Any], *, where: str, bad: Any) -> dict[str, dict[str, str]]:
    out = {proto: dict(vals) for proto, vals in DEFAULT_CREDENTIALS.items()}
    for layer in layers:
        if layer is None:
            continue
        if not isinstance(layer, dict):
            bad(where, "must be a mapping of protocol -> fields")
            continue
        for proto, vals in layer.items():
            if proto not in out:
                bad(f"{where}.{proto}", f"unknown protocol (known: {', '.join(sorted(out))})")
                continue
            if not isinstance(vals, dict):
                bad(f"{where}.{proto}", "must be a mapping")
                continue
            for k, v in vals.items():
                if k not in out[proto]:
                    bad(f"{where}.{proto}.{k}", f"unknown field (known: {', '.join(sorted(out[proto]))})")
                elif not isinstance(v, (str, int)) or not SAFE_VALUE_RE.match(str(v)):
                    bad(f"{where}.{proto}.{k}", "must be 1-64 printable characters without spaces or quotes")
                elif '"' in str(v) or "'" in str(v) or "\\" in str(v):
                    bad(f"{where}.{proto}.{k}", "must not contain quotes or backslashes")
                else:
                    out[proto][k] = str(v)
    for k in ("v3_auth_key", "v3_priv_key"):
        if len(out["snmp"][k]) < 8:
            bad(f"{where}.snmp.{k}", "SNMPv3 keys need at least 8 characters")
    for proto in ("netconf", "cli"):
        if not USER_RE.match(out[proto]["username"]) or out[proto]["username"] == "root":
            bad(f"{where}.{proto}.username", "must be a plain lower-case user name, not root")
    if not USER_RE.match(out["snmp"]["v3_user"]):
        bad(f"{where}.snmp.v3_user", "must be a plain lower-case user name")
    return out


def _startup(raw: Any, kind: str, *, where: str, base_dir: Path | None, bad: Any) -> dict[str, str]:
    if raw is None:
        return {}
    protos = KIND_PROTOCOLS[kind]
    if isinstance(raw, str):
        if len(protos) != 1:
            bad(where, f"kind {kind} has several protocols: give a mapping {{{', '.join(protos)}: FILE}}")
            return {}
        raw = {protos[0]: raw}
    if not isinstance(raw, dict):
        bad(where, "must be a file name or a mapping protocol -> file name")
        return {}
    out: dict[str, str] = {}
    for proto, fname in raw.items():
        if proto not in protos:
            bad(f"{where}.{proto}", f"kind {kind} has no {proto} protocol")
            continue
        p = Path(str(fname))
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        try:
            out[proto] = p.read_text()
        except OSError as exc:
            bad(f"{where}.{proto}", f"cannot read {p}: {exc.strerror or exc}")
    return out


def _check_users(nodes: list[NodeSpec], bad: Any) -> None:
    """A login user is a host account, so one user name must have one password across the lab."""
    seen: dict[str, tuple[str, str]] = {}
    for n in nodes:
        for proto in n.protocols:
            if proto == "snmp":
                continue
            c = n.credentials[proto]
            user, pw = c["username"], c["password"]
            if user in seen and seen[user][1] != pw:
                bad(
                    f"topology.nodes.{n.name}.credentials.{proto}.password",
                    f"user {user} already has another password on node {seen[user][0]} (one host account per user)",
                )
            seen.setdefault(user, (n.name, pw))


def _links(raw: Any, names: set[str], bad: Any) -> list[LinkSpec]:
    out: list[LinkSpec] = []
    if not isinstance(raw, list):
        bad("topology.links", "must be a list of {endpoints: [a:if, b:if]}")
        return out
    used: set[tuple[str, str]] = set()
    for i, link in enumerate(raw):
        where = f"topology.links[{i}].endpoints"
        eps = link.get("endpoints") if isinstance(link, dict) else None
        if not isinstance(eps, list) or len(eps) != 2:
            bad(where, "must be a list of two 'node:interface' strings")
            continue
        parsed: list[tuple[str, str]] = []
        for ep in eps:
            node, _, ifname = str(ep).partition(":")
            if node not in names:
                bad(where, f"link to missing node {node!r}")
            elif not IFNAME_RE.match(ifname) or ifname in ("eth0", "lo"):
                bad(where, f"bad interface {ifname!r} on {node} (eth0 is the management interface)")
            elif (node, ifname) in used:
                bad(where, f"interface {node}:{ifname} is used by two links")
            else:
                used.add((node, ifname))
                parsed.append((node, ifname))
        if len(parsed) == 2:
            out.append(LinkSpec(a=parsed[0], b=parsed[1]))
    return out


def fleet(n: int, *, name: str = "fleet", kind: str = "router", range_: str = DEFAULT_RANGE) -> dict[str, Any]:
    """A topology (as a dict, ready for YAML) of ``n`` nodes ``r1..rN`` of one kind: ``router``
    (netconfd, FRR and snmpd) or ``netconf`` (netconfd behind its sshd only, about 4 MB per node:
    a thousand fit, for the fleet benchmark)."""
    if n < 1:
        raise ValueError("a fleet needs at least one node")
    if kind not in KIND_PROTOCOLS:
        raise ValueError(f"unknown kind {kind!r} (known: {', '.join(sorted(KIND_PROTOCOLS))})")
    return {
        "name": name,
        "mgmt": {"ipv4-subnet": range_},
        "topology": {"nodes": {f"r{i}": {"kind": kind} for i in range(1, n + 1)}},
    }


def fleet_yaml(n: int, *, name: str = "fleet", kind: str = "router") -> str:
    return f"# generated: a fleet of {n} {kind} nodes\n" + yaml.safe_dump(fleet(n, name=name, kind=kind), sort_keys=False)


def allocate(rng: ipaddress.IPv4Network, count: int, used: set[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    """The lowest ``count`` free /30 subnets of ``rng`` that are not in ``used`` (other labs)."""
    out: list[ipaddress.IPv4Network] = []
    for sub in rng.subnets(new_prefix=30):
        if len(out) == count:
            break
        if not any(sub.overlaps(u) for u in used):
            out.append(sub)
    if len(out) < count:
        raise TopologyError("(allocator)", [FieldViolation("mgmt.ipv4-subnet", f"{rng} has no room for {count} more /30s")])
    return out


def overlapping_routes(
    rng: ipaddress.IPv4Network, routes: list[dict[str, Any]], own_devs: set[str], own_ranges: set[str] = frozenset()  # type: ignore[assignment]
) -> list[str]:
    """Host routes (``ip -j route`` rows) that overlap the lab range and are not a lab's own
    (a lab's veth routes, or the ``unreachable`` route of this or another lab's range)."""
    bad_routes = []
    for r in routes:
        dst = r.get("dst", "")
        if dst in ("default", ""):
            continue
        try:
            net = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        if not net.overlaps(rng):
            continue
        if r.get("type") == "unreachable" and (net == rng or str(net) in own_ranges):
            continue
        if r.get("dev") in own_devs:
            continue
        bad_routes.append(f"{dst} {r.get('type', '')} dev {r.get('dev', '-')}".replace("  ", " "))
    return bad_routes


__all__ = [
    "DEFAULT_CREDENTIALS",
    "DEFAULT_RANGE",
    "KIND_PROTOCOLS",
    "PORTS",
    "LinkSpec",
    "NodeSpec",
    "Topology",
    "allocate",
    "fleet",
    "fleet_yaml",
    "from_dict",
    "load",
    "overlapping_routes",
    "parse",
]
