"""The device inventory: which devices exist, where they are and how each protocol reaches them.

The file is what ``agw lab inventory`` prints::

    known_hosts: /run/agw-lab/basic/known_hosts
    devices:
      r1:
        address: 198.18.0.14
        endpoints:
          - {platform: netconfd, port: 830, credentials: "file:/run/agw-lab/basic/credentials.yaml#r1.netconf"}
          - {platform: frr, port: 22, credentials: "env:R1_CLI"}
        groups: [core, lab]          # optional: an authorization grant may name group:core

A device with a single endpoint may also be written flat
(``{address, platform, port, credentials}``). Credentials are *references* (``file:`` or
``env:``), resolved at run time by :class:`gateway.inventory.credentials.CredentialResolver`.

SSH host keys (NETCONF and CLI endpoints) are always checked, against an OpenSSH known_hosts file
the inventory names: ``known_hosts:`` at the top level for every device, or on a device (it
overrides the top-level one); a relative path is relative to the inventory file's directory. Only
a device can turn the check off (``host_key_check: false`` on it; ``agw serve`` warns about each
such device). A device with neither is refused when a driver connects to it, with a message
saying what to add here.

Every problem in the file is reported at once, each naming the file, the device and the field.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

from gateway.errors import ConfigurationError, FieldViolation, InputError, NotFoundError
from gateway.inventory._yaml import load_yaml_file, type_name

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_CRED_RE = re.compile(r"^(file:/[^#]+#.+|env:[A-Za-z_][A-Za-z0-9_]*)$")
_ENDPOINT_KEYS = ("platform", "port", "credentials")
_DEVICE_KEYS = ("address", "endpoints", "known_hosts", "host_key_check", "groups")
_TOP_KEYS = ("devices", "known_hosts")


@dataclass(frozen=True, kw_only=True)
class EndpointSpec:
    """One protocol endpoint of a device, as configured. ``credentials`` is a reference."""

    platform: str
    port: int
    credentials: str


@dataclass(frozen=True)
class Device:
    name: str
    address: str
    endpoints: tuple[EndpointSpec, ...]
    known_hosts: str = ""
    """The known_hosts file (absolute path) holding the device's SSH host key: the device's own
    ``known_hosts``, else the inventory's. Empty: none named."""
    host_key_check: bool = True
    """False only when the device says ``host_key_check: false``."""
    groups: frozenset[str] = frozenset()
    """Groups (tags) the device belongs to: an authorization grant may name ``group:<name>``."""

    def platforms(self) -> list[str]:
        return [e.platform for e in self.endpoints]

    def endpoint(self, platform: str) -> EndpointSpec:
        for e in self.endpoints:
            if e.platform == platform:
                return e
        raise NotFoundError(
            f"device {self.name!r} has no endpoint for platform {platform!r} "
            f"(its platforms: {', '.join(self.platforms())})",
            device=self.name,
        )


class _HasTemplates(Protocol):
    def has(self, service: str, platform: str) -> bool: ...


class Inventory:
    """Devices by name. Build it with :meth:`load` (a YAML file) or :meth:`from_mapping`."""

    def __init__(self, devices: Mapping[str, Device], *, source: str = "<inventory>") -> None:
        self._devices = dict(devices)
        self.devices: Mapping[str, Device] = types.MappingProxyType(self._devices)
        self.source = source

    @classmethod
    def load(cls, path: Path) -> "Inventory":
        path = Path(path)
        data = load_yaml_file(path)
        inv = cls.from_mapping(data, source=str(path), base_dir=path.absolute().parent)
        log.info("inventory %s: %d devices", path, len(inv.devices))
        return inv

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "<inventory>", base_dir: Path | None = None) -> "Inventory":
        """``base_dir``: what a relative ``known_hosts`` path is relative to (the inventory
        file's directory); without it, such a path is refused."""
        problems: list[str] = []
        devices: dict[str, Device] = {}
        if not isinstance(data, dict):
            raise ConfigurationError(f"{source}: the inventory must be a mapping with a 'devices' key, not {type_name(data)}")
        unknown = sorted(str(k) for k in data if k not in _TOP_KEYS)
        if unknown:
            problems.append(f"unknown top-level key(s) {', '.join(unknown)} (allowed: {', '.join(_TOP_KEYS)})")
        known_hosts = _known_hosts("known_hosts", data.get("known_hosts"), base_dir, problems)
        raw = data.get("devices")
        if raw is None:
            problems.append("devices: missing (a mapping of device name to device)")
        elif not isinstance(raw, dict):
            problems.append(f"devices: must be a mapping of device name to device, not {type_name(raw)}")
        else:
            for name, body in raw.items():
                device = _parse_device(name, body, problems, known_hosts=known_hosts, base_dir=base_dir)
                if device is not None:
                    devices[device.name] = device
        if problems:
            raise ConfigurationError(f"{source}: " + "; ".join(problems))
        return cls(devices, source=source)

    def device(self, name: str) -> Device:
        try:
            return self._devices[name]
        except KeyError:
            known = sorted(self._devices)
            shown = ", ".join(known[:20]) + (f", ... ({len(known)} in all)" if len(known) > 20 else "")
            raise NotFoundError(f"unknown device {name!r}; the inventory has: {shown or 'no devices'}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._devices

    def unchecked_host_keys(self) -> list[str]:
        """The devices whose SSH host key is not checked (``host_key_check: false``), by name."""
        return sorted(name for name, d in self._devices.items() if not d.host_key_check)

    def groups_of(self, name: str) -> frozenset[str]:
        """The groups of device ``name`` (empty for an unknown device)."""
        device = self._devices.get(name)
        return device.groups if device is not None else frozenset()

    def __len__(self) -> int:
        return len(self._devices)


def _known_hosts(where: str, value: Any, base_dir: Path | None, problems: list[str]) -> str:
    """A ``known_hosts`` value as an absolute path ("" when not given)."""
    if value is None:
        return ""
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "\n\r\0"):
        problems.append(f"{where}: must be the path of a known_hosts file (OpenSSH format), not {value!r}")
        return ""
    path = Path(value)
    if path.is_absolute():
        return os.path.normpath(path)
    if base_dir is None:
        problems.append(f"{where}: {value!r} is a relative path, but this inventory is not read from a file "
                        "to resolve it against; give an absolute path")
        return ""
    return os.path.normpath(base_dir / path)


def _parse_device(name: Any, body: Any, problems: list[str], *, known_hosts: str = "",
                  base_dir: Path | None = None) -> Device | None:
    if not isinstance(name, str):
        problems.append(f"devices: device name {name!r} must be a string, not {type_name(name)}")
        return None
    if not _NAME_RE.match(name):
        problems.append(f"devices.{name}: invalid device name (letters, digits and _ . : @ - only)")
        return None
    where = f"device {name}"
    if not isinstance(body, dict):
        problems.append(f"{where}: must be a mapping with address and endpoints, not {type_name(body)}")
        return None
    body = dict(body)
    if "endpoints" not in body and any(k in body for k in _ENDPOINT_KEYS):
        # flat single-endpoint form
        body["endpoints"] = [{k: body.pop(k) for k in _ENDPOINT_KEYS if k in body}]
    before = len(problems)
    unknown = sorted(str(k) for k in body if k not in _DEVICE_KEYS)
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(_DEVICE_KEYS)})")
    address = body.get("address")
    if address is None:
        problems.append(f"{where}: address: missing")
    elif not isinstance(address, str) or not _valid_address(address):
        problems.append(f"{where}: address: {address!r} is not an IP address or host name")
    raw_eps = body.get("endpoints")
    endpoints: list[EndpointSpec] = []
    if raw_eps is None:
        problems.append(f"{where}: endpoints: missing (a list of {{platform, port, credentials}})")
    elif not isinstance(raw_eps, list) or not raw_eps:
        problems.append(f"{where}: endpoints: must be a non-empty list, not {type_name(raw_eps)}")
    else:
        seen: set[str] = set()
        for i, raw in enumerate(raw_eps):
            ep = _parse_endpoint(f"{where}: endpoints[{i}]", raw, problems)
            if ep is None:
                continue
            if ep.platform in seen:
                problems.append(f"{where}: endpoints[{i}].platform: {ep.platform!r} is listed twice")
                continue
            seen.add(ep.platform)
            endpoints.append(ep)
    check = body.get("host_key_check", True)
    if not isinstance(check, bool):
        problems.append(f"{where}: host_key_check: must be true or false, not {check!r}")
    own_known_hosts = _known_hosts(f"{where}: known_hosts", body.get("known_hosts"), base_dir, problems)
    if check is False and body.get("known_hosts") is not None:
        problems.append(f"{where}: known_hosts and host_key_check: false together: either check the device's "
                        "key against that file, or turn the check off (remove one of them)")
    if len(problems) > before:
        return None
    groups = body.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and _NAME_RE.match(g) for g in groups):
        problems.append(f"{where}: groups: must be a list of group names (letters, digits and _ . : @ -)")
        return None
    return Device(name, str(address), tuple(endpoints), known_hosts=own_known_hosts or known_hosts,
                  host_key_check=check, groups=frozenset(groups))


def _parse_endpoint(where: str, raw: Any, problems: list[str]) -> EndpointSpec | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping {{platform, port, credentials}}, not {type_name(raw)}")
        return None
    before = len(problems)
    unknown = sorted(str(k) for k in raw if k not in _ENDPOINT_KEYS)
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(_ENDPOINT_KEYS)})")
    platform, port, cred = raw.get("platform"), raw.get("port"), raw.get("credentials")
    if not isinstance(platform, str) or not _NAME_RE.match(platform):
        problems.append(f"{where}.platform: {'missing' if platform is None else f'invalid platform name {platform!r}'}")
    if port is None:
        problems.append(f"{where}.port: missing")
    elif isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        problems.append(f"{where}.port: must be an integer from 1 to 65535, not {port!r}")
    if cred is None:
        problems.append(f"{where}.credentials: missing (a reference: 'file:/abs/path.yaml#key' or 'env:PREFIX')")
    elif not isinstance(cred, str) or not _CRED_RE.match(cred):
        # a malformed reference might be a pasted password: never echo it
        problems.append(
            f"{where}.credentials: not a credential reference (expected 'file:/abs/path.yaml#key' or 'env:PREFIX')"
        )
    if len(problems) > before:
        return None
    assert isinstance(platform, str) and isinstance(port, int) and isinstance(cred, str)  # checked above
    return EndpointSpec(platform=platform, port=port, credentials=cred)


def _valid_address(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return bool(_HOST_RE.match(address)) and not address.replace(".", "").isdigit()


def select_endpoint(device: Device, service: str, store: _HasTemplates) -> EndpointSpec:
    """The first endpoint of ``device`` (in inventory order) whose platform has a template for
    ``service``. Raises :class:`InputError` (field ``service``) listing the device's platforms."""
    for endpoint in device.endpoints:
        if store.has(service, endpoint.platform):
            return endpoint
    raise InputError(
        [
            FieldViolation(
                "service",
                f"service {service!r} has no template for any platform of device {device.name!r} "
                f"(its platforms: {', '.join(device.platforms())})",
            )
        ],
        device=device.name,
    )


__all__ = ["Device", "EndpointSpec", "Inventory", "select_endpoint"]
