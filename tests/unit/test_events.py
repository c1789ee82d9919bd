"""The Watch fan-out: past events first, then live ones, no gap, no repeat, end on a final state."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from gateway.engine.events import EventBus, is_terminal
from gateway.results import Event

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def ev(seq: int, *, task: str = "t", state: str = "inProgress") -> Event:
    return Event(activation_id="a", seq=seq, time=NOW, task_id=task, state=state)


def test_terminal_events() -> None:
    assert is_terminal(ev(1, task="", state="completed"))
    assert is_terminal(ev(1, task="", state="fallout"))
    assert not is_terminal(ev(1, task="", state="inProgress"))
    assert not is_terminal(ev(1, task="t", state="completed"))  # a task ending is not the activation ending


async def test_past_then_live_without_gap_or_repeat() -> None:
    bus = EventBus()
    journal = [ev(1), ev(2)]
    over = False

    async def past() -> list[Event]:
        return list(journal)

    async def is_over() -> bool:
        return over

    seen: list[int] = []

    async def watch() -> None:
        async for e in bus.stream("a", past=past, is_over=is_over):
            seen.append(e.seq)

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.01)
    bus.publish(ev(2))  # already delivered from the journal: dropped
    for e in (ev(3), ev(4, task="", state="completed")):
        journal.append(e)
        bus.publish(e)
    await asyncio.wait_for(task, 1)
    assert seen == [1, 2, 3, 4]


async def test_finished_activation_replays_and_ends() -> None:
    bus = EventBus()
    history = [ev(1), ev(2, task="", state="rolledBack")]

    async def past() -> list[Event]:
        return history

    async def is_over() -> bool:
        raise AssertionError("a history ending in a final state needs no further read")

    got = [e.seq async for e in bus.stream("a", past=past, is_over=is_over)]
    assert got == [1, 2]


async def test_event_written_between_reads_is_not_lost() -> None:
    """The final event lands in the journal after the history was read but before the
    watcher subscribed to live events: the second journal read delivers it."""
    bus = EventBus()
    reads = [[ev(1)], [ev(1), ev(2, task="", state="completed")]]

    async def past() -> list[Event]:
        return reads.pop(0)

    async def is_over() -> bool:
        return True

    got = [e.seq async for e in bus.stream("a", past=past, is_over=is_over)]
    assert got == [1, 2]
    assert not bus._subscribers  # the watcher unsubscribed
