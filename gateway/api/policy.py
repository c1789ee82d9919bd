"""Who may do what: the authorization policy, read from a YAML file. Pure.

::

    # policy.yaml
    grants:
      - identity: spiffe://agw.local/orchestrator   # a caller identity (SAN URI, else subject CN)
        role: submitter                             # reader | submitter | operator | admin
        devices: [group:edge, nc1]                  # optional: device names and inventory groups
        services: [interface, system]               # optional: service names
      - identity: spiffe://agw.local/noc-*          # a glob matches several identities
        role: operator
      - identity: spiffe://agw.local/oss
        role: reader
        permissions: [events:subscribe]             # optional: rights beyond the role (below)

Roles are ordered, each holding the rights of the one before:

=========  ==============================================================================
reader     Get, Watch, List, ListFallout (and server reflection)
submitter  + Submit, DryRun, Cancel and Rollback of the activations it submitted
operator   + the fallout actions (retry, force-rollback, resolve), Cancel/Rollback of any
admin      everything
=========  ==============================================================================

Permissions are rights no role below admin implies, granted by name (admin holds them all):

==================  ===========================================================================
events:subscribe    Subscribe: the stream of every activation's result events (those of the
                    activations the caller may read, when its grants are scoped)
pools:read          ListPools, GetPool: the resource pools and their allocations in use
pools:admin         CreatePool: define or change a resource pool (includes pools:read)
==================  ===========================================================================

A grant without ``devices``/``services`` covers all of them. A caller may hold several grants;
a call is allowed when every (device, service) it touches is covered by a grant of a high enough
role. An identity no grant names is unknown (UNAUTHENTICATED).
"""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from gateway.errors import ConfigurationError
from gateway.inventory._yaml import load_yaml_file, type_name

GROUP_PREFIX = "group:"
_GRANT_KEYS = ("identity", "role", "devices", "services", "permissions")
PERMISSIONS: dict[str, str] = {"events:subscribe": "Subscribe (every activation's result events)",
                               "pools:read": "ListPools, GetPool (the resource pools and their allocations)",
                               "pools:admin": "CreatePool (define or change a resource pool); includes pools:read"}
IMPLIED: dict[str, frozenset[str]] = {"pools:read": frozenset({"pools:admin"})}
"""A permission a grant also holds through another: pools:admin includes pools:read."""
"""The permissions a grant may hold, and what each allows."""


class Role(enum.IntEnum):
    READER = 1
    SUBMITTER = 2
    OPERATOR = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, kw_only=True)
class Grant:
    identity: str
    """An identity, or a glob (``*``, ``?``) matching several."""
    role: Role
    devices: frozenset[str] | None = None
    """Device names and ``group:NAME`` entries; None: every device."""
    services: frozenset[str] | None = None
    """None: every service."""
    permissions: frozenset[str] = frozenset()
    """Rights beyond the role (:data:`PERMISSIONS`)."""

    def names(self, identity: str) -> bool:
        return identity == self.identity or (_is_glob(self.identity) and fnmatch.fnmatchcase(identity, self.identity))

    def covers(self, device: str, groups: frozenset[str], service: str) -> bool:
        if self.services is not None and service not in self.services:
            return False
        if self.devices is None:
            return True
        return device in self.devices or any(f"{GROUP_PREFIX}{g}" in self.devices for g in groups)

    def scope(self) -> str:
        parts = []
        if self.devices is not None:
            parts.append("devices " + ", ".join(sorted(self.devices)))
        if self.services is not None:
            parts.append("services " + ", ".join(sorted(self.services)))
        return "; ".join(parts) or "everything"


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


@dataclass(frozen=True)
class Access:
    """What one caller may do: its grants (or everything, when the gateway runs without a policy)."""

    identity: str
    grants: tuple[Grant, ...]
    unrestricted: bool = False

    @property
    def role(self) -> Role:
        """The highest role held (for calls that touch no device, such as List)."""
        if self.unrestricted:
            return Role.ADMIN
        return max((g.role for g in self.grants), default=Role.READER)

    def allows(self, role: Role, device: str, groups: frozenset[str], service: str) -> bool:
        if self.unrestricted:
            return True
        return any(g.role >= role and g.covers(device, groups, service) for g in self.grants)

    def has_role(self, role: Role) -> bool:
        return self.unrestricted or any(g.role >= role for g in self.grants)

    def permits(self, permission: str) -> bool:
        """A grant holds ``permission`` (an admin grant holds them all)."""
        via = IMPLIED.get(permission, frozenset()) | {permission}
        return self.unrestricted or any(g.role is Role.ADMIN or bool(via & g.permissions) for g in self.grants)


UNRESTRICTED = Access(identity="", grants=(), unrestricted=True)


@dataclass(frozen=True)
class Policy:
    grants: tuple[Grant, ...]
    source: str = ""

    def access(self, identity: str) -> Access | None:
        """The caller's access; None when no grant names the identity (an unknown caller)."""
        if not identity:
            return None
        found = tuple(g for g in self.grants if g.names(identity))
        return Access(identity=identity, grants=found) if found else None

    @classmethod
    def load(cls, path: Path) -> "Policy":
        return parse_policy(load_yaml_file(Path(path)), source=str(path))


def parse_policy(data: Any, *, source: str = "<policy>") -> Policy:
    """A policy from parsed YAML; every problem reported at once, naming the file and the grant."""
    problems: list[str] = []
    if not isinstance(data, dict) or set(data) - {"grants"}:
        raise ConfigurationError(f"{source}: a policy is a mapping with one key, grants (a list of grants)")
    raw = data.get("grants")
    if not isinstance(raw, list) or not raw:
        raise ConfigurationError(f"{source}: grants: must be a non-empty list")
    grants: list[Grant] = []
    roles = ", ".join(r.label for r in Role)
    for i, item in enumerate(raw):
        where = f"grants[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be a mapping ({', '.join(_GRANT_KEYS)}), not {type_name(item)}")
            continue
        unknown = sorted(str(k) for k in item if k not in _GRANT_KEYS)
        if unknown:
            problems.append(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(_GRANT_KEYS)})")
        identity = item.get("identity")
        if not isinstance(identity, str) or not identity.strip():
            problems.append(f"{where}.identity: required (a SAN URI such as spiffe://agw.local/orchestrator, or a CN)")
            continue
        role_name = item.get("role")
        try:
            role = Role[str(role_name).upper()]
        except KeyError:
            problems.append(f"{where}.role: must be one of {roles}, not {role_name!r}")
            continue
        devices = _names(item.get("devices"), f"{where}.devices", problems)
        services = _names(item.get("services"), f"{where}.services", problems)
        permissions = _names(item.get("permissions"), f"{where}.permissions", problems) or frozenset()
        unknown_perms = sorted(permissions - set(PERMISSIONS))
        if unknown_perms:
            problems.append(f"{where}.permissions: unknown {', '.join(unknown_perms)} (known: {', '.join(PERMISSIONS)})")
        grants.append(Grant(identity=identity.strip(), role=role, devices=devices, services=services,
                            permissions=permissions))
    if problems:
        raise ConfigurationError(f"{source}: " + "; ".join(problems))
    return Policy(grants=tuple(grants), source=source)


def _names(raw: Any, where: str, problems: list[str]) -> frozenset[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(v, str) and v.strip() for v in raw):
        problems.append(f"{where}: must be a non-empty list of names (omit it to cover all)")
        return None
    return frozenset(v.strip() for v in raw)


@dataclass(frozen=True)
class Need:
    """A call's requirement for one (device, service) pair."""

    role: Role
    device: str
    service: str


def denied(access: Access, needs: Iterable[Need], groups_of: Callable[[str], frozenset[str]]) -> Need | None:
    """The first requirement ``access`` does not meet, or None when all are met."""
    for need in needs:
        if not access.allows(need.role, need.device, groups_of(need.device), need.service):
            return need
    return None


__all__ = ["GROUP_PREFIX", "PERMISSIONS", "UNRESTRICTED", "Access", "Grant", "Need", "Policy", "Role", "denied", "parse_policy"]
