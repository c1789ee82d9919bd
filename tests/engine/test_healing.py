"""Self-healing fallout: a task that fell out because its rollback could not reach the device is
retried in the background until the device answers (rolledBack, by `agw:self-healing`); a fallout
that needs a person (the device changed since) is never retried by itself; the attempts are bounded."""

from __future__ import annotations

import asyncio

import pytest

from drivers.errors import ConnectError
from gateway.engine.limits import EngineSettings
from gateway.results import ActivationResult, ActivationState
from tests.scripted_gateway import INITIAL, Gateway, kv, task


@pytest.fixture(autouse=True)
def healing(gw: Gateway) -> None:
    gw.settings = EngineSettings(self_healing_interval_s=0.05, self_healing_max_attempts=3)


async def fallout_on_unreachable(gw: Gateway, engine: object, *, times: int | None) -> ActivationResult:
    gw.net.mismatch("c1")  # verify fails: the rollback must restore
    gw.net.fail("c1", "restore", ConnectError("no route to host"), times=times)
    return await gw.run(engine, kv("a", "c1", "if.ge1", "up"))  # type: ignore[arg-type]


async def settled(engine: object, activation_id: str, *, until: ActivationState, timeout_s: float = 5) -> ActivationResult:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result: ActivationResult = await engine.get(activation_id)  # type: ignore[attr-defined]
        if result.state == until or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.05)


async def test_a_fallout_from_an_unreachable_device_heals_when_it_answers(gw: Gateway) -> None:
    engine = await gw.engine()
    out = await fallout_on_unreachable(gw, engine, times=2)  # the rollback's and the first retry's restore fail
    assert out.state == ActivationState.FALLOUT and task(out, "a").rollback.retryable  # type: ignore[union-attr]
    healed = await settled(engine, out.id, until=ActivationState.ROLLED_BACK)
    assert healed.state == ActivationState.ROLLED_BACK and gw.net.config("c1") == INITIAL
    events = await engine.journal.events(out.id)
    asked = [e for e in events if e.message == "retry requested"]
    assert len(asked) == 2 and {e.actor for e in asked} == {"agw:self-healing"}


async def test_a_fallout_that_needs_a_person_is_left_alone(gw: Gateway) -> None:
    engine = await gw.engine()
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up"))
    gw.net.drift("c1", {"if.ge1": "theirs"}, at="read")  # someone changed it after the activation
    await engine.rollback(result.id)
    out = await settled(engine, result.id, until=ActivationState.FALLOUT)
    assert out.state == ActivationState.FALLOUT and not task(out, "a").rollback.retryable  # type: ignore[union-attr]
    await asyncio.sleep(0.5)  # many sweeps
    events = await engine.journal.events(result.id)
    assert not [e for e in events if e.actor == "agw:self-healing"]
    assert (await engine.get(result.id)).state == ActivationState.FALLOUT


async def test_the_attempts_are_bounded(gw: Gateway) -> None:
    engine = await gw.engine()
    out = await fallout_on_unreachable(gw, engine, times=None)  # never reachable
    await asyncio.sleep(2.0)  # 0.05 + 0.1 + 0.2 + 0.4 s of waits, and then no more
    events = await engine.journal.events(out.id)
    assert len([e for e in events if e.actor == "agw:self-healing"]) == 3
    assert (await engine.get(out.id)).state == ActivationState.FALLOUT


async def test_a_restore_the_device_refuses_is_left_to_a_person(gw: Gateway) -> None:
    from drivers.errors import DeviceRejectedError

    engine = await gw.engine()
    gw.net.mismatch("c1")
    gw.net.fail("c1", "restore", DeviceRejectedError("restore refused", retryable=False), times=None)
    out = await gw.run(engine, kv("a", "c1", "if.ge1", "up"))
    assert out.state == ActivationState.FALLOUT and not task(out, "a").rollback.retryable  # type: ignore[union-attr]
    await asyncio.sleep(0.5)
    assert not [e for e in await engine.journal.events(out.id) if e.actor == "agw:self-healing"]
