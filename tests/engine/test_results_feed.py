"""The Subscribe feed on the engine (gateway/engine/feed.py), without the gRPC edge: an end in this
process wakes the streams at once (however long the poll interval), and on a PostgreSQL journal
shared by two replicas a stream on one gets the other's events, in the order they were committed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import pytest

from gateway.engine import Engine
from gateway.engine.feed import encode_cursor
from gateway.engine.limits import EngineSettings
from gateway.journal import JournalOptions
from gateway.journal.testing import pg_admin, pg_url  # noqa: F401 - fixtures
from gateway.results import ResultEvent
from tests.scripted_gateway import Gateway, cut_overrun_grace, kv

WAIT_S = 60.0


async def first(stream: AsyncIterator[ResultEvent], n: int) -> list[ResultEvent]:
    got: list[ResultEvent] = []
    async for event in stream:
        got.append(event)
        if len(got) == n:
            return got
    raise AssertionError("the stream ended")


async def positioned(engine: Engine, n: int) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while engine.results.streams != n:
        assert asyncio.get_running_loop().time() < deadline, "the stream never opened"
        await asyncio.sleep(0.02)


async def test_an_end_in_this_process_wakes_the_stream_at_once(tmp_path: Path, templates_root: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cut_overrun_grace(monkeypatch)
    g = Gateway.create(tmp_path, templates_root=templates_root)
    g.settings = EngineSettings(results_poll_interval_s=600.0)  # only the wake can bring it in time
    try:
        engine = await g.engine()
        stream = engine.subscribe()
        reading = asyncio.create_task(first(stream, 2))
        await positioned(engine, 1)
        ids = [(await g.run(engine, kv("a", "r1", "if.ge1", v), request_id=v)).id for v in ("one", "two")]
        got = await asyncio.wait_for(reading, WAIT_S)
        assert [e.activation_id for e in got] == ids and [e.outcome for e in got] == ["completed", "completed"]
        await stream.aclose()  # type: ignore[attr-defined]
        assert engine.results.streams == 0 and engine.results.slots.used("") == 0
    finally:
        await g.close()


async def test_a_stream_on_one_replica_gets_every_replicas_events_in_commit_order(
        tmp_path: Path, templates_root: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    cut_overrun_grace(monkeypatch)
    g = Gateway.create(tmp_path, templates_root=templates_root)
    g.journal_url, g.journal_options = pg_url, JournalOptions(connect_timeout_s=3)
    g.settings = EngineSettings(results_poll_interval_s=0.2)
    try:
        a, b = await g.engine(), await g.engine()
        stream = a.subscribe()
        reading = asyncio.create_task(first(stream, 6))
        await positioned(a, 1)
        ids = []
        for n in range(6):  # alternately on each replica, on two devices
            ids.append((await g.run(b if n % 2 == 0 else a, kv("a", f"r{1 + n % 2}", "if.ge1", f"v{n}"),
                                    request_id=f"r{n}")).id)
        got = await asyncio.wait_for(reading, WAIT_S)
        assert [e.activation_id for e in got] == ids
        positions = [e.position for e in await b.journal.outbox.after(0)]
        assert positions == sorted(positions) and [e.cursor for e in got] == [encode_cursor(p) for p in positions]
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await g.close()
