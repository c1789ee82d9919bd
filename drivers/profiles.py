"""Device profiles as data: ``device_profiles/<platform>.yaml`` → :class:`drivers.base.DeviceProfile` (driver SDK).

::

    platform: netconfd                 # must equal the file name
    description: yuma123 netconfd
    driver: netconf                    # an agw.drivers entry-point name
    capabilities: {lock: true, candidate: true, confirmed_commit: true}   # missing = false
    timeouts: {connect_s: 10, operation_s: 10, commit_s: 30}
    confirm_timeout_s: 120
    retry: {attempts: 3, initial_delay_s: 0.5, max_delay_s: 5, deadline_s: 30}   # after a lost push: read first
    quirks: {validate_drops_candidate: true}   # the driver's own (Driver.settings_from checks them)
    settings: {list_keys: ...}                 # the driver's own data (Driver.settings_from checks them)
    device_managed: []                      # what the device fills in by itself (exact verification)

:func:`parse_profile` checks the shape (unknown top-level keys, capabilities, timeouts, types) and
refuses every problem at once in one :class:`~drivers.errors.ConfigurationError` naming the file.
What ``settings`` and ``quirks`` may hold is each driver's business: :meth:`Driver.settings_from
<drivers.base.Driver.settings_from>` parses them into the driver's frozen dataclass, refusing an
unknown key with the file, the key and the known ones (:func:`unknown_keys`, :func:`refuse_unknown`);
the gateway calls it for every profile when it starts.

A profile never chooses what the driver sends: the payload format is the driver's
(:attr:`drivers.base.Driver.payload_format`). ``settings.render_format`` may still be written as a
statement of it, whatever the driver (:data:`COMMON_SETTINGS`), and a gateway refuses to start when
it disagrees with the driver.

A plugin loads the profile it ships with this module too::

    parse_profile(yaml.safe_load(path.read_text()), source=str(path), expected_platform="example-snmp")
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from typing import Any

from drivers.base import MAX_RETRY_ATTEMPTS, MAX_RETRY_S, Capabilities, DeviceProfile, PayloadFormat, RetryPolicy, Timeouts
from drivers.errors import ConfigurationError

RENDER_FORMATS = tuple(f.value for f in PayloadFormat)
COMMON_SETTINGS = ("render_format", "check_settle_s")
"""Accepted in the ``settings`` of every profile, whatever its driver: ``render_format`` (checked
by the gateway) and ``check_settle_s``, the default wait of a service check (:mod:`drivers.checks`)."""
MAX_CHECK_SETTLE_S = 300
_TOP_KEYS = (
    "platform", "description", "driver", "capabilities", "timeouts", "confirm_timeout_s", "retry", "quirks",
    "settings", "device_managed",
)
HOST_KEY_SETTINGS = ("host_key_check", "known_hosts")
"""Refused anywhere in a profile: the inventory names a device's known_hosts (never a platform)."""
_CAPABILITIES = tuple(f.name for f in dataclasses.fields(Capabilities))
_TIMEOUTS = tuple(f.name for f in dataclasses.fields(Timeouts))
_RETRY = tuple(f.name for f in dataclasses.fields(RetryPolicy))
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

    retry: dict[str, Any] = {}
    raw_retry = data.get("retry", {}) or {}
    if not isinstance(raw_retry, dict):
        problems.append(f"retry: must be a mapping, not {type_name(raw_retry)}")
    else:
        for key, value in raw_retry.items():
            if key not in _RETRY:
                problems.append(f"retry.{key}: unknown setting (known: {', '.join(_RETRY)})")
            elif (problem := retry_problem(key, value)) is not None:
                problems.append(f"retry.{key}: {problem}")
            else:
                retry[key] = value if key == "attempts" else float(value)

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
    settle = mappings.get("settings", {}).get("check_settle_s")
    if settle is not None and (isinstance(settle, bool) or not isinstance(settle, (int, float))
                               or not 0 <= settle <= MAX_CHECK_SETTLE_S):
        problems.append(f"settings.check_settle_s: must be a number of seconds from 0 to {MAX_CHECK_SETTLE_S}, "
                        f"not {settle!r}")
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
    assert isinstance(platform, str) and isinstance(driver, str)  # checked above (a problem otherwise)
    return DeviceProfile(
        platform=platform,
        driver=driver,
        description=description,
        capabilities=Capabilities(**caps),
        timeouts=Timeouts(**timeouts),
        confirm_timeout_s=confirm,
        retry=RetryPolicy(**retry),
        quirks=mappings["quirks"],
        settings=mappings["settings"],
        device_managed=tuple(managed),
        source=source,
    )


def retry_problem(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the :class:`RetryPolicy` field ``key`` (None: nothing).
    One rule for a profile's ``retry`` and an activation's: whole attempts from 1 (no retry) to
    :data:`MAX_RETRY_ATTEMPTS`, durations greater than 0 and at most :data:`MAX_RETRY_S`."""
    if key == "attempts":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RETRY_ATTEMPTS:
            return f"must be a whole number from 1 (no retry) to {MAX_RETRY_ATTEMPTS}, not {value!r}"
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_RETRY_S:
        return f"must be a number of seconds greater than 0 (at most {MAX_RETRY_S:g}), not {value!r}"
    return None


def type_name(value: Any) -> str:
    """The YAML name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


# -- a driver's settings and quirks ---------------------------------------------------------------
def where(profile: DeviceProfile) -> str:
    """How an error names a profile: its file, else its platform."""
    return profile.source or f"device profile {profile.platform!r}"


def unknown_keys(section: str, given: Mapping[str, Any], known: Collection[str], *, driver: str) -> list[str]:
    """One problem per key of ``given`` (a profile's ``settings`` or ``quirks``) that is not in
    ``known``, each naming the key and listing the known ones (``settings`` always knows
    :data:`COMMON_SETTINGS`)."""
    allowed = set(known) | (set(COMMON_SETTINGS) if section == "settings" else set())
    what = "setting" if section == "settings" else "quirk"
    listed = ", ".join(sorted(set(known))) or "none"
    return [f"{section}.{key}: unknown {what} of driver {driver!r} (known: {listed})"
            for key in sorted(str(k) for k in given if k not in allowed)]


def refuse_unknown(profile: DeviceProfile, *, driver: str, settings: Collection[str] = (),
                   quirks: Collection[str] = ()) -> None:
    """Raise :class:`~drivers.errors.ConfigurationError` naming the profile's file when its
    ``settings`` or ``quirks`` hold a key the driver does not know (every such key at once)."""
    problems = unknown_keys("settings", profile.settings, settings, driver=driver)
    problems += unknown_keys("quirks", profile.quirks, quirks, driver=driver)
    if problems:
        raise ConfigurationError(f"{where(profile)}: " + "; ".join(problems))


def field_names(cls: type) -> tuple[str, ...]:
    """The field names of a settings dataclass: the keys its profile section may hold."""
    return tuple(f.name for f in dataclasses.fields(cls))


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """The settings of a driver that takes none (the default of :meth:`drivers.base.Driver.settings_from`)."""


__all__ = [
    "COMMON_SETTINGS",
    "HOST_KEY_SETTINGS",
    "RENDER_FORMATS",
    "NoSettings",
    "field_names",
    "parse_profile",
    "refuse_unknown",
    "retry_problem",
    "type_name",
    "unknown_keys",
    "where",
]
