"""The journal against real stores: a SQLite file and a PostgreSQL server (both backends, each test)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from drivers.base import Snapshot
from gateway.errors import ConflictError, DeviceErrorInfo, JournalError, NotFoundError, Phase
from gateway.journal import (
    TASK_FIELDS,
    JournalOptions,
    Pending,
    RecoveryChanges,
    SqlJournal,
    TaskChanges,
    TaskRecovery,
    Transition,
    open_journal,
)
from gateway.journal import reads as reads_module
from gateway.journal import writer as writer_module
from gateway.journal.schema import SCHEMA_VERSION, events, schema_version, tasks
from gateway.journal.testing import journal, journal_url, pg_admin  # noqa: F401 - fixtures
from gateway.model import Action, TaskState
from gateway.results import (
    ActivationState,
    ErrorView,
    Event,
    PhaseTiming,
    RollbackView,
    TaskResult,
    VerificationView,
)
from gateway.secrets import MASK, Secret

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def task(tid: str = "t1", device: str = "nc1", **kw: object) -> TaskResult:
    fields = {"service": "interface", "action": Action.CREATE, "state": TaskState.ACKNOWLEDGED, **kw}
    return TaskResult(id=tid, device=device, **fields)  # type: ignore[arg-type]


def full_task() -> TaskResult:
    """A task with every field set, nested views included."""
    return TaskResult(
        id="t-full",
        device="r1",
        service="system-contact",
        action=Action.MODIFY,
        state=TaskState.FALLOUT,
        depends_on=("t-a", "t-b"),
        platform="yuma123",
        driver="netconf",
        rendered="<config><system>é</system></config>",
        diff="- a\n+ b",
        verification=VerificationView(
            ok=False, checked=3, mismatches=("/x: expected 'a', found 'b'",), detail="1 differs"
        ),
        rollback=RollbackView(method="cancel-commit", ok=False, reason="device unreachable", diff="-x\n+y"),
        error=ErrorView(
            kind="DeviceRejectedError",
            message="bad value",
            phase="commit",
            retryable=False,
            device_error=DeviceErrorInfo(
                message="invalid value",
                tag="invalid-value",
                path="/if:interfaces",
                severity="error",
                line="",
                extra=(("app-tag", "x"), ("bad-element", "mtu")),
            ),
        ),
        timings=(
            PhaseTiming(phase="push", started_at=T0, duration_ms=1.25),
            PhaseTiming(phase="verify", started_at=T0 + timedelta(seconds=1), duration_ms=0.5),
        ),
        note="needs a person",
        emulated=("snapshot-and-restore instead of native rollback", "gateway-computed diff"),
    )


async def create(
    j: SqlJournal,
    aid: str,
    *,
    request_id: str | None = None,
    fingerprint: str = "fp",
    tasks_: tuple[TaskResult, ...] = (),
    created_at: datetime = T0,
    dry_run: bool = False,
) -> tuple[str, bool]:
    return await j.create_activation(
        activation_id=aid,
        request_id=request_id or f"req-{aid}",
        fingerprint=fingerprint,
        order_ref=f"order-{aid}",
        atomic=True,
        dry_run=dry_run,
        tasks=tasks_ or (task(),),
        created_at=created_at,
    )


# -- creation and idempotency -------------------------------------------------------------------


async def test_create_then_get_returns_everything_written(journal: SqlJournal) -> None:
    tasks_ = (task("t1", "nc1"), full_task())
    assert await create(journal, "a1", tasks_=tasks_) == ("a1", True)
    got = await journal.get("a1")
    assert got.id == "a1" and got.request_id == "req-a1" and got.order_ref == "order-a1"
    assert got.atomic is True and got.dry_run is False
    assert got.state is ActivationState.ACKNOWLEDGED
    assert got.created_at == T0 and got.updated_at == T0 and got.created_at.tzinfo is not None
    assert got.tasks == tasks_  # exact round trip of every nested view, in order
    (first,) = await journal.events("a1")
    assert (first.seq, first.state, first.task_id, first.time) == (1, "acknowledged", "", T0)


async def test_same_request_id_same_fingerprint_returns_existing(journal: SqlJournal) -> None:
    assert await create(journal, "a1", request_id="r") == ("a1", True)
    assert await create(journal, "a2", request_id="r") == ("a1", False)
    with pytest.raises(NotFoundError):
        await journal.get("a2")
    assert len(await journal.events("a1")) == 1
    found = await journal.find_by_request_id("r")
    assert found is not None and found.id == "a1"
    assert await journal.find_by_request_id("nope") is None


async def test_same_request_id_other_fingerprint_conflicts(journal: SqlJournal) -> None:
    await create(journal, "a1", request_id="r", fingerprint="one")
    with pytest.raises(ConflictError) as err:
        await create(journal, "a2", request_id="r", fingerprint="two")
    assert "'r'" in str(err.value) and "a1" in str(err.value)
    with pytest.raises(NotFoundError):
        await journal.get("a2")


async def test_dry_runs_do_not_take_the_request_id(journal: SqlJournal) -> None:
    assert await create(journal, "d1", request_id="r", dry_run=True) == ("d1", True)
    assert await create(journal, "d2", request_id="r", dry_run=True, fingerprint="other") == ("d2", True)
    assert await journal.find_by_request_id("r") is None
    assert await create(journal, "a1", request_id="r") == ("a1", True)
    found = await journal.find_by_request_id("r")
    assert found is not None and found.id == "a1" and (await journal.get("d1")).dry_run is True


async def test_concurrent_creates_with_one_request_id_make_one_activation(journal: SqlJournal) -> None:
    results = await asyncio.gather(*(create(journal, f"a{i}", request_id="race") for i in range(20)))
    winners = [r for r in results if r[1]]
    assert len(winners) == 1
    assert {r[0] for r in results} == {winners[0][0]}


async def test_concurrent_creates_from_two_journals_on_one_store(journal: SqlJournal, journal_url: str) -> None:
    other = SqlJournal(journal_url, options=JournalOptions(busy_timeout_ms=5_000, connect_timeout_s=3))
    await other.start()
    try:
        for n in range(5):
            rid = f"race-{n}"
            coros = [
                create(j, f"{tag}{n}-{i}", request_id=rid, fingerprint="same" if i % 2 else "diff")
                for i in range(4)
                for tag, j in (("x", journal), ("y", other))
            ]
            results = await asyncio.gather(*coros, return_exceptions=True)
            created = [r for r in results if isinstance(r, tuple) and r[1]]
            assert len(created) == 1, results
            winner = await journal.find_by_request_id(rid)
            assert winner is not None and winner.id == created[0][0]
            for r in results:
                assert (isinstance(r, tuple) and r[0] == winner.id) or isinstance(r, ConflictError), r
    finally:
        await other.close()


# -- record: events, atomicity, group commit -----------------------------------------------------


async def test_events_are_numbered_in_order_and_after_seq_filters(journal: SqlJournal) -> None:
    await create(journal, "a1", tasks_=(task("t1"), task("t2")))
    recorded = await asyncio.gather(
        *(
            journal.record(Transition(
                activation_id="a1", task_id=f"t{1 + i % 2}", phase="push", state="inProgress", message=f"m{i}"
            ))
            for i in range(50)
        )
    )
    assert sorted(e.seq for e in recorded) == list(range(2, 52))
    stored = await journal.events("a1")
    assert [e.seq for e in stored] == list(range(1, 52))
    assert stored[1:] == sorted(recorded, key=lambda e: e.seq)  # what record() returned is what is stored
    assert [e.seq for e in await journal.events("a1", after_seq=40)] == list(range(41, 52))
    assert await journal.events("a1", after_seq=51) == []
    times = [e.time for e in stored[1:]]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)


async def test_record_later_is_written_in_order_before_the_next_record(journal: SqlJournal) -> None:
    await create(journal, "a1", tasks_=(task("t1"),))
    later = [journal.record_later(Transition(activation_id="a1", task_id="t1", phase="connect", state="inProgress",
                                             message=f"queued {i}",
                                             task=TaskChanges(state=TaskState.IN_PROGRESS) if i == 0 else None))
             for i in range(3)]
    assert not any(f.done() for f in later)  # queued, not written yet: the caller did not wait
    ev = await journal.record(Transition(activation_id="a1", task_id="t1", phase="push", state="inProgress",
                                         message="awaited"))
    # the awaited record returns only once everything queued before it is durable, in order
    assert all(f.done() for f in later)
    assert [f.result().seq for f in later] == [2, 3, 4] and ev.seq == 5
    stored = await journal.events("a1")
    assert [e.message for e in stored[1:]] == ["queued 0", "queued 1", "queued 2", "awaited"]
    assert (await journal.get("a1")).tasks[0].state is TaskState.IN_PROGRESS
    # bad arguments raise at once, nothing is queued
    with pytest.raises(JournalError):
        journal.record_later(Transition(activation_id="a1", task=TaskChanges(state=TaskState.FAILED)))
    with pytest.raises(JournalError):
        journal.record_later({"activation_id": "a1"})  # type: ignore[arg-type]
    failing = journal.record_later(Transition(activation_id="no-such-activation", message="x"))
    with pytest.raises(NotFoundError):
        await failing
    assert len(await journal.events("a1")) == 5


async def test_record_applies_event_task_and_activation_state_together(journal: SqlJournal) -> None:
    await create(journal, "a1", tasks_=(task("t1"), task("t2")))
    before = await journal.get("a1")
    ev = await journal.record(Transition(
        activation_id="a1",
        task_id="t1",
        phase="commit",
        state="inProgress",
        message="committing",
        task=TaskChanges(state=TaskState.IN_PROGRESS, rendered="<config/>", platform="yuma123"),
        activation_state=ActivationState.IN_PROGRESS,
    ))
    assert isinstance(ev, Event) and ev.seq == 2 and ev.message == "committing"
    got = await journal.get("a1")
    assert got.state is ActivationState.IN_PROGRESS
    assert got.updated_at == ev.time and got.updated_at > before.updated_at
    assert got.tasks[0] == dataclasses.replace(
        before.tasks[0], state=TaskState.IN_PROGRESS, rendered="<config/>", platform="yuma123"
    )
    assert got.tasks[1] == before.tasks[1]


async def test_every_task_field_round_trips_through_record(journal: SqlJournal) -> None:
    await create(journal, "a1", tasks_=(task("t-full", "r1"),))
    target = full_task()
    changes = {
        name: getattr(target, name)
        for name in (
            "state",
            "platform",
            "driver",
            "rendered",
            "diff",
            "verification",
            "rollback",
            "error",
            "timings",
            "note",
            "emulated",
        )
    }
    await journal.record(Transition(activation_id="a1", task_id="t-full", task=TaskChanges(**changes)))
    got = (await journal.get("a1")).tasks[0]
    assert got == dataclasses.replace(target, service="interface", action=Action.CREATE, depends_on=())
    # and cleared again: None for optional views, () for timings
    await journal.record(Transition(
        activation_id="a1",
        task_id="t-full",
        task=TaskChanges(verification=None, rollback=None, error=None, timings=(), emulated=()),
    ))
    got = (await journal.get("a1")).tasks[0]
    assert (got.verification, got.rollback, got.error, got.timings, got.emulated) == (None, None, None, (), ())


async def test_failed_record_changes_nothing(journal: SqlJournal, journal_url: str) -> None:
    """An event row already holding the next seq makes the insert fail: the task and activation
    updates of the same transaction must be rolled back with it."""
    await create(journal, "a1")
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(events).values(
                activation_id="a1", seq=2, time=T0, task_id="", phase="", state="", message="intruder"
            )
        )
    engine.dispose()
    with pytest.raises(JournalError) as err:
        await journal.record(Transition(
            activation_id="a1",
            task_id="t1",
            task=TaskChanges(note="changed"),
            activation_state=ActivationState.IN_PROGRESS,
            message="lost",
        ))
    assert err.value.__cause__ is not None  # translated, chained
    # in a batch with good records of another activation: the batch fails, each is retried alone
    await create(journal, "a2")
    results = await asyncio.gather(
        journal.record(Transition(activation_id="a1", task_id="t1", task=TaskChanges(note="changed"), message="lost")),
        *(journal.record(Transition(activation_id="a2", task_id="t1", message=str(i))) for i in range(5)),
        return_exceptions=True,
    )
    assert isinstance(results[0], JournalError) and all(isinstance(r, Event) for r in results[1:])
    assert len(await journal.events("a2")) == 6
    got = await journal.get("a1")
    assert got.state is ActivationState.ACKNOWLEDGED and got.tasks[0].note == "" and got.updated_at == T0
    assert [e.message for e in await journal.events("a1")] == ["activation acknowledged", "intruder"]


async def test_one_bad_record_fails_alone_in_a_batch(journal: SqlJournal) -> None:
    await create(journal, "a1")
    results = await asyncio.gather(
        *(journal.record(Transition(activation_id="a1", task_id="t1", message=f"ok{i}")) for i in range(10)),
        journal.record(Transition(activation_id="missing", message="x")),
        journal.record(Transition(activation_id="a1", task_id="no-such-task", message="y")),
        *(journal.record(Transition(activation_id="a1", message=f"ok{i}")) for i in range(10, 20)),
        return_exceptions=True,
    )
    assert isinstance(results[10], NotFoundError) and "missing" in str(results[10])
    assert isinstance(results[11], NotFoundError) and "no-such-task" in str(results[11])
    good = [r for r in results if isinstance(r, Event)]
    assert len(good) == 20 and sorted(e.seq for e in good) == list(range(2, 22))
    assert len(await journal.events("a1")) == 21


async def test_group_commit_shares_transactions_and_baseline_does_not(journal_url: str) -> None:
    counts = {}
    for max_batch in (512, 1):
        j = SqlJournal(journal_url, options=JournalOptions(max_batch=max_batch))
        await j.start()
        await create(j, f"a{max_batch}")
        start = j.batches
        await asyncio.gather(*(j.record(Transition(activation_id=f"a{max_batch}", message=str(i))) for i in range(200)))
        counts[max_batch] = j.batches - start
        assert [e.seq for e in await j.events(f"a{max_batch}")] == list(range(1, 202))
        await j.close()
    assert counts[1] == 200
    assert counts[512] < 20, counts  # 200 concurrent records in a handful of transactions


async def test_close_writes_everything_queued(journal_url: str) -> None:
    j = SqlJournal(journal_url)
    await j.start()
    await create(j, "a1")
    pending = [asyncio.ensure_future(j.record(Transition(activation_id="a1", message=str(i)))) for i in range(100)]
    await asyncio.sleep(0)  # queued, not yet written
    await j.close()
    assert all(p.done() and not p.cancelled() and p.exception() is None for p in pending)
    with pytest.raises(JournalError):
        await j.record(Transition(activation_id="a1", message="after close"))
    async with open_journal(journal_url) as reopened:
        assert len(await reopened.events("a1")) == 101


# -- recovery records ---------------------------------------------------------------------------


async def test_recovery_record_merges_keys(journal: SqlJournal) -> None:
    await create(journal, "a1", tasks_=(task("t1"), task("t2")))
    assert await journal.recovery("a1", "t1") == TaskRecovery()
    snap = Snapshot(content="<interfaces/>", scope="<filter/>")
    await journal.record(Transition(activation_id="a1", task_id="t1",
                                    recovery=RecoveryChanges(snapshot=snap, phase="snapshot")))
    await journal.record(Transition(
        activation_id="a1",
        task_id="t1",
        recovery=RecoveryChanges(persist_id="agw-a1-t1", pending="confirmed-commit", phase="commit"),
    ))
    after = Snapshot(content="<interfaces><interface/></interfaces>", scope="<filter/>")
    await journal.record(Transition(activation_id="a1", task_id="t1", recovery=RecoveryChanges(attempt=2, after=after)))
    assert await journal.recovery("a1", "t1") == TaskRecovery(
        snapshot=snap, after=after, persist_id="agw-a1-t1", pending="confirmed-commit", phase="commit", attempt=2
    )
    assert await journal.recovery("a1", "t2") == TaskRecovery()
    await journal.record(Transition(activation_id="a1", task_id="t1",
                                    recovery=RecoveryChanges(pending=Pending.NONE, snapshot=None)))
    rec = await journal.recovery("a1", "t1")
    assert rec.pending is Pending.NONE and rec.snapshot is None and rec.persist_id == "agw-a1-t1"
    with pytest.raises(NotFoundError):
        await journal.recovery("a1", "t9")
    with pytest.raises(TypeError):  # an unknown key cannot even be named
        RecoveryChanges(password="x")  # type: ignore[call-arg]


async def test_recovery_merges_within_one_batch(journal: SqlJournal) -> None:
    await create(journal, "a1")
    await asyncio.gather(
        journal.record(Transition(activation_id="a1", task_id="t1", recovery=RecoveryChanges(persist_id="p"))),
        journal.record(Transition(activation_id="a1", task_id="t1", recovery=RecoveryChanges(pending="applied"))),
        journal.record(Transition(activation_id="a1", task_id="t1", recovery=RecoveryChanges(attempt=3))),
    )
    assert await journal.recovery("a1", "t1") == TaskRecovery(persist_id="p", pending="applied", attempt=3)


async def test_every_typed_field_of_a_transition_round_trips(journal: SqlJournal) -> None:
    """One Transition with every field of its event, its TaskChanges and its RecoveryChanges set
    reads back exactly (event, task, activation state, audit, recovery record); a later one that
    leaves fields UNCHANGED changes only what it names, and None clears."""
    await create(journal, "a1", tasks_=(task("t-full", "r1"), task("t2")))
    target = full_task()
    snap = Snapshot(content="<interfaces/>", scope="<filter/>")
    after = Snapshot(content="<interfaces><interface/></interfaces>", scope="<filter/>")
    t = Transition(
        activation_id="a1",
        task_id="t-full",
        phase=Phase.ROLLBACK_VERIFY,
        state=TaskState.FALLOUT,
        message="fallout: device unreachable",
        task=TaskChanges(**{name: getattr(target, name) for name in TASK_FIELDS}),
        activation_state=ActivationState.FALLOUT,
        recovery=RecoveryChanges(snapshot=snap, after=after, persist_id="agw-a1-r1-1",
                                 pending=Pending.CONFIRMED_COMMIT, phase=Phase.COMMIT, attempt=2),
        actor="spiffe://x/op",
    )
    ev = await journal.record(t)
    assert (ev.activation_id, ev.task_id, ev.phase, ev.state, ev.message, ev.actor) == (
        "a1", "t-full", "rollback_verify", "fallout", "fallout: device unreachable", "spiffe://x/op")
    assert (await journal.events("a1"))[-1] == ev
    got = await journal.get("a1")
    assert got.state is ActivationState.FALLOUT and got.updated_at == ev.time
    assert got.tasks[0] == dataclasses.replace(target, service="interface", action=Action.CREATE, depends_on=())
    assert got.tasks[1] == task("t2")
    assert [(a.actor, a.action, a.task_id, a.note) for a in got.audit] == [
        ("spiffe://x/op", "rollback_verify", "t-full", "fallout: device unreachable")]
    assert await journal.recovery("a1", "t-full") == TaskRecovery(
        snapshot=snap, after=after, persist_id="agw-a1-r1-1", pending=Pending.CONFIRMED_COMMIT, phase="commit",
        attempt=2)
    assert (await journal.list(limit=1))[0] == got  # the SQLAlchemy read path decodes the same
    # only what a transition names changes
    await journal.record(Transition(activation_id="a1", task_id="t-full", state=TaskState.ROLLED_BACK,
                                    task=TaskChanges(state=TaskState.ROLLED_BACK, error=None, note="fixed"),
                                    recovery=RecoveryChanges(pending=Pending.NONE, after=None)))
    again = (await journal.get("a1")).tasks[0]
    assert again == dataclasses.replace(got.tasks[0], state=TaskState.ROLLED_BACK, error=None, note="fixed")
    assert await journal.recovery("a1", "t-full") == TaskRecovery(
        snapshot=snap, after=None, persist_id="agw-a1-r1-1", pending=Pending.NONE, phase="commit", attempt=2)
    assert (await journal.get("a1")).state is ActivationState.FALLOUT  # no activation_state: unchanged


async def test_pending_is_stored_as_the_strings_of_older_journals(journal: SqlJournal, journal_url: str) -> None:
    await create(journal, "a1", tasks_=(task("t1"), task("t2")))
    await journal.record(Transition(activation_id="a1", task_id="t1", recovery=RecoveryChanges(pending=Pending.STAGED)))
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            stored = conn.execute(sa.select(tasks.c.recovery).where(tasks.c.task_id == "t1")).scalar_one()
            assert json.loads(stored) == {"pending": "staged"}
            # what an older gateway wrote for t2, as it wrote it
            conn.execute(sa.update(tasks).where(tasks.c.task_id == "t2").values(
                recovery='{"pending":"confirmed-commit","persist_id":"p","attempt":1}'))
    finally:
        engine.dispose()
    assert await journal.recovery("a1", "t2") == TaskRecovery(pending=Pending.CONFIRMED_COMMIT, persist_id="p",
                                                              attempt=1)


async def test_a_bad_transition_writes_nothing(journal: SqlJournal) -> None:
    await create(journal, "a1")
    for bad in (
        dict(state="bogus"),
        dict(task_id="t1", task=TaskChanges(note="ok"), activation_state="finished"),
        dict(task_id="t1", recovery={"pending": "confirmed-commit"}),
    ):
        with pytest.raises(JournalError):
            await journal.record(Transition(activation_id="a1", **bad))  # type: ignore[arg-type]
    with pytest.raises(JournalError):
        await journal.record(Transition(activation_id="a1", task_id="t1",
                                        recovery=RecoveryChanges(pending="done")))  # type: ignore[arg-type]
    with pytest.raises(JournalError):
        journal.record_later(None)  # type: ignore[arg-type]
    assert [e.seq for e in await journal.events("a1")] == [1]
    assert await journal.recovery("a1", "t1") == TaskRecovery()
    assert (await journal.get("a1")).tasks[0] == task()


# -- queries ------------------------------------------------------------------------------------


async def test_list_filters_by_state_device_and_time(journal: SqlJournal) -> None:
    for i, (device, state) in enumerate(
        [
            ("nc1", None),
            ("cli1", ActivationState.COMPLETED),
            ("nc1", ActivationState.FALLOUT),
            ("r1", ActivationState.IN_PROGRESS),
        ]
    ):
        await create(
            journal, f"a{i}", tasks_=(task("t", device), task("u", "shared")), created_at=T0 + timedelta(minutes=i)
        )
        if state:
            await journal.record(Transition(activation_id=f"a{i}", activation_state=state))
    ids = lambda xs: [x.id for x in xs]  # noqa: E731
    assert ids(await journal.list()) == ["a3", "a2", "a1", "a0"]  # newest first
    assert ids(await journal.list(limit=2)) == ["a3", "a2"]
    assert ids(await journal.list(states=[ActivationState.COMPLETED, ActivationState.FALLOUT])) == ["a2", "a1"]
    assert ids(await journal.list(device="nc1")) == ["a2", "a0"]
    assert ids(await journal.list(device="shared")) == ["a3", "a2", "a1", "a0"]
    assert ids(await journal.list(device="nowhere")) == []
    assert ids(await journal.list(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))) == ["a2", "a1"]
    tz = timezone(timedelta(hours=2))  # any zone works; compared in UTC
    assert ids(await journal.list(since=(T0 + timedelta(minutes=3)).astimezone(tz))) == ["a3"]
    assert ids(await journal.list(states=[ActivationState.FALLOUT], device="cli1")) == []
    listed = await journal.list(device="nc1")
    assert listed[0] == await journal.get("a2") and len(listed[0].tasks) == 2


async def test_unfinished_and_fallout(journal: SqlJournal) -> None:
    await create(journal, "a0", created_at=T0)
    await create(journal, "a1", created_at=T0 + timedelta(seconds=1), tasks_=(task("t1"), task("t2")))
    await create(journal, "a2", created_at=T0 + timedelta(seconds=2))
    await create(journal, "a3", created_at=T0 + timedelta(seconds=3))
    await journal.record(Transition(activation_id="a1", activation_state=ActivationState.IN_PROGRESS))
    await journal.record(Transition(activation_id="a2", activation_state=ActivationState.COMPLETED))
    await journal.record(Transition(activation_id="a3", activation_state=ActivationState.FALLOUT))
    assert await journal.unfinished() == ["a0", "a1"]
    assert await journal.fallout() == []
    await journal.record(Transition(activation_id="a3", task_id="t1",
                                    task=TaskChanges(state=TaskState.FALLOUT, note="cut")))
    await journal.record(Transition(activation_id="a1", task_id="t2", task=TaskChanges(state=TaskState.FALLOUT)))
    fallout = await journal.fallout()
    assert [(aid, t.id, t.state) for aid, t in fallout] == [
        ("a1", "t2", TaskState.FALLOUT),
        ("a3", "t1", TaskState.FALLOUT),
    ]
    assert fallout[1][1].note == "cut"


async def test_unknown_activation_is_not_found(journal: SqlJournal) -> None:
    with pytest.raises(NotFoundError):
        await journal.get("nope")
    with pytest.raises(NotFoundError):
        await journal.record(Transition(activation_id="nope", message="x"))
    assert await journal.events("nope") == []


# -- bad input, secrets, errors -----------------------------------------------------------------


async def test_bad_input_is_refused_before_anything_is_written(journal: SqlJournal) -> None:
    await create(journal, "a1")
    naive = datetime(2026, 1, 1)
    cases = [
        create(journal, "a2", created_at=naive),
        journal.list(limit=0),
        journal.list(since=naive),
    ]
    for coro in cases:
        with pytest.raises(JournalError) as err:
            await coro
        assert err.value.retryable is False
    # a bad transition cannot even be made (more in tests/unit/test_transitions.py)
    for make in (
        lambda: TaskChanges(verification="ok"),  # type: ignore[arg-type]
        lambda: TaskChanges(state="bogus"),  # type: ignore[arg-type]
        lambda: TaskChanges(timings=["1ms"]),  # type: ignore[list-item]
        lambda: RecoveryChanges(attempt="2"),  # type: ignore[arg-type]
        lambda: RecoveryChanges(pending="committed"),  # type: ignore[arg-type]
        lambda: Transition(activation_id="a1", task=TaskChanges(note="no task id")),
        lambda: Transition(activation_id="a1", message=42),  # type: ignore[arg-type]
        lambda: Transition(activation_id="a1", state="bogus"),
        lambda: Transition(activation_id="a1", task_id="t1", task={"note": "a dict"}),  # type: ignore[arg-type]
    ):
        with pytest.raises(JournalError) as err:
            make()
        assert err.value.retryable is False
    with pytest.raises(TypeError):
        TaskChanges(device="other")  # type: ignore[call-arg]  # identity fields are fixed at creation
    assert len(await journal.events("a1")) == 1
    with pytest.raises(NotFoundError):
        await journal.get("a2")


async def test_secrets_passed_by_mistake_are_stored_masked(journal: SqlJournal, journal_url: str) -> None:
    clear = "hunter2-clear-value"
    await create(journal, "a1")
    await journal.record(Transition(
        activation_id="a1",
        task_id="t1",
        message=Secret(clear),  # type: ignore[arg-type]
        task=TaskChanges(
            note=Secret(clear),  # type: ignore[arg-type]
            error=ErrorView(
                kind="AuthenticationError",
                message=Secret(clear),  # type: ignore[arg-type]
                device_error=DeviceErrorInfo(message="denied", extra=(("password", Secret(clear)),)),
            ),
        ),
        recovery=RecoveryChanges(persist_id=Secret(clear)),  # type: ignore[arg-type]
    ))
    got = await journal.get("a1")
    assert got.tasks[0].note == MASK and got.tasks[0].error is not None and got.tasks[0].error.message == MASK
    assert (await journal.events("a1"))[-1].message == MASK
    assert (await journal.recovery("a1", "t1")).persist_id == MASK
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        everything = [str(row) for t in (tasks, events) for row in conn.execute(sa.select(t))]
    engine.dispose()
    assert any(MASK in row for row in everything) and not any(clear in row for row in everything)
    if journal_url.startswith("sqlite"):
        await journal.close()
        path = Path(sa.engine.make_url(journal_url).database or "")
        for f in path.parent.glob(path.name + "*"):  # the database file and its WAL
            assert clear.encode() not in f.read_bytes()


async def test_newer_schema_version_is_refused(journal: SqlJournal, journal_url: str) -> None:
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.insert(schema_version).values(version=SCHEMA_VERSION + 1, applied_at=T0))
    engine.dispose()
    newer = SqlJournal(journal_url)
    with pytest.raises(JournalError, match="newer"):
        await newer.start()


async def test_unreachable_store_is_a_journal_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    for url in (
        f"sqlite:///{tmp_path / 'dir.db'}",
        "postgresql+psycopg://agw:agw@127.0.0.1:9/agw_test",
    ):  # discard port: refused
        j = SqlJournal(url, options=JournalOptions(connect_timeout_s=2))
        with pytest.raises(JournalError) as err:
            await j.start()
        assert err.value.retryable is True and err.value.__cause__ is not None
    (tmp_path / "plain-file").write_text("")
    j = SqlJournal(f"sqlite:///{tmp_path / 'plain-file' / 'journal.db'}")  # its directory cannot be made
    with pytest.raises(JournalError) as err:
        await j.start()
    assert isinstance(err.value.__cause__, OSError)
    with pytest.raises(JournalError, match="not supported"):
        open_journal("mysql://x@127.0.0.1/db")
    for options in (JournalOptions(max_batch=0), JournalOptions(sqlite_synchronous="OFF")):
        with pytest.raises(JournalError) as err:
            await SqlJournal(f"sqlite:///{tmp_path / 'x.db'}", options=options).start()
        assert err.value.retryable is False


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    async with open_journal(str(path)) as j:
        await create(j, "a1")
        assert (tmp_path / "journal.db-wal").exists()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("pragma journal_mode").fetchone() == ("wal",)


async def test_a_caller_that_goes_away_is_still_written(journal: SqlJournal) -> None:
    await create(journal, "a1")
    waiting = asyncio.ensure_future(journal.record(Transition(activation_id="a1", message="announced")))
    await asyncio.sleep(0)  # queued
    waiting.cancel()
    await journal.record(Transition(activation_id="a1", message="next"))  # after the cancelled one, in order
    assert [e.message for e in await journal.events("a1")][1:] == ["announced", "next"]


async def test_a_writer_bug_fails_its_batch_and_the_writer_goes_on(
    journal: SqlJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create(journal, "a1")
    real = writer_module.apply_batch
    calls = []

    def broken_once(engine: sa.Engine, batch: list[object], **kw: object) -> list[object]:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("bug")
        return real(engine, batch, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(writer_module, "apply_batch", broken_once)
    results = await asyncio.gather(
        *(journal.record(Transition(activation_id="a1", message=str(i))) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, JournalError) and "bug" in str(r) for r in results)
    assert (await journal.record(Transition(activation_id="a1", message="after"))).seq == 2


# -- durability ---------------------------------------------------------------------------------


async def test_sqlite_file_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "journal.db"
    async with open_journal(str(path)) as j:  # a plain path is a SQLite file; parents are created
        await create(j, "a1", tasks_=(full_task(),))
        await j.record(Transition(
            activation_id="a1",
            task_id="t-full",
            task=TaskChanges(note="kept"),
            activation_state=ActivationState.FALLOUT,
            recovery=RecoveryChanges(pending="applied"),
        ))
        before = await j.get("a1")
        before_events = await j.events("a1")
    async with open_journal(f"sqlite:///{path}") as j:
        assert await j.get("a1") == before and before.tasks[0].note == "kept"
        assert await j.events("a1") == before_events
        assert (await j.recovery("a1", "t-full")).pending == "applied"
        assert await j.unfinished() == [] and [a for a, _ in await j.fallout()] == ["a1"]


async def test_plain_reads_match_and_their_errors_are_journal_errors(journal: SqlJournal, journal_url: str) -> None:
    """get/events run plain SQL on each reader thread's own connection (gateway/journal/reads.py):
    same values as the SQLAlchemy path, and a database error is a JournalError, not the driver's."""
    await create(journal, "a1", tasks_=(full_task(), task("t2")))
    await journal.record(Transition(activation_id="a1", task_id="t2", phase="push", state="inProgress", message="m"))
    via_core = await journal._reads.core(reads_module.load_activations, "read", ["a1"])
    assert await journal.get("a1") == via_core[0]
    assert [e.seq for e in await journal.events("a1")] == [1, 2]
    assert (await journal.events("a1"))[1].time.tzinfo is not None
    await journal.create_activation(activation_id="no-tasks", request_id="r-none", fingerprint="fp", order_ref="",
                                    atomic=True, dry_run=False, tasks=[], created_at=T0)
    empty = await journal.get("no-tasks")
    assert empty.tasks == () and empty.created_at == T0
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE agw_events RENAME TO agw_events_gone"))
    try:
        with pytest.raises(JournalError, match="read events"):
            await journal.events("a1")
        with pytest.raises(JournalError, match="read"):  # get reads the audit trail from the events
            await journal.get("a1")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE agw_events_gone RENAME TO agw_events"))
        engine.dispose()
    assert len(await journal.events("a1")) == 2
    assert (await journal.get("a1")).id == "a1"  # the readers' connections still work


async def test_request_ids_are_scoped_to_the_caller_and_calls_are_audited(journal: SqlJournal) -> None:
    kw = dict(fingerprint="fp", order_ref="", atomic=True, dry_run=False, tasks=[task()], created_at=T0)
    assert await journal.create_activation(activation_id="a1", request_id="r", submitted_by="spiffe://x/a", **kw) == ("a1", True)
    assert await journal.create_activation(activation_id="a2", request_id="r", submitted_by="spiffe://x/b", **kw) == ("a2", True)
    assert await journal.create_activation(activation_id="a3", request_id="r", submitted_by="spiffe://x/a", **kw) == ("a1", False)
    assert await journal.create_activation(activation_id="a4", request_id="r", **kw) == ("a4", True)  # anonymous
    assert (await journal.find_by_request_id("r", submitted_by="spiffe://x/b")).id == "a2"
    assert (await journal.find_by_request_id("r")).id == "a4"
    await journal.record(Transition(activation_id="a1", phase="cancel", state="inProgress", message="cancel requested",
                                    actor="spiffe://x/op"))
    await journal.record(Transition(activation_id="a1", task_id="t1", phase="push", state="inProgress"))  # engine's own
    got = await journal.get("a1")
    assert got.submitted_by == "spiffe://x/a"
    assert [(e.actor, e.action, e.note) for e in got.audit] == [
        ("spiffe://x/a", "submit", "activation acknowledged"), ("spiffe://x/op", "cancel", "cancel requested")]
    assert [e.actor for e in await journal.events("a1")] == ["spiffe://x/a", "spiffe://x/op", ""]
    listed = await journal.list(limit=10)
    assert next(a for a in listed if a.id == "a1") == got
    assert (await journal.get("a4")).submitted_by == "" and (await journal.get("a4")).audit == ()


def downgrade(journal_url: str, version: int, *statements: str) -> None:
    """Take a journal back to what ``version`` had (``statements`` undo the later migrations)."""
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
        conn.execute(sa.text("DELETE FROM agw_schema_version"))
        conn.execute(sa.text("INSERT INTO agw_schema_version (version, applied_at) VALUES (:v, CURRENT_TIMESTAMP)"),
                     {"v": version})
    engine.dispose()


async def test_a_version_1_journal_is_upgraded_in_place(journal_url: str) -> None:
    first = SqlJournal(journal_url)
    await first.start()
    await create(first, "old1")
    await first.close()
    downgrade(journal_url, 1, "ALTER TABLE agw_activations DROP COLUMN submitted_by",
              "ALTER TABLE agw_events DROP COLUMN actor", "ALTER TABLE agw_tasks DROP COLUMN emulated",
              "ALTER TABLE agw_activations DROP COLUMN owner", "ALTER TABLE agw_tasks DROP COLUMN parameters",
              "ALTER TABLE agw_activations DROP COLUMN retry")
    again = SqlJournal(journal_url)
    await again.start()
    try:
        old = await again.get("old1")
        assert old.submitted_by == "" and old.audit == () and old.tasks[0].emulated == ()
        await again.record(Transition(activation_id="old1", phase="cancel", state="inProgress", actor="spiffe://x/op"))
        assert [e.actor for e in (await again.get("old1")).audit] == ["spiffe://x/op"]
    finally:
        await again.close()
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT max(version) FROM agw_schema_version")).scalar() == SCHEMA_VERSION == 7
    engine.dispose()


async def test_a_version_2_journal_is_upgraded_in_place(journal_url: str) -> None:
    first = SqlJournal(journal_url)
    await first.start()
    await create(first, "old2", tasks_=(task("t1"), full_task()))
    await first.close()
    downgrade(journal_url, 2, "ALTER TABLE agw_tasks DROP COLUMN emulated", "ALTER TABLE agw_activations DROP COLUMN owner",
              "ALTER TABLE agw_tasks DROP COLUMN parameters",
              "ALTER TABLE agw_activations DROP COLUMN retry")
    again = SqlJournal(journal_url)
    await again.start()
    try:
        old = await again.get("old2")
        assert [t.emulated for t in old.tasks] == [(), ()]  # rows from before the column: nothing emulated
        assert old.tasks[1] == dataclasses.replace(full_task(), emulated=())  # everything else as it was
        assert [t.emulated for _, t in await again.fallout()] == [()]  # the fallout listing reads it too
        notes = ("no confirmed-commit timer on the device",)
        await again.record(Transition(activation_id="old2", task_id="t1", task=TaskChanges(emulated=notes)))
        assert [t.emulated for t in (await again.get("old2")).tasks] == [notes, ()]
        await create(again, "new3", tasks_=(full_task(),))
        assert (await again.get("new3")).tasks == (full_task(),)
    finally:
        await again.close()
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version FROM agw_schema_version ORDER BY version")).scalars()
            assert list(versions) == [2, 3, 4, 5, 6, 7]
        column = next(c for c in sa.inspect(engine).get_columns("agw_tasks") if c["name"] == "emulated")
        assert column["nullable"] is False and "[]" in str(column["default"])
    finally:
        engine.dispose()


async def test_a_version_3_journal_is_upgraded_in_place(journal_url: str) -> None:
    """Version 4 (replicas): activations get an owner ("" for the old ones: a PostgreSQL replica
    adopts their unfinished ones), and the one-active-gateway epoch table goes."""
    first = SqlJournal(journal_url)
    await first.start()
    await create(first, "old3")
    await first.close()
    downgrade(journal_url, 3, "ALTER TABLE agw_activations DROP COLUMN owner",
              "CREATE TABLE agw_owner (id INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, holder VARCHAR NOT NULL, "
              "since TIMESTAMP NOT NULL)", "ALTER TABLE agw_tasks DROP COLUMN parameters",
              "ALTER TABLE agw_activations DROP COLUMN retry")
    again = SqlJournal(journal_url)
    await again.start()
    try:
        assert (await again.get("old3")).state.value == "acknowledged"
        if again.backend == "sqlite":  # one gateway: every unfinished activation is its own
            assert await again.unfinished() == ["old3"]
    finally:
        await again.close()
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT owner FROM agw_activations WHERE id = 'old3'")).scalar() == ""
            assert conn.execute(sa.text("SELECT max(version) FROM agw_schema_version")).scalar() == SCHEMA_VERSION
        assert "agw_owner" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


async def test_a_version_4_journal_is_upgraded_in_place(journal_url: str) -> None:
    """Version 5 (the Subscribe feed): the outbox's events get positions in the order of their times,
    the counter starts after them, and the next event follows."""
    first = SqlJournal(journal_url)
    await first.start()
    for aid in ("old1", "old2"):
        await create(first, aid)
        await first.record(Transition(activation_id=aid, phase="end", state="completed",
                                      activation_state=ActivationState.COMPLETED))
    before = {e.activation_id: e.id for aid in ("old1", "old2") for e in await first.outbox.events(aid)}
    await first.close()
    downgrade(journal_url, 4, "DROP INDEX ix_agw_outbox_position", "ALTER TABLE agw_outbox DROP COLUMN position",
              "DROP TABLE agw_sequences", "ALTER TABLE agw_tasks DROP COLUMN parameters",
              "ALTER TABLE agw_activations DROP COLUMN retry")
    again = SqlJournal(journal_url)
    await again.start()
    try:
        events = await again.outbox.after(0)
        assert [(e.position, e.activation_id, e.id) for e in events] == [
            (1, "old1", before["old1"]), (2, "old2", before["old2"])]
        assert await again.outbox.head() == 2
        await create(again, "new3")
        await again.record(Transition(activation_id="new3", phase="end", state="failed",
                                      activation_state=ActivationState.FAILED))
        assert [(e.position, e.activation_id) for e in await again.outbox.after(2)] == [(3, "new3")]
    finally:
        await again.close()


async def test_a_version_5_journal_is_upgraded_in_place(journal_url: str) -> None:
    """Version 6: tasks keep their (masked) parameters; older rows read back with none."""
    first = SqlJournal(journal_url)
    await first.start()
    await create(first, "old5")
    await first.close()
    downgrade(journal_url, 5, "ALTER TABLE agw_tasks DROP COLUMN parameters",
              "ALTER TABLE agw_activations DROP COLUMN retry")
    again = SqlJournal(journal_url)
    await again.start()
    try:
        assert [t.parameters for t in (await again.get("old5")).tasks] == [{}] and (await again.get("old5")).retry == {}
        given = dataclasses.replace(task("t9"), parameters={"name": "eth1", "mtu": 9000, "key": "********"})
        await create(again, "new6", tasks_=(given,))
        assert (await again.get("new6")).tasks[0].parameters == {"name": "eth1", "mtu": 9000, "key": "********"}
    finally:
        await again.close()
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT max(version) FROM agw_schema_version")).scalar() == SCHEMA_VERSION
        column = next(c for c in sa.inspect(engine).get_columns("agw_tasks") if c["name"] == "parameters")
        assert column["nullable"] is False and "{}" in str(column["default"])
    finally:
        engine.dispose()


async def test_a_fresh_journal_has_the_same_emulated_column_as_an_upgraded_one(journal: SqlJournal,
                                                                              journal_url: str) -> None:
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    try:
        column = next(c for c in sa.inspect(engine).get_columns("agw_tasks") if c["name"] == "emulated")
        assert column["nullable"] is False and "[]" in str(column["default"])
    finally:
        engine.dispose()


async def test_emulated_round_trips_in_an_in_memory_sqlite_journal() -> None:
    async with open_journal("sqlite://") as j:
        await create(j, "a1", tasks_=(full_task(), task("t2")))
        got = await j.get("a1")
        assert got.tasks[0].emulated == full_task().emulated and got.tasks[1].emulated == ()
        notes = ["gateway-computed diff"]  # a list is taken; read back as a tuple
        await j.record(Transition(activation_id="a1", task_id="t2", task=TaskChanges(emulated=notes)))  # type: ignore[arg-type]
        again = await j.get("a1")
        assert again.tasks[1].emulated == ("gateway-computed diff",) and again.tasks[0] == got.tasks[0]
        assert (await j.list(limit=1))[0] == again  # the SQLAlchemy read path decodes the same
        with pytest.raises(JournalError):
            TaskChanges(emulated=("ok", 1))  # type: ignore[arg-type]
