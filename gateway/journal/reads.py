"""Every read of the journal, on its reader threads: :class:`Reader`.

The hot reads (``get`` of one activation, its ``events``: ``Get`` and ``Watch``) run plain SQL on
each reader thread's own DB-API connection; through SQLAlchemy's statement path they cost ~0.4 ms
of CPU each, several times what SQLite itself spends. Each is ONE statement, so it sees one
snapshot on both backends without an explicit transaction (``get`` adds a second one for the
audit trail: the events a caller's call made). The rarer reads (find by request id, the listings
and their pages, recovery records, unfinished activations, the prune count) run on SQLAlchemy
Core. Rows of both paths are decoded by the same functions (:mod:`gateway.journal.codec`), and
their errors leave through :func:`gateway.journal.dbcall.translated` (a DB-API error included).

On SQLite the reader threads are their own, beside the one writer (WAL); on PostgreSQL they are
the journal's pool threads.
"""

from __future__ import annotations

import builtins
import contextlib
import threading
from concurrent.futures import Executor
from datetime import datetime
from typing import Any, Callable, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.journal import codec, dbcall, paging, retention
from gateway.journal.kpi import KpiRows, read_kpi_rows
from gateway.journal.schema import activations, events, tasks
from gateway.results import ActivationResult, ActivationState, AuditEntry, Event, Page, TaskResult

T = TypeVar("T")

_UNFINISHED = (ActivationState.ACKNOWLEDGED.value, ActivationState.IN_PROGRESS.value)

# -- plain SQL of the hot reads -----------------------------------------------------------------------


def _marks(paramstyle: str) -> str:
    return "?" if paramstyle == "qmark" else "%s"


def activation_sql(paramstyle: str) -> str:
    """One activation with its tasks in order (a LEFT JOIN: an activation without tasks too)."""
    cols = ", ".join([f"a.{c}" for c in codec.ACTIVATION_COLUMNS] + [f"t.{c}" for c in codec.TASK_COLUMNS])
    return (
        f"SELECT {cols} FROM {activations.name} a LEFT JOIN {tasks.name} t ON t.activation_id = a.id "
        f"WHERE a.id = {_marks(paramstyle)} ORDER BY t.position"
    )


def audit_sql(paramstyle: str) -> str:
    """The events of one activation that a caller's call made (actor set), in order."""
    return (
        f"SELECT {', '.join(codec.AUDIT_COLUMNS)} FROM {events.name} WHERE activation_id = {_marks(paramstyle)} "
        "AND actor <> '' ORDER BY seq"
    )


def events_sql(paramstyle: str) -> str:
    m = _marks(paramstyle)
    return (
        f"SELECT {', '.join(codec.EVENT_COLUMNS)} FROM {events.name} WHERE activation_id = {m} AND seq > {m} "
        "ORDER BY seq"
    )


_N_ACT = len(codec.ACTIVATION_COLUMNS)


def load_activation(cur: Any, sql: str, audit_sql: str, activation_id: str) -> ActivationResult | None:
    """One activation on a DB-API cursor (:func:`activation_sql`, :func:`audit_sql`)."""
    cur.execute(sql, (activation_id,))
    rows = cur.fetchall()
    if not rows:
        return None
    cur.execute(audit_sql, (activation_id,))
    audit = [codec.decode_audit(r) for r in cur.fetchall()]
    found = [codec.decode_task(row[_N_ACT:]) for row in rows if row[_N_ACT] is not None]
    return codec.decode_activation(rows[0][:_N_ACT], found, audit)


def load_events(cur: Any, sql: str, activation_id: str, after_seq: int) -> list[Event]:
    cur.execute(sql, (activation_id, after_seq))
    return [codec.decode_event(r) for r in cur.fetchall()]


# -- SQLAlchemy Core reads ------------------------------------------------------------------------------

_ACT_COLS = tuple(activations.c[name] for name in codec.ACTIVATION_COLUMNS)
_TASK_COLS = tuple(tasks.c[name] for name in codec.TASK_COLUMNS)
_AUDIT_COLS = tuple(events.c[name] for name in codec.AUDIT_COLUMNS)


def load_activations(conn: Connection, ids: builtins.list[str]) -> builtins.list[ActivationResult]:
    """Activations with their tasks, in the order of ``ids`` (unknown ids are left out)."""
    if not ids:
        return []
    rows = {r[0]: r for r in conn.execute(sa.select(*_ACT_COLS).where(activations.c.id.in_(ids)))}
    by_activation: dict[str, builtins.list[TaskResult]] = {i: [] for i in ids}
    q = (sa.select(tasks.c.activation_id, *_TASK_COLS).where(tasks.c.activation_id.in_(ids))
         .order_by(tasks.c.activation_id, tasks.c.position))
    for t in conn.execute(q):
        by_activation[t[0]].append(codec.decode_task(t[1:]))
    audit: dict[str, builtins.list[AuditEntry]] = {}
    qa = (sa.select(events.c.activation_id, *_AUDIT_COLS).where(events.c.activation_id.in_(ids), events.c.actor != "")
          .order_by(events.c.activation_id, events.c.seq))
    for e in conn.execute(qa):
        audit.setdefault(e[0], []).append(codec.decode_audit(e[1:]))
    return [
        codec.decode_activation(r, by_activation[r[0]], audit.get(r[0], ()))
        for r in (rows.get(i) for i in ids)
        if r is not None
    ]


def read_list_page(conn: Connection, q: sa.Select[Any], filters: paging.ListFilters,
                   page_size: int) -> Page[ActivationResult]:
    """Run :func:`~gateway.journal.paging.list_query` and load its activations (in order) on one
    connection."""
    keys = conn.execute(q).all()
    more = len(keys) > page_size
    keys = keys[:page_size]
    found = load_activations(conn, [k.id for k in keys])  # one deleted meanwhile (PostgreSQL) is left out
    at = {k.id: k.created_at for k in keys}
    return Page(items=tuple(found), resume=tuple(paging.list_resume(filters, at[a.id], a.id) for a in found),
                more=more)


def read_fallout_page(conn: Connection, q: sa.Select[Any], page_size: int) -> Page[tuple[str, TaskResult]]:
    """Run :func:`~gateway.journal.paging.fallout_query`."""
    rows = conn.execute(q).all()
    more = len(rows) > page_size
    rows = rows[:page_size]
    return Page(
        items=tuple((r[0], codec.decode_task(r[3:])) for r in rows),
        resume=tuple(paging.fallout_resume(r[2], r[0], r[1]) for r in rows),
        more=more,
    )


class Reader:
    """The journal's reads on ``executor`` (its reader threads), against ``engine``."""

    def __init__(self, engine: Engine, executor: Executor) -> None:
        self.engine = engine
        self.executor = executor
        self._local = threading.local()  # per reader thread: its own DB-API connection
        self._conns: builtins.list[Any] = []  # all of them, released at close
        self._lock = threading.Lock()
        style = engine.dialect.paramstyle
        self._activation_sql = activation_sql(style)
        self._audit_sql = audit_sql(style)
        self._events_sql = events_sql(style)
        self.owner = ""
        """This gateway's replica id on a shared journal (whose unfinished activations it recovers)."""

    # -- how a read runs -----------------------------------------------------------------------
    async def run(self, fn: Callable[..., T], what: str, *args: Any) -> T:
        return await dbcall.call(self.executor, what, fn, *args, dialect=self.engine.dialect)

    async def core(self, fn: Callable[..., T], what: str, *args: Any) -> T:
        """``fn(connection, *args)`` on a SQLAlchemy connection of the pool."""
        engine = self.engine

        def in_connection(*a: Any) -> T:
            with engine.connect() as conn:
                return fn(conn, *a)

        return await self.run(in_connection, what, *args)

    async def plain(self, fn: Callable[..., T], what: str, *args: Any) -> T:
        """``fn(cursor, *args)`` on the reader thread's own DB-API connection (one statement per
        read); a lost connection is replaced next time, the error raised as it is (translated by
        :meth:`run`)."""
        engine = self.engine

        def in_raw(*a: Any) -> T:
            raw = getattr(self._local, "conn", None)
            if raw is None:
                raw = self._local.conn = engine.raw_connection()
                with self._lock:
                    self._conns.append(raw)
            dbapi_conn = raw.dbapi_connection
            assert dbapi_conn is not None
            cur = dbapi_conn.cursor()
            try:
                return fn(cur, *a)
            except engine.dialect.loaded_dbapi.Error as exc:
                if dbcall.invalidate_if_lost(raw, exc, cur, engine.dialect):  # a new connection next time
                    self._local.conn = None
                raise
            finally:
                with contextlib.suppress(Exception):
                    cur.close()
                with contextlib.suppress(Exception):
                    dbapi_conn.rollback()  # ends PostgreSQL's implicit read transaction

        return await self.run(in_raw, what, *args)

    def release(self) -> None:
        """Close the reader threads' own connections (at close, on any journal thread)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for raw in conns:
            with contextlib.suppress(Exception):
                raw.close()
        self._local = threading.local()

    # -- the reads -----------------------------------------------------------------------------
    async def get(self, activation_id: str) -> ActivationResult | None:
        return await self.plain(load_activation, "read", self._activation_sql, self._audit_sql, activation_id)

    async def events(self, activation_id: str, after_seq: int) -> builtins.list[Event]:
        return await self.plain(load_events, "read events", self._events_sql, activation_id, after_seq)

    async def find(self, idem_key: str) -> ActivationResult | None:
        """The activation holding the stored idempotency key ``idem_key``."""

        def query(conn: Connection) -> builtins.list[ActivationResult]:
            row = conn.execute(sa.select(activations.c.id).where(activations.c.idem_key == idem_key)).first()
            return [] if row is None else load_activations(conn, [row.id])

        found = await self.core(query, "read")
        return found[0] if found else None

    async def list_page(self, q: sa.Select[Any], filters: paging.ListFilters,
                        page_size: int) -> Page[ActivationResult]:
        return await self.core(read_list_page, "list", q, filters, page_size)

    async def fallout_page(self, q: sa.Select[Any], page_size: int) -> Page[tuple[str, TaskResult]]:
        return await self.core(read_fallout_page, "read fallout", q, page_size)

    async def recovery(self, activation_id: str, task_id: str) -> str | None:
        """The task's recovery record as stored (JSON text); None if the task is unknown."""
        q = sa.select(tasks.c.recovery).where(tasks.c.activation_id == activation_id, tasks.c.task_id == task_id)

        def query(conn: Connection) -> str | None:
            return conn.execute(q).scalar()

        return await self.core(query, "read recovery")

    async def kpi_rows(self, since: datetime, until: datetime) -> KpiRows:
        return await self.core(read_kpi_rows, "read report", since, until)

    async def count_tasks_in(self, state: str) -> int:
        q = sa.select(sa.func.count()).select_from(tasks).where(tasks.c.state == state)

        def query(conn: Connection) -> int:
            return int(conn.execute(q).scalar() or 0)

        return await self.core(query, "read")

    async def unfinished(self) -> builtins.list[str]:
        """Unfinished activations this gateway owns (on SQLite: all, the owner is always "")."""
        q = (
            sa.select(activations.c.id)
            .where(activations.c.state.in_(_UNFINISHED), activations.c.owner == self.owner)
            .order_by(activations.c.created_at, activations.c.id)
        )

        def query(conn: Connection) -> builtins.list[str]:
            return [r.id for r in conn.execute(q)]

        return await self.core(query, "read")

    async def count_prunable(self, cutoff: datetime) -> int:
        return await self.core(retention.count, "count prunable", cutoff)


__all__ = [
    "Reader",
    "activation_sql",
    "audit_sql",
    "events_sql",
    "load_activation",
    "load_activations",
    "load_events",
    "read_fallout_page",
    "read_list_page",
]
