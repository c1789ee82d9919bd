"""What replicas sharing a PostgreSQL journal tell each other: device leases, notifications, takeover.

The engine sees one object, :class:`Cluster` (``journal.cluster``; None on SQLite, where one
gateway runs alone):

* **Device leases** (``agw_device_leases``, one row per held device): a replica may change a device
  only while it holds the device's row. :meth:`Cluster.take_devices` inserts the rows of a set of
  devices in one statement, all or none, and only while the replica's own row says it is alive
  (fenced like the write batches); :meth:`Cluster.give_devices` deletes them and notifies the
  others. Rows are not tied to a database session: a dead replica's rows stay until the replica
  that takes it over inherits them (``inherited``), recovers its activations, and gives them back,
  so no other replica changes such a device before its half-done change is undone.
* **Notifications** (``LISTEN``/``NOTIFY`` on a dedicated connection and thread):
  ``agw_device`` (a device was given back: waiters try again), ``agw_event`` (an activation has new
  events: Watch on a replica that does not run it), ``agw_control`` (cancel an activation, for the
  replica that runs it). A notification only wakes; the journal is the record, and waiters also
  look again on a timer, so a lost notification (a reconnect) costs time, never correctness.
* **The lease and takeover** (:mod:`gateway.journal.lease`): heartbeats every ``lease_s / 4`` on
  the lease's own connection and thread; :meth:`Cluster.take_over_dead` finds dead replicas and
  takes each over (exactly one replica does).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from sqlalchemy.engine import Engine

from gateway.errors import FencedError, JournalError, Phase
from gateway.journal.dbcall import call
from gateway.journal.lease import DEVICE_LEASES, REPLICAS, ReplicaLease, close_quietly, open_dedicated

log = logging.getLogger(__name__)

CHANNELS = ("agw_device", "agw_event", "agw_control")
LISTEN_POLL_S = 1.0
"""How long the listener blocks before it looks whether it should stop."""

Notify = Callable[[str, str], None]
"""A notification handler, called on the event loop with (channel, payload)."""


class Cluster:
    """This replica among the others on one PostgreSQL journal (see the module docstring)."""

    def __init__(self, engine: Engine, *, holder: str, lease_s: float) -> None:
        self.engine = engine
        self.lease = ReplicaLease(engine, holder=holder, lease_s=lease_s)
        self.lease_s = lease_s
        self._lease_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agw-journal-lease")
        self._device_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agw-journal-devices")
        self._dialect = engine.dialect
        self._keeper: asyncio.Task[None] | None = None
        self._devices_raw: Any = None
        self._listener: threading.Thread | None = None
        self._stop_listening = threading.Event()
        self._handlers: list[Notify] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def replica_id(self) -> str:
        return self.lease.replica_id

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self, on_lost: Callable[[], None]) -> None:
        """Register this replica, start listening, keep the lease (``on_lost`` if it goes)."""
        self._loop = asyncio.get_running_loop()
        await self._on_lease("register", self.lease.register)
        self._listener = threading.Thread(target=self._listen, name="agw-journal-listen", daemon=True)
        self._listener.start()
        log.warning("replica %s registered on the journal (lease %g s)", self.replica_id, self.lease_s)
        self._keeper = asyncio.create_task(self._keep(on_lost), name="journal-lease")

    async def _keep(self, on_lost: Callable[[], None]) -> None:
        lease = self.lease
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(lease.lease_s / 4)
            if not await loop.run_in_executor(self._lease_thread, lease.heartbeat):
                log.critical("lost the journal lease (replica %s): this gateway stops its work now; another "
                             "replica takes it over", self.replica_id)
                on_lost()
                return

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        self._stop_listening.set()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._device_thread, self._close_devices)
        await loop.run_in_executor(self._lease_thread, self.lease.release)
        if self._listener is not None:
            await loop.run_in_executor(None, self._listener.join, LISTEN_POLL_S * 3)
        self._lease_thread.shutdown(wait=False)
        self._device_thread.shutdown(wait=False)

    def valid(self) -> bool:
        return self.lease.valid()

    # -- takeover ----------------------------------------------------------------------------------
    async def take_over_dead(self) -> list[tuple[str, list[str]]]:
        """Each dead replica this one took over, with the activations it now owns (oldest first)."""
        taken: list[tuple[str, list[str]]] = []
        for peer in await self._on_lease("takeover", self.lease.dead_peers):
            try:  # each take_over lets go of the peer's lock, whatever happens
                ids = await self._on_lease("takeover", self.lease.take_over, peer)
            except FencedError:
                raise
            except JournalError as exc:
                log.warning("taking over replica %s failed (%s); trying again later", peer, exc)
                continue
            if ids is not None:
                log.warning("took over replica %s (its lease lapsed): %d unfinished activation(s)", peer, len(ids))
                taken.append((peer, ids))
        return taken

    async def adopt_unowned(self) -> list[str]:
        ids: list[str] = await self._on_lease("takeover", self.lease.adopt_unowned)
        return ids

    async def _on_lease(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        return await call(self._lease_thread, f"lease {what}", fn, *args, dialect=self._dialect)

    # -- device leases -------------------------------------------------------------------------------
    async def take_devices(self, devices: Sequence[str], *, owner: str) -> str:
        """Take the rows of ``devices``, all or none: "" once held, else the first device held by
        another replica (or inherited from a dead one). :class:`FencedError` if this replica is
        no longer alive."""
        self.lease.check()
        return await call(self._device_thread, "device lease", self._take, list(devices), owner,
                          dialect=self._dialect)

    async def give_devices(self, devices: Sequence[str]) -> None:
        """Give the rows back (and wake the replicas waiting for them)."""
        await call(self._device_thread, "device lease", self._give, list(devices), dialect=self._dialect)

    async def inherited(self) -> list[str]:
        """Devices this replica inherited from dead replicas and has not given back."""
        return await call(self._device_thread, "device lease", self._inherited, dialect=self._dialect)

    async def holders(self, devices: Sequence[str]) -> dict[str, str]:
        """device -> the replica holding it (for messages)."""
        return await call(self._device_thread, "device lease", self._holders, list(devices), dialect=self._dialect)

    def _take(self, devices: list[str], owner: str) -> str:
        # one statement (autocommit): the fence (this replica's row, share-locked: a takeover of
        # this replica waits for it and then finds the rows) and the inserts
        cur = self._devices_cursor()
        cur.execute(
            f"WITH me AS (SELECT 1 FROM {REPLICAS} WHERE id = %(r)s AND alive FOR SHARE), "
            f"ins AS (INSERT INTO {DEVICE_LEASES} (device, replica, owner, inherited, since) "
            "SELECT d, %(r)s, %(o)s, false, now() FROM unnest(%(d)s::text[]) AS d, me ORDER BY d "
            "ON CONFLICT (device) DO NOTHING RETURNING device) "
            "SELECT (SELECT count(*) FROM me), array(SELECT device FROM ins)",
            {"r": self.replica_id, "o": owner[:200], "d": devices})
        row = cur.fetchone()
        assert row is not None
        alive, got = int(row[0]), set(row[1] or ())
        if not alive:
            raise FencedError(f"replica {self.replica_id} was taken over: it takes no device", phase=Phase.LOCK)
        if len(got) == len(set(devices)):
            return ""
        if got:  # all or none: give back what this attempt took
            self._give(sorted(got))
        return next(d for d in sorted(devices) if d not in got)

    def _give(self, devices: list[str]) -> None:
        cur = self._devices_cursor()
        cur.execute(
            f"WITH gone AS (DELETE FROM {DEVICE_LEASES} WHERE device = ANY(%s) AND replica = %s RETURNING device) "
            "SELECT pg_notify('agw_device', device) FROM gone", (devices, self.replica_id))

    def _inherited(self) -> list[str]:
        cur = self._devices_cursor()
        cur.execute(f"SELECT device FROM {DEVICE_LEASES} WHERE replica = %s AND inherited ORDER BY device",
                    (self.replica_id,))
        return [r[0] for r in cur.fetchall()]

    def _holders(self, devices: list[str]) -> dict[str, str]:
        cur = self._devices_cursor()
        cur.execute(f"SELECT device, replica, owner FROM {DEVICE_LEASES} WHERE device = ANY(%s)", (devices,))
        return {d: f"replica {r} ({o})" for d, r, o in cur.fetchall()}

    def _devices_cursor(self) -> Any:
        if self._devices_raw is None:
            self._devices_raw = open_dedicated(self.engine, lease_s=max(self.lease_s, 60.0))
            cur = self._devices_raw.dbapi_connection.cursor()
            cur.execute("SET idle_session_timeout = 0")  # not a lease: a quiet replica keeps it
            cur.close()
        try:
            return self._devices_raw.dbapi_connection.cursor()
        except Exception:
            self._close_devices()
            raise

    def _close_devices(self) -> None:
        raw, self._devices_raw = self._devices_raw, None
        close_quietly(raw)

    # -- notifications ---------------------------------------------------------------------------------
    def on_notify(self, handler: Notify) -> None:
        """Call ``handler(channel, payload)`` on the event loop for every notification."""
        self._handlers.append(handler)

    async def send_control(self, message: dict[str, str]) -> None:
        """Tell every replica (the one running the activation acts)."""
        payload = json.dumps(message, separators=(",", ":"))
        if len(payload) > 7000:
            raise JournalError("control message too large", phase=Phase.JOURNAL, retryable=False)
        await call(self._device_thread, "notify", self._notify, "agw_control", payload, dialect=self._dialect)

    def _notify(self, channel: str, payload: str) -> None:
        self._devices_cursor().execute("SELECT pg_notify(%s, %s)", (channel, payload))

    def _listen(self) -> None:
        """The listener thread: LISTEN on a connection of its own, reconnecting after a loss."""
        while not self._stop_listening.is_set():
            raw = None
            try:
                raw = open_dedicated(self.engine, lease_s=max(self.lease_s, 60.0))
                conn = raw.dbapi_connection
                cur = conn.cursor()
                cur.execute("SET idle_session_timeout = 0")
                for channel in CHANNELS:
                    cur.execute(f"LISTEN {channel}")
                self._deliver("agw_listen", "")  # (re)connected: anything may have been missed
                while not self._stop_listening.is_set():
                    for note in conn.notifies(timeout=LISTEN_POLL_S, stop_after=256):
                        self._deliver(note.channel, note.payload)
            except Exception as exc:  # noqa: BLE001 - reconnect after any loss
                if not self._stop_listening.is_set():
                    log.warning("journal notifications lost (%s); listening again", type(exc).__name__)
                    self._stop_listening.wait(LISTEN_POLL_S)
            finally:
                close_quietly(raw)

    def _deliver(self, channel: str, payload: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for handler in self._handlers:
            try:
                loop.call_soon_threadsafe(handler, channel, payload)
            except RuntimeError:  # the loop closed meanwhile
                return


__all__ = ["CHANNELS", "Cluster", "Notify"]
