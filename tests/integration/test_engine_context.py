"""EngineContext.record / note on a real journal (SQLite file and PostgreSQL): what watchers hear
and in which order, and what happens when a queued transition cannot be written."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.engine.context import EngineContext, utcnow
from gateway.engine.devices import DeviceLocks, SessionPool
from gateway.engine.events import EventBus
from gateway.journal import Pending, RecoveryChanges, SqlJournal, TaskChanges, Transition
from gateway.journal.testing import journal, journal_url, pg_admin  # noqa: F401 - fixtures
from gateway.model import Action, TaskState
from gateway.results import ActivationState, Event, TaskResult


def _no_credentials(ref: str) -> object:
    raise AssertionError("no session is opened here")


@pytest.fixture
async def ctx(journal: SqlJournal) -> EngineContext:  # noqa: F811 - fixture
    await journal.create_activation(
        activation_id="a1", request_id="r1", fingerprint="fp", order_ref="", atomic=True, dry_run=False,
        tasks=[TaskResult(id="t1", device="nc1", service="interface", action=Action.CREATE,
                          state=TaskState.ACKNOWLEDGED)],
        created_at=utcnow(),
    )
    pool = SessionPool(registry=None, resolve_credential=_no_credentials)  # type: ignore[arg-type]
    return EngineContext(journal=journal, pool=pool, locks=DeviceLocks(), bus=EventBus())


async def _heard(ctx: EngineContext, activation_id: str, n: int) -> list[Event]:
    """The first n events a watcher subscribed now hears live (past events are not read here)."""
    heard: list[Event] = []

    async def no_past() -> list[Event]:
        return []

    async def not_over() -> bool:
        return False

    async for ev in ctx.bus.stream(activation_id, past=no_past, is_over=not_over):
        heard.append(ev)
        if len(heard) == n:
            break
    return heard


async def test_notes_are_heard_in_order_with_the_records_after_they_are_written(ctx: EngineContext) -> None:
    listener = asyncio.create_task(_heard(ctx, "a1", 4))
    await asyncio.sleep(0)  # subscribed
    ctx.note(Transition(activation_id="a1", state=ActivationState.IN_PROGRESS.value, phase="start",
                        activation_state=ActivationState.IN_PROGRESS))
    ctx.note(Transition(activation_id="a1", task_id="t1", phase="connect", state="inProgress",
                        task=TaskChanges(state=TaskState.IN_PROGRESS)))
    assert not listener.done()
    ev = await ctx.record(Transition(activation_id="a1", task_id="t1", phase="push", state="inProgress",
                                     recovery=RecoveryChanges(pending=Pending.STAGED)))
    ctx.note(Transition(activation_id="a1", task_id="t1", phase="verify", state="inProgress", message="verified"))
    heard = await asyncio.wait_for(listener, 10)
    assert [(e.seq, e.phase) for e in heard] == [(2, "start"), (3, "connect"), (4, "push"), (5, "verify")]
    assert heard[2] == ev
    stored = await ctx.journal.events("a1")
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5]  # heard only what is written
    result = await ctx.journal.get("a1")
    assert result.state is ActivationState.IN_PROGRESS and result.tasks[0].state is TaskState.IN_PROGRESS


async def test_a_note_that_cannot_be_written_is_logged_and_not_announced(
    ctx: EngineContext, caplog: pytest.LogCaptureFixture
) -> None:
    listener = asyncio.create_task(_heard(ctx, "a1", 1))
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="gateway.engine.context"):
        ctx.note(Transition(activation_id="a1", task_id="no-such-task", phase="connect", state="inProgress"))
        ev = await ctx.record(Transition(activation_id="a1", task_id="t1", phase="push", state="inProgress"))
        await asyncio.sleep(0)
    assert "no-such-task" in caplog.text and "queued transition failed" in caplog.text
    heard = await asyncio.wait_for(listener, 10)
    assert heard == [ev]  # the failed note was never announced; the next record was
    assert [e.phase for e in await ctx.journal.events("a1")] == ["", "push"]
