"""The journal's one schema, for SQLite and PostgreSQL alike (SQLAlchemy Core).

::

    activations  id PK, request_id, idem_key UNIQUE (the request_id scoped to its caller, NULL for dry
                 runs), fingerprint, order_ref, atomic, dry_run, state, created_at, updated_at,
                 last_seq, submitted_by
    tasks        (activation_id, task_id) PK, position, device, service, action, state, depends_on,
                 platform, driver, rendered, diff, verification, rollback, error, timings, note,
                 recovery, emulated                                nested values are JSON text
    events       (activation_id, seq) PK, time, task_id, phase, state, message, actor
    agw_owner    id PK (one row), epoch, holder, since     the active gateway's fencing epoch (PostgreSQL)
    schema_version  version PK, applied_at

Times are stored in UTC; :class:`UtcDateTime` hands back timezone-aware datetimes on both backends.

Versions: 1 (first); 2 adds ``activations.submitted_by`` and ``events.actor`` (the caller
identities of the audit trail); 3 adds ``tasks.emulated`` (JSON list of what the gateway emulated
for a task, ``'[]'`` on older rows). :data:`MIGRATIONS` upgrades an older journal in place.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
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
from sqlalchemy.types import NullType, TypeDecorator

SCHEMA_VERSION = 3

MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        "ALTER TABLE agw_activations ADD COLUMN submitted_by VARCHAR NOT NULL DEFAULT ''",
        "ALTER TABLE agw_events ADD COLUMN actor VARCHAR NOT NULL DEFAULT ''",
    ),
    3: ("ALTER TABLE agw_tasks ADD COLUMN emulated TEXT NOT NULL DEFAULT '[]'",),
}
"""Statements that take a journal from version N-1 to N (the same on SQLite and PostgreSQL)."""


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

owner = Table(
    "agw_owner",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("epoch", Integer, nullable=False),
    Column("holder", String, nullable=False),
    Column("since", UtcDateTime, nullable=False),
)
"""PostgreSQL: the active gateway's fencing epoch (one row; :mod:`gateway.journal.lease`)."""

schema_version = Table(
    "agw_schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "StoredTime",
    "UtcDateTime",
    "activations",
    "events",
    "idem_key",
    "metadata",
    "owner",
    "schema_version",
    "stored_time",
    "tasks",
]
