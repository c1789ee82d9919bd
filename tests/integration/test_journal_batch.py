"""Batch coalescing and the writer's cache, against real stores (a SQLite file and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import sqlalchemy as sa

from gateway.journal import JournalOptions, RecoveryChanges, SqlJournal, TaskChanges, TaskRecovery, Transition
from gateway.journal.testing import journal, journal_url, pg_admin  # noqa: F401 - fixtures
from gateway.model import Action, TaskState
from gateway.results import ActivationState, TaskResult

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def task(tid: str) -> TaskResult:
    return TaskResult(id=tid, device="nc1", service="s", action=Action.CREATE, state=TaskState.ACKNOWLEDGED)


async def create(j: SqlJournal, aid: str, *tids: str) -> None:
    await j.create_activation(
        activation_id=aid,
        request_id=f"req-{aid}",
        fingerprint="fp",
        order_ref="o",
        atomic=True,
        dry_run=False,
        tasks=tuple(task(t) for t in tids or ("t1",)),
        created_at=T0,
    )


async def test_records_of_one_task_in_one_batch_merge_into_one_row_update(journal: SqlJournal) -> None:
    await create(journal, "a1", "t1", "t2")
    trace: list[str] = []
    if journal.backend == "sqlite":  # count the statements the writer sends
        await journal.record(Transition(activation_id="a1", message="warm"))  # the writer's connection exists now
        conn = journal._writer.cache.connection
        assert conn is not None
        conn.dbapi_connection.set_trace_callback(trace.append)  # type: ignore[union-attr]
    before = journal.batches
    # hold the writer until all four are queued (as if a drain were running), then drain them:
    # one batch, whatever the timing of the journal's threads
    writer = journal._writer
    writer._draining = True
    writer._idle.clear()
    pending = [asyncio.ensure_future(c) for c in (
        journal.record(Transition(
            activation_id="a1",
            task_id="t1",
            message="m1",
            task=TaskChanges(state=TaskState.IN_PROGRESS, note="first"),
            recovery=RecoveryChanges(persist_id="p", phase="push"),
        )),
        journal.record(Transition(
            activation_id="a1",
            task_id="t1",
            message="m2",
            task=TaskChanges(note="second", diff="+x"),
            recovery=RecoveryChanges(phase="verify"),
            activation_state=ActivationState.IN_PROGRESS,
        )),
        journal.record(Transition(activation_id="a1", task_id="t2", message="m3",
                                  task=TaskChanges(state=TaskState.FAILED))),
        journal.record(Transition(
            activation_id="a1", task_id="t1", message="m4", task=TaskChanges(state=TaskState.COMPLETED),
            recovery=RecoveryChanges(attempt=2),
        )),
    )]
    await asyncio.sleep(0)  # each has queued its record
    assert writer.executor is not None
    writer.executor.submit(writer._drain)
    got = await asyncio.gather(*pending)
    assert journal.batches - before == 1  # one transaction for the four
    first = 3 if journal.backend == "sqlite" else 2
    assert [e.seq for e in got] == list(range(first, first + 4))
    stored = await journal.events("a1", after_seq=first - 1)
    assert [(e.seq, e.message, e.task_id) for e in stored] == [
        (e.seq, e.message, e.task_id) for e in got
    ] and [e.message for e in stored] == ["m1", "m2", "m3", "m4"]
    act = await journal.get("a1")
    t1, t2 = act.tasks
    assert (t1.state, t1.note, t1.diff) == (TaskState.COMPLETED, "second", "+x")  # later values win
    assert t2.state is TaskState.FAILED
    assert act.state is ActivationState.IN_PROGRESS and act.updated_at == got[-1].time
    assert await journal.recovery("a1", "t1") == TaskRecovery(persist_id="p", phase="verify", attempt=2)
    assert await journal.recovery("a1", "t2") == TaskRecovery()
    if journal.backend == "sqlite":
        updates = [s for s in trace if s.startswith("UPDATE agw_tasks")]
        assert len(updates) == 2, updates  # one row update per task, not one per record
        assert sum(s.startswith("UPDATE agw_activations") for s in trace) == 1
        assert not any(s.startswith("SELECT") for s in trace)  # a warm batch reads nothing


async def test_two_writers_on_one_store_keep_one_sequence(journal: SqlJournal, journal_url: str) -> None:
    """Each journal caches what it wrote; when the other one moved the activation on, its cached
    last_seq no longer matches, the batch is re-run reading the row, and nothing is lost."""
    other = SqlJournal(journal_url, options=JournalOptions(busy_timeout_ms=5_000, connect_timeout_s=3))
    await other.start()
    try:
        await create(journal, "a1")
        for n in range(3):
            await journal.record(Transition(activation_id="a1", task_id="t1", message=f"j{n}",
                                            recovery=RecoveryChanges(phase=f"j{n}")))
            await other.record(Transition(
                activation_id="a1", task_id="t1", message=f"o{n}", recovery=RecoveryChanges(attempt=n),
                task=TaskChanges(note=f"o{n}"),
            ))
        await journal.record(Transition(activation_id="a1", task_id="t1", message="last",
                                        recovery=RecoveryChanges(persist_id="x")))
        evs = await other.events("a1")
        assert [e.seq for e in evs] == list(range(1, 9))
        assert [e.message for e in evs][1:] == ["j0", "o0", "j1", "o1", "j2", "o2", "last"]
        assert await other.recovery("a1", "t1") == TaskRecovery(phase="j2", attempt=2, persist_id="x")
        assert (await journal.get("a1")).tasks[0].note == "o2"
        assert journal._writer.cache.stale >= 3 and other._writer.cache.stale >= 2
    finally:
        await other.close()


async def test_activations_evicted_from_the_cache_are_read_again(journal: SqlJournal) -> None:
    journal._writer.cache.max_activations = 1
    for aid in ("a1", "a2"):
        await create(journal, aid)
    for n in range(3):
        for aid in ("a1", "a2"):
            await journal.record(Transition(activation_id=aid, task_id="t1", message=str(n),
                                            recovery=RecoveryChanges(attempt=n)))
    assert len(journal._writer.cache) == 1
    for aid in ("a1", "a2"):
        assert [e.seq for e in await journal.events(aid)] == [1, 2, 3, 4]
        assert (await journal.recovery(aid, "t1")).attempt == 2


async def test_a_lost_writer_connection_is_replaced(journal: SqlJournal, pg_admin: sa.Engine) -> None:  # noqa: F811
    """PostgreSQL: the writer keeps its connection between batches; when the server drops it, the
    next batch (nothing of it sent yet) runs again on a new connection, and the caller never knows."""
    if journal.backend != "postgresql":
        return  # a SQLite file connection cannot be lost
    await create(journal, "a1")
    conn = journal._writer.cache.connection
    assert conn is not None
    pid = conn.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
    with pg_admin.begin() as admin:
        assert admin.execute(sa.text("select pg_terminate_backend(:pid)"), {"pid": pid}).scalar() is True
    event = await journal.record(Transition(activation_id="a1", task_id="t1", message="after",
                                            task=TaskChanges(note="n")))
    assert event.seq == 2
    assert journal._writer.cache.connection is not None and journal._writer.cache.connection is not conn
    assert [e.message for e in await journal.events("a1")] == ["activation acknowledged", "after"]
    assert (await journal.get("a1")).tasks[0].note == "n"
