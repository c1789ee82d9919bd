"""A SQLite journal serves one gateway process: a second engine on the same file is refused at
start (it would recover, that is roll back, the first one's live work), with a message naming the
file and who holds it; once the first has stopped, the next one starts and recovers."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import JournalError
from gateway.results import ActivationState
from tests.scripted_gateway import Gateway, kv, request


async def test_a_second_engine_on_the_same_sqlite_journal_is_refused(gw: Gateway) -> None:
    first = await gw.engine()
    submitted = await first.submit(request(kv("a", "r1", "if.ge1", "up")))  # live in the first engine
    with pytest.raises(JournalError) as refused:
        await gw.engine()
    text = str(refused.value)
    assert str(gw.journal_path) in text and "in use by another gateway" in text and "pid " in text
    assert refused.value.retryable is False
    # the refused engine recovered nothing: the first one ran its activation to the end, alone
    await asyncio.wait_for(first.wait_idle(), timeout=10)
    result = await first.get(submitted.activation_id)
    assert result.state == ActivationState.COMPLETED and gw.net.config("r1")["if.ge1"] == "up"
    assert not [e for e in await first.journal.events(submitted.activation_id) if e.phase == "recover"]
    await gw.stop(first)
    second = await gw.engine()  # the first let go: the next one starts
    assert (await second.get(submitted.activation_id)).state == ActivationState.COMPLETED
    await gw.stop(second)


async def test_the_claim_is_let_go_when_the_engine_stops(gw: Gateway) -> None:
    for _ in range(3):  # start, stop, start again: no stale lock
        engine = await gw.engine()
        await gw.stop(engine)
    lock = gw.journal_path.with_name(gw.journal_path.name + ".lock")
    assert lock.exists() and oct(lock.stat().st_mode & 0o777) == "0o600"
