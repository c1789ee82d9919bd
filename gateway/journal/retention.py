"""Retention: deleting old final activations with their tasks and events, a bounded step at a time.

An activation may be pruned when its state is final (completed, partial, failed, cancelled,
rolledBack: never acknowledged, inProgress or fallout), none of its tasks waits in fallout, and it
was last updated before the cutoff. A :class:`Prune` operation goes through the journal's one
writer like every other write (queued, FIFO), so it never races the writer's cache: each step is
ONE short transaction deleting at most ``max_activations`` activations and about ``max_tasks``
tasks (at least one activation), and writes queued meanwhile go before the next step.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.journal.schema import activations, deliveries, events, outbox, stored_time, tasks
from gateway.model import TaskState
from gateway.results import ActivationState

PRUNABLE_STATES: tuple[str, ...] = tuple(s.value for s in ActivationState if s.final)
"""completed, partial, failed, cancelled, rolledBack."""


@dataclass(slots=True, kw_only=True)
class Prune:
    """A queued prune step: delete up to ``max_activations`` prunable activations."""

    cutoff: datetime
    max_activations: int
    max_tasks: int
    future: asyncio.Future[Any] = field(repr=False)


def prunable(cutoff: datetime) -> sa.ColumnElement[bool]:
    a = activations.c
    in_fallout = sa.exists().where(tasks.c.activation_id == a.id, tasks.c.state == TaskState.FALLOUT.value)
    return sa.and_(a.state.in_(PRUNABLE_STATES), a.updated_at < stored_time(cutoff), ~in_fallout)


def count(conn: Connection, cutoff: datetime) -> int:
    """How many activations a prune at ``cutoff`` would delete now."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(activations).where(prunable(cutoff))).scalar_one())


def prune_step(engine: Engine, op: Prune) -> list[str]:
    """ONE transaction: the oldest prunable activations (at most ``op.max_activations``; no more
    tasks than ``op.max_tasks`` unless the first alone has more), deleted with their tasks,
    events, result events and deliveries. Returns their ids. SQLite takes the write lock up front
    (BEGIN IMMEDIATE); PostgreSQL locks the chosen rows (FOR UPDATE re-checks them against a
    concurrent writer)."""
    a = activations.c
    with engine.connect() as conn:
        conn.execution_options(agw_write=True)
        with conn.begin():
            q = (sa.select(a.id).where(prunable(op.cutoff)).order_by(a.updated_at, a.id)
                 .limit(op.max_activations).with_for_update(of=activations))
            ids = [r.id for r in conn.execute(q)]
            if not ids:
                return []
            sizes: dict[str, int] = dict(conn.execute(sa.select(tasks.c.activation_id, sa.func.count())
                                      .where(tasks.c.activation_id.in_(ids)).group_by(tasks.c.activation_id)).all())
            chosen: list[str] = []
            budget = op.max_tasks
            for aid in ids:
                n = int(sizes.get(aid, 0))
                if chosen and n > budget:
                    break
                chosen.append(aid)
                budget -= n
            # children first: the same with or without ON DELETE CASCADE being enforced
            of_chosen = sa.select(outbox.c.id).where(outbox.c.activation_id.in_(chosen)).scalar_subquery()
            conn.execute(sa.delete(deliveries).where(deliveries.c.event_id.in_(of_chosen)))
            conn.execute(sa.delete(outbox).where(outbox.c.activation_id.in_(chosen)))
            conn.execute(sa.delete(events).where(events.c.activation_id.in_(chosen)))
            conn.execute(sa.delete(tasks).where(tasks.c.activation_id.in_(chosen)))
            conn.execute(sa.delete(activations).where(a.id.in_(chosen)))
            return chosen


__all__ = ["PRUNABLE_STATES", "Prune", "count", "prunable", "prune_step"]
