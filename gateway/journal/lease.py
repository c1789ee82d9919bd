"""One active gateway per PostgreSQL journal: a lease kept by PostgreSQL itself, with a fencing epoch.

Two gateways on one journal must never both run the same activation (the second would recover,
that is roll back, the first one's live work while the first goes on pushing). Until work is
shared between replicas activation by activation, the rule is: **one active gateway per journal,
the others stand by**, and a standby takes over only when the active one is gone.

* **The lease** is a session-level advisory lock (keyed by the journal's schema, so journals in
  different schemas of one database do not collide) held on a dedicated connection whose
  ``idle_session_timeout`` is the lease time. The holder runs ``SELECT 1`` every ``lease_s / 4``.
  A holder that stops doing so — killed, frozen (SIGSTOP), cut off from the database — loses its
  session, and with it the lock, within ``lease_s``: PostgreSQL ends it, no clock of ours decides.
* **A standby** polls ``pg_try_advisory_lock``; the first to get it is the new holder (exactly one:
  the lock is PostgreSQL's).
* **Fencing.** The new holder increments ``agw_owner.epoch`` (its fencing token) before it recovers
  anything. Every write batch reads the epoch ``FOR SHARE`` in its own transaction and is refused
  (:class:`~gateway.errors.FencedError`) when it is not the writer's: a late write of a gateway that
  lost its lease never lands, even if it has not noticed yet. The increment waits for batches in
  flight (the row lock), so none of them commits after it.
* **Locally**, the holder counts its lease from the *start* of its last good heartbeat and stops at
  ``LOCAL_SHARE`` of it: past that it writes nothing and touches no device, before it even learns
  that its session is gone (a process resumed after a long SIGSTOP finds its lease over at once).

What it does not give: work shared by several active replicas, device leases across replicas
(one active gateway makes the per-process device locks sufficient), Watch on a standby.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from sqlalchemy.engine import Engine

from gateway.errors import FencedError, JournalError, Phase
from gateway.journal.dbcall import call

log = logging.getLogger(__name__)

LOCAL_SHARE = 0.75
"""The part of ``lease_s`` after a heartbeat's start during which the holder still acts."""

OWNER_TABLE = "agw_owner"
_KEY = "hashtext('agw-journal:' || current_schema())"


class Lease:
    """The active-gateway lease on one PostgreSQL journal. Every method but :meth:`valid` and
    :meth:`check` blocks: call them on the lease's own thread."""

    def __init__(self, engine: Engine, *, holder: str, lease_s: float) -> None:
        if lease_s < 1:
            raise JournalError("the journal lease must be at least 1 s", phase=Phase.JOURNAL, retryable=False)
        self.engine = engine
        self.holder = holder
        self.lease_s = lease_s
        self.epoch = 0
        self.lost = False
        self._valid_until = 0.0
        self._raw: Any = None  # the dedicated DB-API connection (detached from the pool)

    # -- the lease's own thread -----------------------------------------------------------------
    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True once held (the epoch bumped)."""
        cur = self._cursor()
        started = time.monotonic()
        cur.execute(f"SELECT pg_try_advisory_lock({_KEY})")
        row = cur.fetchone()
        if not row or not row[0]:
            return False
        try:
            self._bump_epoch(cur)
        except BaseException:
            self._close()  # never hold the lock without a new epoch
            raise
        self._valid_until = started + self.lease_s * LOCAL_SHARE
        return True

    def _bump_epoch(self, cur: Any) -> None:
        cur.execute(
            f"INSERT INTO {OWNER_TABLE} (id, epoch, holder, since) VALUES (1, 1, %s, now()) "
            f"ON CONFLICT (id) DO UPDATE SET epoch = {OWNER_TABLE}.epoch + 1, holder = EXCLUDED.holder, "
            f"since = EXCLUDED.since RETURNING epoch",
            (self.holder,),
        )
        epoch_row = cur.fetchone()
        assert epoch_row is not None
        self.epoch = int(epoch_row[0])

    def heartbeat(self) -> bool:
        """Keep the session (and the lock) alive; False once it is gone: the lease is lost."""
        if self.lost:
            return False
        started = time.monotonic()
        try:
            cur = self._cursor()
            cur.execute("SELECT 1")
            cur.fetchone()
        except Exception as exc:  # noqa: BLE001 - any failure: the session may be gone
            log.error("journal lease heartbeat failed: %s", type(exc).__name__)
            self.lost = True
            self._close()
            return False
        if started > self._valid_until:  # resumed after a freeze: the session may have outlived the
            self.lost = True              # lock's meaning already; never extend a lapsed lease
            self._close()
            return False
        self._valid_until = started + self.lease_s * LOCAL_SHARE
        return True

    def current_holder(self) -> str:
        """Who holds the lease, as it says (for a standby's message)."""
        try:
            cur = self._cursor()
            cur.execute(f"SELECT holder, since, epoch FROM {OWNER_TABLE} WHERE id = 1")
            row = cur.fetchone()
        except Exception:  # noqa: BLE001 - only for a log line
            return "unknown"
        return f"{row[0]}, epoch {row[2]}, since {row[1]:%Y-%m-%d %H:%M:%S}" if row else "unknown"

    def release(self) -> None:
        """Let go: the session ends, and with it the lock."""
        self.lost = True
        self._close()

    # -- any thread ------------------------------------------------------------------------------
    def valid(self) -> bool:
        return not self.lost and time.monotonic() < self._valid_until

    def check(self) -> None:
        """:class:`FencedError` unless the lease is held and current."""
        if not self.valid():
            raise FencedError(
                f"this gateway no longer holds the journal's lease (epoch {self.epoch}); another gateway may "
                f"have taken its work over: it writes nothing and touches no device", phase=Phase.JOURNAL)

    # -- internals ---------------------------------------------------------------------------------
    def _cursor(self) -> Any:
        if self._raw is None:
            raw = self.engine.raw_connection()
            raw.detach()  # this connection is the lease: never back into the pool
            dbapi = raw.dbapi_connection
            assert dbapi is not None
            dbapi.autocommit = True
            cur = dbapi.cursor()
            cur.execute(f"SET idle_session_timeout = {int(self.lease_s * 1000)}")
            cur.execute("SET statement_timeout = %s" % int(self.lease_s * 1000 / 2))
            self._raw = raw
        return self._raw.dbapi_connection.cursor()

    def _close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            try:
                raw.close()
            except Exception:  # noqa: BLE001 - already gone
                pass


class LeaseKeeper:
    """The async side: wait for the lease (standby), then keep it; tell ``on_lost`` if it goes."""

    def __init__(self, engine: Engine, *, holder: str, lease_s: float) -> None:
        self.lease = Lease(engine, holder=holder, lease_s=lease_s)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agw-journal-lease")
        self._keeper: asyncio.Task[None] | None = None
        self._dialect = engine.dialect

    async def acquire(self, on_lost: Callable[[], None]) -> None:
        """Until this gateway holds the lease (a standby waits here, saying who holds it)."""
        lease, waited = self.lease, False
        poll_s = lease.lease_s / 4
        while True:
            try:
                if await call(self._thread, "lease", lease.try_acquire, dialect=self._dialect):
                    break
            except JournalError as exc:
                log.warning("journal lease: %s; trying again in %.1f s", exc, poll_s)
            else:
                if not waited:
                    holder = await call(self._thread, "lease", lease.current_holder, dialect=self._dialect)
                    log.warning("standby: another gateway is active on this journal (%s); taking over when its "
                                "lease of %g s lapses", holder, lease.lease_s)
                    waited = True
            await asyncio.sleep(poll_s)
        log.warning("active: this gateway holds the journal's lease (epoch %d, %g s)", lease.epoch, lease.lease_s)
        self._keeper = asyncio.create_task(self._keep(on_lost), name="journal-lease")

    async def _keep(self, on_lost: Callable[[], None]) -> None:
        lease = self.lease
        while True:
            await asyncio.sleep(lease.lease_s / 4)
            if not await asyncio.get_running_loop().run_in_executor(self._thread, lease.heartbeat):
                log.critical("lost the journal's lease (epoch %d): this gateway stops its work now; another gateway "
                             "takes it over", lease.epoch)
                on_lost()
                return

    async def release(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._thread, self.lease.release)
        self._thread.shutdown(wait=False)


def fence_sql() -> str:
    """The statement a write batch runs first: the current epoch, the row share-locked until commit."""
    return f"SELECT epoch FROM {OWNER_TABLE} WHERE id = 1 FOR SHARE"


__all__ = ["LOCAL_SHARE", "Lease", "LeaseKeeper", "fence_sql"]
