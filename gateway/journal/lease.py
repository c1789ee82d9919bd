"""Several gateways (replicas) on one PostgreSQL journal: each one's lease, its fence, and the
takeover of a dead replica's work by exactly one other.

* **A replica** is one ``agw serve`` process: at start it registers a row in ``agw_replicas``
  (``alive``) under a fresh id, and holds a session-level advisory lock keyed by that id on a
  dedicated connection whose ``idle_session_timeout`` is the lease (``lease_s``). It runs
  ``SELECT 1`` on it every ``lease_s / 4``. A replica that stops doing so — killed, frozen
  (SIGSTOP), cut off from the database — loses its session, and with it the lock, within
  ``lease_s``: PostgreSQL ends it, no clock of ours decides.
* **Activations are owned** (``agw_activations.owner``): by the replica that created them, or the
  one that last started a rollback, retry or takeover of them. A replica recovers only what it owns.
* **Takeover.** Every replica looks at the others every ``lease_s / 4``: a replica still marked
  alive whose lock it can take (``pg_try_advisory_lock``) is dead. In one transaction the taker
  sets the dead one's row ``alive = false`` (only one taker's UPDATE finds it alive: exactly one
  takes each over), makes itself the owner of the dead one's unfinished activations and inherits
  its device leases (:mod:`gateway.journal.cluster`), then recovers those activations.
* **Fencing, in the database.** Every write batch reads its replica's row ``FOR SHARE`` in its own
  transaction and writes nothing unless it is alive (:class:`~gateway.errors.FencedError`). The
  takeover's UPDATE waits for batches in flight (the row lock), so none commits after it.
* **Fencing, locally.** A replica counts its lease from the *start* of its last good heartbeat and
  acts for :data:`LOCAL_SHARE` of it only: past that it writes nothing and touches no device,
  before it even learns that its session is gone (a process resumed after a long SIGSTOP finds its
  lease over at its very next step).

What it does not give: a device call already on the wire when a replica froze may still arrive
after the takeover (see docs/replicas.md).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from sqlalchemy.engine import Engine

from gateway.errors import FencedError, JournalError, Phase

log = logging.getLogger(__name__)

LOCAL_SHARE = 0.75
"""The part of ``lease_s`` after a heartbeat's start during which the replica still acts."""

REPLICAS = "agw_replicas"
ACTIVATIONS = "agw_activations"
DEVICE_LEASES = "agw_device_leases"
UNFINISHED = ("acknowledged", "inProgress")
FORGET_ENDED_AFTER = "7 days"
"""Rows of replicas that ended longer ago are deleted when a replica registers."""


REPLICA_KEY = "hashtext('agw-replica:' || current_schema() || ':' || %s)"
"""The advisory lock key of a replica (its id the statement's parameter), scoped to the journal's
schema. A replica id is read from the database (a peer's row): it is bound, never put in the text."""


def open_dedicated(engine: Engine, *, lease_s: float) -> Any:
    """A DB-API connection of its own (never back into the pool), autocommit, its session ended by
    PostgreSQL when idle for ``lease_s``; statements limited to half of it."""
    raw = engine.raw_connection()
    raw.detach()
    dbapi = raw.dbapi_connection
    assert dbapi is not None
    dbapi.autocommit = True
    cur = dbapi.cursor()
    cur.execute(f"SET idle_session_timeout = {int(lease_s * 1000)}")
    cur.execute("SET statement_timeout = %s" % int(lease_s * 1000 / 2))
    cur.close()
    return raw


def close_quietly(raw: Any) -> None:
    if raw is not None:
        try:
            raw.close()
        except Exception:  # noqa: BLE001 - already gone
            pass


class ReplicaLease:
    """This replica's lease on one PostgreSQL journal. Every method but :meth:`valid` and
    :meth:`check` blocks: call them on the lease's own thread."""

    def __init__(self, engine: Engine, *, holder: str, lease_s: float) -> None:
        if lease_s < 1:
            raise JournalError("the journal lease must be at least 1 s", phase=Phase.JOURNAL, retryable=False)
        self.engine = engine
        self.holder = holder
        self.lease_s = lease_s
        self.replica_id = uuid.uuid4().hex[:16]
        self.lost = False
        self._valid_until = 0.0
        self._raw: Any = None

    # -- the lease's own thread -----------------------------------------------------------------
    def register(self) -> None:
        """Take this replica's lock and write its row (alive)."""
        started = time.monotonic()
        cur = self._cursor()
        cur.execute(f"SELECT pg_try_advisory_lock({REPLICA_KEY})", (self.replica_id,))
        row = cur.fetchone()
        if not row or not row[0]:  # a fresh random id: only a hash collision gets here
            raise JournalError("could not take this replica's lease (its key is held)", phase=Phase.JOURNAL)
        cur.execute(f"DELETE FROM {REPLICAS} WHERE NOT alive AND ended_at < now() - interval '{FORGET_ENDED_AFTER}'")
        cur.execute(f"INSERT INTO {REPLICAS} (id, holder, started_at, alive, taken_over_by) "
                    "VALUES (%s, %s, now(), true, '')", (self.replica_id, self.holder))
        self._valid_until = started + self.lease_s * LOCAL_SHARE

    def heartbeat(self) -> bool:
        """Keep the session (and the lock) alive; False once it is gone: the lease is lost."""
        if self.lost:
            return False
        started = time.monotonic()
        try:
            cur = self._cursor()
            cur.execute(f"SELECT alive FROM {REPLICAS} WHERE id = %s", (self.replica_id,))
            row = cur.fetchone()
        except Exception as exc:  # noqa: BLE001 - any failure: the session may be gone
            log.error("journal lease heartbeat failed: %s", type(exc).__name__)
            return self._lose()
        if started > self._valid_until or not row or not row[0]:
            # resumed after a freeze (never extend a lapsed lease), or already taken over
            return self._lose()
        self._valid_until = started + self.lease_s * LOCAL_SHARE
        return True

    def dead_peers(self) -> list[str]:
        """Replicas marked alive whose lock is free: their process (or session) is gone. The
        caller then calls :meth:`take_over` for each (this replica holds their locks meanwhile)."""
        cur = self._cursor()
        cur.execute(f"SELECT id FROM {REPLICAS} WHERE alive AND id <> %s ORDER BY started_at", (self.replica_id,))
        dead = []
        for (peer,) in cur.fetchall():
            cur.execute(f"SELECT pg_try_advisory_lock({REPLICA_KEY})", (peer,))
            got = cur.fetchone()
            if got and got[0]:
                dead.append(peer)
        return dead

    def take_over(self, peer: str) -> list[str] | None:
        """Make this replica the owner of ``peer``'s unfinished activations (ids returned, oldest
        first) and the holder of its device leases (inherited), and mark ``peer`` dead, in one
        transaction; None if another replica took it over first. Lets go of ``peer``'s lock."""
        self.check()
        cur = self._cursor()
        try:
            cur.execute("BEGIN")
            try:
                cur.execute(f"SELECT alive FROM {REPLICAS} WHERE id = %s FOR SHARE", (self.replica_id,))
                me = cur.fetchone()
                if not me or not me[0]:
                    raise FencedError("this replica was taken over itself: it takes nothing over",
                                      phase=Phase.JOURNAL)
                cur.execute(f"UPDATE {REPLICAS} SET alive = false, ended_at = now(), taken_over_by = %s "
                            "WHERE id = %s AND alive RETURNING id", (self.replica_id, peer))
                if cur.fetchone() is None:
                    cur.execute("ROLLBACK")
                    return None
                cur.execute(
                    f"UPDATE {ACTIVATIONS} SET owner = %s WHERE owner = %s AND state IN (%s, %s) "
                    "RETURNING id, created_at", (self.replica_id, peer, *UNFINISHED))
                taken = [r[0] for r in sorted(cur.fetchall(), key=lambda r: (r[1], r[0]))]
                cur.execute(f"UPDATE {DEVICE_LEASES} SET replica = %s, inherited = true WHERE replica = %s",
                            (self.replica_id, peer))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        finally:
            cur.execute(f"SELECT pg_advisory_unlock({REPLICA_KEY})", (peer,))
        return taken

    def adopt_unowned(self) -> list[str]:
        """Unfinished activations without an owner (written by a gateway before replicas existed):
        this replica's now, oldest first."""
        self.check()
        cur = self._cursor()
        cur.execute(f"UPDATE {ACTIVATIONS} SET owner = %s WHERE owner = '' AND state IN (%s, %s) "
                    "RETURNING id, created_at", (self.replica_id, *UNFINISHED))
        return [r[0] for r in sorted(cur.fetchall(), key=lambda r: (r[1], r[0]))]

    def release(self) -> None:
        """Let go: the session ends, and with it the lock (a peer takes over what is left)."""
        self.lost = True
        self._close()

    # -- any thread ------------------------------------------------------------------------------
    def valid(self) -> bool:
        return not self.lost and time.monotonic() < self._valid_until

    def check(self) -> None:
        """:class:`FencedError` unless the lease is held and current."""
        if not self.valid():
            raise FencedError(
                f"this gateway (replica {self.replica_id}) no longer holds its journal lease; another replica "
                "may have taken its work over: it writes nothing and touches no device", phase=Phase.JOURNAL)

    # -- internals ---------------------------------------------------------------------------------
    def _lose(self) -> bool:
        self.lost = True
        self._close()
        return False

    def _cursor(self) -> Any:
        if self._raw is None:
            if self.lost:
                raise FencedError("the journal lease is lost", phase=Phase.JOURNAL)
            self._raw = open_dedicated(self.engine, lease_s=self.lease_s)
        return self._raw.dbapi_connection.cursor()

    def _close(self) -> None:
        raw, self._raw = self._raw, None
        close_quietly(raw)


def fence_sql() -> str:
    """The statement a write batch runs first (bound to its replica id): alive, the row
    share-locked until commit."""
    return f"SELECT alive FROM {REPLICAS} WHERE id = %s FOR SHARE"


__all__ = ["LOCAL_SHARE", "ReplicaLease", "close_quietly", "fence_sql", "open_dedicated", "REPLICA_KEY"]
