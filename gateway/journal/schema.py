"""The journal's one schema, for SQLite and PostgreSQL alike (SQLAlchemy Core).

::

    activations  id PK, request_id, idem_key UNIQUE (the request_id scoped to its caller, NULL for dry
                 runs), fingerprint, order_ref, atomic, dry_run, state, created_at, updated_at,
                 last_seq, submitted_by, owner (the replica running it; "" on SQLite),
                 retry (its own retry policy: the fields given, JSON)
    tasks        (activation_id, task_id) PK, position, device, service, action, state, depends_on,
                 platform, driver, rendered, diff, verification, rollback, error, timings, note,
                 recovery, emulated, parameters (masked)           nested values are JSON text
    events       (activation_id, seq) PK, time, task_id, phase, state, message, actor
    agw_replicas       id PK, holder, started_at, alive, ended_at, taken_over_by
                       the gateways sharing a PostgreSQL journal (:mod:`gateway.journal.lease`)
    agw_device_leases  device PK, replica, owner, inherited, since
                       which replica may change a device now (:mod:`gateway.journal.cluster`)
    agw_outbox         id PK (the event id), activation_id, seq, type, time, payload, fanned,
                       position UNIQUE (the feed's order: the commit order of the events)
                       a result event, written with the state change (:mod:`gateway.journal.outbox`)
    agw_sequences      name PK, value     counters that never go back (``outbox``: the last position)
    agw_deliveries     (event_id, subscriber) PK, state, attempts, next_attempt_at, started_at,
                       last_error, last_status, delivered_at     one per event and subscriber
                       (:mod:`gateway.journal.deliveries`, :mod:`gateway.events`)
    agw_pools          name PK, kind, spec (JSON), lo, hi, created_at, updated_at     a resource pool
    agw_pool_free      (pool, lo) PK, hi, span     the pool's free ranges (:mod:`gateway.journal.pools`)
    agw_allocations    id PK, pool, lo, hi, value, activation_id, task_id, param, state
                       (allocated | released), allocated_at, released_at, release_activation,
                       release_task     one value handed out (kept when its activation is pruned)
    schema_version  version PK, applied_at

Times are stored in UTC; :class:`UtcDateTime` hands back timezone-aware datetimes on both backends.

Versions: 1 (first); 2 adds ``activations.submitted_by`` and ``events.actor`` (the caller
identities of the audit trail); 3 adds ``tasks.emulated`` (JSON list of what the gateway emulated
for a task, ``'[]'`` on older rows); 4 adds ``activations.owner`` and the replica tables (several
gateways on one PostgreSQL journal), and drops ``agw_owner`` (one active gateway's epoch); 5 adds
``agw_outbox.position`` (numbered in the order of the events' times on an older journal) and
``agw_sequences``; 6 adds ``tasks.parameters`` (the task's parameters as submitted, JSON, every
secret parameter masked; ``'{}'`` on older rows) and ``activations.retry`` (the activation's own
retry policy: the fields given, JSON); 7 adds the resource pools (``agw_pools``,
``agw_pool_free``, ``agw_allocations``: :mod:`gateway.journal.pools`). :data:`MIGRATIONS` upgrades
an older journal in place.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy import (
    BigInteger,
    BindParameter,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
)
from sqlalchemy.engine import Connection
from sqlalchemy.types import NullType, TypeDecorator

from gateway.errors import JournalError, Phase

SCHEMA_VERSION = 7


def _outbox_positions(conn: Connection) -> None:
    """Version 5: ``agw_outbox.position``. A journal from before version 4 got the table with the
    column from ``create_all`` (nothing to do); a version 4 one numbers its events by time, then id."""
    if "position" in {c["name"] for c in sa.inspect(conn).get_columns("agw_outbox")}:
        return
    conn.exec_driver_sql("ALTER TABLE agw_outbox ADD COLUMN position BIGINT NOT NULL DEFAULT 0")
    conn.exec_driver_sql(
        "UPDATE agw_outbox SET position = (SELECT COUNT(*) FROM agw_outbox o WHERE o.time < agw_outbox.time "
        "OR (o.time = agw_outbox.time AND o.id <= agw_outbox.id))")
    conn.exec_driver_sql("CREATE UNIQUE INDEX ix_agw_outbox_position ON agw_outbox (position)")


def _pool_tables(conn: Connection) -> None:
    """Version 7: the pool tables are new (``create_all`` made them, empty, before the upgrade
    runs); check they are there, so a half-made schema stops the upgrade instead of the first Submit."""
    found = set(sa.inspect(conn).get_table_names())
    missing = sorted({"agw_pools", "agw_pool_free", "agw_allocations"} - found)
    if missing:
        raise JournalError(f"journal upgrade to version 7: table(s) {', '.join(missing)} missing", phase=Phase.JOURNAL,
                           retryable=False)


Migration = str | Callable[[Connection], None]
MIGRATIONS: dict[int, tuple[Migration, ...]] = {
    2: (
        "ALTER TABLE agw_activations ADD COLUMN submitted_by VARCHAR NOT NULL DEFAULT ''",
        "ALTER TABLE agw_events ADD COLUMN actor VARCHAR NOT NULL DEFAULT ''",
    ),
    3: ("ALTER TABLE agw_tasks ADD COLUMN emulated TEXT NOT NULL DEFAULT '[]'",),
    4: (
        "ALTER TABLE agw_activations ADD COLUMN owner VARCHAR NOT NULL DEFAULT ''",
        "DROP TABLE IF EXISTS agw_owner",
    ),
    5: (_outbox_positions,),  # agw_sequences is new: create_all makes it (setup fills its row)
    6: ("ALTER TABLE agw_tasks ADD COLUMN parameters TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE agw_activations ADD COLUMN retry TEXT NOT NULL DEFAULT '{}'"),
    7: (_pool_tables,),
}
"""Statements (or functions of the connection) that take a journal from version N-1 to N (the same
on SQLite and PostgreSQL)."""


def idem_key(request_id: str, submitted_by: str) -> str:
    """The stored idempotency key: a request id is unique per caller identity. Without an
    identity it is the request id itself (what version 1 stored); request ids and identities
    hold no line feed (refused at the edge), so the two forms never collide."""
    return f"{submitted_by}\n{request_id}" if submitted_by else request_id


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out. SQLite keeps naive UTC text (sortable)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be journaled")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class StoredTime(UtcDateTime):
    """A time to compare with stored ones (``column < stored_time(t)``): bound exactly as the writer
    (:mod:`gateway.journal.batch`) stores times. On SQLite the writer hands the naive UTC datetime
    to the sqlite3 driver, whose adapter writes ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (no fraction when
    it is zero); SQLAlchemy's own SQLite binding always writes six digits, so the same instant on a
    whole second would compare unequal. (If the writer ever binds through SQLAlchemy, drop this.)"""

    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return NullType()  # no processor of its own: the driver adapts the naive datetime
        return super().load_dialect_impl(dialect)


def stored_time(value: datetime) -> BindParameter[datetime]:
    return bindparam(None, value, type_=StoredTime())


metadata = MetaData()

activations = Table(
    "agw_activations",
    metadata,
    Column("id", String, primary_key=True),
    Column("request_id", String, nullable=False),
    Column("idem_key", String, nullable=True, unique=True),
    Column("fingerprint", String, nullable=False),
    Column("order_ref", String, nullable=False),
    Column("atomic", Boolean, nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("state", String, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("submitted_by", String, nullable=False, server_default=""),
    Column("owner", String, nullable=False, server_default=""),
    Column("retry", Text, nullable=False, server_default="{}"),
    Index("ix_agw_activations_state", "state"),
    Index("ix_agw_activations_created_at", "created_at"),
)

tasks = Table(
    "agw_tasks",
    metadata,
    Column("activation_id", String, ForeignKey("agw_activations.id", ondelete="CASCADE"), primary_key=True),
    Column("task_id", String, primary_key=True),
    Column("position", Integer, nullable=False),
    Column("device", String, nullable=False),
    Column("service", String, nullable=False),
    Column("action", String, nullable=False),
    Column("state", String, nullable=False),
    Column("depends_on", Text, nullable=False),
    Column("platform", String, nullable=False),
    Column("driver", String, nullable=False),
    Column("rendered", Text, nullable=False),
    Column("diff", Text, nullable=False),
    Column("verification", Text, nullable=True),
    Column("rollback", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("timings", Text, nullable=False),
    Column("note", Text, nullable=False),
    Column("recovery", Text, nullable=False),
    Column("emulated", Text, nullable=False, server_default="[]"),
    Column("parameters", Text, nullable=False, server_default="{}"),
    Index("ix_agw_tasks_device", "device"),
    Index("ix_agw_tasks_state", "state"),
)

events = Table(
    "agw_events",
    metadata,
    Column("activation_id", String, ForeignKey("agw_activations.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("time", UtcDateTime, nullable=False),
    Column("task_id", String, nullable=False),
    Column("phase", String, nullable=False),
    Column("state", String, nullable=False),
    Column("message", Text, nullable=False),
    Column("actor", String, nullable=False, server_default=""),
)

replicas = Table(
    "agw_replicas",
    metadata,
    Column("id", String, primary_key=True),
    Column("holder", String, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("alive", Boolean, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
    Column("taken_over_by", String, nullable=False, server_default=""),
)
"""PostgreSQL: every gateway process that ran on the journal. ``alive`` is the fence: a replica
writes only while its row says so, and the one replica that takes its work over sets it false."""

device_leases = Table(
    "agw_device_leases",
    metadata,
    Column("device", String, primary_key=True),
    Column("replica", String, nullable=False),
    Column("owner", String, nullable=False),
    Column("inherited", Boolean, nullable=False),
    Column("since", UtcDateTime, nullable=False),
)
"""PostgreSQL: the replica that may change a device now (one row per held device). ``inherited``:
taken over from a dead replica, kept for the recovery of its activations."""

outbox = Table(
    "agw_outbox",
    metadata,
    Column("id", String, primary_key=True),
    Column("activation_id", String, ForeignKey("agw_activations.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", String, nullable=False),
    Column("time", UtcDateTime, nullable=False),
    Column("payload", Text, nullable=False),
    Column("fanned", Boolean, nullable=False),
    Column("position", BigInteger, nullable=False, server_default="0"),
    Index("ix_agw_outbox_fanned", "fanned", "time"),
    Index("ix_agw_outbox_activation_id", "activation_id"),
    Index("ix_agw_outbox_position", "position", unique=True),
)
"""Result events: one row per end state an activation reaches, inserted in the transaction that
records it (the payload built there, from the activation's rows). ``fanned``: the dispatcher has
made its delivery rows (one per matching subscriber). ``position``: 1, 2, 3, … in the order the
events were committed, from the ``outbox`` row of :data:`sequences` (taken in the inserting
transaction and held to its commit: on PostgreSQL a concurrent replica waits, so a reader that sees
position n has seen every position before it); never given twice, pruning or not."""

sequences = Table(
    "agw_sequences",
    metadata,
    Column("name", String, primary_key=True),
    Column("value", BigInteger, nullable=False),
)
"""Counters that only grow: ``outbox`` is the last :data:`outbox` position given."""

OUTBOX_SEQUENCE = "outbox"

deliveries = Table(
    "agw_deliveries",
    metadata,
    Column("event_id", String, ForeignKey("agw_outbox.id", ondelete="CASCADE"), primary_key=True),
    Column("subscriber", String, primary_key=True),
    Column("state", String, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("last_status", Integer, nullable=True),
    Column("delivered_at", UtcDateTime, nullable=True),
    Index("ix_agw_deliveries_due", "state", "next_attempt_at"),
)
"""One event to one subscriber: ``pending`` (due at ``next_attempt_at``; a claimed attempt pushes it
past the attempt's time limit), ``delivered`` or ``dead``. ``started_at``: when the retry window
began (the fan-out, or the last replay)."""

POOL_KEY = String(32).with_variant(String(32, collation="C"), "postgresql")
"""A stored bound: 32 lower-case hex digits (:func:`gateway.resources.pools.key`); byte order on
PostgreSQL (its text order is then the numeric order, whatever the database's collation)."""

pools = Table(
    "agw_pools",
    metadata,
    Column("name", String, primary_key=True),
    Column("kind", String, nullable=False),
    Column("spec", Text, nullable=False),
    Column("lo", POOL_KEY, nullable=False),
    Column("hi", POOL_KEY, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
"""A resource pool (:mod:`gateway.resources`): its kind, definition (JSON) and bounds. Its row is
locked (FOR UPDATE on PostgreSQL) by every transaction that allocates from it or gives back to it."""

pool_free = Table(
    "agw_pool_free",
    metadata,
    Column("pool", String, primary_key=True),
    Column("lo", POOL_KEY, primary_key=True),
    Column("hi", POOL_KEY, nullable=False),
    Column("span", Integer, nullable=False),
    Index("ix_agw_pool_free_hi", "pool", "hi"),
)
"""A pool's free ranges ``[lo, hi]``, disjoint; ``span`` = floor(log2(size)) (a search for a block of
2**k reads only ranges with span >= k)."""

allocations = Table(
    "agw_allocations",
    metadata,
    Column("id", String, primary_key=True),
    Column("pool", String, nullable=False),
    Column("lo", POOL_KEY, nullable=False),
    Column("hi", POOL_KEY, nullable=False),
    Column("value", String, nullable=False),
    Column("activation_id", String, nullable=False),
    Column("task_id", String, nullable=False),
    Column("param", String, nullable=False),
    Column("state", String, nullable=False),
    Column("allocated_at", UtcDateTime, nullable=False),
    Column("released_at", UtcDateTime, nullable=True),
    Column("release_activation", String, nullable=False, server_default=""),
    Column("release_task", String, nullable=False, server_default=""),
    Index("ix_agw_allocations_activation", "activation_id"),
    Index("ix_agw_allocations_release", "release_activation"),
    Index("ix_agw_allocations_pool", "pool", "state", "lo"),
)
"""One value handed out: by the task (``activation_id``, ``task_id``) at the parameter ``param``;
``allocated`` until given back (``released``). ``release_activation``/``release_task``: the delete
task that names it; it is given back when that task completes. No foreign key: an allocation in use
outlives the pruning of the activation that made it."""

schema_version = Table(
    "agw_schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

__all__ = [
    "MIGRATIONS",
    "POOL_KEY",
    "allocations",
    "pool_free",
    "pools",
    "OUTBOX_SEQUENCE",
    "SCHEMA_VERSION",
    "StoredTime",
    "UtcDateTime",
    "activations",
    "deliveries",
    "events",
    "idem_key",
    "device_leases",
    "metadata",
    "outbox",
    "replicas",
    "schema_version",
    "sequences",
    "stored_time",
    "tasks",
]
