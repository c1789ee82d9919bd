"""Two gateways on one PostgreSQL journal: one is active, the other stands by and takes over only
when the active one's lease lapses; a gateway that lost its lease (frozen past it, then resumed)
touches no device and writes nothing (gateway/journal/lease.py). Real PostgreSQL, scripted devices.

The scenario of the issue, in one process: gateway A runs an activation; A freezes (its lease
heartbeat stops) in the middle of a push; B takes over after the lease and rolls the activation
back; A resumes and carries on where it was - and is refused at its next device call and its next
journal write. One owner at a time, one outcome in the journal, the device as it was.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import AsyncIterator

import pytest
import sqlalchemy as sa

from drivers.errors import Phase
from gateway.engine import Engine, transaction
from gateway.errors import FencedError
from gateway.journal import JournalOptions
from gateway.journal.testing import pg_admin, pg_url  # noqa: F401 - fixtures
from gateway.results import ActivationState
from tests.scripted_gateway import INITIAL, Gateway, kv, request

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
        await g.close()


async def test_a_standby_waits_while_the_active_gateway_runs_and_takes_over_when_it_stops(pg: Gateway) -> None:
    a = await pg.engine()
    standby = asyncio.create_task(pg.engine())
    await asyncio.sleep(LEASE_S)
    assert not standby.done()  # waiting: it recovers nothing while A holds the lease
    result = await pg.run(a, kv("x", "r1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED
    await pg.stop(a)  # a clean stop lets go at once
    b = await asyncio.wait_for(standby, timeout=LEASE_S * 2)
    assert (await b.get(result.id)).state == ActivationState.COMPLETED  # nothing to recover, nothing undone


async def test_a_frozen_gateway_is_taken_over_and_touches_nothing_when_it_resumes(pg: Gateway) -> None:
    a = await pg.engine()
    standby = asyncio.create_task(pg.engine())
    pushed, resume = asyncio.Event(), asyncio.Event()

    async def hold() -> None:  # A is "frozen" right after its push reached the device
        pushed.set()
        await resume.wait()

    pg.net.on("c1", "load", hold, after=True)
    submitted = await a.submit(request(kv("x", "c1", "if.ge1", "up")))
    await asyncio.wait_for(pushed.wait(), timeout=5)
    assert pg.net.config("c1")["if.ge1"] == "up"

    frozen = threading.Event()  # A's lease heartbeat stops too, as in a SIGSTOP
    lease = a.journal._lease.lease  # type: ignore[attr-defined]
    beat = lease.heartbeat
    lease.heartbeat = lambda: (frozen.wait(), beat())[1]  # type: ignore[method-assign]

    b = await asyncio.wait_for(standby, timeout=LEASE_S * 4)  # PostgreSQL ended A's session; B took over
    await asyncio.wait_for(b.wait_idle(), timeout=10)
    taken = await b.get(submitted.activation_id)
    assert taken.state == ActivationState.ROLLED_BACK, taken
    assert pg.net.config("c1") == INITIAL
    ops_after_takeover = list(pg.net.ops("c1"))

    resume.set()  # A resumes where it was: its next device call and its next write are refused
    await asyncio.sleep(0.5)
    assert not lease.valid()
    with pytest.raises(FencedError):
        await a.ctx.record(kv_transition(submitted.activation_id))
    frozen.set()
    await asyncio.wait_for(a.lost_claim.wait(), timeout=LEASE_S * 2)
    await asyncio.wait_for(a.wait_idle(), timeout=10)

    assert pg.net.ops("c1") == ops_after_takeover  # A sent nothing more
    assert pg.net.config("c1") == INITIAL
    final = await b.get(submitted.activation_id)
    assert final.state == ActivationState.ROLLED_BACK and final.tasks[0].state.value == "rolledBack"
    events = await b.journal.events(submitted.activation_id)
    assert not [e for e in events if e.state == "completed"]  # one outcome
    recovered_at = next(i for i, e in enumerate(events) if e.phase == Phase.RECOVER.value)
    assert not [e for e in events[recovered_at:] if e.phase in ("verify", "push", "commit")]  # nothing of A after


def kv_transition(activation_id: str):  # type: ignore[no-untyped-def]
    from gateway.transitions import Transition

    return Transition(activation_id=activation_id, phase="note", state="", message="a late write of A")


async def test_the_lease_time_is_bounded() -> None:
    from gateway.errors import JournalError
    from gateway.journal.lease import Lease

    with pytest.raises(JournalError):
        Lease(sa.create_engine("postgresql+psycopg://x@127.0.0.1/x"), holder="t", lease_s=0.5)


async def test_a_write_with_an_old_epoch_is_refused_by_the_database(pg_url: str) -> None:
    """The fence in the database, apart from the local count: a writer whose epoch is not the
    journal's (a takeover happened) writes nothing, even while its own clock says it is fine."""
    from datetime import datetime, timezone

    from gateway.journal import open_journal

    journal = open_journal(pg_url, options=JournalOptions(lease_s=LEASE_S, connect_timeout_s=3))
    await journal.start()
    try:
        await journal.claim(holder="test")
        aid, _ = await journal.create_activation(
            activation_id="a1", request_id="r1", fingerprint="f", order_ref="", atomic=True, dry_run=False,
            tasks=(), created_at=datetime.now(timezone.utc))
        lease = journal._lease.lease  # type: ignore[attr-defined]
        assert lease.valid()
        lease.epoch -= 1  # as if another gateway had taken over since
        with pytest.raises(FencedError) as refused:
            await journal.record(kv_transition(aid))
        assert "taken over" in str(refused.value) and refused.value.retryable is False
        lease.epoch += 1
        await journal.record(kv_transition(aid))  # the right epoch writes
        assert [e.message for e in await journal.events(aid)][-1] == "a late write of A"
        assert len([e for e in await journal.events(aid) if e.message == "a late write of A"]) == 1
    finally:
        await journal.close()
