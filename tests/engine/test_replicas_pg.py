"""Several gateway replicas on one PostgreSQL journal (gateway/journal/lease.py, cluster.py and
gateway/engine/replicas.py). Real PostgreSQL, scripted devices; each replica an engine of its own
in this process, all on the same scripted network.

The split brain of the issue, first: replica A runs an activation on a slow device, replica B
starts on the same journal. B must not "recover" A's live work: A finishes it, one outcome. Then:
a replica frozen past its lease is taken over by exactly one other, which rolls its work back;
resumed, it touches no device and writes nothing. Devices are serialized across replicas; Watch,
Get, Cancel and Rollback work on a replica that does not run the activation; duplicate Submits to
two replicas make one activation.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator

import pytest
import sqlalchemy as sa

from drivers.errors import Phase
from gateway.engine import Engine, transaction
from gateway.errors import FencedError, StateError
from gateway.journal import JournalOptions, open_journal
from gateway.journal.testing import pg_admin, pg_url  # noqa: F401 - fixtures
from gateway.results import ActivationState
from gateway.transitions import Transition
from tests.scripted_gateway import INITIAL, Gateway, gate, kv, request

LEASE_S = 2.0


@pytest.fixture
async def pg(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setattr(transaction, "OVERRUN_GRACE_S", 30.0)  # a held device call is not cut short here
    g = Gateway.create(tmp_path)
    g.journal_url = pg_url
    g.journal_options = JournalOptions(lease_s=LEASE_S, connect_timeout_s=3)
    try:
        yield g
    finally:
        for frozen in FROZEN:
            frozen.set()
        FROZEN.clear()
        await g.close()


FROZEN: list[threading.Event] = []


def note(activation_id: str, message: str = "a late write of A") -> Transition:
    return Transition(activation_id=activation_id, phase="note", state="", message=message)


def freeze(engine: Engine) -> threading.Event:
    """Stop the replica's lease heartbeat, as a SIGSTOP would; set the event to let it go on."""
    frozen = threading.Event()
    FROZEN.append(frozen)
    lease = engine.journal.cluster.lease  # type: ignore[attr-defined]
    beat = lease.heartbeat
    lease.heartbeat = lambda: (frozen.wait(), beat())[1]
    return frozen


async def test_a_second_replica_leaves_the_first_ones_live_work_alone(pg: Gateway) -> None:
    """The issue's split brain: B starting on the journal while A runs must not recover A's work."""
    a = await pg.engine()
    held = gate(pg.net, "r1", "load")
    submitted = await a.submit(request(kv("x", "r1", "if.ge1", "up")))
    await asyncio.wait_for(held.reached.wait(), timeout=5)
    b = await asyncio.wait_for(pg.engine(), timeout=LEASE_S * 2)  # starts at once: both are active
    await asyncio.sleep(LEASE_S)  # B looks for dead replicas meanwhile: A is alive
    assert (await b.get(submitted.activation_id)).state == ActivationState.IN_PROGRESS
    held.release.set()
    done = await b.get(submitted.activation_id, wait_s=10)  # B sees A's outcome
    assert done.state == ActivationState.COMPLETED
    events = await b.journal.events(submitted.activation_id)
    assert not [e for e in events if e.phase == Phase.RECOVER.value]
    assert [e.state for e in events if not e.task_id][-1] == "completed"
    assert pg.net.config("r1")["if.ge1"] == "up"


async def test_a_frozen_replica_is_taken_over_by_exactly_one_and_touches_nothing_when_it_resumes(pg: Gateway) -> None:
    a, b, c = await pg.engine(), await pg.engine(), await pg.engine()
    pushed, resume = asyncio.Event(), asyncio.Event()

    async def hold() -> None:  # A is "frozen" right after its push reached the device
        pushed.set()
        await resume.wait()

    pg.net.on("c1", "load", hold, after=True)
    submitted = await a.submit(request(kv("x", "c1", "if.ge1", "up")))
    await asyncio.wait_for(pushed.wait(), timeout=5)
    assert pg.net.config("c1")["if.ge1"] == "up"
    frozen = freeze(a)

    # PostgreSQL ends A's session after the lease; B or C takes A over and rolls its work back
    taken = await b.get(submitted.activation_id, wait_s=LEASE_S * 6)
    assert taken.state == ActivationState.ROLLED_BACK, taken
    assert pg.net.config("c1") == INITIAL
    ops_after_takeover = list(pg.net.ops("c1"))
    events = await b.journal.events(submitted.activation_id)
    assert len([e for e in events if e.phase == Phase.RECOVER.value and not e.task_id
                and e.state == ActivationState.IN_PROGRESS.value]) == 1  # exactly one replica took it over

    resume.set()  # A resumes where it was: its next device call and its next write are refused
    await asyncio.sleep(0.5)
    with pytest.raises(FencedError):
        await a.ctx.record(note(submitted.activation_id))
    frozen.set()
    await asyncio.wait_for(a.lost_claim.wait(), timeout=LEASE_S * 2)
    await asyncio.wait_for(a.wait_idle(), timeout=10)

    assert pg.net.ops("c1") == ops_after_takeover  # A sent nothing more
    assert pg.net.config("c1") == INITIAL
    final = await c.get(submitted.activation_id)
    assert final.state == ActivationState.ROLLED_BACK and final.tasks[0].state.value == "rolledBack"
    events = await c.journal.events(submitted.activation_id)
    assert not [e for e in events if e.state == "completed"]  # one outcome
    recovered_at = next(i for i, e in enumerate(events) if e.phase == Phase.RECOVER.value)
    assert not [e for e in events[recovered_at:] if e.phase in ("verify", "push", "commit")]  # nothing of A after


async def test_two_replicas_serialize_the_changes_of_one_device(pg: Gateway) -> None:
    a, b = await pg.engine(), await pg.engine()
    held = gate(pg.net, "r1", "load")
    first = await a.submit(request(kv("x", "r1", "if.ge1", "up"), request_id="one"))
    await asyncio.wait_for(held.reached.wait(), timeout=5)
    second = await b.submit(request(kv("x", "r1", "if.ge2", "up"), request_id="two"))
    await asyncio.sleep(1.0)  # B waits for the device's lease: it has sent nothing to r1
    second_now = await b.get(second.activation_id)
    assert all(t.state.value == "acknowledged" for t in second_now.tasks), second_now
    ops_before = len(pg.net.ops("r1"))
    held.release.set()
    assert (await a.get(first.activation_id, wait_s=10)).state == ActivationState.COMPLETED
    assert (await b.get(second.activation_id, wait_s=10)).state == ActivationState.COMPLETED
    assert len(pg.net.ops("r1")) > ops_before
    assert pg.net.config("r1") == {**INITIAL, "if.ge1": "up", "if.ge2": "up"}
    # every device lease is given back once the work is done
    await asyncio.sleep(0.3)
    assert a.ctx.locks.cluster is not None and a.ctx.locks.cluster.held() == []
    assert b.ctx.locks.cluster is not None and b.ctx.locks.cluster.held() == []


async def test_watch_on_a_replica_that_does_not_run_the_activation(pg: Gateway) -> None:
    a, b = await pg.engine(), await pg.engine()
    held = gate(pg.net, "r1", "load")
    submitted = await a.submit(request(kv("x", "r1", "if.ge1", "up")))
    await asyncio.wait_for(held.reached.wait(), timeout=5)
    seen: list[int] = []

    async def watch() -> list[str]:
        states = []
        async for event in b.watch(submitted.activation_id):
            seen.append(event.seq)
            states.append(event.state)
        return states

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.3)
    held.release.set()
    states = await asyncio.wait_for(watcher, timeout=10)
    assert seen == list(range(1, len(seen) + 1))  # every event, in order, live and past
    assert states[-1] == "completed"
    assert seen[-1] == len(await a.journal.events(submitted.activation_id))


async def test_duplicate_submits_to_two_replicas_make_one_activation(pg: Gateway) -> None:
    a, b = await pg.engine(), await pg.engine()
    req = request(kv("x", "r2", "if.ge1", "up"), request_id="same")
    one, two = await asyncio.gather(a.submit(req), b.submit(req))
    assert one.activation_id == two.activation_id and sorted([one.created, two.created]) == [False, True]
    done = await b.get(one.activation_id, wait_s=10)
    assert done.state == ActivationState.COMPLETED
    assert [op for op in pg.net.ops("r2") if op.startswith("load")].__len__() == 1  # pushed once


async def test_cancel_on_another_replica_reaches_the_one_running_it(pg: Gateway) -> None:
    a, b = await pg.engine(), await pg.engine()
    held = gate(pg.net, "r1", "lock")
    submitted = await a.submit(request(kv("x", "r1", "if.ge1", "up")))
    await asyncio.wait_for(held.reached.wait(), timeout=5)
    await b.cancel(submitted.activation_id)
    await asyncio.sleep(0.5)
    held.release.set()
    done = await b.get(submitted.activation_id, wait_s=10)
    assert done.state == ActivationState.CANCELLED, done
    assert any(e.phase == "cancel" for e in await b.journal.events(submitted.activation_id))
    assert pg.net.config("r1") == INITIAL


async def test_one_of_two_replicas_asked_to_roll_back_at_once_starts_it(pg: Gateway) -> None:
    a, b = await pg.engine(), await pg.engine()
    result = await pg.run(a, kv("x", "r1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED
    answers = await asyncio.gather(a.rollback(result.id), b.rollback(result.id), return_exceptions=True)
    refused = [x for x in answers if isinstance(x, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], StateError), answers
    done = await a.get(result.id, wait_s=10)
    assert done.state == ActivationState.ROLLED_BACK
    assert pg.net.config("r1") == INITIAL
    events = await a.journal.events(result.id)
    assert len([e for e in events if e.phase == "rollback" and e.message == "rollback requested"]) == 1


async def test_a_dead_replicas_device_waits_for_the_recovery_of_its_work(pg: Gateway) -> None:
    """A device inherited from a dead replica is changed by nobody before its half-done change is
    undone: B's new activation on it runs after the takeover's rollback, not before."""
    a, b = await pg.engine(), await pg.engine()
    pushed, never = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        pushed.set()
        await never.wait()

    pg.net.on("c1", "load", hold, after=True)
    first = await a.submit(request(kv("x", "c1", "if.ge1", "up"), request_id="a"))
    await asyncio.wait_for(pushed.wait(), timeout=5)
    frozen = freeze(a)
    pg.net.clear("c1")
    second = await b.submit(request(kv("x", "c1", "if.ge2", "up"), request_id="b"))
    assert (await b.get(first.activation_id, wait_s=LEASE_S * 6)).state == ActivationState.ROLLED_BACK
    assert (await b.get(second.activation_id, wait_s=10)).state == ActivationState.COMPLETED
    assert pg.net.config("c1") == {**INITIAL, "if.ge2": "up"}  # A's change undone, B's applied after it
    never.set()
    frozen.set()
    await asyncio.wait_for(a.lost_claim.wait(), timeout=LEASE_S * 2)


async def test_the_lease_time_is_bounded() -> None:
    from gateway.errors import JournalError
    from gateway.journal.lease import ReplicaLease

    with pytest.raises(JournalError):
        ReplicaLease(sa.create_engine("postgresql+psycopg://x@127.0.0.1/x"), holder="t", lease_s=0.5)


async def test_a_write_of_a_replica_taken_over_is_refused_by_the_database(pg_url: str) -> None:
    """The fence in the database, apart from the local count: once a replica's row says it was
    taken over, its writes and device leases are refused, even while its own clock says it is fine."""
    # a long lease: its heartbeat (which would notice the row too, and give up) does not run meanwhile
    journal = open_journal(pg_url, options=JournalOptions(lease_s=120, connect_timeout_s=3))
    await journal.start()
    try:
        await journal.claim(holder="test")
        aid, _ = await journal.create_activation(
            activation_id="a1", request_id="r1", fingerprint="f", order_ref="", atomic=True, dry_run=False,
            tasks=(), created_at=datetime.now(timezone.utc))
        cluster = journal.cluster  # type: ignore[attr-defined]
        assert cluster.valid()
        engine = sa.create_engine(pg_url)
        with engine.begin() as conn:  # as if another replica had taken this one over
            conn.execute(sa.text("UPDATE agw_replicas SET alive = false WHERE id = :r"), {"r": cluster.replica_id})
        with pytest.raises(FencedError) as refused:
            await journal.record(note(aid))
        assert "taken over" in str(refused.value) and refused.value.retryable is False
        with pytest.raises(FencedError):
            await cluster.take_devices(["r1"], owner="test")
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE agw_replicas SET alive = true WHERE id = :r"), {"r": cluster.replica_id})
            owner = conn.execute(sa.text("SELECT owner FROM agw_activations WHERE id = 'a1'")).scalar()
        engine.dispose()
        assert owner == cluster.replica_id
        await journal.record(note(aid))  # alive again: it writes
        assert len([e for e in await journal.events(aid) if e.message == "a late write of A"]) == 1
    finally:
        await journal.close()


async def test_replicas_starting_at_once_on_a_new_journal_create_its_schema_once(pg_url: str) -> None:
    """Three replicas started together on an empty schema: each opens (before: a race in CREATE
    TABLE failed all but one with a unique violation on pg_type)."""
    journals = [open_journal(pg_url, options=JournalOptions(lease_s=LEASE_S, connect_timeout_s=3)) for _ in range(4)]
    try:
        await asyncio.gather(*(j.start() for j in journals))
        await asyncio.gather(*(j.claim(holder=f"r{i}") for i, j in enumerate(journals)))
        assert len({j.cluster.replica_id for j in journals}) == 4  # type: ignore[attr-defined]
    finally:
        for j in journals:
            await j.close()


async def test_a_peer_row_with_any_id_is_handled_as_data(pg_url: str) -> None:
    """Replica ids come back from the database (a peer's row) and are bound as parameters: a row
    whose id is not one of ours (quotes, spaces) is found dead and taken over like any other, where
    a text quote of it used to stop the takeover scan with a ValueError."""
    from gateway.journal.lease import ReplicaLease

    journal = open_journal(pg_url, options=JournalOptions(lease_s=120, connect_timeout_s=3))
    await journal.start()
    engine = sa.create_engine(pg_url)
    odd = "x'); SELECT pg_sleep(30); --"
    try:
        await journal.claim(holder="test")
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO agw_replicas (id, holder, started_at, alive, taken_over_by) "
                                 "VALUES (:r, 'ghost', now(), true, '')"), {"r": odd})
        lease = ReplicaLease(engine, holder="checker", lease_s=120)
        lease.register()
        try:
            assert odd in await asyncio.to_thread(lease.dead_peers)
            assert await asyncio.to_thread(lease.take_over, odd) == []
        finally:
            lease.release()
        with engine.begin() as conn:
            row = conn.execute(sa.text("SELECT alive, taken_over_by FROM agw_replicas WHERE id = :r"), {"r": odd}).one()
        assert row == (False, lease.replica_id)
    finally:
        engine.dispose()
        await journal.close()
