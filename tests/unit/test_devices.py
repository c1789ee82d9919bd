"""Per-device locks and the session pool (pure asyncio logic; the driver here is a minimal
in-memory implementation of our own contract, not a protocol)."""

from __future__ import annotations

import asyncio

import pytest

from drivers.base import Capabilities, ChangeSet, DeviceProfile, Driver, Snapshot, Verification
from drivers.registry import Registry
from gateway.engine.devices import DeviceLocks, SessionPool
from gateway.secrets import Credential

PROFILE = DeviceProfile(platform="mem", driver="mem", capabilities=Capabilities())


class MemoryDriver(Driver):
    name = "mem"
    supported = Capabilities()
    opened = 0

    async def open(self) -> None:
        type(self).opened += 1
        self._open = True

    async def close(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return getattr(self, "_open", False)

    async def read(self, change: ChangeSet) -> Snapshot:
        return Snapshot(content="", scope="")

    async def reread(self, snapshot: Snapshot) -> Snapshot:
        return snapshot

    async def preview(self, change: ChangeSet, snapshot: Snapshot) -> str:
        return ""

    def diff(self, before: Snapshot, after: Snapshot) -> str:
        return ""

    async def load(self, change: ChangeSet) -> None:
        return None

    async def verify(self, change: ChangeSet) -> Verification:
        return Verification(ok=True, checked=0)

    async def restore(self, snapshot: Snapshot) -> None:
        return None


def pool() -> SessionPool:
    registry: Registry[Driver] = Registry("agw.test-drivers", Driver)
    registry.register("mem", MemoryDriver)
    return SessionPool(registry=registry, resolve_credential=lambda ref: Credential(ref=ref))


async def get(p: SessionPool, device: str) -> Driver:
    return await p.get(device=device, platform="mem", address="127.0.0.1", port=1, credentials_ref="env:X",
                       profile=PROFILE)


async def test_sessions_are_reused_and_replaced_when_closed() -> None:
    p = pool()
    MemoryDriver.opened = 0
    a = await get(p, "d1")
    assert await get(p, "d1") is a and MemoryDriver.opened == 1
    await a.close()
    b = await get(p, "d1")
    assert b is not a and b.is_open and MemoryDriver.opened == 2


async def test_idle_sessions_are_closed_unless_their_device_is_busy() -> None:
    p = pool()
    d1, d2 = await get(p, "d1"), await get(p, "d2")
    closed = await p.close_idle(idle_s=0.0, busy=lambda device: device == "d2")
    assert closed == 1 and not d1.is_open and d2.is_open and len(p) == 1
    assert await p.close_idle(idle_s=3600.0, busy=lambda device: False) == 0


async def test_locks_serialize_per_device_and_never_deadlock() -> None:
    locks = DeviceLocks()
    order: list[str] = []

    async def work(name: str, devices: list[str]) -> None:
        async with locks.hold(devices):
            order.append(f"{name}+")
            await asyncio.sleep(0.01)
            order.append(f"{name}-")

    # opposite orders of the same devices: taken in sorted order, so no deadlock
    await asyncio.wait_for(asyncio.gather(work("a", ["x", "y"]), work("b", ["y", "x"]), work("c", ["z"])), 2)
    ab = [o for o in order if o[0] in "ab"]
    assert ab in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])
    assert not locks.busy("x") and not locks.busy("y")


async def test_lock_released_when_the_block_fails() -> None:
    locks = DeviceLocks()
    with pytest.raises(RuntimeError):
        async with locks.hold(["x"]):
            raise RuntimeError("boom")
    assert not locks.busy("x")
