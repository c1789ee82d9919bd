"""The NETCONF driver's view of a device profile: its ``settings`` and ``quirks`` typed and
checked once per profile (:func:`settings_for`), any unknown key refused naming the profile's file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from drivers.base import DeviceProfile
from drivers.errors import ConfigurationError
from drivers.netconf import xmlconfig
from drivers.netconf.session import DEFAULT_MAX_REPLY_BYTES
from drivers.profiles import HOST_KEY_SETTINGS, refuse_unknown, where


@dataclass(frozen=True, kw_only=True)
class NetconfSettings:
    """The driver's view of a profile's ``settings`` (:data:`SETTINGS_KEYS`) and ``quirks``
    (:data:`QUIRKS_KEYS`): every key typed here, any other refused naming the profile's file."""

    list_keys: xmlconfig.ListKeys
    keepalive_interval_s: float = 0.0
    ssh_ciphers: tuple[str, ...] = ()
    hello_settle_ms: float = 0.0
    """Quirk: wait this long after the hello exchange before the first RPC."""
    validate_drops_candidate: bool = False
    """Quirk: ``<validate>`` of the candidate loses the change; validate the rendered config inline."""
    no_pending_commit_errors: tuple[Mapping[str, Any], ...] = ()
    """rpc-errors by which the device says "no confirmed commit is pending" (cancel-commit → False)."""
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    """Largest message accepted from the device; a larger one aborts the session (DeviceReplyError)."""

    @classmethod
    def from_profile(cls, profile: DeviceProfile) -> NetconfSettings:
        s, q = profile.settings, profile.quirks
        misplaced = [k for k in HOST_KEY_SETTINGS if k in s]
        if misplaced:
            # host keys belong to devices, not to platforms: the inventory names them
            raise ConfigurationError(
                f"{where(profile)}: settings.{misplaced[0]} is not a device-profile setting (host keys belong to "
                "devices): remove it, and name the known_hosts file in the inventory (`known_hosts:` at "
                "the top level or on a device); only a device can turn the check off (`host_key_check: false`)"
            )
        refuse_unknown(profile, driver="netconf", settings=SETTINGS_KEYS, quirks=QUIRKS_KEYS)
        try:
            return cls(
                list_keys=xmlconfig.ListKeys(s.get("list_keys") or {}),
                keepalive_interval_s=_seconds("keepalive_interval_s", s.get("keepalive_interval_s", 0) or 0),
                ssh_ciphers=_ciphers(s.get("ssh_ciphers") or ()),
                hello_settle_ms=_seconds("hello_settle_ms", q.get("hello_settle_ms", 0) or 0),
                validate_drops_candidate=_flag("validate_drops_candidate", q.get("validate_drops_candidate", False)),
                no_pending_commit_errors=_error_rules(s.get("no_pending_commit_errors") or ()),
                max_reply_bytes=_positive_int("max_reply_bytes", s.get("max_reply_bytes", DEFAULT_MAX_REPLY_BYTES)),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigurationError(f"{where(profile)}: bad netconf settings: {exc}") from exc


SETTINGS_KEYS = ("list_keys", "keepalive_interval_s", "ssh_ciphers", "no_pending_commit_errors", "max_reply_bytes")
"""What a netconf profile's ``settings`` may hold (and ``render_format``)."""
QUIRKS_KEYS = ("hello_settle_ms", "validate_drops_candidate")
"""What a netconf profile's ``quirks`` may hold."""
_ERROR_RULE_KEYS = ("tag", "message", "path", "app_tag", "number")
"""What a ``no_pending_commit_errors`` rule may match (:func:`drivers.netconf.rpc.error_matches`)."""

_SETTINGS: dict[int, tuple[DeviceProfile, NetconfSettings]] = {}


def settings_for(profile: DeviceProfile) -> NetconfSettings:
    """:meth:`NetconfSettings.from_profile`, once per profile object (profiles live as long as
    the gateway; the planner asks for every task)."""
    hit = _SETTINGS.get(id(profile))
    if hit is not None and hit[0] is profile:
        return hit[1]
    settings = NetconfSettings.from_profile(profile)
    _SETTINGS[id(profile)] = (profile, settings)
    return settings


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a number, 0 or more, not {value!r}")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value


def _error_rules(value: Any) -> tuple[Mapping[str, Any], ...]:
    """``no_pending_commit_errors``: rules of :data:`_ERROR_RULE_KEYS`, checked when the profile is read."""
    if isinstance(value, (str, Mapping)) or not all(isinstance(r, Mapping) and r for r in value):
        raise ValueError(f"no_pending_commit_errors must be a list of rpc-error rules ({', '.join(_ERROR_RULE_KEYS)}), "
                         f"not {value!r}")
    for rule in value:
        unknown = [str(k) for k in rule if k not in _ERROR_RULE_KEYS]
        if unknown:
            raise ValueError(f"no_pending_commit_errors: unknown rule key(s) {', '.join(unknown)} "
                             f"(known: {', '.join(_ERROR_RULE_KEYS)})")
    return tuple(dict(r) for r in value)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive number of bytes, not {value!r}")
    return value


def _ciphers(value: Any) -> tuple[str, ...]:
    """``ssh_ciphers``: names asyncssh knows, checked when the profile is read (not at connect)."""
    from asyncssh.encryption import get_encryption_algs

    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"ssh_ciphers must be a list of cipher names, not {value!r}")
    known = {a.decode() for a in get_encryption_algs()}
    unknown = [v for v in value if v not in known]
    if unknown:
        raise ValueError(f"ssh_ciphers: unknown {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return tuple(value)


__all__ = ["QUIRKS_KEYS", "SETTINGS_KEYS", "NetconfSettings", "settings_for"]
