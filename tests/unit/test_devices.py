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

    def scope_of(self, change: ChangeSet) -> str:
        return ""

    async def read(self, scope: str) -> Snapshot:
        return Snapshot(content="", scope=scope)

    async def preview(self, change: ChangeSet, snapshot: Snapshot) -> str:
        return ""

    def diff(self, before: Snapshot, after: Snapshot) -> str:
        return ""

    async def load(self, change: ChangeSet) -> None:
        return None

    async def verify(self, change: ChangeSet) -> Verification:
        return Verification(ok=True, checked=0)

    async def restore(self, snapshot: Snapshot, undo: str | None = None) -> None:
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


# -- waiting: limits, fairness, no hold-and-wait, no deadlock, bounded starvation ---------------------
async def test_an_atomic_acquisition_does_not_hold_its_fast_devices_while_it_waits_for_a_slow_one() -> None:
    locks = DeviceLocks()
    slow = await locks.acquire(["slow"], owner="a slow activation")
    atomic = asyncio.create_task(locks.acquire(["fast", "slow"], owner="atomic"))
    await asyncio.sleep(0.01)
    assert not atomic.done() and locks.holder("fast") is None  # let go of "fast" while waiting for "slow"
    other = await locks.acquire(["fast"], owner="other", wait_s=0.1)  # at once, not behind the atomic one
    assert locks.holder("fast") == "other"
    other.release()
    slow.release()
    lease = await asyncio.wait_for(atomic, 1)
    assert lease.devices == ("fast", "slow") and locks.holder("fast") == locks.holder("slow") == "atomic"
    lease.release()
    assert not locks.busy("fast") and not locks.busy("slow")


async def test_a_lock_that_stays_busy_is_a_device_busy_error_naming_the_device_and_holder() -> None:
    from gateway.errors import DeviceBusyError, Phase

    locks = DeviceLocks(wait_s=0.05)
    held = await locks.acquire(["r1"], owner="activation A")
    with pytest.raises(DeviceBusyError) as info:
        await locks.acquire(["r1"])
    assert info.value.device == "r1" and info.value.phase is Phase.LOCK and info.value.retryable
    assert "activation A" in info.value.message and "0.05 s" in info.value.message
    with pytest.raises(DeviceBusyError):  # several devices: the busy one is named, nothing is kept
        await locks.acquire(["a", "r1", "z"], owner="B")
    assert not locks.busy("a") and not locks.busy("z") and locks.waiting("r1") == 0
    held.release()
    assert (await locks.acquire(["r1"], wait_s=0)).devices == ("r1",)  # free: no wait needed


async def test_one_device_is_fifo_and_a_cancelled_waiter_leaves_no_trace() -> None:
    locks = DeviceLocks()
    first = await locks.acquire(["d"], owner="first")
    got: list[str] = []

    async def take(name: str) -> None:
        lease = await locks.acquire(["d"], owner=name)
        got.append(name)
        await asyncio.sleep(0)
        lease.release()

    waiters = [asyncio.create_task(take(n)) for n in ("w1", "w2", "w3")]
    gone = asyncio.create_task(take("cancelled"))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    assert locks.waiting("d") == 3
    first.release()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    assert got == ["w1", "w2", "w3"] and not locks.busy("d")


async def test_no_deadlock_between_atomic_acquisitions_over_overlapping_devices_in_any_order() -> None:
    import random

    rng = random.Random(7)
    devices = ["a", "b", "c", "d"]
    for max_rounds in (3, 0):  # 0: every contended acquisition escalates (ordered, holding) at once
        locks = DeviceLocks(max_rounds=max_rounds)
        inside: dict[str, str] = {}
        done = 0

        async def work(name: str, wanted: list[str]) -> None:
            nonlocal done
            for _ in range(25):
                await asyncio.sleep(rng.random() * 0.002)
                async with locks.hold(wanted, owner=name):
                    for d in wanted:  # really exclusive
                        assert d not in inside, (d, inside)
                        inside[d] = name
                    await asyncio.sleep(rng.random() * 0.002)
                    for d in wanted:
                        del inside[d]
            done += 1

        workers = [work(f"w{i}", rng.sample(devices, rng.randint(1, 4))) for i in range(8)]
        workers += [work("ab", ["a", "b"]), work("ba", ["b", "a"]), work("dca", ["d", "c", "a"])]
        await asyncio.wait_for(asyncio.gather(*workers), 20)
        assert done == len(workers) and not any(locks.busy(d) for d in devices)


async def test_an_atomic_acquisition_starved_by_steady_traffic_escalates_and_gets_its_locks() -> None:
    locks = DeviceLocks(max_rounds=2)
    stop = asyncio.Event()

    async def traffic(device: str, offset_s: float) -> None:
        # one device-only activation after another, x and y never free at the same moment
        await asyncio.sleep(offset_s)
        while not stop.is_set():
            async with locks.hold([device], owner=f"traffic on {device}"):
                await asyncio.sleep(0.02)

    adversaries = [asyncio.create_task(traffic("x", 0)), asyncio.create_task(traffic("y", 0.01))]
    await asyncio.sleep(0.015)
    t0 = asyncio.get_running_loop().time()
    lease = await asyncio.wait_for(locks.acquire(["x", "y"], owner="atomic"), 2)
    waited = asyncio.get_running_loop().time() - t0
    stop.set()
    assert lease.escalated and lease.rounds == locks.max_rounds + 1
    assert waited < (locks.max_rounds + 3) * 0.02 + 0.2  # its rounds, then the current holders only
    lease.release()
    await asyncio.gather(*adversaries)


async def test_escalated_waiters_go_before_others_and_an_acquisition_cancelled_midway_releases_all() -> None:
    locks = DeviceLocks(max_rounds=0)
    holder = await locks.acquire(["b"], owner="holder")
    plain = asyncio.create_task(locks.acquire(["b"], owner="plain"))
    await asyncio.sleep(0.01)
    escalated = asyncio.create_task(locks.acquire(["a", "b"], owner="escalated"))
    await asyncio.sleep(0.01)
    assert locks.holder("a") == "escalated"  # escalated: holds "a" (name order) while it waits for "b"
    holder.release()
    lease = await asyncio.wait_for(escalated, 1)  # went ahead of "plain", which queued first
    assert not plain.done()
    lease.release()
    (await asyncio.wait_for(plain, 1)).release()

    holder = await locks.acquire(["b"], owner="holder")
    stuck = asyncio.create_task(locks.acquire(["a", "b"], owner="stuck"))
    await asyncio.sleep(0.01)
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    assert not locks.busy("a") and locks.waiting("b") == 0
    holder.release()
