"""One group-commit transaction: the queued writes of many callers applied together.

Runs in the journal's thread. The batch is first applied in memory, in order (sequence numbers,
task fields, recovery merges), then written with at most one statement per table and kind, on the
DB-API cursor with plain SQL (SQLAlchemy's statement path cost more CPU than SQLite itself):

* all events of the batch: ONE executemany INSERT;
* all changes of one task within the batch merged into ONE row update (later values win, recovery
  keys merged), tasks with the same changed columns in one executemany UPDATE;
* one UPDATE per changed activation (state, last_seq, updated_at), all in one executemany.
* per activation that ends: its rows read back and its event inserted (:mod:`gateway.journal.outbox`);
* resource pools (:mod:`gateway.journal.pools`): a Submit's allocations taken in the transaction that
  creates its activation; the allocations of a task given back in the transaction that records it
  ``failed``, ``cancelled`` or ``rolledBack`` (of every task when the activation ends so), and the
  ones a delete task names in the one that records it ``completed``.

What an activation looks like (state, last_seq, its task ids and recovery records) is cached in
memory (:class:`WriterCache`), so a warm batch reads nothing. The cache is checked, never trusted:
the activation UPDATE runs first and matches ``last_seq`` to the cached value (optimistic
concurrency). If another writer (a second process on the SQLite file, another replica on
PostgreSQL) moved an activation on, fewer rows match, the transaction is rolled back, the stale
entries are dropped and the batch runs again reading those activations (FOR UPDATE on PostgreSQL;
SQLite holds the write lock from BEGIN IMMEDIATE). The cache takes a batch's results only after
its commit. An operation that cannot apply (unknown activation or task, a request_id conflict)
gets its own exception as outcome and leaves the others untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import PoolProxiedConnection

from gateway.errors import AgwError, ConflictError, FencedError, JournalError, NotFoundError, Phase, StateError
from gateway.journal.dbcall import invalidate_if_lost, sqlalchemy_error
from gateway.journal import codec, outbox, pools
from gateway.journal.batch_sql import TASK_COLUMNS, Sql, sql_for
from gateway.journal.lease import fence_sql
from gateway.journal.schema import idem_key
from gateway.model import TaskState
from gateway.results import ActivationState, Event

_ACKNOWLEDGED = ActivationState.ACKNOWLEDGED.value
_COMPLETED = TaskState.COMPLETED.value
_ROLLBACK_START = "rollback"
"""The phase of the record that starts a Rollback RPC (a compare-and-set: ``expect`` is set)."""
_RELEASING = frozenset({TaskState.FAILED.value, TaskState.CANCELLED.value, TaskState.ROLLED_BACK.value})
"""The task (and activation) states that give a task's allocations back: its change is not on the
device. ``fallout`` keeps them (a person decides; resolving it makes the task failed)."""


@dataclass(slots=True, kw_only=True)
class Create:
    """A queued ``create_activation``: validated column values and the caller's future."""

    activation_id: str
    request_id: str
    submitted_by: str
    fingerprint: str
    order_ref: str
    atomic: bool
    dry_run: bool
    task_rows: list[dict[str, Any]]
    created_at: datetime
    future: asyncio.Future[Any] = field(repr=False)
    retry: str = "{}"
    """The activation's own retry policy (JSON of the fields given)."""
    allocations: Sequence[Any] = ()
    """Its :class:`~gateway.resources.params.AllocationRequest` s, taken in its transaction."""
    releases: Sequence[Any] = ()
    """Its :class:`~gateway.resources.params.ReleaseRequest` s, claimed in its transaction."""
    complete: Callable[[dict[Any, Any]], dict[int, Any]] | None = field(default=None, repr=False)
    """With allocations: given the values taken, the task results (by position) that replace
    those of ``task_rows`` (rendered with the real values); raises an InputError to refuse. Called
    in the transaction, again if the transaction is retried: the last call is the committed one."""


@dataclass(slots=True, kw_only=True)
class Record:
    """A queued :class:`~gateway.transitions.Transition`: its column values and the caller's future."""

    activation_id: str
    task_id: str
    phase: str
    state: str
    message: str
    actor: str
    task_cols: dict[str, Any]
    activation_state: str | None
    recovery: dict[str, Any] | None
    time: datetime
    future: asyncio.Future[Any] = field(repr=False)
    expect: frozenset[str] = frozenset()
    """The activation states it may be written in (empty: any): see Transition.expect."""


Op = Create | Record


@dataclass(slots=True)
class ActivationImage:
    """What the writer knows of one stored activation: enough to number and check records."""

    state: str
    last_seq: int
    recovery: dict[str, dict[str, Any]]
    """task id -> its recovery record (every task of the activation has an entry)."""
    pools: bool = False
    """It owns or claims allocations (:mod:`gateway.journal.pools`): its end may give them back."""


class WriterCache:
    """The writer's state between batches: its DB-API connection and the images of the last
    ``max_activations`` activations written (LRU).

    Used by the journal's writer only; entries are replaced after a commit, dropped on failure.
    """

    def __init__(self, *, max_activations: int = 4096) -> None:
        self.max_activations = max_activations
        self._images: OrderedDict[str, ActivationImage] = OrderedDict()
        self.stale = 0
        """Batches re-run because another writer moved an activation on (for tests)."""
        self.connection: PoolProxiedConnection | None = None
        """The writer's own pooled connection, kept between batches (see :meth:`release`)."""

    def release(self) -> None:
        """Give the writer's connection back to the pool (call in the journal thread)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()

    def get(self, activation_id: str) -> ActivationImage | None:
        image = self._images.get(activation_id)
        if image is not None:
            self._images.move_to_end(activation_id)
        return image

    def put(self, activation_id: str, image: ActivationImage) -> None:
        self._images[activation_id] = image
        self._images.move_to_end(activation_id)
        while len(self._images) > self.max_activations:
            self._images.popitem(last=False)

    def drop(self, activation_ids: Sequence[str]) -> None:
        for aid in activation_ids:
            self._images.pop(aid, None)

    def __len__(self) -> int:
        return len(self._images)


class _Reconnect(Exception):
    def __init__(self, error: sa_exc.DBAPIError) -> None:
        super().__init__(error)
        self.error = error


class _Stale(Exception):
    def __init__(self, activation_ids: list[str]) -> None:
        super().__init__(activation_ids)
        self.activation_ids = activation_ids


_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def apply_batch(engine: Engine, batch: Sequence[Op], *, cache: WriterCache | None = None,
                replica: str = "", fenced: bool = False) -> list[Any]:
    """Apply ``batch`` in ONE transaction; per-operation outcomes (a result or an exception), in order.

    ``cache`` (kept by the caller between batches) saves the reads; without it everything is read.
    ``replica``: the writer's replica id, the owner of what it writes ("": one gateway alone);
    ``fenced``: the transaction first reads the replica's row (:mod:`gateway.journal.lease`) and
    raises :class:`~gateway.errors.FencedError`, writing nothing, unless it is alive.
    Database errors propagate as SQLAlchemy errors (the caller translates them and retries one by one).
    """
    if cache is None:
        cache = WriterCache()
    stale = reconnects = 0
    while True:
        try:
            outcomes, images = _transaction(engine, batch, cache, replica, fenced)
        except _Stale as exc:
            cache.stale += 1
            cache.drop(exc.activation_ids)
            stale += 1
            if stale < 2:
                continue  # again, reading those activations under the write lock
            raise JournalError(
                "journal write lost a race with another writer twice", phase=Phase.JOURNAL, retryable=True
            ) from None
        except _Reconnect as exc:
            # the kept connection was dead before COMMIT was sent: nothing was written, go again
            reconnects += 1
            if reconnects < 2:
                continue
            raise exc.error from exc.error.orig
        except BaseException:
            cache.drop([op.activation_id for op in batch])
            raise
        for aid, image in images.items():
            cache.put(aid, image)
        return outcomes


def _transaction(
    engine: Engine, batch: Sequence[Op], cache: WriterCache, replica: str = "", fenced: bool = False
) -> tuple[list[Any], dict[str, ActivationImage]]:
    """One transaction on the writer's own pooled connection, straight on the DB-API (no
    SQLAlchemy per-statement or per-checkout work): BEGIN IMMEDIATE on SQLite (the write lock up
    front), an implicit BEGIN on PostgreSQL; commit; a DB-API error rolls back and is raised as the
    SQLAlchemy error it would have been (a lost connection is invalidated and replaced next time)."""
    sql = sql_for(engine.dialect)
    dbapi_error = engine.dialect.loaded_dbapi.Error
    if cache.connection is None:
        cache.connection = engine.raw_connection()
    raw = cache.connection
    dbapi_conn = raw.dbapi_connection
    assert dbapi_conn is not None
    cur: Any = None
    committing = False
    try:
        cur = dbapi_conn.cursor()
        if sql.begin:
            cur.execute(sql.begin)
        if fenced:
            _check_alive(cur, replica)
        result = _apply(cur, sql, batch, cache, replica)
        committing = True
        dbapi_conn.commit()
        return result
    except BaseException as exc:
        with contextlib.suppress(Exception):
            dbapi_conn.rollback()
        if not isinstance(exc, dbapi_error):
            raise
        invalid = invalidate_if_lost(raw, exc, cur, engine.dialect)
        if invalid:
            cache.connection = None
        error = sqlalchemy_error(exc, engine.dialect, invalidated=invalid)
        if invalid and not committing:
            raise _Reconnect(error) from exc
        raise error from exc  # a lost COMMIT stays an error: it may have been written
    finally:
        if cur is not None:
            with contextlib.suppress(Exception):
                cur.close()


def _check_alive(cur: Any, replica: str) -> None:
    cur.execute(fence_sql(), (replica,))
    row = cur.fetchone()
    if row is None or not row[0]:
        raise FencedError(
            f"journal write refused: replica {replica} lost its lease and was taken over; it writes nothing more",
            phase=Phase.JOURNAL)


def _apply(
    cur: Any, sql: Sql, batch: Sequence[Op], cache: WriterCache, replica: str = ""
) -> tuple[list[Any], dict[str, ActivationImage]]:
    # working images: copies of the cached ones (the cache changes only after the commit)
    work: dict[str, ActivationImage] = {}
    expected: dict[str, int] = {}  # activation id -> last_seq this transaction started from
    missing: list[str] = []
    for op in batch:
        aid = op.activation_id
        if isinstance(op, Record) and aid not in work:
            image = None if op.expect else cache.get(aid)  # a compare-and-set reads the stored state
            if image is None:
                missing.append(aid)
                work[aid] = None  # type: ignore[assignment]  # placeholder: read below
            else:
                work[aid] = ActivationImage(image.state, image.last_seq, dict(image.recovery), image.pools)
                expected[aid] = image.last_seq
    if missing:
        _read(cur, sql, missing, work, expected)
    work = {aid: image for aid, image in work.items() if image is not None}

    outcomes: list[Any] = []
    event_rows: list[tuple[Any, ...]] = []
    task_changes: dict[tuple[str, str], dict[str, Any]] = {}
    touched: dict[str, datetime] = {}  # activation id -> updated_at, for records
    ends: list[outbox.End] = []  # records that end an activation: their events go to the outbox
    owned: list[tuple[str, str]] = []  # (activation, task or "") whose allocations go back to their pools
    claimed: list[tuple[str, str]] = []  # completed delete tasks: the allocations they name go back
    for op in batch:
        if isinstance(op, Create):
            outcome = _create(cur, sql, op, event_rows, replica)
            if outcome == (op.activation_id, True):
                work[op.activation_id] = ActivationImage(_ACKNOWLEDGED, 1, {r["task_id"]: {} for r in op.task_rows},
                                                         bool(op.allocations or op.releases))
                expected[op.activation_id] = 1
            outcomes.append(outcome)
            continue
        image = work.get(op.activation_id)
        if image is None:
            outcomes.append(NotFoundError(f"activation {op.activation_id} not found", phase=Phase.JOURNAL))
            continue
        if op.task_id and op.task_id not in image.recovery:
            outcomes.append(
                NotFoundError(f"task {op.task_id!r} not found in activation {op.activation_id}", phase=Phase.JOURNAL)
            )
            continue
        if op.expect and image.state not in op.expect:
            outcomes.append(StateError(
                f"activation {op.activation_id} is {image.state} (another request or gateway moved it on); "
                f"{op.phase or 'this'} needs it {' or '.join(sorted(op.expect))}"))
            continue
        if image.pools and op.expect and op.phase == _ROLLBACK_START:  # its deletes come back: so do their values
            refused = _retake(cur, sql, op)
            if refused is not None:
                outcomes.append(refused)
                continue
        image.last_seq += 1
        seq = image.last_seq
        touched[op.activation_id] = op.time
        if op.activation_state is not None:
            image.state = op.activation_state
            if op.activation_state in outbox.END_STATES:
                ends.append(outbox.End(op.activation_id, seq, op.activation_state, op.time))
            if image.pools and op.activation_state in _RELEASING:
                owned.append((op.activation_id, ""))
        if image.pools and op.task_id:
            task_state = op.task_cols.get("state")
            if task_state in _RELEASING:
                owned.append((op.activation_id, op.task_id))
            elif task_state == _COMPLETED:
                claimed.append((op.activation_id, op.task_id))
        event_rows.append((op.activation_id, seq, sql.time(op.time), op.task_id, op.phase, op.state, op.message,
                           op.actor))
        if op.task_cols or op.recovery:
            changes = task_changes.setdefault((op.activation_id, op.task_id), {})
            changes.update(op.task_cols)
            if op.recovery:
                image.recovery[op.task_id] = {**image.recovery[op.task_id], **op.recovery}
                changes["recovery"] = None  # encoded once below, from the merged record
        outcomes.append(
            Event(
                activation_id=op.activation_id,
                seq=seq,
                time=op.time,
                task_id=op.task_id,
                phase=op.phase,
                state=op.state,
                message=op.message,
                actor=op.actor,
            )
        )
    # activations first: the UPDATE both locks the rows and proves the cached last_seq is current
    if touched:
        act_rows = [
            (work[aid].state, work[aid].last_seq, sql.time(t), replica, aid, expected[aid])
            for aid, t in sorted(touched.items())
        ]
        _many(cur, sql.update_act, act_rows)
        if cur.rowcount != len(act_rows):
            raise _Stale(sorted(touched))
    _update_tasks(cur, sql, task_changes, work)
    if owned or claimed:
        pools.release(cur, sql.pools, max(touched.values()), owned=owned, claimed=claimed)
    outbox.write(cur, sql.mark, sql.time, ends)  # after the updates: its payload reads them back
    # events last: a failing event insert proves the task and activation updates roll back too
    if event_rows:
        _many(cur, sql.insert_events, event_rows)
        if sql.notify:
            cur.execute(sql.notify, (sorted({r[0] for r in event_rows}),))
    return outcomes, work


def _retake(cur: Any, sql: Sql, op: Any) -> AgwError | None:
    """The Rollback of an activation starts: what its completed deletes released is taken back
    (:func:`gateway.journal.pools.retake`), or nothing is and the Rollback is refused."""
    cur.execute("SAVEPOINT agw_retake")
    try:
        pools.retake(cur, sql.pools, activation_id=op.activation_id, task_id=op.task_id)
    except AgwError as exc:
        cur.execute("ROLLBACK TO SAVEPOINT agw_retake")
        cur.execute("RELEASE SAVEPOINT agw_retake")
        return exc
    cur.execute("RELEASE SAVEPOINT agw_retake")
    return None


def _many(cur: Any, statement: str, rows: Sequence[Sequence[Any]]) -> None:
    """executemany, but one row as a plain execute (psycopg's executemany pipelines: costly for one)."""
    if len(rows) == 1:
        cur.execute(statement, rows[0])
    else:
        cur.executemany(statement, rows)


def _read(cur: Any, sql: Sql, ids: list[str], work: dict[str, ActivationImage], expected: dict[str, int]) -> None:
    marks = ", ".join([sql.mark] * len(ids))
    cur.execute(sql.select_act.format(ids=marks), ids)
    for aid, state, last_seq in cur.fetchall():
        work[aid] = ActivationImage(state, last_seq, {})
        expected[aid] = last_seq
    cur.execute(sql.select_recovery.format(ids=marks), ids)
    for aid, tid, raw in cur.fetchall():
        image = work.get(aid)
        if image is not None:
            image.recovery[tid] = json.loads(raw)
    for aid in pools.has_allocations(cur, sql.pools, [aid for aid in ids if work.get(aid) is not None]):
        work[aid].pools = True


def _create(cur: Any, sql: Sql, op: Create, event_rows: list[tuple[Any, ...]], replica: str) -> Any:
    if not (op.allocations or op.releases):
        return _insert_activation(cur, sql, op, event_rows, replica, op.task_rows)
    # with pools: whatever the allocation or the rendering with its values refuses leaves nothing
    cur.execute("SAVEPOINT agw_create")
    try:
        outcome = _insert_activation(cur, sql, op, event_rows, replica, None)
        if outcome == (op.activation_id, True):
            taken = pools.allocate(cur, sql.pools, activation_id=op.activation_id, now=op.created_at,
                                   allocations=op.allocations, releases=op.releases)
            replaced = op.complete(taken.values) if op.complete is not None else {}
            rows = [codec.task_row(op.activation_id, i, replaced[i]) if i in replaced else row
                    for i, row in enumerate(op.task_rows)]
            _insert_tasks(cur, sql, op, event_rows, rows)
    except AgwError as exc:  # an unknown or exhausted pool, a value the schema refuses: this Submit only
        cur.execute("ROLLBACK TO SAVEPOINT agw_create")
        cur.execute("RELEASE SAVEPOINT agw_create")
        return exc
    cur.execute("RELEASE SAVEPOINT agw_create")
    return outcome


def _insert_activation(cur: Any, sql: Sql, op: Create, event_rows: list[tuple[Any, ...]], replica: str,
                       rows: list[dict[str, Any]] | None) -> Any:
    """The activation's row, and (``rows`` given) its tasks and first event."""
    created = sql.time(op.created_at)
    key = idem_key(op.request_id, op.submitted_by)
    cur.execute(
        sql.insert_act,
        (
            op.activation_id,
            op.request_id,
            None if op.dry_run else key,
            op.fingerprint,
            op.order_ref,
            op.atomic,
            op.dry_run,
            _ACKNOWLEDGED,
            created,
            created,
            1,
            op.submitted_by,
            replica,
            op.retry,
        ),
    )
    if cur.rowcount != 1:  # the request_id is taken (by this caller): same content is the same activation
        cur.execute(sql.select_idem, (key,))
        existing_id, fingerprint = cur.fetchone()
        if fingerprint == op.fingerprint:
            return (existing_id, False)
        return ConflictError(
            f"request_id {op.request_id!r} was already used by activation {existing_id} with different content",
            phase=Phase.VALIDATE,
        )
    if rows is not None:
        _insert_tasks(cur, sql, op, event_rows, rows)
    return (op.activation_id, True)


def _insert_tasks(cur: Any, sql: Sql, op: Create, event_rows: list[tuple[Any, ...]],
                  rows: list[dict[str, Any]]) -> None:
    if rows:
        _many(cur, sql.insert_tasks, [tuple(r[c] for c in TASK_COLUMNS) for r in rows])
    event_rows.append((op.activation_id, 1, sql.time(op.created_at), "", "", _ACKNOWLEDGED, "activation acknowledged",
                       op.submitted_by))


def _update_tasks(
    cur: Any, sql: Sql, changes: dict[tuple[str, str], dict[str, Any]], work: dict[str, ActivationImage]
) -> None:
    by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for (aid, tid), cols in changes.items():
        if "recovery" in cols:
            cols["recovery"] = _DUMPS(work[aid].recovery[tid])
        names = tuple(sorted(cols))
        by_columns.setdefault(names, []).append((*(cols[c] for c in names), aid, tid))
    for names, rows in by_columns.items():
        _many(cur, sql.update_task(names), rows)


__all__ = ["ActivationImage", "Create", "Op", "Record", "WriterCache", "apply_batch"]
