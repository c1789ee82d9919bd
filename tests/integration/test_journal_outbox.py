"""The outbox in the journal, against real stores (a SQLite file and PostgreSQL): an event is
written in the transaction of the record that ends the activation (and only then), its payload
read from the rows as that transaction leaves them, no Secret in clear; claims are exclusive and
fenced by their attempt; replay; retention takes the events with their activations."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from gateway.errors import NotFoundError
from gateway.journal import RecoveryChanges, SqlJournal, TaskChanges, Transition
from gateway.journal.deliveries import Route
from gateway.journal.outbox import MAX_TEXT_CHARS
from gateway.journal.testing import journal, journal_url, pg_admin  # noqa: F401 - fixtures
from gateway.model import Action, TaskState
from gateway.results import ActivationState, ErrorView, PhaseTiming, RollbackView, TaskResult, VerificationView
from gateway.secrets import MASK, Secret

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
CLEAR = "s3cret-value-in-clear"


async def create(j: SqlJournal, aid: str, *tids: str, rendered: object = "x = 1") -> None:
    await j.create_activation(
        activation_id=aid, request_id=f"req-{aid}", fingerprint="fp", order_ref=f"order-{aid}", atomic=True,
        dry_run=False, created_at=T0, submitted_by="spiffe://test/orchestrator",
        tasks=tuple(TaskResult(id=t, device="nc1", service="svc", action=Action.CREATE, state=TaskState.ACKNOWLEDGED,
                               platform="p", driver="d", rendered=rendered,  # type: ignore[arg-type]
                               parameters={"name": t, "mtu": 9000, "key": "********"})
                    for t in tids or ("t1",)))


def end(aid: str, state: ActivationState, **kw: object) -> Transition:
    return Transition(activation_id=aid, phase="end", state=state.value, message=f"activation {state.value}",
                      activation_state=state, **kw)  # type: ignore[arg-type]


async def test_an_end_state_writes_one_event_with_the_rows_of_its_transaction(journal: SqlJournal) -> None:
    await create(journal, "a1", "t1", "t2")
    await journal.record(Transition(activation_id="a1", phase="start", state="inProgress",
                                    activation_state=ActivationState.IN_PROGRESS))
    assert await journal.outbox.events("a1") == []  # not an end state
    timing = PhaseTiming(phase="push", started_at=T0, duration_ms=12.5)
    # the task's last changes and the end in ONE batch: the payload sees the changes
    writer = journal._writer
    writer._draining = True  # hold the writer until both are queued: one batch
    writer._idle.clear()
    pending = [asyncio.ensure_future(c) for c in (
        journal.record(Transition(activation_id="a1", task_id="t1", phase="verify", state="completed",
                                  task=TaskChanges(state=TaskState.COMPLETED, diff="+x = 1", timings=(timing,),
                                                   verification=VerificationView(ok=True, checked=1)))),
        journal.record(end("a1", ActivationState.PARTIAL)),
    )]
    await asyncio.sleep(0)  # each has queued its record
    assert writer.executor is not None
    before = journal.batches
    writer.executor.submit(writer._drain)
    events = await asyncio.gather(*pending)
    assert journal.batches - before == 1
    [ev] = await journal.outbox.events("a1")
    assert ev.type == "net.agw.activation.partial" and ev.seq == events[1].seq and ev.time == events[1].time
    data = ev.data()
    assert (data["outcome"], data["activation_id"], data["request_id"], data["order_ref"]) == (
        "partial", "a1", "req-a1", "order-a1")
    assert data["submitted_by"] == "spiffe://test/orchestrator" and data["atomic"] is True and data["retry"] == {}
    t1, t2 = data["tasks"]
    assert (t1["id"], t1["state"], t1["diff"], t1["duration_ms"]) == ("t1", "completed", "+x = 1", 12.5)
    assert t1["verification"] == {"ok": True, "checked": 1, "mismatches": [], "detail": ""}
    assert t1["timings"] == [{"phase": "push", "started_at": T0.isoformat(), "duration_ms": 12.5}]
    assert (t2["id"], t2["state"], t2["rendered"]) == ("t2", "acknowledged", "x = 1")
    assert t1["parameters"] == {"name": "t1", "mtu": 9000, "key": "********"}  # as journaled at creation
    # every later end is an event of its own
    await journal.record(Transition(activation_id="a1", phase="rollback", state="inProgress",
                                    activation_state=ActivationState.IN_PROGRESS))
    await journal.record(end("a1", ActivationState.ROLLED_BACK))
    assert [e.type for e in await journal.outbox.events("a1")] == ["net.agw.activation.partial",
                                                                    "net.agw.activation.rolledBack"]
    assert len({e.id for e in await journal.outbox.events("a1")}) == 2


async def test_a_record_that_fails_writes_no_event(journal: SqlJournal) -> None:
    await create(journal, "a1")
    with pytest.raises(NotFoundError):
        await journal.record(end("a1", ActivationState.COMPLETED, task_id="nope"))
    assert await journal.outbox.events("a1") == []
    with pytest.raises(NotFoundError):
        await journal.record(end("a2", ActivationState.COMPLETED))
    assert (await journal.get("a1")).state == ActivationState.ACKNOWLEDGED


async def test_no_secret_reaches_a_payload(journal: SqlJournal) -> None:
    await create(journal, "a1", rendered=Secret(CLEAR))
    secret = Secret(CLEAR)
    await journal.record(Transition(
        activation_id="a1", task_id="t1", phase="rollback_verify", state="fallout", message=secret,  # type: ignore[arg-type]
        task=TaskChanges(state=TaskState.FALLOUT, diff=secret, note=secret,  # type: ignore[arg-type]
                         error=ErrorView(kind="DeviceRejectedError", message=secret),  # type: ignore[arg-type]
                         rollback=RollbackView(method="restore", ok=False, reason=secret, diff=secret),  # type: ignore[arg-type]
                         verification=VerificationView(ok=False, checked=1, detail=secret,  # type: ignore[arg-type]
                                                       mismatches=(secret,))),  # type: ignore[arg-type]
        recovery=RecoveryChanges(persist_id=secret)))  # type: ignore[arg-type]
    await journal.record(end("a1", ActivationState.FALLOUT))
    [ev] = await journal.outbox.events("a1")
    assert CLEAR not in ev.payload
    t = ev.data()["tasks"][0]
    assert MASK in (t["rendered"], t["diff"], t["note"], t["error"]["message"], t["rollback"]["reason"])
    assert t["rendered"] == MASK and t["diff"] == MASK and t["error"]["message"] == MASK


async def test_long_texts_are_cut_and_named(journal: SqlJournal) -> None:
    await create(journal, "a1", rendered="r" * (MAX_TEXT_CHARS + 10))
    await journal.record(end("a1", ActivationState.FAILED))
    t = (await journal.outbox.events("a1"))[0].data()["tasks"][0]
    assert len(t["rendered"]) == MAX_TEXT_CHARS and t["truncated"] == ["rendered"]


async def test_claims_are_exclusive_fenced_by_their_attempt_and_replayable(journal: SqlJournal) -> None:
    outbox = journal.outbox
    for aid in ("a1", "a2"):
        await create(journal, aid)
        await journal.record(end(aid, ActivationState.COMPLETED))
    now = datetime.now(timezone.utc)
    routed = await outbox.fan_out(lambda e: [Route(subscriber="s1"), Route(subscriber="s2", dead="too old")],
                                  now=now)
    assert routed == 2 and await outbox.fan_out(lambda e: [Route(subscriber="x")], now=now) == 0  # once
    assert await outbox.counts() == {"pending": 2, "delivered": 0, "dead": 2}
    claims = await outbox.claim({"s1": 30.0}, now=now, limit=10)
    assert sorted(c.event.activation_id for c in claims) == ["a1", "a2"] and {c.attempt for c in claims} == {1}
    assert await outbox.claim({"s1": 30.0}, now=now, limit=10) == []  # leased: nobody else gets them
    c1, c2 = claims
    assert await outbox.finish(c1, state="delivered", now=now)
    assert not await outbox.finish(c1, state="dead", now=now)  # that attempt is over
    later = now + timedelta(seconds=31)
    [again] = await outbox.claim({"s1": 30.0}, now=later, limit=10)  # c2's lease ran out: due again
    assert again.event.id == c2.event.id and again.attempt == 2
    assert not await outbox.finish(c2, state="delivered", now=later)  # the old attempt's late answer: dropped
    assert await outbox.finish(again, state="pending", now=later, next_attempt_at=later + timedelta(seconds=5),
                               error="HTTP 503: busy", status=503)
    [row] = await outbox.list(state="pending")
    assert (row.attempts, row.last_status, row.last_error) == (2, 503, "HTTP 503: busy")
    assert await outbox.replay(now=later, dead=True) == 2
    assert await outbox.counts() == {"pending": 3, "delivered": 1, "dead": 0}
    assert await outbox.replay(now=later, event_id=c1.event.id) == 2  # every delivery of it, delivered too
    assert await outbox.replay(now=later, event_id=c1.event.id, subscriber="s3") == 1  # a new subscriber
    with pytest.raises(NotFoundError):
        await outbox.replay(now=later, event_id="nope")
    assert {r.subscriber for r in await outbox.list(activation_id="a1")} == {"s1", "s2", "s3"}


async def test_retention_takes_the_events_and_deliveries_with_their_activation(journal: SqlJournal) -> None:
    await create(journal, "a1")
    await journal.record(end("a1", ActivationState.COMPLETED))
    await journal.outbox.fan_out(lambda e: [Route(subscriber="s1")], now=datetime.now(timezone.utc))
    assert await journal.prune(datetime.now(timezone.utc) + timedelta(days=1)) == 1
    assert await journal.outbox.events("a1") == [] and await journal.outbox.list() == []


async def test_two_journals_claiming_at_once_never_get_the_same_delivery(journal: SqlJournal,
                                                                        journal_url: str) -> None:
    """Two gateways on one store (replicas on PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: the write
    lock) claim at the same moment: every due delivery goes to exactly one of them."""
    other = SqlJournal(journal_url)
    await other.start()
    try:
        for n in range(12):
            await create(journal, f"a{n}")
            await journal.record(end(f"a{n}", ActivationState.COMPLETED))
        now = datetime.now(timezone.utc)
        await journal.outbox.fan_out(lambda e: [Route(subscriber="s1"), Route(subscriber="s2")], now=now)
        leases = {"s1": 60.0, "s2": 60.0}
        rounds = [asyncio.gather(journal.outbox.claim(leases, now=now, limit=7),
                                 other.outbox.claim(leases, now=now, limit=7)) for _ in range(3)]
        got = [c for pair in [await r for r in rounds] for claims in pair for c in claims]
        keys = [(c.event.id, c.subscriber) for c in got]
        assert len(keys) == len(set(keys)) == 24  # all of them, each once
        assert {c.attempt for c in got} == {1}
    finally:
        await other.close()


async def test_events_are_numbered_in_commit_order_and_a_position_is_never_given_twice(journal: SqlJournal) -> None:
    """The Subscribe feed's order: positions 1, 2, 3… as the events were committed (several in one
    batch: consecutive), read back after any position; pruning never makes a position come back."""
    outbox = journal.outbox
    assert await outbox.head() == 0 and await outbox.after(0) == []
    for aid in ("a1", "a2", "a3"):
        await create(journal, aid)
    await journal.record(end("a1", ActivationState.COMPLETED))
    writer = journal._writer  # two ends in one batch
    writer._draining = True
    writer._idle.clear()
    pending = [asyncio.ensure_future(journal.record(end(aid, ActivationState.FAILED))) for aid in ("a2", "a3")]
    await asyncio.sleep(0)
    assert writer.executor is not None
    writer.executor.submit(writer._drain)
    await asyncio.gather(*pending)
    events = await outbox.after(0)
    assert [(e.position, e.activation_id) for e in events] == [(1, "a1"), (2, "a2"), (3, "a3")]
    assert await outbox.head() == 3
    assert [e.position for e in await outbox.after(1, limit=1)] == [2]
    assert [e.activation_id for e in await outbox.after(3)] == []
    assert await journal.prune(datetime.now(timezone.utc) + timedelta(days=1)) == 3
    assert await outbox.after(0) == [] and await outbox.head() == 3
    await create(journal, "a4")
    await journal.record(end("a4", ActivationState.COMPLETED))
    assert [(e.position, e.activation_id) for e in await outbox.after(0)] == [(4, "a4")]


async def test_two_journals_writing_at_once_number_every_event_once(journal: SqlJournal, journal_url: str) -> None:
    """Replicas (PostgreSQL) or two writers in turn (SQLite): positions stay dense and unique."""
    other = SqlJournal(journal_url)
    await other.start()
    try:
        for n in range(10):
            await create(journal, f"a{n}")
        await asyncio.gather(*(j.record(end(f"a{n}", ActivationState.COMPLETED))
                               for n, j in enumerate([journal, other] * 5)))
        events = await other.outbox.after(0)
        assert sorted(e.position for e in events) == list(range(1, 11)) == [e.position for e in events]
        assert {e.activation_id for e in events} == {f"a{n}" for n in range(10)}
        assert await journal.outbox.head() == await other.outbox.head() == 10
    finally:
        await other.close()
