"""Resource pools on a real PostgreSQL journal: two gateway replicas in this process share it;
Submits to both at once never get the same value (the pool row lock), exhaustion is clean, a
rollback on one replica gives back what the other allocated."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest

from gateway.engine import transaction
from gateway.errors import StateError
from gateway.journal import JournalOptions
from gateway.journal.testing import pg_admin, pg_url  # noqa: F401 - fixtures
from gateway.results import ActivationState
from tests.engine.test_pools import alloc, assert_whole, define, in_use, link, link_templates, rows  # noqa: F401
from tests.scripted_gateway import Gateway, request, task


@pytest.fixture
async def pg(tmp_path: Path, pg_url: str, link_templates: Path,  # noqa: F811
             monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setattr(transaction, "OVERRUN_GRACE_S", 0.05)
    g = Gateway.create(tmp_path, templates_root=link_templates)
    g.journal_url = pg_url
    g.journal_options = JournalOptions(lease_s=5.0, connect_timeout_s=3)
    try:
        yield g
    finally:
        await g.close()


async def test_submits_to_two_replicas_at_once_never_share_a_value(pg: Gateway) -> None:
    a, b = await pg.engine(), await pg.engine()
    await define(a)
    await define(b)  # the same file applied by both: nothing changes
    n = 60
    devices = ("r1", "r2", "c1", "c2")
    submitted = await asyncio.gather(*(
        (a if i % 2 else b).submit(request(link(f"t{i}", devices[i % 4], f"l{i}", address=alloc("loopbacks"),
                                                vlan=alloc("vlans")), request_id=f"req-{i}"))
        for i in range(n)))
    await asyncio.wait_for(asyncio.gather(a.wait_idle(), b.wait_idle()), timeout=120)
    values = [task(await a.get(s.activation_id), f"t{i}").parameters for i, s in enumerate(submitted)]
    assert len({v["address"] for v in values}) == n and len({v["vlan"] for v in values}) == n
    assert len(in_use(a, "loopbacks")) == n
    # exhaustion across replicas: 4 /31s, 6 Submits split over both; exactly 4 get one
    outcomes = await asyncio.gather(*(
        (a if i % 2 else b).submit(request(link("x", "c1", f"x{i}", prefix=alloc("links", 31)), request_id=f"x-{i}"))
        for i in range(6)), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(refused) == 2 and all(isinstance(o, StateError) and "pool links" in str(o) for o in refused), refused
    await asyncio.wait_for(asyncio.gather(a.wait_idle(), b.wait_idle()), timeout=60)
    assert sorted(in_use(a, "links")) == ["10.0.0.0/31", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/31"]
    assert rows(a, "SELECT COUNT(*) FROM agw_activations WHERE request_id LIKE 'x-%'")[0][0] == 4


async def test_a_rollback_on_one_replica_gives_back_what_the_other_allocated(pg: Gateway) -> None:
    a, b = await pg.engine(), await pg.engine()
    await define(a)
    result = await pg.run(a, link("a", "r1", prefix=alloc("links", 31), vlan=alloc("vlans")))
    assert result.state == ActivationState.COMPLETED
    again = await b.submit(request(link("a", "r1", prefix=alloc("links", 31), vlan=alloc("vlans"))))
    assert (again.created, again.activation_id) == (False, result.id)  # retried on the other replica
    await b.rollback(result.id)
    assert (await pg.settle(b, result.id)).state == ActivationState.ROLLED_BACK
    assert_whole(a, "links")
    assert_whole(a, "vlans")


async def test_crash_recovery_on_postgresql_gives_the_values_back(pg: Gateway) -> None:
    first = await pg.engine()
    await define(first)
    reached = pg.net.crash_at("r1", "commit")
    submitted = await first.submit(request(link("a", "r1", prefix=alloc("links", 31))))
    await asyncio.wait_for(reached.wait(), timeout=5)
    await pg.crash(first)
    pg.net.clear()
    second = await pg.engine()
    result = await second.get(submitted.activation_id, wait_s=30)
    assert result.state == ActivationState.ROLLED_BACK, result.state
    assert_whole(second, "links")
