"""The gateway dies mid-activation; a new engine on the same journal recovers it at start."""

from __future__ import annotations

import asyncio

import pytest

from drivers.testing.scripted import Operation
from gateway.engine import Engine
from gateway.model import TaskState
from gateway.results import ActivationResult, ActivationState
from tests.scripted_gateway import INITIAL, Gateway, kv, request, task
from tests.engine.test_failures import MATRIX


async def crash_during(gw: Gateway, device: str, op: Operation, *tasks: object) -> str:
    """Submit ``tasks`` on a first engine, let it die once ``op`` on ``device`` took effect."""
    first = await gw.engine()
    reached = gw.net.crash_at(device, op)
    submitted = await first.submit(request(*tasks))  # type: ignore[arg-type]
    await asyncio.wait_for(reached.wait(), timeout=5)
    await gw.crash(first)
    gw.net.clear()
    return submitted.activation_id


async def recovered(gw: Gateway, activation_id: str) -> ActivationResult:
    second = await gw.engine()  # start() recovers
    await asyncio.wait_for(second.wait_idle(), timeout=10)
    return await second.get(activation_id)


@pytest.mark.parametrize("device, phase, op, touched", MATRIX)
async def test_a_crash_in_each_phase_is_recovered_at_the_next_start(gw: Gateway, device: str, phase: str,
                                                                     op: Operation, touched: bool) -> None:
    activation_id = await crash_during(gw, device, op, kv("a", device, "if.ge1", "up"))
    result = await recovered(gw, activation_id)
    a = task(result, "a")
    if touched:
        assert result.state == ActivationState.ROLLED_BACK, (result.state, a.state, a.rollback)
        assert a.state == TaskState.ROLLED_BACK and a.rollback is not None and a.rollback.ok
    else:  # the snapshot was never journaled: nothing reached the device
        assert result.state == ActivationState.CANCELLED and a.state == TaskState.CANCELLED
    assert gw.net.config(device) == INITIAL
    assert gw.net.pending(device) is None and gw.net.devices[device].lock_owner is None


async def test_a_crash_after_the_confirmed_commit_is_undone_by_persist_id(gw: Gateway) -> None:
    activation_id = await crash_during(gw, "r1", "commit", kv("a", "r1", "if.ge1", "up"))
    assert gw.net.config("r1") == INITIAL | {"if.ge1": "up"}  # still pending on the device
    pending = gw.net.pending("r1")
    assert pending is not None and pending.persist_id and activation_id in pending.persist_id
    result = await recovered(gw, activation_id)
    a = task(result, "a")
    assert a.state == TaskState.ROLLED_BACK and a.rollback is not None and "cancel-commit" in a.rollback.method
    assert gw.net.ops("r1").count("restore") == 0  # the device's own revert was enough


async def test_a_crash_with_two_devices_recovers_both(gw: Gateway) -> None:
    activation_id = await crash_during(gw, "c1", "verify", kv("a", "r1", "if.ge1", "up"),
                                       kv("b", "c1", "if.ge2", "up", deps=("a",)))
    result = await recovered(gw, activation_id)
    assert result.state == ActivationState.ROLLED_BACK
    assert {t.state for t in result.tasks} == {TaskState.ROLLED_BACK}
    assert gw.net.config("r1") == gw.net.config("c1") == INITIAL


async def test_a_verified_change_someone_else_changed_before_recovery_falls_out(gw: Gateway) -> None:
    """Task a was verified (its read-back journaled); the gateway dies during task b; then someone
    edits a's scope. Recovery must not overwrite that: a falls out, b (never verified) is restored."""
    first = await gw.engine()
    reached = gw.net.crash_at("c1", "load", skip=1)  # the second push: task b's
    submitted = await first.submit(request(kv("a", "c1", "if.ge1", "up"), kv("b", "c1", "sys.name", "x", deps=("a",))))
    await asyncio.wait_for(reached.wait(), timeout=5)
    await gw.crash(first)
    gw.net.set("c1", {"if.ge1": "someone-else"})
    result = await recovered(gw, submitted.activation_id)
    a, b = task(result, "a"), task(result, "b")
    assert result.state == ActivationState.FALLOUT and a.state == TaskState.FALLOUT, (result.state, a, b)
    assert a.rollback is not None and not a.rollback.ok and "changed since" in a.rollback.reason
    assert b.state == TaskState.ROLLED_BACK
    assert gw.net.config("c1") == INITIAL | {"if.ge1": "someone-else"}  # a's scope never overwritten without a person


async def test_a_confirmed_commit_timer_that_fired_while_the_gateway_was_down(gw: Gateway) -> None:
    activation_id = await crash_during(gw, "r1", "verify", kv("a", "r1", "if.ge1", "up"))
    assert gw.net.expire_timers("r1") == 1  # the device reverted by itself
    result = await recovered(gw, activation_id)
    a = task(result, "a")
    assert a.state == TaskState.ROLLED_BACK and a.rollback is not None and "device-timer" in a.rollback.method
    assert gw.net.config("r1") == INITIAL


@pytest.mark.parametrize("after", [False, True], ids=["before-it-acts", "after-it-acted"])
async def test_a_crash_during_the_rollback_itself_is_finished_at_the_next_start(gw: Gateway, after: bool) -> None:
    first = await gw.engine()
    gw.net.mismatch("c1")
    reached = gw.net.crash_at("c1", "restore", after=after)
    submitted = await first.submit(request(kv("a", "c1", "if.ge1", "up")))
    await asyncio.wait_for(reached.wait(), timeout=5)
    await gw.crash(first)
    gw.net.clear()
    result = await recovered(gw, submitted.activation_id)
    a = task(result, "a")
    assert result.state == ActivationState.ROLLED_BACK and a.state == TaskState.ROLLED_BACK, (a.state, a.rollback)
    assert gw.net.config("c1") == INITIAL
    assert gw.net.ops("c1").count("restore") == (2 if not after else 1)
