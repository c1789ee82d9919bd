"""device_profiles/<platform>.yaml → DeviceProfile."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.base import Capabilities, DeviceProfile, Timeouts
from gateway.errors import ConfigurationError
from gateway.inventory import ProfileStore

GOOD = """\
platform: netconfd
description: yuma123 netconfd
driver: netconf
capabilities: {lock: true, candidate: true, confirmed_commit: true, persist_id: true, validate: true}
timeouts: {connect_s: 5, operation_s: 2.5, commit_s: 20}
confirm_timeout_s: 60
quirks: {validate_then_commit_drops_changes: true}
settings: {render_format: xml, transport: asyncssh}
"""


def store_with(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_profile_loads(tmp_path: Path) -> None:
    store = ProfileStore.load(store_with(tmp_path, {"netconfd.yaml": GOOD, "README.md": "not a profile"}))
    assert store.platforms() == ["netconfd"] and "netconfd" in store
    assert store.get("netconfd") == DeviceProfile(
        platform="netconfd",
        driver="netconf",
        description="yuma123 netconfd",
        capabilities=Capabilities(lock=True, candidate=True, confirmed_commit=True, persist_id=True, validate=True),
        timeouts=Timeouts(connect_s=5.0, operation_s=2.5, commit_s=20.0),
        confirm_timeout_s=60,
        quirks={"validate_then_commit_drops_changes": True},
        settings={"render_format": "xml", "transport": "asyncssh"},
        source=str(tmp_path / "netconfd.yaml"),
    )


def test_missing_sections_take_defaults(tmp_path: Path) -> None:
    store = ProfileStore.load(store_with(tmp_path, {"frr.yaml": "platform: frr\ndriver: cli\ncapabilities: {lock: false}\n"}))
    p = store.get("frr")
    assert p.capabilities == Capabilities() and p.capabilities.names() == ()
    assert p.timeouts == Timeouts() and p.confirm_timeout_s == 120 and p.quirks == {} and p.settings == {}


def test_unknown_platform(tmp_path: Path) -> None:
    store = ProfileStore.load(store_with(tmp_path, {"netconfd.yaml": GOOD}))
    with pytest.raises(ConfigurationError, match=r"no device profile for platform 'junos'.*netconfd"):
        store.get("junos")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (GOOD + "colour: red\n", "unknown field"),
        (GOOD.replace("platform: netconfd", "platform: other"), "does not match the file name"),
        (GOOD.replace("driver: netconf\n", ""), "driver: missing"),
        (GOOD.replace("lock: true", "lock: yes please"), "capabilities.lock: must be true or false"),
        (GOOD.replace("lock: true", "teleport: true"), "capabilities.teleport: unknown capability"),
        (GOOD.replace("connect_s: 5", "connect_s: fast"), "timeouts.connect_s"),
        (GOOD.replace("connect_s: 5", "connect_s: 0"), "timeouts.connect_s"),
        (GOOD.replace("connect_s: 5", "connect_ms: 5"), "timeouts.connect_ms: unknown timeout"),
        (GOOD.replace("confirm_timeout_s: 60", "confirm_timeout_s: 1.5"), "confirm_timeout_s"),
        (GOOD.replace("quirks: {validate_then_commit_drops_changes: true}", "quirks: [a]"), "quirks: must be a mapping"),
        (GOOD.replace("render_format: xml", "render_format: json"), "settings.render_format"),
        (GOOD.replace("description: yuma123 netconfd", "description: [a]"), "description: must be a string"),
        (GOOD.replace("capabilities: {", "capabilities: [").replace("validate: true}", "validate: true]"), "capabilities"),
        ("- a list\n", "must be a mapping"),
        ("platform: netconfd\nplatform: netconfd\ndriver: x\n", "duplicate key"),
    ],
)
def test_bad_profile_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    store_with(tmp_path, {"netconfd.yaml": text})
    with pytest.raises(ConfigurationError, match=field) as info:
        ProfileStore.load(tmp_path)
    assert str(tmp_path / "netconfd.yaml") in str(info.value)


def test_every_bad_file_is_reported(tmp_path: Path) -> None:
    store_with(tmp_path, {"a.yaml": "platform: a\n", "b.yaml": "platform: b\ndriver: x\ntimeouts: {commit_s: -1}\n",
                          "c.yml": GOOD})
    with pytest.raises(ConfigurationError) as info:
        ProfileStore.load(tmp_path)
    msg = str(info.value)
    assert "a.yaml: driver: missing" in msg and "b.yaml: timeouts.commit_s" in msg and "c.yml" in msg


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        ProfileStore.load(tmp_path / "none")


def test_repository_profiles_load_when_present() -> None:
    root = Path(__file__).resolve().parents[2] / "device_profiles"
    if not any(root.glob("*.yaml")):
        pytest.skip("no device profiles in the repository yet")
    store = ProfileStore.load(root)
    for platform in store.platforms():
        assert store.get(platform).platform == platform
