"""The driver SDK (``drivers.*``) stands alone: no driver imports the gateway, the gateway re-exports
the SDK's names, and every driver's profile settings are typed and checked, unknown keys refused."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

import drivers.base
import drivers.errors
import drivers.profiles
import drivers.secrets
import gateway.errors
import gateway.inventory.profiles
import gateway.model
import gateway.secrets
from drivers.base import Capabilities, DeviceProfile, Driver, PayloadFormat
from drivers.errors import AgwError, ConfigurationError
from drivers.profiles import NoSettings, parse_profile
from drivers.registry import drivers as registry

ROOT = Path(__file__).resolve().parents[2]
SDK_ROOTS = (ROOT / "drivers", ROOT / "examples" / "driver-plugin" / "src")


# -- no driver imports the gateway ----------------------------------------------------------------
def _gateway_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}" for name in names
                  if name == "gateway" or name.startswith("gateway.")]
    return found


def test_no_driver_and_no_plugin_imports_the_gateway() -> None:
    files = [p for root in SDK_ROOTS for p in sorted(root.rglob("*.py"))]
    assert len(files) > 20 and any(p.name == "conformance.py" for p in files)
    offending = [hit for p in files for hit in _gateway_imports(p)]
    assert offending == [], "driver code imports the gateway:\n" + "\n".join(offending)


# -- the gateway keeps working through re-exports --------------------------------------------------
def test_the_gateway_re_exports_the_sdk() -> None:
    for name in drivers.errors.__all__:
        assert getattr(gateway.errors, name) is getattr(drivers.errors, name), name
        assert name in gateway.errors.__all__
    for name in drivers.secrets.__all__:
        assert getattr(gateway.secrets, name) is getattr(drivers.secrets, name), name
    assert gateway.model.Action is drivers.base.Action
    assert gateway.inventory.profiles.parse_profile is drivers.profiles.parse_profile


def test_one_tree_with_one_root() -> None:
    for name in gateway.errors.__all__:
        cls = getattr(gateway.errors, name)
        if isinstance(cls, type) and issubclass(cls, Exception):
            assert issubclass(cls, AgwError), name
    for name in ("JournalError", "NotFoundError", "ConflictError", "UnauthenticatedError", "PermissionDeniedError",
                 "ResourceExhaustedError"):
        assert not hasattr(drivers.errors, name) and getattr(gateway.errors, name).__module__ == "gateway.errors"
    assert AgwError.__module__ == "drivers.errors"


# -- settings: a typed dataclass per driver, unknown keys refused naming the file -------------------
def _example_profile_path() -> Path:
    return ROOT / "examples" / "driver-plugin" / "src" / "agw_driver_example" / "profiles" / "example-snmp.yaml"


SHIPPED = sorted((ROOT / "device_profiles").glob("*.yaml")) + [_example_profile_path()]


def _profile(path: Path, **changes: Any) -> DeviceProfile:
    data = yaml.safe_load(path.read_text())
    for section, extra in changes.items():
        data[section] = {**(data.get(section) or {}), **extra}
    return parse_profile(data, source=str(path), expected_platform=path.stem)


def _driver_of(path: Path) -> type[Driver]:
    name = yaml.safe_load(path.read_text())["driver"]
    if name == "example-snmp":
        pytest.importorskip("agw_driver_example", reason="examples/driver-plugin is not installed")
    return registry.get(name)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_profile_parses_into_its_drivers_frozen_settings(path: Path) -> None:
    profile = _profile(path)
    settings = _driver_of(path).settings_from(profile)
    assert dataclasses.is_dataclass(settings)
    assert type(settings).__dataclass_params__.frozen  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(settings, dataclasses.fields(settings)[0].name, None)


@pytest.mark.parametrize("section", ["settings", "quirks"])
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_an_unknown_key_is_refused_naming_the_file_the_key_and_the_known_ones(path: Path, section: str) -> None:
    driver = _driver_of(path)
    with pytest.raises(ConfigurationError) as err:
        driver.settings_from(_profile(path, **{section: {"colour": "red"}}))
    message = err.value.message
    assert message.startswith(f"{path}: ") and f"{section}.colour: unknown" in message, message
    assert f"of driver {driver.name!r} (known: " in message
    if section == "settings":  # the shipped keys are listed as known
        assert all(key in message for key in yaml.safe_load(path.read_text())["settings"]), message


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_render_format_is_accepted_by_every_driver(path: Path) -> None:
    driver = _driver_of(path)
    driver.settings_from(_profile(path, settings={"render_format": driver.payload_format.value}))


@pytest.mark.parametrize(("platform", "section", "key", "value", "message"), [
    ("netconfd", "quirks", "validate_drops_candidate", "yes", "validate_drops_candidate must be true or false"),
    ("netconfd", "quirks", "hello_settle_ms", -1, "hello_settle_ms must be a number, 0 or more"),
    ("netconfd", "settings", "keepalive_interval_s", "5", "keepalive_interval_s must be a number"),
    ("netconfd", "settings", "no_pending_commit_errors", [{"tag": "x", "colour": "red"}], "unknown rule key(s) colour"),
    ("frr", "settings", "on_open", "terminal length 0", "settings.on_open: must be a list of strings"),
    ("net-snmp", "settings", "retries", "1", "settings.retries must be an integer"),
    ("napalm-mock", "settings", "load_mode", "overwrite", "settings.load_mode"),
])
def test_a_bad_value_is_refused_naming_the_file(platform: str, section: str, key: str, value: Any,
                                                message: str) -> None:
    path = ROOT / "device_profiles" / f"{platform}.yaml"
    with pytest.raises(ConfigurationError) as err:
        _driver_of(path).settings_from(_profile(path, **{section: {key: value}}))
    assert err.value.message.startswith(f"{path}: ") and message in err.value.message, err.value.message


class _Plain(Driver):
    """A driver that does not override settings_from."""

    name: ClassVar[str] = "plain"
    payload_format: ClassVar[PayloadFormat] = PayloadFormat.YAML
    supported: ClassVar[Capabilities] = Capabilities()


def test_the_default_takes_no_settings_and_no_quirks() -> None:
    plain = DeviceProfile(platform="p", driver="plain", capabilities=Capabilities(), source="/x/p.yaml",
                          settings={"render_format": "yaml"})
    assert _Plain.settings_from(plain) == NoSettings()
    for section in ("settings", "quirks"):
        with pytest.raises(ConfigurationError, match=rf"^/x/p\.yaml: {section}\.retries: unknown .* of driver "
                                                     r"'plain' \(known: none\)$"):
            _Plain.settings_from(dataclasses.replace(plain, **{section: {"retries": 1}}))


def test_every_unknown_key_of_both_sections_is_reported_at_once() -> None:
    path = ROOT / "device_profiles" / "net-snmp.yaml"
    with pytest.raises(ConfigurationError) as err:
        registry.get("snmp").settings_from(_profile(path, settings={"retrys": 2, "securty": "v3"},
                                                    quirks={"slow": True}))
    message = err.value.message
    assert all(f"{k}: unknown" in message for k in ("settings.retrys", "settings.securty", "quirks.slow")), message
