"""What `agw report` reads of the journal: the activations created in a window, their tasks, and
the events that tell a KPI something (the end, fallout, repairs and people's actions), in three
statements. Plain frozen rows; the figures are computed by :mod:`gateway.report`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.journal.codec import decode_error, decode_rollback, utc_time
from gateway.journal.schema import activations, events, stored_time, tasks

ACTION_PHASES = ("retry", "force", "resolve", "rollback", "recover", "cancel")
"""Event phases of repairs and people's actions (an activation with one is not first-time-right)."""

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class KpiActivation:
    id: str
    order_ref: str
    state: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class KpiTask:
    activation_id: str
    task_id: str
    device: str
    service: str
    platform: str
    state: str
    reason: str  # why it is (or was last) in fallout or failed: the rollback's reason, else the error's message


@dataclass(frozen=True, slots=True)
class KpiEvent:
    activation_id: str
    seq: int
    time: datetime
    task_id: str
    phase: str
    state: str
    message: str


@dataclass(frozen=True, slots=True)
class KpiRows:
    activations: tuple[KpiActivation, ...]
    tasks: tuple[KpiTask, ...]
    events: tuple[KpiEvent, ...]


def _reason(rollback: str | None, error: str | None) -> str:
    """The rollback's reason, else the error's message (decoded by the journal's one codec)."""
    view = decode_rollback(rollback)
    if view is not None and view.reason:
        return view.reason
    err = decode_error(error)
    return err.message if err is not None else ""


def read_kpi_rows(conn: Connection, since: datetime, until: datetime) -> KpiRows:
    acts = [
        KpiActivation(id=r.id, order_ref=r.order_ref, state=r.state, created_at=utc_time(r.created_at),
                      updated_at=utc_time(r.updated_at))
        for r in conn.execute(
            sa.select(activations.c.id, activations.c.order_ref, activations.c.state, activations.c.created_at,
                      activations.c.updated_at)
            .where(activations.c.created_at >= stored_time(since), activations.c.created_at < stored_time(until),
                   activations.c.dry_run.is_(False))
            .order_by(activations.c.created_at, activations.c.id))
    ]
    ids = [a.id for a in acts]
    task_rows: list[KpiTask] = []
    event_rows: list[KpiEvent] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        for r in conn.execute(
                sa.select(tasks.c.activation_id, tasks.c.task_id, tasks.c.device, tasks.c.service, tasks.c.platform,
                          tasks.c.state, tasks.c.rollback, tasks.c.error)
                .where(tasks.c.activation_id.in_(chunk)).order_by(tasks.c.activation_id, tasks.c.position)):
            task_rows.append(KpiTask(activation_id=r.activation_id, task_id=r.task_id, device=r.device,
                                     service=r.service, platform=r.platform, state=r.state,
                                     reason=_reason(r.rollback, r.error)))
        for e in conn.execute(
                sa.select(events.c.activation_id, events.c.seq, events.c.time, events.c.task_id, events.c.phase,
                          events.c.state, events.c.message)
                .where(events.c.activation_id.in_(chunk),
                       sa.or_(events.c.phase.in_(ACTION_PHASES + ("end", "rollback_verify")),
                              events.c.state == "fallout"))
                .order_by(events.c.activation_id, events.c.seq)):
            event_rows.append(KpiEvent(activation_id=e.activation_id, seq=e.seq, time=utc_time(e.time),
                                       task_id=e.task_id, phase=e.phase, state=e.state, message=e.message))
    return KpiRows(activations=tuple(acts), tasks=tuple(task_rows), events=tuple(event_rows))


__all__ = ["ACTION_PHASES", "KpiActivation", "KpiEvent", "KpiRows", "KpiTask", "read_kpi_rows"]
