"""The engine among replicas sharing a PostgreSQL journal: device leases, takeover, remote events.

* :class:`ClusterDevices` puts the journal's device leases (:mod:`gateway.journal.cluster`) in
  front of the per-process :class:`~gateway.engine.devices.DeviceLocks`: an acquisition first
  *enters* its devices cluster-wide, then queues locally. A device's row is taken when the first
  local user enters it and given back when the last one leaves, so local work on a busy device costs
  no database round trip, and a device changes hands between replicas only when this one has
  nothing queued for it. Waiting for another replica's device holds nothing (no lock here, no row),
  and is woken by the ``agw_device`` notification (or a poll every ``poll_s``, growing).
  Devices inherited from a dead replica are *reserved*: only the recovery of its activations enters
  them, until every one of those recoveries has ended.
* :class:`Replicas` runs the takeover: at start (before the gateway listens) and every
  ``lease_s / 4``, dead replicas are taken over (exactly one replica takes each) and their
  unfinished activations recovered; it routes notifications: device given back, new events of an
  activation watched here but run elsewhere (read from the journal and published to the local
  watchers), cancel requests for activations running here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Sequence

from gateway.errors import AgwError, DeviceBusyError, Phase
from gateway.model import Caller

if TYPE_CHECKING:
    from gateway.journal.cluster import Cluster

log = logging.getLogger(__name__)

POLL_S = (0.25, 2.0)
"""A wait for another replica's device looks again after this long (doubling up to the second)."""

REMOTE_POLL_S = 1.0
"""Activations watched here but run elsewhere are read again at least this often."""


@dataclass(eq=False)
class _Dev:
    users: int = 0
    """Local acquisitions past the cluster stage (or trying to get there)."""
    held: bool = False
    """This replica holds the device's row."""
    reserved: bool = False
    """Inherited from a dead replica: only its recovery enters."""
    taking: asyncio.Future[None] | None = None
    waiting: int = 0
    """Acquisitions sleeping until the device is given back somewhere."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class ClusterDevices:
    """Cluster-wide device leases in front of the local locks (see the module docstring)."""

    def __init__(self, cluster: Cluster, spawn: Callable[[Awaitable[Any]], Any]) -> None:
        self.cluster = cluster
        self._spawn = spawn
        self._devices: dict[str, _Dev] = {}
        self._giving: asyncio.Task[None] | None = None
        self._to_give: set[str] = set()

    def _dev(self, name: str) -> _Dev:
        dev = self._devices.get(name)
        if dev is None:
            dev = self._devices[name] = _Dev()
        return dev

    def held(self) -> list[str]:
        return sorted(n for n, d in self._devices.items() if d.held)

    async def enter(self, names: Sequence[str], *, owner: str, deadline: float | None, recovery: bool = False) -> None:
        """Until this replica holds every device of ``names`` (or DeviceBusyError at ``deadline``)."""
        loop = asyncio.get_running_loop()
        poll_s = POLL_S[0]
        while True:
            blocked = next((n for n in names if self._dev(n).reserved and not recovery), "")
            if blocked:
                self._dev(blocked).wake.clear()
                await self._sleep(blocked, deadline, poll_s, owner, why="being recovered after a replica died")
                continue
            devs = [self._dev(n) for n in names]
            for dev in devs:
                dev.users += 1
                dev.wake.clear()  # before the take: a give-back heard from here on wakes the wait below
            try:
                busy = await self._take([n for n in names if not self._dev(n).held], owner)
            except BaseException:
                self.leave(names)
                raise
            if not busy:
                return
            self.leave(names)
            await self._sleep(busy, deadline, poll_s, owner, why="held by another gateway replica")
            poll_s = min(poll_s * 2, POLL_S[1])
            if deadline is not None and loop.time() >= deadline:
                raise await self._busy_error(busy, owner)

    async def _take(self, need: list[str], owner: str) -> str:
        """Take the rows of ``need`` (one take per device at a time: a second local user waits for
        the first one's); "" when all are held."""
        while True:
            pending = [d.taking for n in need if (d := self._dev(n)).taking is not None]
            if not pending:
                break
            await asyncio.gather(*pending, return_exceptions=True)
            need = [n for n in need if not self._dev(n).held]
        if not need:
            return ""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for n in need:
            self._dev(n).taking = done
        try:
            busy = await self.cluster.take_devices(need, owner=owner)
            if not busy:
                for n in need:
                    self._dev(n).held = True
                    self._to_give.discard(n)
            return busy
        finally:
            for n in need:
                self._dev(n).taking = None
            done.set_result(None)

    def leave(self, names: Iterable[str]) -> None:
        """One local user fewer on each device; rows nobody here uses any more are given back."""
        for name in names:
            dev = self._devices.get(name)
            if dev is None:
                continue
            dev.users = max(0, dev.users - 1)
            self._maybe_give(name, dev)

    def _maybe_give(self, name: str, dev: _Dev) -> None:
        if dev.users == 0 and dev.held and not dev.reserved and dev.taking is None:
            dev.held = False
            self._to_give.add(name)
            if self._giving is None or self._giving.done():
                self._giving = self._spawn(self._give())

    async def _give(self) -> None:
        while self._to_give:
            batch, self._to_give = sorted(self._to_give), set()
            try:
                await self.cluster.give_devices(batch)
            except AgwError as exc:  # the rows stay ours until a takeover; say so
                log.error("could not give back the device lease(s) of %s: %s", ", ".join(batch), exc)
        for name, dev in list(self._devices.items()):
            if dev.users == 0 and not dev.held and not dev.reserved and dev.taking is None and not dev.waiting:
                del self._devices[name]

    # -- takeover -------------------------------------------------------------------------------------
    def reserve(self, names: Iterable[str]) -> None:
        """Rows inherited from a dead replica: held, entered only by recovery."""
        for name in names:
            dev = self._dev(name)
            dev.held = dev.reserved = True

    def unreserve(self, names: Iterable[str]) -> None:
        for name in names:
            dev = self._devices.get(name)
            if dev is not None and dev.reserved:
                dev.reserved = False
                self.wake(name)
                self._maybe_give(name, dev)

    # -- waiting ----------------------------------------------------------------------------------------
    def wake(self, name: str = "") -> None:
        """A device was given back somewhere (all devices: "")."""
        if not name:
            for each in self._devices.values():
                each.wake.set()
        elif (dev := self._devices.get(name)) is not None:
            dev.wake.set()

    async def _sleep(self, name: str, deadline: float | None, poll_s: float, owner: str, *, why: str) -> None:
        loop = asyncio.get_running_loop()
        dev = self._dev(name)
        wait_s = poll_s if deadline is None else min(poll_s, deadline - loop.time())
        if wait_s <= 0:
            raise await self._busy_error(name, owner, why=why)
        dev.waiting += 1
        try:
            await asyncio.wait_for(dev.wake.wait(), timeout=wait_s)
        except asyncio.TimeoutError:
            pass
        finally:
            dev.waiting -= 1

    async def _busy_error(self, name: str, owner: str, *, why: str = "held by another gateway replica") -> DeviceBusyError:
        try:
            holder = (await self.cluster.holders([name])).get(name, "")
        except AgwError:
            holder = ""
        return DeviceBusyError(f"device {name} is {why}{f' ({holder})' if holder else ''} and did not come free "
                               "in time; nothing was sent to it", device=name, phase=Phase.LOCK)


class Replicas:
    """Takeover and notification routing for one engine (see the module docstring)."""

    def __init__(self, engine: Any, cluster: Cluster, devices: ClusterDevices) -> None:
        self.engine = engine
        self.cluster = cluster
        self.devices = devices
        self._scanner: asyncio.Task[None] | None = None
        self._remote: asyncio.Task[None] | None = None
        self._remote_wake = asyncio.Event()
        self._remote_due: set[str] = set()

    async def start(self) -> None:
        """Adopt what no replica owns, take over the dead ones and recover it all (before the
        gateway listens), then keep looking."""
        self.cluster.on_notify(self._on_notify)
        ids = await self.cluster.adopt_unowned()
        if ids:
            log.warning("adopted %d unfinished activation(s) journaled before replicas", len(ids))
        await self._take_over(wait=True)
        self._scanner = asyncio.create_task(self._scan(), name="replica-takeover")
        self._remote = asyncio.create_task(self._pull_remote(), name="replica-remote-events")

    async def stop(self) -> None:
        for t in (self._scanner, self._remote):
            if t is not None:
                t.cancel()
        await asyncio.gather(*(t for t in (self._scanner, self._remote) if t is not None), return_exceptions=True)

    async def _scan(self) -> None:
        while True:
            await asyncio.sleep(self.cluster.lease_s / 4)
            try:
                await self._take_over(wait=False)
            except AgwError as exc:
                log.warning("looking for dead replicas failed: %s", exc)

    async def _take_over(self, *, wait: bool) -> None:
        taken = await self.cluster.take_over_dead()
        if not taken:
            return
        inherited = await self.cluster.inherited()
        self.devices.reserve(inherited)
        ids = [aid for _, group in taken for aid in group]
        run = self._recover(ids, inherited)
        if wait:
            await run
        else:
            self.engine._spawn(run, name=f"takeover-{taken[0][0]}")

    async def _recover(self, ids: list[str], inherited: list[str]) -> None:
        try:
            await self.engine.recover(ids)
        finally:
            self.devices.unreserve(inherited)

    # -- notifications ------------------------------------------------------------------------------------
    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == "agw_device":
            self.devices.wake(payload)
        elif channel == "agw_event":
            if payload not in self.engine._runs and payload in self.engine.ctx.bus.watched():
                self._remote_due.add(payload)
                self._remote_wake.set()
        elif channel == "agw_control":
            self._control(payload)
        elif channel == "agw_listen":  # (re)connected: notifications may have been missed
            self.devices.wake()
            self._remote_wake.set()

    def _control(self, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("op") == "cancel":
            activation_id, actor = str(message.get("id", "")), str(message.get("actor", ""))
            if self.engine._runs.get(activation_id) is not None:  # it runs here
                self.engine._spawn(self._cancel(activation_id, actor), name=f"cancel-{activation_id}")

    async def _cancel(self, activation_id: str, actor: str) -> None:
        """A cancel another replica was asked for."""
        try:
            await self.engine.cancel(activation_id, caller=Caller(identity=actor))
        except AgwError as exc:
            log.info("cancel of %s from another replica: %s", activation_id, exc)

    async def _pull_remote(self) -> None:
        """Publish to local watchers the events of activations run by other replicas."""
        while True:
            try:
                await asyncio.wait_for(self._remote_wake.wait(), timeout=REMOTE_POLL_S)
            except asyncio.TimeoutError:
                self._remote_due.update(aid for aid in self.engine.ctx.bus.watched() if aid not in self.engine._runs)
            self._remote_wake.clear()
            due, self._remote_due = self._remote_due, set()
            for activation_id in due:
                try:
                    await self._pull(activation_id)
                except AgwError as exc:
                    log.warning("reading the events of %s for its watchers failed: %s", activation_id, exc)


    async def _pull(self, activation_id: str) -> None:
        """Publish to this replica's watchers the events another replica journaled."""
        bus = self.engine.ctx.bus
        for event in await self.engine.journal.events(activation_id, after_seq=bus.last_seq(activation_id)):
            bus.publish(event)


__all__ = ["ClusterDevices", "Replicas"]
