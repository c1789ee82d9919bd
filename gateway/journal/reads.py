"""The hot reads (``get`` of one activation, its ``events``) in plain SQL on a DB-API cursor.

``Get`` and ``Watch`` read an activation once or twice per activation; through SQLAlchemy's
statement path that cost ~0.4 ms of CPU each, several times what SQLite itself spends. Each read
is ONE statement, so it sees one snapshot on both backends without an explicit transaction.
Values come back as the SQLAlchemy path gives them (aware UTC datetimes, bools, decoded JSON).
``get`` adds a second statement for the audit trail (the events a caller's call made).
The rarer reads (list, fallout, recovery, unfinished) stay on SQLAlchemy Core in ``sql.py``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from gateway.engine.views import ActivationResult, ActivationState, AuditEntry, Event
from gateway.journal import codec
from gateway.journal.schema import activations, events, tasks

_ACT_COLUMNS = (
    "id", "request_id", "order_ref", "atomic", "state", "created_at", "updated_at", "dry_run", "submitted_by",
)
_TASK_COLUMNS = (
    "task_id", "device", "service", "action", "state", "depends_on", "platform", "driver", "rendered", "diff",
    "verification", "rollback", "error", "timings", "note",
)
_EVENT_COLUMNS = ("activation_id", "seq", "time", "task_id", "phase", "state", "message", "actor")
_AUDIT_COLUMNS = ("time", "actor", "phase", "task_id", "message")


def _marks(paramstyle: str) -> str:
    return "?" if paramstyle == "qmark" else "%s"


def activation_sql(paramstyle: str) -> str:
    """One activation with its tasks in order (a LEFT JOIN: an activation without tasks too)."""
    cols = ", ".join([f"a.{c}" for c in _ACT_COLUMNS] + [f"t.{c}" for c in _TASK_COLUMNS])
    return (
        f"SELECT {cols} FROM {activations.name} a LEFT JOIN {tasks.name} t ON t.activation_id = a.id "
        f"WHERE a.id = {_marks(paramstyle)} ORDER BY t.position"
    )


def audit_sql(paramstyle: str) -> str:
    """The events of one activation that a caller's call made (actor set), in order."""
    return (
        f"SELECT {', '.join(_AUDIT_COLUMNS)} FROM {events.name} WHERE activation_id = {_marks(paramstyle)} "
        "AND actor <> '' ORDER BY seq"
    )


def audit_entry(time: Any, actor: str, phase: str, task_id: str, message: str) -> AuditEntry:
    """An audit entry from an event a caller's call made: the first event is the submit."""
    return AuditEntry(time=utc_time(time), actor=actor, action=phase or "submit", task_id=task_id, note=message)


def events_sql(paramstyle: str) -> str:
    m = _marks(paramstyle)
    return (
        f"SELECT {', '.join(_EVENT_COLUMNS)} FROM {events.name} WHERE activation_id = {m} AND seq > {m} ORDER BY seq"
    )


def utc_time(value: Any) -> datetime:
    """A stored time as an aware UTC datetime (SQLite keeps naive UTC text, PostgreSQL timestamptz)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a stored time: {value!r}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def load_activation(cur: Any, sql: str, audit_sql: str, activation_id: str) -> ActivationResult | None:
    cur.execute(sql, (activation_id,))
    rows = cur.fetchall()
    if not rows:
        return None
    cur.execute(audit_sql, (activation_id,))
    audit = tuple(audit_entry(*r) for r in cur.fetchall())
    n = len(_ACT_COLUMNS)
    first = rows[0]
    task_results = tuple(
        codec.decode_task(dict(zip(_TASK_COLUMNS, row[n:], strict=True))) for row in rows if row[n] is not None
    )
    return ActivationResult(
        id=first[0],
        request_id=first[1],
        order_ref=first[2],
        atomic=bool(first[3]),
        state=ActivationState(first[4]),
        created_at=utc_time(first[5]),
        updated_at=utc_time(first[6]),
        dry_run=bool(first[7]),
        tasks=task_results,
        submitted_by=first[8],
        audit=audit,
    )


def load_events(cur: Any, sql: str, activation_id: str, after_seq: int) -> list[Event]:
    cur.execute(sql, (activation_id, after_seq))
    return [
        Event(activation_id=r[0], seq=r[1], time=utc_time(r[2]), task_id=r[3], phase=r[4], state=r[5], message=r[6],
              actor=r[7])
        for r in cur.fetchall()
    ]


__all__ = ["activation_sql", "audit_entry", "audit_sql", "events_sql", "load_activation", "load_events", "utc_time"]
