"""The NAPALM bridge (drivers/napalm) through the driver contract.

These tests run against NAPALM's own ``mock`` driver (``napalm.base.mock.MockDriver``) replaying
recorded data from ``tests/fixtures/napalm/<scenario>/`` (one JSON file per NAPALM method call),
NOT against a network device: no vendor device runs on the machines where this project is built.
What they prove is the bridge's own work — which NAPALM call each contract operation makes, with
which arguments, in which order; capability declaration and narrowing; error translation; the
thread pool and its timeouts. They cannot prove that a given vendor's NAPALM driver behaves as its
recorded data says. The timeout tests use a MockDriver subclass (``custom_napalm.slowmock``,
written to a temporary directory by a fixture and found by NAPALM's own driver lookup) whose
calls block until the test releases them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from napalm.base import exceptions as nx

from drivers.base import Capabilities, ChangeSet, DeviceProfile, Endpoint, Snapshot, Timeouts
from drivers.napalm import NAPALM_CAPABILITIES, NapalmDriver, NapalmSettings, napalm_capabilities
from drivers.napalm.driver import check_lines, executor
from drivers.napalm.errors import translate
from drivers.registry import drivers
from gateway.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    DeviceError,
    DeviceRejectedError,
    DeviceTimeoutError,
    DriverUnavailableError,
    LockDeniedError,
    Phase,
    SessionLostError,
    StateError,
    UnsupportedOperationError,
)
from gateway.inventory.profiles import ProfileStore
from gateway.model import Action
from gateway.secrets import Credential, Secret

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "napalm"
PASSWORD = "s3cret-Pw!"

CHANGE = ChangeSet(
    service="customer-port",
    action=Action.CREATE,
    content=textwrap.dedent("""\
        interface Ethernet2
           description customer-4711
           ip address 198.51.100.1/30
        !
        ip route 203.0.113.0/24 198.51.100.2
        """),
)
NEW_LINES = ("description customer-4711", "ip address 198.51.100.1/30", "ip route 203.0.113.0/24 198.51.100.2")


def mock_profile(scenario: str = "confirmed-commit", *, caps: dict[str, bool] | None = None,
                 settings: dict[str, Any] | None = None, timeouts: Timeouts | None = None) -> DeviceProfile:
    base = ProfileStore.load(ROOT / "device_profiles").get("napalm-mock")
    merged = dict(base.settings)
    merged["optional_args"] = {"path": str(FIXTURES / scenario)}
    merged.update(settings or {})
    capabilities = dataclasses.replace(base.capabilities, **(caps or {}))
    return dataclasses.replace(base, capabilities=capabilities, settings=merged,
                               timeouts=timeouts or base.timeouts)


def endpoint(device: str = "leaf1") -> Endpoint:
    return Endpoint(device=device, host="127.0.0.1", port=443, platform="napalm-mock",
                    credential=Credential(ref="lab/leaf1", username="admin", password=Secret(PASSWORD)))


async def opened(profile: DeviceProfile) -> NapalmDriver:
    drv = NapalmDriver(endpoint=endpoint(), profile=profile)
    await drv.open()
    assert drv.is_open
    return drv


def mock_of(drv: NapalmDriver) -> Any:
    return drv._device  # the napalm MockDriver instance, to check which calls were made


# -- registry and profile --------------------------------------------------------------------
def test_registered_by_entry_point_and_profile_file_loads() -> None:
    assert drivers.info("napalm").value == "drivers.napalm:NapalmDriver"
    assert drivers.get("napalm") is NapalmDriver
    profile = ProfileStore.load(ROOT / "device_profiles").get("napalm-mock")
    assert profile.driver == "napalm"
    assert NapalmSettings.from_profile(profile.settings, platform=profile.platform).napalm_driver == "mock"
    caps = NapalmDriver.capabilities_for(profile)
    assert caps.names() == ("candidate", "confirmed_commit", "native_rollback", "diff")


# -- lifecycle on recorded data ----------------------------------------------------------------
async def test_preview_confirmed_commit_verify_confirm() -> None:
    drv = await opened(mock_profile("confirmed-commit"))
    dev = mock_of(drv)
    assert dev.path == str(FIXTURES / "confirmed-commit")
    assert (dev.hostname, dev.username, dev.password) == ("127.0.0.1", "admin", PASSWORD)

    before = await drv.read(drv.scope_of(CHANGE))
    assert before.scope == "running" and "interface Ethernet2" in before.content
    assert not any(line in before.content for line in NEW_LINES)

    diff = await drv.preview(CHANGE, before)
    assert "+   description customer-4711" in diff and "+ip route 203.0.113.0/24 198.51.100.2" in diff
    assert dev.calls["discard_config"] == 1 and dev.config is None  # preview left nothing staged

    await drv.load(CHANGE)
    assert dev.merge is True and dev.config == CHANGE.content  # load_merge_candidate(config=content)
    await drv.commit(confirm_timeout_s=120)
    assert dev.has_pending_commit()

    result = await drv.verify(CHANGE, before)
    assert result.ok, result.detail
    assert result.checked == 4 and result.readback is not None  # "!" is not a line
    added = [line[1:].strip() for line in drv.diff(before, result.readback).splitlines()
             if line.startswith("+") and not line.startswith("+++")]
    assert added == list(NEW_LINES)

    await drv.confirm()
    assert not dev.has_pending_commit()
    assert await drv.cancel_commit() is False  # nothing pending any more
    assert dev.calls == {"get_config": 2, "load_merge_candidate": 2, "compare_config": 1, "discard_config": 1,
                         "commit_config": 1, "confirm_commit": 1}
    await drv.close()
    assert not drv.is_open and dev.opened is False


async def test_verify_catches_dropped_line_then_pending_commit_rolled_back() -> None:
    drv = await opened(mock_profile("rollback-pending"))
    dev = mock_of(drv)
    before = await drv.read(drv.scope_of(CHANGE))
    await drv.load(CHANGE)
    await drv.commit(confirm_timeout_s=60)
    result = await drv.verify(CHANGE, before)
    assert not result.ok
    assert [m.path for m in result.mismatches] == ["ip route 203.0.113.0/24 198.51.100.2"]
    assert await drv.cancel_commit() is True  # has_pending_commit() → rollback()
    assert not dev.has_pending_commit()
    assert await drv.read(before.scope) == before
    await drv.close()


async def test_plain_commit_then_restore_by_replace() -> None:
    drv = await opened(mock_profile("restore"))
    dev = mock_of(drv)
    before = await drv.read(drv.scope_of(CHANGE))
    await drv.load(CHANGE)
    await drv.commit()
    assert not dev.has_pending_commit()
    assert (await drv.verify(CHANGE, before)).ok
    await drv.restore(before)
    assert dev.calls["load_replace_candidate"] == 1 and dev.calls["commit_config"] == 2
    assert await drv.read(before.scope) == before
    with pytest.raises(StateError):
        await drv.restore(Snapshot(content="x", scope="1.3.6.1.2.1.1.4.0"))
    await drv.close()


async def test_load_mode_replace_uses_load_replace_candidate() -> None:
    drv = await opened(mock_profile("restore", settings={"load_mode": "replace"}))
    await drv.read(drv.scope_of(CHANGE))
    await drv.load(CHANGE)
    dev = mock_of(drv)
    assert dev.merge is False and dev.calls["load_replace_candidate"] == 1 and "load_merge_candidate" not in dev.calls
    await drv.close()


async def test_delete_verifies_absence() -> None:
    drv = await opened(mock_profile("confirmed-commit"))
    gone = ChangeSet(service="s", action=Action.DELETE, content="no ip route 203.0.113.0/24 198.51.100.2\n")
    unused = Snapshot(content="", scope="running")  # containment: the bridge does not compare with it
    assert (await drv.verify(gone, unused)).ok  # get_config.1: the route is not there
    result = await drv.verify(gone, unused)  # get_config.2: the route is there
    assert not result.ok and result.mismatches[0].actual == "ip route 203.0.113.0/24 198.51.100.2"
    await drv.close()


# -- errors on recorded data -------------------------------------------------------------------
async def test_rejected_merge_becomes_device_rejected_and_device_unchanged() -> None:
    drv = await opened(mock_profile("merge-rejected"))
    before = await drv.read(drv.scope_of(CHANGE))
    with pytest.raises(DeviceRejectedError) as caught:
        await drv.load(CHANGE)
    err = caught.value
    assert err.phase is Phase.PUSH and err.device == "leaf1" and not err.retryable
    assert err.info is not None and err.info.tag == "MergeConfigException"
    assert "% Invalid input" in err.info.message and "198.51.100.1/33" in err.message
    assert isinstance(err.__cause__, nx.MergeConfigException)
    await drv.discard()
    assert await drv.read(before.scope) == before
    await drv.close()


async def test_commit_error_and_lock_error() -> None:
    drv = await opened(mock_profile("commit-error"))
    await drv.read(drv.scope_of(CHANGE))
    await drv.load(CHANGE)
    with pytest.raises(DeviceRejectedError) as caught:
        await drv.commit()
    assert caught.value.phase is Phase.COMMIT and caught.value.info.tag == "CommitError"
    await drv.discard()
    await drv.close()

    drv = await opened(mock_profile("locked"))
    await drv.read(drv.scope_of(CHANGE))
    with pytest.raises(LockDeniedError) as locked:
        await drv.load(CHANGE)
    assert locked.value.retryable and "vty3" in locked.value.message
    await drv.close()


async def test_preview_failure_still_discards() -> None:
    drv = await opened(mock_profile("merge-rejected"))
    before = await drv.read(drv.scope_of(CHANGE))
    with pytest.raises(DeviceRejectedError):
        await drv.preview(CHANGE, before)
    assert mock_of(drv).calls["discard_config"] == 1
    await drv.close()


async def test_connect_failure_and_missing_napalm_driver() -> None:
    profile = mock_profile(settings={"optional_args": {"fail_on_open": True}})
    drv = NapalmDriver(endpoint=endpoint(), profile=profile)
    with pytest.raises(ConnectError) as caught:
        await drv.open()
    assert caught.value.phase is Phase.CONNECT and caught.value.retryable and not drv.is_open
    with pytest.raises(StateError):
        await drv.read(drv.scope_of(CHANGE))

    drv = NapalmDriver(endpoint=endpoint(), profile=mock_profile(settings={"napalm_driver": "agwnosuchos"}))
    with pytest.raises(DriverUnavailableError) as missing:
        await drv.open()
    assert "pip install napalm-agwnosuchos" in missing.value.message


async def test_confirmed_commit_refused_when_not_declared() -> None:
    drv = await opened(mock_profile("confirmed-commit", caps={"confirmed_commit": False}))
    await drv.read(drv.scope_of(CHANGE))
    await drv.load(CHANGE)
    with pytest.raises(UnsupportedOperationError):
        await drv.commit(confirm_timeout_s=120)
    assert "commit_config" not in mock_of(drv).calls  # nothing was committed unconfirmed
    with pytest.raises(UnsupportedOperationError):
        await drv.confirm()
    with pytest.raises(UnsupportedOperationError):
        await drv.cancel_commit()
    await drv.close()


async def test_preview_without_diff_capability_is_local() -> None:
    drv = await opened(mock_profile("confirmed-commit", caps={"diff": False}))
    before = await drv.read(drv.scope_of(CHANGE))
    diff = await drv.preview(CHANGE, before)
    assert diff.splitlines() == ["+" + line for line in NEW_LINES]
    assert "load_merge_candidate" not in mock_of(drv).calls
    await drv.close()


# -- capabilities --------------------------------------------------------------------------------
def _profile_for(napalm_driver: str, **caps: bool) -> DeviceProfile:
    everything = {f.name: True for f in dataclasses.fields(Capabilities)}
    everything.update(caps)
    return DeviceProfile(platform=f"test-{napalm_driver}", driver="napalm", capabilities=Capabilities(**everything),
                         settings={"napalm_driver": napalm_driver})


@pytest.mark.parametrize(("napalm_driver", "expected"), [
    ("eos", ("candidate", "confirmed_commit", "native_rollback", "diff", "atomic_push")),
    ("junos", ("candidate", "confirmed_commit", "native_rollback", "diff", "atomic_push")),
    ("iosxr", ("candidate", "native_rollback", "diff", "atomic_push")),
    ("nxos", ("candidate", "native_rollback", "diff")),
    ("ios", ("candidate", "confirmed_commit", "native_rollback", "diff")),
    ("mock", ("candidate", "confirmed_commit", "native_rollback", "diff")),
    ("vyos", ("candidate", "diff")),  # not in the table: the base NAPALM API only
])
def test_capability_table(napalm_driver: str, expected: tuple[str, ...]) -> None:
    assert NapalmDriver.capabilities_for(_profile_for(napalm_driver)).names() == expected


def test_table_never_claims_lock_validate_or_persist_id() -> None:
    for caps in NAPALM_CAPABILITIES.values():
        assert not (caps.lock or caps.validate or caps.persist_id)
    assert napalm_capabilities("IOS-XR") == NAPALM_CAPABILITIES["iosxr"]


def test_profile_can_only_narrow() -> None:
    narrowed = NapalmDriver.capabilities_for(_profile_for("eos", confirmed_commit=False, atomic_push=False))
    assert narrowed.names() == ("candidate", "native_rollback", "diff")
    with pytest.raises(ConfigurationError, match="candidate"):
        NapalmDriver.capabilities_for(_profile_for("eos", candidate=False))


@pytest.mark.parametrize("settings", [{}, {"napalm_driver": ""}, {"napalm_driver": "eos", "load_mode": "overwrite"},
                                      {"napalm_driver": "eos", "optional_args": ["x"]}])
def test_bad_settings_rejected(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="settings"):
        NapalmSettings.from_profile(settings, platform="p")


# -- error translation (pure) ----------------------------------------------------------------------
@pytest.mark.parametrize(("exc", "phase", "expected"), [
    (nx.ConnectAuthError("bad login"), Phase.CONNECT, AuthenticationError),
    (nx.ConnectTimeoutError("no route"), Phase.CONNECT, DeviceTimeoutError),
    (nx.ConnectionException("refused"), Phase.CONNECT, ConnectError),
    (nx.ConnectionException("reset"), Phase.PUSH, SessionLostError),
    (nx.ConnectionClosedException("closed"), Phase.VERIFY, SessionLostError),
    (nx.MergeConfigException("bad"), Phase.PUSH, DeviceRejectedError),
    (nx.ReplaceConfigException("bad"), Phase.ROLLBACK, DeviceRejectedError),
    (nx.CommitError("failed"), Phase.COMMIT, DeviceRejectedError),
    (nx.CommitConfirmException("failed"), Phase.CONFIRM, DeviceRejectedError),
    (nx.CommandErrorException("bad cmd"), Phase.VERIFY, DeviceRejectedError),
    (nx.LockError("locked"), Phase.PUSH, LockDeniedError),
    (nx.SessionLockedException("locked"), Phase.PUSH, LockDeniedError),
    (nx.CommandTimeoutException("slow"), Phase.VERIFY, DeviceTimeoutError),
    (TimeoutError("slow"), Phase.VERIFY, DeviceTimeoutError),
    (NotImplementedError("Commit confirm has not been implemented on this platform."), Phase.COMMIT,
     UnsupportedOperationError),
    (nx.ModuleImportError("Cannot import napalm_x"), Phase.CONNECT, DriverUnavailableError),
    (ConnectionResetError("reset by peer"), Phase.PUSH, SessionLostError),
    (OSError("no route to host"), Phase.CONNECT, ConnectError),
    (ValueError("odd"), Phase.PUSH, DeviceError),
])
def test_translate(exc: BaseException, phase: Phase, expected: type) -> None:
    err = translate(exc, device="leaf1", phase=phase, napalm_driver="eos")
    assert type(err) is expected
    assert err.phase is phase and err.device == "leaf1" or isinstance(err, DriverUnavailableError)


def test_translate_masks_secrets() -> None:
    err = translate(nx.ConnectAuthError(f"login failed for admin/{PASSWORD}"), device="d", phase=Phase.CONNECT,
                    napalm_driver="ios", secrets=[PASSWORD])
    assert PASSWORD not in str(err) and "********" in str(err)


def test_check_lines() -> None:
    running = "interface Ethernet2\n   description x\n!\nip route 1.0.0.0/8 10.0.0.1\n"
    change = ChangeSet(service="s", action=Action.MODIFY,
                       content="interface Ethernet2\n  description x\n! comment\nno ip route 1.0.0.0/8 10.0.0.1\n")
    checked, mismatches = check_lines(change, running)
    assert checked == 3 and [m.path for m in mismatches] == ["ip route 1.0.0.0/8 10.0.0.1"]


# -- timeouts: a MockDriver subclass whose calls block -----------------------------------------------
SLOWMOCK = '''
import threading
from napalm.base import mock  # not `from ... import MockDriver`: NAPALM takes the first driver class it finds

RELEASE = threading.Event()
ENTERED = threading.Event()
CLOSED = threading.Event()


class SlowMockDriver(mock.MockDriver):
    def __init__(self, hostname, username, password, timeout=60, optional_args=None):
        super().__init__(hostname, username, password, timeout=timeout, optional_args=optional_args)
        self.slow = (optional_args or {}).get("slow", "")

    def open(self):
        if self.slow == "open":
            ENTERED.set()
            RELEASE.wait(60)
        super().open()

    def close(self):
        CLOSED.set()
        super().close()

    def _slow_get_config(self, retrieve="all", full=False, sanitized=False, format="text"):
        ENTERED.set()
        RELEASE.wait(60)
        return {"running": "hostname slow\\n", "candidate": "", "startup": ""}

    def __getattribute__(self, name):
        if name == "get_config" and object.__getattribute__(self, "slow") == "get_config":
            return object.__getattribute__(self, "_slow_get_config")
        return super().__getattribute__(name)
'''


@pytest.fixture(scope="module")
def slowmock(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("napalm-custom")
    (root / "custom_napalm").mkdir()
    (root / "custom_napalm" / "__init__.py").write_text("")
    (root / "custom_napalm" / "slowmock.py").write_text(SLOWMOCK)
    sys.path.insert(0, str(root))
    try:
        import custom_napalm.slowmock as module  # type: ignore[import-not-found]
        yield module
    finally:
        module.RELEASE.set()
        sys.path.remove(str(root))


def _reset(module: Any) -> None:
    for event in (module.RELEASE, module.ENTERED, module.CLOSED):
        event.clear()


async def _wait(event: Any, limit_s: float = 10.0) -> bool:
    return await asyncio.to_thread(event.wait, limit_s)


async def test_blocked_call_is_cut_by_operation_timeout(slowmock: Any) -> None:
    _reset(slowmock)
    profile = mock_profile(settings={"napalm_driver": "slowmock", "optional_args": {"slow": "get_config"}},
                           caps={"confirmed_commit": False, "native_rollback": False},
                           timeouts=Timeouts(connect_s=5, operation_s=0.3, commit_s=5))
    drv = await opened(profile)
    try:
        with pytest.raises(DeviceTimeoutError) as caught:
            await drv.read(drv.scope_of(CHANGE))
        assert caught.value.phase is Phase.SNAPSHOT and caught.value.retryable
        assert slowmock.ENTERED.is_set() and not slowmock.RELEASE.is_set()  # cut while NAPALM still blocks
        assert not drv.is_open  # the device object is never reused
        with pytest.raises(StateError):
            await drv.read(drv.scope_of(CHANGE))
    finally:
        slowmock.RELEASE.set()
    assert await _wait(slowmock.CLOSED)  # closed in the background once the call returned


async def test_blocked_open_is_cut_by_connect_timeout_and_late_session_closed(slowmock: Any) -> None:
    _reset(slowmock)
    profile = mock_profile(settings={"napalm_driver": "slowmock", "optional_args": {"slow": "open"}},
                           caps={"confirmed_commit": False, "native_rollback": False},
                           timeouts=Timeouts(connect_s=0.3, operation_s=5, commit_s=5))
    drv = NapalmDriver(endpoint=endpoint(), profile=profile)
    try:
        with pytest.raises(DeviceTimeoutError) as caught:
            await drv.open()
        assert caught.value.phase is Phase.CONNECT and not drv.is_open
        assert not slowmock.CLOSED.is_set()
    finally:
        slowmock.RELEASE.set()
    assert await _wait(slowmock.CLOSED)  # the session that opened too late is closed, not leaked


async def test_calls_share_one_bounded_pool() -> None:
    pool = executor()
    assert executor() is pool and pool._max_workers == 8
    drv = await opened(mock_profile("confirmed-commit"))
    await drv.read(drv.scope_of(CHANGE))
    await drv.close()
    assert any(t.name.startswith("agw-napalm") for t in pool._threads)
