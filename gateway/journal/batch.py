"""One group-commit transaction: the queued writes of many callers applied together.

Runs in the journal's thread. Reads what the batch needs in one query per table (activations
locked FOR UPDATE on PostgreSQL; SQLite holds the write lock from BEGIN IMMEDIATE), applies every
operation in memory in order (sequence numbers, task fields, recovery merges), then writes with
a few executemany statements. An operation that cannot apply (unknown activation or task, a
request_id conflict) gets its own exception as outcome and leaves the others untouched.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.engine.views import ActivationState, Event
from gateway.errors import ConflictError, NotFoundError, Phase
from gateway.journal.schema import activations, events, tasks


@dataclass(slots=True, kw_only=True)
class Create:
    """A queued ``create_activation``: validated column values and the caller's future."""

    activation_id: str
    request_id: str
    fingerprint: str
    order_ref: str
    atomic: bool
    dry_run: bool
    task_rows: list[dict[str, Any]]
    created_at: datetime
    future: asyncio.Future[Any] = field(repr=False)


@dataclass(slots=True, kw_only=True)
class Record:
    """A queued ``record``: validated column values and the caller's future."""

    activation_id: str
    task_id: str
    phase: str
    state: str
    message: str
    task_cols: dict[str, Any]
    activation_state: str | None
    recovery: dict[str, Any] | None
    time: datetime
    future: asyncio.Future[Any] = field(repr=False)


Op = Create | Record


@dataclass(slots=True)
class _ActivationRow:
    state: str
    last_seq: int
    updated_at: datetime | None = None  # set when the batch changed the row


def apply_batch(engine: Engine, batch: Sequence[Op]) -> list[Any]:
    """Apply ``batch`` in ONE transaction; per-operation outcomes (a result or an exception), in order.

    Database errors propagate (the caller translates them and retries one by one).
    """
    outcomes: list[Any] = []
    with engine.connect() as plain, plain.execution_options(agw_write=True).begin() as txn:
        conn = txn.connection
        record_ids = sorted({op.activation_id for op in batch if isinstance(op, Record)})
        acts: dict[str, _ActivationRow] = {}
        recs: dict[tuple[str, str], dict[str, Any]] = {}
        if record_ids:
            q = (
                sa.select(activations.c.id, activations.c.state, activations.c.last_seq)
                .where(activations.c.id.in_(record_ids))
                .with_for_update()
            )
            acts = {r.id: _ActivationRow(r.state, r.last_seq) for r in conn.execute(q)}
            q2 = sa.select(tasks.c.activation_id, tasks.c.task_id, tasks.c.recovery).where(
                tasks.c.activation_id.in_(record_ids)
            )
            recs = {(r.activation_id, r.task_id): json.loads(r.recovery) for r in conn.execute(q2)}
        event_rows: list[dict[str, Any]] = []
        task_updates: dict[tuple[str, str], dict[str, Any]] = {}
        for op in batch:
            if isinstance(op, Create):
                outcome = _create(conn, op, event_rows)
                if outcome == (op.activation_id, True):
                    acts[op.activation_id] = _ActivationRow(ActivationState.ACKNOWLEDGED.value, 1)
                    recs.update({(op.activation_id, r["task_id"]): {} for r in op.task_rows})
                outcomes.append(outcome)
                continue
            act = acts.get(op.activation_id)
            key = (op.activation_id, op.task_id)
            if act is None:
                outcomes.append(NotFoundError(f"activation {op.activation_id} not found", phase=Phase.JOURNAL))
                continue
            if op.task_id and key not in recs:
                outcomes.append(
                    NotFoundError(
                        f"task {op.task_id!r} not found in activation {op.activation_id}", phase=Phase.JOURNAL
                    )
                )
                continue
            act.last_seq += 1
            act.updated_at = op.time
            if op.activation_state is not None:
                act.state = op.activation_state
            event_rows.append(
                {
                    "activation_id": op.activation_id,
                    "seq": act.last_seq,
                    "time": op.time,
                    "task_id": op.task_id,
                    "phase": op.phase,
                    "state": op.state,
                    "message": op.message,
                }
            )
            if op.task_cols or op.recovery:
                changes = task_updates.setdefault(key, {})
                changes.update(op.task_cols)
                if op.recovery:
                    recs[key] = {**recs[key], **op.recovery}
                    changes["recovery"] = json.dumps(recs[key], separators=(",", ":"), ensure_ascii=False)
            outcomes.append(
                Event(
                    activation_id=op.activation_id,
                    seq=act.last_seq,
                    time=op.time,
                    task_id=op.task_id,
                    phase=op.phase,
                    state=op.state,
                    message=op.message,
                )
            )
        # events last: a failing event insert proves the task and activation updates roll back too
        _update_tasks(conn, task_updates)
        changed = [
            {"b_id": aid, "b_state": a.state, "b_seq": a.last_seq, "b_updated": a.updated_at}
            for aid, a in acts.items()
            if a.updated_at is not None
        ]
        if changed:
            stmt = (
                sa.update(activations)
                .where(activations.c.id == sa.bindparam("b_id"))
                .values(
                    state=sa.bindparam("b_state"), last_seq=sa.bindparam("b_seq"), updated_at=sa.bindparam("b_updated")
                )
            )
            conn.execute(stmt, changed)
        if event_rows:
            conn.execute(sa.insert(events), event_rows)
    return outcomes


def _create(conn: Connection, op: Create, event_rows: list[dict[str, Any]]) -> Any:
    if not op.dry_run:
        existing = conn.execute(
            sa.select(activations.c.id, activations.c.fingerprint).where(activations.c.idem_key == op.request_id)
        ).first()
        if existing is not None:
            if existing.fingerprint == op.fingerprint:
                return (existing.id, False)
            return ConflictError(
                f"request_id {op.request_id!r} was already used by activation {existing.id} with different content",
                phase=Phase.VALIDATE,
            )
    conn.execute(
        sa.insert(activations).values(
            id=op.activation_id,
            request_id=op.request_id,
            idem_key=None if op.dry_run else op.request_id,
            fingerprint=op.fingerprint,
            order_ref=op.order_ref,
            atomic=op.atomic,
            dry_run=op.dry_run,
            state=ActivationState.ACKNOWLEDGED.value,
            created_at=op.created_at,
            updated_at=op.created_at,
            last_seq=1,
        )
    )
    if op.task_rows:
        conn.execute(sa.insert(tasks), op.task_rows)
    event_rows.append(
        {
            "activation_id": op.activation_id,
            "seq": 1,
            "time": op.created_at,
            "task_id": "",
            "phase": "",
            "state": ActivationState.ACKNOWLEDGED.value,
            "message": "activation acknowledged",
        }
    )
    return (op.activation_id, True)


def _update_tasks(conn: Connection, updates: dict[tuple[str, str], dict[str, Any]]) -> None:
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for (aid, tid), changes in updates.items():
        cols = tuple(sorted(changes))
        params = {"b_aid": aid, "b_tid": tid, **{f"b_{c}": v for c, v in changes.items()}}
        by_columns.setdefault(cols, []).append(params)
    for cols, rows in by_columns.items():
        stmt = (
            sa.update(tasks)
            .where(tasks.c.activation_id == sa.bindparam("b_aid"), tasks.c.task_id == sa.bindparam("b_tid"))
            .values({c: sa.bindparam(f"b_{c}") for c in cols})
        )
        conn.execute(stmt, rows)


# -- reads -----------------------------------------------------------------------------------


__all__ = ["Create", "Op", "Record", "apply_batch"]
