"""Per-device serialization and the session pool.

One change at a time per device, across all activations: :class:`DeviceLocks` hands out one FIFO
lock per device name. An atomic activation takes the locks of all its devices up front, in name
order, so two activations can never wait on each other (no deadlock).

:class:`SessionPool` keeps one open driver session per (device, platform) and reuses it; the
device lock guarantees a session is used by one task at a time. A session that failed with a
connection-level error is closed and dropped; the next task opens a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Iterable

from drivers.base import DeviceProfile, Driver, Endpoint
from drivers.registry import Registry
from gateway.errors import ConnectError, DeviceReplyError, DeviceTimeoutError, Phase, SessionLostError
from gateway.secrets import Credential

log = logging.getLogger(__name__)


class DeviceLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, device: str) -> asyncio.Lock:
        lock = self._locks.get(device)
        if lock is None:
            lock = self._locks[device] = asyncio.Lock()
        return lock

    def busy(self, device: str) -> bool:
        return self._lock(device).locked()

    @contextlib.asynccontextmanager
    async def hold(self, devices: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of ``devices`` (acquired in sorted order) for the block."""
        taken: list[asyncio.Lock] = []
        try:
            for name in sorted(set(devices)):
                lock = self._lock(name)
                await lock.acquire()
                taken.append(lock)
            yield
        finally:
            for lock in reversed(taken):
                lock.release()


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


__all__ = ["DeviceLocks", "SessionPool", "session_is_suspect"]
