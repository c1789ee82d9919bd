"""The driver conformance suite: the contract of :mod:`drivers.base`, checked against a real device.

A driver package subclasses :class:`DriverConformance` in its own tests and provides one fixture,
``conformance_target``, returning a :class:`ConformanceTarget` (the driver class, where a lab
device is, its profile, how to build a valid and an invalid change, and how to hang the device).
The inherited tests then check, against that device:

* the profile's ``settings`` and ``quirks`` parse into a frozen dataclass (``Driver.settings_from``),
  and an unknown key in either is refused naming the profile's file (no device needed);
* a merge push (``load`` + ``commit`` when ``candidate``) verifies;
* verification is exact: an extra change in the same scope that the change did not name fails it
  (when the target gives an ``interfering_change``);
* a change the device rejects leaves it unchanged after the engine's recovery
  (``discard`` when ``candidate``, else ``restore(snapshot)``);
* ``preview`` returns a non-empty diff and changes nothing;
* commit then ``restore(snapshot)`` gives back exactly the snapshot;
* a confirmed commit never confirmed reverts by itself (only if ``confirmed_commit`` is declared);
* every operation on a hung device raises a retryable device error within its timeout;
* a session dropped during a push never ends as a silent success, and the device is restorable
  from a fresh session.

Capabilities are read from the driver (``driver.capabilities``), never discovered by catching
:class:`~drivers.errors.UnsupportedOperationError`. The tests need pytest-asyncio in auto mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager as ContextManager
import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from drivers import checks
from drivers.base import Action, ChangeSet, DeviceProfile, Driver, Endpoint, Snapshot
from drivers.errors import (
    AgwError,
    ConfigurationError,
    ConnectError,
    DeviceError,
    DeviceRejectedError,
    DeviceTimeoutError,
    InputError,
    LockDeniedError,
    SessionLostError,
)

log = logging.getLogger(__name__)

HUNG_ERRORS = (DeviceTimeoutError, SessionLostError, ConnectError)
"""What an operation on a hung device may raise (all retryable)."""


@dataclass(frozen=True, kw_only=True)
class ConformanceTarget:
    """Everything the kit needs to exercise one driver against one (lab) device."""

    driver_class: type[Driver]
    endpoint: Endpoint
    profile: DeviceProfile
    """Use short timeouts (a few seconds): the hung-device tests wait for them."""
    valid_change: Callable[[str], ChangeSet]
    """A change the device accepts; the kit passes a fresh token, so two calls give two different values."""
    invalid_change: Callable[[str], ChangeSet]
    """A change the device refuses (``DeviceRejectedError`` from ``load`` or ``commit``)."""
    interfering_change: Callable[[str], ChangeSet] | None = None
    """A change inside the read scope of ``valid_change(token)`` that ``valid_change`` does not
    name (another leaf of the same entry, another line, a sibling scalar): pushed behind the
    driver's back, it must make ``verify`` fail with an unexpected difference."""
    hang: Callable[[], ContextManager[Any]]
    """A context manager during which the device hangs (accepts, never answers), e.g. SIGSTOP of its daemon."""
    timeout_margin_s: float = 1.0
    """How much longer than its timeout an operation may take to give up."""
    confirm_timeout_s: int = 3
    """The revert timer used by the confirmed-commit test."""
    settle_s: float = 15.0
    """How long the kit polls for a state to appear (a revert, a lock released by a dead session)."""

    def make(self) -> Driver:
        return self.driver_class(endpoint=self.endpoint, profile=self.profile)


def token() -> str:
    return f"kit-{uuid.uuid4().hex[:10]}"


async def reads_equal_eventually(driver: Driver, snapshot: Snapshot, *, within_s: float,
                                 poll_s: float = 1.0) -> Snapshot:
    """Re-read until equal to ``snapshot`` or ``within_s`` has passed; returns the last read."""
    deadline = time.monotonic() + within_s
    while True:
        now = await driver.read(snapshot.scope)
        if now == snapshot or time.monotonic() >= deadline:
            return now
        await asyncio.sleep(poll_s)


async def _retry_lock_denied(call: Callable[[], Awaitable[Any]], *, within_s: float) -> Any:
    """A session killed while it held the lock releases it only once the device notices."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await call()
        except LockDeniedError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.5)


class DriverConformance:
    """Subclass it (name it ``Test...``) and define the ``conformance_target`` fixture."""

    # -- fixtures and helpers ------------------------------------------------------------
    @pytest.fixture
    def conformance_target(self) -> ConformanceTarget:
        raise NotImplementedError("a DriverConformance subclass defines the conformance_target fixture")

    @pytest.fixture
    async def driver(self, conformance_target: ConformanceTarget) -> AsyncIterator[Driver]:
        drv = conformance_target.make()
        await drv.open()
        assert drv.is_open, "open() returned but is_open is False"
        try:
            yield drv
        finally:
            await drv.close()
        assert not drv.is_open, "is_open is still True after close()"

    @staticmethod
    async def lock(target: ConformanceTarget, driver: Driver) -> None:
        if driver.capabilities.lock:
            await _retry_lock_denied(driver.lock, within_s=target.settle_s)

    @staticmethod
    async def unlock(driver: Driver) -> None:
        if driver.capabilities.lock and driver.is_open:
            await driver.unlock()

    @classmethod
    async def push(cls, target: ConformanceTarget, driver: Driver, change: ChangeSet) -> None:
        """A merge push as the engine does it: load, then commit when the device stages changes."""
        await driver.load(change)
        if driver.capabilities.candidate:
            await driver.commit()

    @classmethod
    async def recover(cls, target: ConformanceTarget, snapshot: Snapshot) -> Snapshot:
        """From a fresh session: cancel/discard what may be pending, restore, re-read."""
        drv = target.make()
        await drv.open()
        try:
            await cls.lock(target, drv)
            try:
                if drv.capabilities.candidate:
                    await drv.discard()
                await drv.restore(snapshot)
                return await drv.read(snapshot.scope)
            finally:
                await cls.unlock(drv)
        finally:
            await drv.close()

    # -- the contract --------------------------------------------------------------------
    async def test_capabilities_are_declared(self, conformance_target: ConformanceTarget, driver: Driver) -> None:
        profile = conformance_target.profile
        assert isinstance(driver.name, str) and driver.name, "the driver class needs a `name`"
        assert profile.driver == driver.name, f"profile names driver {profile.driver!r}, class is {driver.name!r}"
        assert driver.capabilities == profile.capabilities.restricted_to(type(driver).supported)
        if driver.capabilities.confirmed_commit or driver.capabilities.validate:
            assert driver.capabilities.candidate, "confirmed_commit/validate without candidate"
        if driver.capabilities.persist_id:
            assert driver.capabilities.confirmed_commit, "persist_id without confirmed_commit"
        kinds = type(driver).check_kinds
        assert isinstance(kinds, frozenset) and kinds <= set(checks.KINDS), (
            f"check_kinds {sorted(kinds)!r}: each must be one of {checks.KINDS} (drivers.checks)")

    def test_service_checks_of_an_undeclared_kind_are_refused_by_the_planner(
            self, conformance_target: ConformanceTarget) -> None:
        """A service check this driver does not declare is refused before anything is sent (the
        engine never finds out by a failing verify)."""
        cls, profile = conformance_target.driver_class, conformance_target.profile
        samples = {checks.CLI: "command: show version\njson: true",
                   checks.NETCONF: "get: '<netconf-state xmlns=\"urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring\"/>'",
                   checks.SNMP: "get: [1.3.6.1.2.1.1.3.0]"}
        for kind, text in samples.items():
            change = ChangeSet(service="conformance", action=Action.CREATE, content="", checks=(text,))
            if kind in cls.check_kinds:
                planned = checks.plan_checks(change, profile=profile, kinds=cls.check_kinds, driver=cls.name,
                                             confirmed_commit=False)
                assert [c.kind for c in planned] == [kind]
            else:
                with pytest.raises(InputError, match=f"a {kind} check, but driver"):
                    checks.plan_checks(change, profile=profile, kinds=cls.check_kinds, driver=cls.name,
                                       confirmed_commit=False)

    def test_profile_settings_parse_and_refuse_unknown_keys(self, conformance_target: ConformanceTarget) -> None:
        cls, profile = conformance_target.driver_class, conformance_target.profile
        settings = cls.settings_from(profile)
        assert dataclasses.is_dataclass(settings), f"settings_from returned {type(settings).__name__}, not a dataclass"
        params = getattr(type(settings), "__dataclass_params__", None)
        assert params is not None and params.frozen, f"{type(settings).__name__} is not frozen"
        source = profile.source or "kit-profile.yaml"
        typos = {
            "settings": dataclasses.replace(profile, source=source, settings={**profile.settings, "agw_kit_typo": 1}),
            "quirks": dataclasses.replace(profile, source=source, quirks={**profile.quirks, "agw_kit_typo": 1}),
        }
        for section, typo in typos.items():
            with pytest.raises(ConfigurationError) as err:
                cls.settings_from(typo)
            assert source in err.value.message and f"{section}.agw_kit_typo" in err.value.message, err.value.message

    async def test_merge_push_verifies(self, conformance_target: ConformanceTarget, driver: Driver) -> None:
        target = conformance_target
        change = target.valid_change(token())
        snapshot = await driver.read(driver.scope_of(change))
        await self.lock(target, driver)
        try:
            await self.push(target, driver, change)
            result = await driver.verify(change, snapshot)
            assert result.ok, f"verify after push: {result.detail} {[str(m) for m in result.mismatches]}"
            assert result.checked > 0, "verify checked nothing"
            after = await driver.read(snapshot.scope)
            assert after != snapshot, "the push changed nothing on the device"
            assert driver.diff(snapshot, after).strip(), "diff of a real change is empty"
            if result.readback is not None:
                assert result.readback == after, "verify's readback differs from a reread of the same scope"
        finally:
            with contextlib.suppress(AgwError):
                await self.unlock(driver)
        assert await self.recover(target, snapshot) == snapshot

    async def test_verify_catches_an_unexpected_difference(
        self, conformance_target: ConformanceTarget, driver: Driver
    ) -> None:
        target = conformance_target
        if target.interfering_change is None:
            pytest.skip("the target gives no interfering_change")
        tok = token()
        change, other = target.valid_change(tok), target.interfering_change(tok)
        snapshot = await driver.read(driver.scope_of(change))
        await self.lock(target, driver)
        try:
            await self.push(target, driver, change)
            assert (await driver.verify(change, snapshot)).ok, "verify failed before anything interfered"
            await self.push(target, driver, other)  # behind the change's back, inside its scope
            result = await driver.verify(change, snapshot)
            assert not result.ok, "verify passed though the scope holds a change the change did not name"
            assert any(m.unexpected for m in result.mismatches), (
                f"the difference is not reported as unexpected: {[str(m) for m in result.mismatches]}")
        finally:
            with contextlib.suppress(AgwError):
                await self.unlock(driver)
        assert await self.recover(target, snapshot) == snapshot

    async def test_rejected_change_leaves_device_unchanged(
        self, conformance_target: ConformanceTarget, driver: Driver
    ) -> None:
        target = conformance_target
        change = target.invalid_change(token())
        snapshot = await driver.read(driver.scope_of(change))
        await self.lock(target, driver)
        try:
            with pytest.raises(DeviceRejectedError) as err:
                await self.push(target, driver, change)
            assert not err.value.retryable, "a rejected change is not retryable"
            assert err.value.device == target.endpoint.device
            # the engine's recovery: discard a staged change, else restore the snapshot
            if driver.capabilities.candidate:
                await driver.discard()
            else:
                await driver.restore(snapshot)
            assert await driver.read(snapshot.scope) == snapshot
        finally:
            await self.unlock(driver)

    async def test_preview_is_a_diff_and_changes_nothing(
        self, conformance_target: ConformanceTarget, driver: Driver
    ) -> None:
        change = conformance_target.valid_change(token())
        snapshot = await driver.read(driver.scope_of(change))
        preview = await driver.preview(change, snapshot)
        assert isinstance(preview, str) and preview.strip(), "preview of a real change is empty"
        assert await driver.read(snapshot.scope) == snapshot, "preview changed the device"
        other = conformance_target.make()
        await other.open()
        try:
            assert await other.read(snapshot.scope) == snapshot, "preview changed the device (seen from a new session)"
        finally:
            await other.close()

    async def test_commit_then_restore_gives_the_snapshot(
        self, conformance_target: ConformanceTarget, driver: Driver
    ) -> None:
        target = conformance_target
        first, second = target.valid_change(token()), target.valid_change(token())
        assert first.content != second.content, "valid_change must produce a different change per token"
        snapshot = await driver.read(driver.scope_of(first))
        await self.lock(target, driver)
        try:
            await self.push(target, driver, first)
            assert (await driver.verify(first, snapshot)).ok
            middle = await driver.read(driver.scope_of(second))
            await self.push(target, driver, second)
            assert (await driver.verify(second, middle)).ok
            assert not (await driver.verify(first, snapshot)).ok, "verify passed for a value that was overwritten"
            await driver.restore(snapshot)
            assert await driver.read(snapshot.scope) == snapshot
            assert not (await driver.verify(second, middle)).ok, "verify passed after restore"
        finally:
            await self.unlock(driver)

    async def test_unconfirmed_commit_reverts_by_itself(
        self, conformance_target: ConformanceTarget, driver: Driver
    ) -> None:
        target = conformance_target
        if not driver.capabilities.confirmed_commit:
            pytest.skip(f"{driver.name} on {target.profile.platform} does not declare confirmed_commit")
        change = target.valid_change(token())
        snapshot = await driver.read(driver.scope_of(change))
        await self.lock(target, driver)
        try:
            await driver.load(change)
            started = time.monotonic()
            await driver.commit(confirm_timeout_s=target.confirm_timeout_s)
            # the gateway walks away: no confirm, the lock released (netconfd does not revert a
            # confirmed commit while the committing session still holds the candidate lock)
            await self.unlock(driver)
            assert (await driver.verify(change, snapshot)).ok, "a confirmed commit is in effect before its timer runs out"
            now = await reads_equal_eventually(driver, snapshot, within_s=target.confirm_timeout_s + target.settle_s)
            assert now == snapshot, f"the unconfirmed commit did not revert:\n{driver.diff(snapshot, now)}"
            assert time.monotonic() - started >= target.confirm_timeout_s - 0.5, "reverted before its timer"
        except BaseException:
            with contextlib.suppress(AgwError):
                await self.unlock(driver)
            raise

    # -- timeouts ------------------------------------------------------------------------
    OPERATIONS = ("open", "lock", "read", "preview", "load", "commit", "verify", "restore")

    @pytest.mark.parametrize("operation", OPERATIONS)
    async def test_operation_on_hung_device_times_out(
        self, conformance_target: ConformanceTarget, operation: str
    ) -> None:
        target = conformance_target
        timeouts = target.profile.timeouts
        drv = target.make()
        change = target.valid_change(token())
        caps = drv.capabilities
        if operation == "lock" and not caps.lock:
            pytest.skip("the driver does not declare lock")
        if operation == "commit" and not caps.candidate:
            pytest.skip("the driver does not declare candidate (no commit)")
        bound_s = {
            "open": timeouts.connect_s,
            "commit": timeouts.commit_s,
            "restore": max(timeouts.operation_s, timeouts.commit_s),
        }.get(operation, timeouts.operation_s) + target.timeout_margin_s
        snapshot: Snapshot | None = None
        if operation != "open":
            await drv.open()
            snapshot = await drv.read(drv.scope_of(change))
            if caps.lock and operation in ("load", "commit"):
                await self.lock(target, drv)
            if operation == "commit":
                await drv.load(change)
            if operation == "restore":  # give restore real work: the device differs from the snapshot
                await self.lock(target, drv)
                await self.push(target, drv, target.valid_change(token()))
                await self.unlock(drv)
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "open": drv.open,
            "lock": drv.lock,
            "read": lambda: drv.read(drv.scope_of(change)),
            "preview": lambda: drv.preview(change, snapshot),  # type: ignore[arg-type]
            "load": lambda: drv.load(change),
            "commit": drv.commit,
            "verify": lambda: drv.verify(change, snapshot),  # type: ignore[arg-type]
            "restore": lambda: drv.restore(snapshot),  # type: ignore[arg-type]
        }
        try:
            with target.hang():
                started = time.monotonic()
                try:
                    await asyncio.wait_for(calls[operation](), timeout=bound_s + 10)
                except HUNG_ERRORS as exc:
                    elapsed = time.monotonic() - started
                    assert exc.device == target.endpoint.device, f"error names device {exc.device!r}"
                    assert exc.retryable, f"{type(exc).__name__} on a hung device should be retryable"
                except TimeoutError:
                    pytest.fail(f"{operation} on a hung device did not give up within {bound_s + 10:.1f} s")
                else:
                    elapsed = time.monotonic() - started
                    # only preview may be computed from the snapshot alone, without the device
                    if operation != "preview":
                        pytest.fail(f"{operation} on a hung device returned normally")
                assert elapsed <= bound_s, f"{operation} gave up after {elapsed:.2f} s, allowed {bound_s:.2f} s"
        finally:
            await drv.close()
        assert not drv.is_open, "is_open is still True after close()"
        if snapshot is not None and operation in ("load", "commit", "restore"):
            assert await self._recover_eventually(target, snapshot) == snapshot

    @classmethod
    async def _recover_eventually(cls, target: ConformanceTarget, snapshot: Snapshot) -> Snapshot:
        deadline = time.monotonic() + target.settle_s
        while True:
            try:
                return await cls.recover(target, snapshot)
            except HUNG_ERRORS:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.5)

    # -- a session lost during a push -----------------------------------------------------
    @pytest.mark.parametrize("how", ["hang", "close"])
    async def test_session_lost_during_push_is_never_a_silent_success(
        self, conformance_target: ConformanceTarget, how: str
    ) -> None:
        target = conformance_target
        change = target.valid_change(token())
        drv = target.make()
        await drv.open()
        snapshot = await drv.read(drv.scope_of(change))
        await self.lock(target, drv)
        bound_s = target.profile.timeouts.operation_s + target.profile.timeouts.commit_s + target.timeout_margin_s
        outcome: BaseException | None = None
        try:
            if how == "hang":
                with target.hang():
                    try:
                        await asyncio.wait_for(self.push(target, drv, change), timeout=bound_s + 10)
                    except BaseException as exc:  # noqa: BLE001 - classified below
                        outcome = exc
                assert outcome is not None, "a push to a hung device reported success"
            else:
                task = asyncio.ensure_future(self.push(target, drv, change))
                await asyncio.sleep(0.02)
                await asyncio.wait_for(drv.close(), timeout=target.profile.timeouts.connect_s + target.timeout_margin_s)
                try:
                    await asyncio.wait_for(task, timeout=bound_s + 10)
                except BaseException as exc:  # noqa: BLE001 - classified below
                    outcome = exc
            if outcome is not None:
                assert not isinstance(outcome, asyncio.TimeoutError), "the push hung past its timeouts"
                assert isinstance(outcome, DeviceError), (
                    f"a lost session must raise a gateway DeviceError, got {type(outcome).__name__}: {outcome}")
        finally:
            await drv.close()
        if outcome is None:
            # the push finished before the session closed: then it must really be on the device
            check = target.make()
            await check.open()
            try:
                verification = await check.verify(change, snapshot)
            finally:
                await check.close()
            assert verification.ok, "push reported success but the change is not on the device"
        assert await self._recover_eventually(target, snapshot) == snapshot, "device not restorable after a lost session"
