"""Per-device serialization and the session pool.

One change at a time per device, across all activations: :class:`DeviceLocks` hands out one lock
per device name, and nothing a request does may freeze work on devices it is not waiting for.

**Waiting has a limit.** An acquisition waits at most ``wait_s`` (the engine's ``lock_wait_s`` for
activations, a short wait for a DryRun); then it raises :class:`~gateway.errors.DeviceBusyError`
naming the device and who holds it, and nothing is sent to the device. ``wait_s=None`` waits as
long as it takes (rollbacks and recovery: their work must not be dropped).

**One device: FIFO.** A released lock is handed to its oldest waiter directly, so a free lock
never has waiters and nobody overtakes the queue.

**Several devices (an atomic activation, a rollback): never hold while waiting.** Holding the
fast devices while waiting in the queue of a slow one is what froze unrelated work (80 atomic
activations queued on slow SNMP agents kept their NETCONF and CLI devices locked). So:

1. take every lock that is free at once, in name order, without waiting;
2. if one is busy, release everything taken, wait (FIFO, holding nothing) for that one alone;
   once it is ours, go back to 1 keeping it: the others are tried again without waiting.

Meanwhile anybody may take the devices this acquisition let go: an activation on one of them
goes ahead instead of queueing behind a slow device it does not use. There is no deadlock: only
the escalation below waits while holding, and always in name order.

**Starvation bound.** Under steady load, step 2 could repeat forever: each time the awaited lock
comes, another device has been taken meanwhile. After ``max_rounds`` such rounds the acquisition
*escalates*: it waits for its locks in name order, holding those it got, and in each queue it goes
ahead of every waiter that has not escalated (FIFO among the escalated). So it waits at most for
the current holders of its devices (and earlier escalated acquisitions), never for whole queues;
during that wait, and only then, it holds devices while waiting for others. Escalated waits follow
the global name order and non-escalated waiters hold nothing, so a wait-for cycle cannot form.

:class:`SessionPool` keeps one open driver session per (device, platform) and reuses it; the
device lock guarantees a session is used by one task at a time. A session that failed with a
connection-level error is closed and dropped; the next task opens a fresh one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable

from drivers.base import DeviceProfile, Driver, Endpoint
from drivers.registry import Registry
from gateway.errors import (
    ConnectError,
    DeviceBusyError,
    DeviceReplyError,
    DeviceTimeoutError,
    Phase,
    SessionLostError,
)
from gateway.secrets import Credential

if TYPE_CHECKING:
    from gateway.engine.replicas import ClusterDevices

log = logging.getLogger(__name__)


_WAIT_DEFAULT: Any = object()


@dataclass(eq=False)
class _Waiter:
    owner: str
    future: asyncio.Future[None]
    escalated: bool


@dataclass(eq=False)
class _Device:
    holder: str | None = None
    """Who holds the lock (an owner label, e.g. ``activation <id>``); None: free."""
    waiters: collections.deque[_Waiter] = field(default_factory=collections.deque)


@dataclass(eq=False)
class Lease:
    """Locks held by one acquisition; :meth:`release` gives them back (once)."""

    locks: DeviceLocks
    devices: tuple[str, ...]
    owner: str
    rounds: int = 0
    """How often the acquisition had to wait (0: every lock was free)."""
    escalated: bool = False
    """It waited in name order, ahead of non-escalated waiters (see the module docstring)."""
    waited_s: float = 0.0
    _released: bool = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.locks._release(self.devices)
            if self.locks.cluster is not None:
                self.locks.cluster.leave(self.devices)


class DeviceLocks:
    """One lock per device name; see the module docstring for the acquisition rules."""

    def __init__(self, *, wait_s: float | None = None, max_rounds: int = 3) -> None:
        """``wait_s``: the default wait limit of :meth:`acquire` (None: no limit);
        ``max_rounds``: how often a several-device acquisition may wait holding nothing before it
        escalates."""
        self.wait_s = wait_s
        self.max_rounds = max_rounds
        self._devices: dict[str, _Device] = {}
        self.cluster: ClusterDevices | None = None
        """Replicas on a shared journal: the cluster-wide device leases entered before the local
        locks (:mod:`gateway.engine.replicas`)."""

    def _device(self, name: str) -> _Device:
        dev = self._devices.get(name)
        if dev is None:
            dev = self._devices[name] = _Device()
        return dev

    def gauges(self) -> tuple[int, dict[str, int]]:
        """Devices held, and the queue length of each device with waiters (for metrics)."""
        devices = list(self._devices.items())
        return (sum(1 for _, d in devices if d.holder is not None),
                {name: len(d.waiters) for name, d in devices if d.waiters})

    def busy(self, device: str) -> bool:
        dev = self._devices.get(device)
        return dev is not None and dev.holder is not None

    def holder(self, device: str) -> str | None:
        """Who holds ``device``'s lock (None: free)."""
        dev = self._devices.get(device)
        return None if dev is None else dev.holder

    def waiting(self, device: str) -> int:
        """How many acquisitions wait for ``device``."""
        dev = self._devices.get(device)
        return 0 if dev is None else sum(1 for w in dev.waiters if not w.future.done())

    async def acquire(self, devices: Iterable[str], *, owner: str = "", wait_s: float | None = _WAIT_DEFAULT,
                      recovery: bool = False) -> Lease:
        """Take the locks of ``devices`` (see the module docstring). ``owner`` names the holder in
        a busy error; ``wait_s`` overrides the default limit for the whole acquisition (None:
        wait as long as it takes). Raises :class:`DeviceBusyError` when it is over. ``recovery``:
        the recovery of an activation taken over from a dead replica (it alone enters the devices
        inherited with it)."""
        names = tuple(sorted(set(devices)))
        limit = self.wait_s if wait_s is _WAIT_DEFAULT else wait_s
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = None if limit is None else started + limit
        if self.cluster is not None and names:
            await self.cluster.enter(names, owner=owner or "an activation", deadline=deadline, recovery=recovery)
            try:
                lease = await self._acquire_here(names, owner, limit, deadline)
            except BaseException:
                self.cluster.leave(names)
                raise
        else:
            lease = await self._acquire_here(names, owner, limit, deadline)
        lease.waited_s = loop.time() - started
        return lease

    async def _acquire_here(self, names: tuple[str, ...], owner: str, limit: float | None,
                            deadline: float | None) -> Lease:
        lease = Lease(self, names, owner or "another activation")
        held: list[str] = []
        awaited = ""
        try:
            if len(names) == 1:
                awaited = names[0]
                if not self._take(awaited, lease.owner):
                    lease.rounds = 1
                    await self._wait(awaited, lease.owner, deadline)
                held.append(awaited)
            elif names:
                while True:
                    awaited = ""
                    for name in names:
                        if name not in held:
                            if not self._take(name, lease.owner):
                                awaited = name
                                break
                            held.append(name)
                    if not awaited:
                        break
                    self._release(held)
                    held = []
                    lease.rounds += 1
                    if lease.rounds > self.max_rounds:
                        lease.escalated = True
                        for name in names:
                            awaited = name
                            if not self._take(name, lease.owner):
                                await self._wait(name, lease.owner, deadline, escalated=True)
                            held.append(name)
                        break
                    await self._wait(awaited, lease.owner, deadline)
                    held.append(awaited)
        except TimeoutError:
            self._release(held)
            holder = self.holder(awaited) or "another activation"
            raise DeviceBusyError(
                f"device {awaited} is busy ({holder}) and its lock did not come free within {limit:g} s; "
                "nothing was sent to it", device=awaited, phase=Phase.LOCK,
            ) from None
        except BaseException:
            self._release(held)
            raise
        return lease

    @contextlib.asynccontextmanager
    async def hold(self, devices: Iterable[str], *, owner: str = "", wait_s: float | None = _WAIT_DEFAULT,
                   recovery: bool = False) -> AsyncIterator[Lease]:
        """Hold the locks of ``devices`` for the block (:meth:`acquire`, released at the end)."""
        lease = await self.acquire(devices, owner=owner, wait_s=wait_s, recovery=recovery)
        try:
            yield lease
        finally:
            lease.release()

    # -- internals ------------------------------------------------------------------------------
    def _take(self, name: str, owner: str) -> bool:
        """Take the lock if it is free, without waiting. A free lock has no waiters (a release
        hands it to the first one), so taking it never overtakes anybody."""
        dev = self._device(name)
        if dev.holder is not None:
            return False
        dev.holder = owner
        return True

    async def _wait(self, name: str, owner: str, deadline: float | None, *, escalated: bool = False) -> None:
        """Queue for ``name`` (escalated waiters after the other escalated ones, before the rest)
        until a release hands the lock over; TimeoutError at ``deadline``."""
        dev = self._device(name)
        waiter = _Waiter(owner, asyncio.get_running_loop().create_future(), escalated)
        if escalated:
            at = sum(1 for w in dev.waiters if w.escalated)
            dev.waiters.insert(at, waiter)
        else:
            dev.waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter.future
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release((name,))  # handed over just as the wait ended: pass it on
            else:
                waiter.future.cancel()
                with contextlib.suppress(ValueError):
                    dev.waiters.remove(waiter)
            raise

    def _release(self, names: Iterable[str]) -> None:
        for name in names:
            dev = self._devices[name]
            dev.holder = None
            while dev.waiters:
                waiter = dev.waiters.popleft()
                if not waiter.future.done():
                    dev.holder = waiter.owner
                    waiter.future.set_result(None)
                    break


@dataclass(frozen=True)
class SessionKey:
    device: str
    platform: str
    address: str
    port: int


class SessionPool:
    """Open driver sessions, reused per device endpoint."""

    def __init__(
        self,
        *,
        registry: Registry[Driver],
        resolve_credential: Callable[[str], Credential],
    ) -> None:
        self._registry = registry
        self._resolve = resolve_credential
        self._sessions: dict[SessionKey, Driver] = {}
        self._last_used: dict[SessionKey, float] = {}

    async def get(
        self, *, device: str, platform: str, address: str, port: int, credentials_ref: str, profile: DeviceProfile,
        known_hosts: str = "", host_key_check: bool = True,
    ) -> Driver:
        """An open session for the endpoint. Call only while holding the device's lock.
        ``known_hosts``/``host_key_check``: the device's SSH host-key source, from the inventory."""
        key = SessionKey(device, platform, address, port)
        self._last_used[key] = time.monotonic()
        drv = self._sessions.get(key)
        if drv is not None and drv.is_open:
            return drv
        if drv is not None:
            await drv.close()
            self._sessions.pop(key, None)
        cls = self._registry.get(profile.driver)
        endpoint = Endpoint(
            device=device, host=address, port=port, platform=platform, credential=self._resolve(credentials_ref),
            known_hosts=known_hosts, host_key_check=host_key_check,
        )
        drv = cls(endpoint=endpoint, profile=profile)
        try:
            await asyncio.wait_for(drv.open(), timeout=profile.timeouts.connect_s + 1.0)
        except asyncio.TimeoutError as exc:
            await drv.close()
            raise DeviceTimeoutError(
                f"connect did not finish within {profile.timeouts.connect_s:g} s", device=device, phase=Phase.CONNECT
            ) from exc
        except BaseException:
            await drv.close()
            raise
        self._sessions[key] = drv
        log.debug("opened %s session to %s (%s:%d)", profile.driver, device, address, port)
        return drv

    async def discard(self, drv: Driver) -> None:
        """Close a session that failed; the next ``get`` opens a new one."""
        for key, value in list(self._sessions.items()):
            if value is drv:
                self._sessions.pop(key, None)
        await drv.close()

    async def close_idle(self, *, idle_s: float, busy: Callable[[str], bool]) -> int:
        """Close sessions unused for ``idle_s`` seconds whose device is not busy. Returns how many."""
        now = time.monotonic()
        idle = [k for k, t in self._last_used.items()
                if now - t >= idle_s and k in self._sessions and not busy(k.device)]
        for key in idle:
            drv = self._sessions.pop(key)
            self._last_used.pop(key, None)
            log.debug("closing idle session to %s", key.device)
            await drv.close()
        return len(idle)

    def __len__(self) -> int:
        return len(self._sessions)

    async def close_all(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


def session_is_suspect(exc: BaseException) -> bool:
    """After these errors the session cannot be trusted any more."""
    return isinstance(exc, (ConnectError, DeviceTimeoutError, SessionLostError, DeviceReplyError, asyncio.TimeoutError))


__all__ = ["DeviceLocks", "Lease", "SessionPool", "session_is_suspect"]
