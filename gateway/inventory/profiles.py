"""Device profiles: ``device_profiles/<platform>.yaml`` → :class:`drivers.base.DeviceProfile`.

::

    platform: netconfd                 # must equal the file name
    description: yuma123 netconfd
    driver: netconf                    # an agw.drivers entry-point name
    capabilities: {lock: true, candidate: true, confirmed_commit: true}   # missing = false
    timeouts: {connect_s: 10, operation_s: 10, commit_s: 30}
    confirm_timeout_s: 120
    quirks: {validate_drops_commit: true}   # free-form
    settings: {list_keys: ...}              # the driver's own data (drivers check it)
    device_managed: []                      # what the device fills in by itself (exact verification)

A profile never chooses what the driver sends: the payload format is the driver's
(:attr:`drivers.base.Driver.payload_format`). ``settings.render_format`` may still be written as a
statement of it, and a gateway refuses to start when it disagrees with the driver
(:func:`gateway.app.check_catalogue`).

Unknown keys or wrong types are refused with a :class:`ConfigurationError` naming the file and
the field; every problem of every file is reported at once.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

from drivers.base import Capabilities, DeviceProfile, PayloadFormat, Timeouts
from gateway.errors import ConfigurationError
from gateway.inventory._yaml import load_yaml_file, type_name

log = logging.getLogger(__name__)

RENDER_FORMATS = tuple(f.value for f in PayloadFormat)
_TOP_KEYS = (
    "platform", "description", "driver", "capabilities", "timeouts", "confirm_timeout_s", "quirks", "settings",
    "device_managed",
)
HOST_KEY_SETTINGS = ("host_key_check", "known_hosts")
"""Refused anywhere in a profile: the inventory names a device's known_hosts (never a platform)."""
_CAPABILITIES = tuple(f.name for f in dataclasses.fields(Capabilities))
_TIMEOUTS = tuple(f.name for f in dataclasses.fields(Timeouts))
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")


def parse_profile(data: Any, *, source: str, expected_platform: str | None = None) -> DeviceProfile:
    """Build a profile from parsed YAML; raises :class:`ConfigurationError` listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: a device profile must be a mapping, not {type_name(data)}")
    unknown = sorted(str(k) for k in data if k not in _TOP_KEYS)
    if unknown:
        problems.append(f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(_TOP_KEYS)})")

    platform = data.get("platform")
    if not isinstance(platform, str) or not _NAME_RE.match(platform):
        problems.append(f"platform: {'missing' if platform is None else f'invalid platform name {platform!r}'}")
    elif expected_platform is not None and platform != expected_platform:
        problems.append(f"platform: {platform!r} does not match the file name (expected {expected_platform!r})")

    driver = data.get("driver")
    if not isinstance(driver, str) or not driver:
        problems.append(f"driver: {'missing' if driver is None else f'must be a non-empty string, not {type_name(driver)}'}")

    description = data.get("description", "")
    if not isinstance(description, str):
        problems.append(f"description: must be a string, not {type_name(description)}")

    caps: dict[str, bool] = {}
    raw_caps = data.get("capabilities", {}) or {}
    if not isinstance(raw_caps, dict):
        problems.append(f"capabilities: must be a mapping, not {type_name(raw_caps)}")
    else:
        for key, value in raw_caps.items():
            if key not in _CAPABILITIES:
                problems.append(f"capabilities.{key}: unknown capability (known: {', '.join(_CAPABILITIES)})")
            elif not isinstance(value, bool):
                problems.append(f"capabilities.{key}: must be true or false, not {type_name(value)}")
            else:
                caps[key] = value

    timeouts: dict[str, float] = {}
    raw_timeouts = data.get("timeouts", {}) or {}
    if not isinstance(raw_timeouts, dict):
        problems.append(f"timeouts: must be a mapping, not {type_name(raw_timeouts)}")
    else:
        for key, value in raw_timeouts.items():
            if key not in _TIMEOUTS:
                problems.append(f"timeouts.{key}: unknown timeout (known: {', '.join(_TIMEOUTS)})")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                problems.append(f"timeouts.{key}: must be a number of seconds greater than 0, not {value!r}")
            else:
                timeouts[key] = float(value)

    confirm = data.get("confirm_timeout_s", 120)
    if isinstance(confirm, bool) or not isinstance(confirm, int) or confirm <= 0:
        problems.append(f"confirm_timeout_s: must be a whole number of seconds greater than 0, not {confirm!r}")

    mappings: dict[str, dict[str, Any]] = {}
    for key in ("quirks", "settings"):
        value = data.get(key, {})
        if value is None:
            value = {}
        if not isinstance(value, dict):
            problems.append(f"{key}: must be a mapping, not {type_name(value)}")
        else:
            mappings[key] = value
    fmt = mappings.get("settings", {}).get("render_format")
    if fmt is not None and fmt not in RENDER_FORMATS:
        problems.append(f"settings.render_format: must be one of {', '.join(RENDER_FORMATS)}, not {fmt!r}")
    for section, key in ((m, k) for m in ("settings", "quirks") for k in HOST_KEY_SETTINGS):
        if key in mappings.get(section, {}):
            problems.append(f"{section}.{key}: SSH host keys are not a device-profile setting (they belong to devices): "
                            "remove it, and name the known_hosts file in the inventory (`known_hosts:` at the top "
                            "level or on a device); only a device can turn the check off (`host_key_check: false`)")

    managed = data.get("device_managed", []) or []
    if not isinstance(managed, list) or not all(isinstance(m, str) and m for m in managed):
        problems.append("device_managed: must be a list of non-empty strings (paths, line patterns or OIDs)")
        managed = []

    if problems:
        raise ConfigurationError(f"{source}: " + "; ".join(problems))
    return DeviceProfile(
        platform=platform,
        driver=driver,
        description=description,
        capabilities=Capabilities(**caps),
        timeouts=Timeouts(**timeouts),
        confirm_timeout_s=confirm,
        quirks=mappings["quirks"],
        settings=mappings["settings"],
        device_managed=tuple(managed),
        source=source,
    )


class ProfileStore:
    """Every profile of a ``device_profiles/`` directory, by platform."""

    def __init__(self, profiles: dict[str, DeviceProfile], *, root: Path | None = None) -> None:
        self._profiles = dict(profiles)
        self.root = root

    @classmethod
    def load(cls, root: Path) -> "ProfileStore":
        root = Path(root)
        if not root.is_dir():
            raise ConfigurationError(f"{root}: the device profile directory does not exist")
        profiles: dict[str, DeviceProfile] = {}
        problems: list[str] = []
        for path in sorted(root.iterdir()):
            if path.suffix == ".yml":
                problems.append(f"{path}: device profiles must be named <platform>.yaml")
                continue
            if path.suffix != ".yaml" or not path.is_file():
                continue
            try:
                profile = parse_profile(load_yaml_file(path), source=str(path), expected_platform=path.stem)
            except ConfigurationError as exc:
                problems.append(exc.message)
                continue
            profiles[profile.platform] = profile
        if problems:
            raise ConfigurationError("; ".join(problems))
        log.info("device profiles from %s: %s", root, ", ".join(sorted(profiles)) or "none")
        return cls(profiles, root=root)

    def get(self, platform: str) -> DeviceProfile:
        try:
            return self._profiles[platform]
        except KeyError:
            where = f" in {self.root}" if self.root else ""
            raise ConfigurationError(
                f"no device profile for platform {platform!r}{where} "
                f"(known: {', '.join(self.platforms()) or 'none'})"
            ) from None

    def platforms(self) -> list[str]:
        return sorted(self._profiles)

    def __contains__(self, platform: object) -> bool:
        return platform in self._profiles


__all__ = ["RENDER_FORMATS", "ProfileStore", "parse_profile"]
