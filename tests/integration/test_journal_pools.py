"""The journal's pool tables on both backends (SQLite file, real PostgreSQL): the upgrade of a
version 6 journal to version 7 (the pool tables), allocation and release through the writer's
transactions, and concurrent allocations from many writers' batches."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import sqlalchemy as sa

from gateway.errors import StateError
from gateway.journal import SqlJournal
from gateway.journal.schema import SCHEMA_VERSION
from gateway.journal.testing import journal, journal_url, pg_admin  # noqa: F401 - fixtures
from gateway.model import Action
from gateway.resources.file import parse_pools
from gateway.resources.params import AllocationRequest
from gateway.results import ActivationState
from gateway.transitions import Transition
from tests.integration.test_journal import T0, create, downgrade, task

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
POOLS = parse_pools({"pools": {"p": {"kind": "ipv4", "prefix": "10.0.0.0/28"}}})


def want(tid: str = "t1", prefix_length: int | None = None) -> AllocationRequest:
    return AllocationRequest(task_id=tid, path=("address",), field="tasks[0].parameters.address", pool="p",
                             prefix_length=prefix_length)


async def allocated(j: SqlJournal, aid: str, *requests: AllocationRequest) -> dict[object, object]:
    got: dict[object, object] = {}

    def complete(values: dict[object, object]) -> dict[int, object]:
        got.clear()
        got.update(values)
        return {}

    await j.create_activation(activation_id=aid, request_id=f"req-{aid}", fingerprint="fp", order_ref="", atomic=True,
                              dry_run=False, tasks=(task("t1"),), created_at=T0, allocations=requests,
                              complete=complete)  # type: ignore[arg-type]
    return got


async def test_a_version_6_journal_is_upgraded_to_the_pool_tables(journal_url: str) -> None:  # noqa: F811
    first = SqlJournal(journal_url)
    await first.start()
    await create(first, "old6")
    await first.close()
    downgrade(journal_url, 6, "DROP TABLE agw_allocations", "DROP TABLE agw_pool_free", "DROP TABLE agw_pools")
    again = SqlJournal(journal_url)
    await again.start()
    try:
        assert (await again.get("old6")).state == ActivationState.ACKNOWLEDGED
        assert await again.pools.define(POOLS, now=NOW) == [("p", "created")]
        assert await allocated(again, "new7", want()) == {("t1", ("address",)): "10.0.0.0"}
    finally:
        await again.close()
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT max(version) FROM agw_schema_version")).scalar() == SCHEMA_VERSION == 7
        assert {"agw_pools", "agw_pool_free", "agw_allocations"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


async def test_many_concurrent_creates_in_group_commit_batches_get_distinct_values(journal: SqlJournal) -> None:  # noqa: F811
    await journal.pools.define(POOLS, now=NOW)
    results = await asyncio.gather(*(allocated(journal, f"a{i}", want()) for i in range(16)))
    values = [next(iter(r.values())) for r in results]
    assert sorted(values, key=lambda v: int(str(v).rsplit(".", 1)[1])) == [f"10.0.0.{i}" for i in range(16)]
    try:
        await allocated(journal, "a16", want())
        raise AssertionError("a 17th address from a /28")
    except StateError as exc:
        assert "pool p (10.0.0.0/28) is exhausted" in str(exc)
    assert await journal.find_by_request_id("req-a16") is None
    # an activation that ends rolledBack gives its values back in the same transaction
    await journal.record(Transition(activation_id="a3", phase="end", state="rolledBack",
                                    activation_state=ActivationState.ROLLED_BACK))
    info = await journal.pools.get("p")
    assert info is not None and (info.allocated, info.free) == (15, 1)
    assert await allocated(journal, "again", want()) == {("t1", ("address",)): values[3]}


async def test_a_delete_task_s_release_claim(journal: SqlJournal) -> None:  # noqa: F811
    from gateway.resources.params import ReleaseRequest
    from gateway.transitions import TaskChanges
    from gateway.model import TaskState

    await journal.pools.define(POOLS, now=NOW)
    await allocated(journal, "a1", want(prefix_length=30))
    claim = ReleaseRequest(task_id="t1", path=("address",), field="tasks[0].parameters.address", pool="p",
                           value="10.0.0.0/30")
    await journal.create_activation(activation_id="d1", request_id="req-d1", fingerprint="fp", order_ref="",
                                    atomic=True, dry_run=False, tasks=(task("t1", action=Action.DELETE),),
                                    created_at=T0, releases=(claim,))
    assert (await journal.pools.get("p")).allocations[0].release_activation == "d1"  # type: ignore[union-attr]
    await journal.record(Transition(activation_id="d1", task_id="t1", phase="confirm", state="completed",
                                    task=TaskChanges(state=TaskState.COMPLETED)))
    info = await journal.pools.get("p")
    assert info is not None and (info.allocated, info.free) == (0, 16)
