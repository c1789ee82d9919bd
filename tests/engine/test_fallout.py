"""A rollback that cannot prove the device is back falls out; a person retries, forces or resolves.
Also: the Rollback RPC (undo of a completed activation), several tasks of one scope, cancel."""

from __future__ import annotations

import asyncio

import pytest

from drivers.errors import DeviceRejectedError
from gateway.engine import Engine
from gateway.errors import InputError, StateError
from gateway.model import Caller, TaskState
from gateway.results import ActivationResult, ActivationState
from tests.scripted_gateway import INITIAL, Gateway, initial_text, kv, request, states, task

OPERATOR = Caller(identity="spiffe://test/operator")


def audit(result: ActivationResult) -> list[tuple[str, str]]:
    return [(e.action, e.actor) for e in result.audit]


async def fallen_out(gw: Gateway, engine: Engine, device: str = "c1") -> ActivationResult:
    """An activation whose verification fails and whose restore is refused: fallout."""
    gw.net.mismatch(device)
    gw.net.fail(device, "restore", DeviceRejectedError("restore refused: config in use"), times=None)
    result = await gw.run(engine, kv("a", device, "if.ge1", "up"))
    assert result.state == ActivationState.FALLOUT, [(t.state, t.rollback) for t in result.tasks]
    return result


async def test_a_rollback_whose_restore_fails_falls_out_with_the_reason(gw: Gateway, engine: Engine) -> None:
    result = await fallen_out(gw, engine)
    a = task(result, "a")
    assert a.state == TaskState.FALLOUT
    assert a.error is not None and a.error.kind == "VerificationError"  # why it was rolled back
    assert a.rollback is not None and not a.rollback.ok
    assert "restore refused: config in use" in a.rollback.reason, a.rollback.reason
    assert gw.net.config("c1") == INITIAL | {"if.ge1": "up"}  # the change is still there
    assert [(aid, t.id) for aid, t in await engine.fallout()] == [(result.id, "a")]


async def test_retry_succeeds_once_the_fault_is_cleared(gw: Gateway, engine: Engine) -> None:
    result = await fallen_out(gw, engine)
    gw.net.clear()
    await engine.retry(result.id, caller=OPERATOR)
    after = await gw.settle(engine, result.id)
    assert after.state == ActivationState.ROLLED_BACK
    a = task(after, "a")
    assert a.state == TaskState.ROLLED_BACK and a.rollback is not None and a.rollback.ok
    assert gw.net.config("c1") == INITIAL
    assert ("retry", OPERATOR.identity) in audit(after)
    assert await engine.fallout() == []


async def test_retry_refuses_a_drifted_device_and_force_rollback_overwrites_it(gw: Gateway, engine: Engine) -> None:
    result = await fallen_out(gw, engine)
    gw.net.clear()
    gw.net.set("c1", {"if.ge1": "someone-else", "if.ge2": "admin-down"})  # edited since the activation
    await engine.retry(result.id, caller=OPERATOR)
    retried = await gw.settle(engine, result.id)
    a = task(retried, "a")
    assert retried.state == ActivationState.FALLOUT and a.state == TaskState.FALLOUT
    assert a.rollback is not None and "changed since" in a.rollback.reason and a.rollback.diff
    assert gw.net.config("c1")["if.ge1"] == "someone-else"  # retry never overwrites
    await engine.force_rollback(result.id, "a", caller=OPERATOR)
    forced = await gw.settle(engine, result.id)
    assert forced.state == ActivationState.ROLLED_BACK and task(forced, "a").state == TaskState.ROLLED_BACK
    assert gw.net.config("c1") == INITIAL
    assert [a for a, _ in audit(forced) if a in ("retry", "force-rollback")] == ["retry", "force-rollback"]


async def test_resolve_closes_a_fallout_task_with_the_operators_note(gw: Gateway, engine: Engine) -> None:
    result = await fallen_out(gw, engine)
    with pytest.raises(InputError):
        await engine.resolve(result.id, "a", "  ")
    resolved = await engine.resolve(result.id, "a", "reverted by hand, ticket 42", caller=OPERATOR)
    a = task(resolved, "a")
    assert a.state == TaskState.FAILED and "ticket 42" in a.note
    assert gw.net.config("c1") == INITIAL | {"if.ge1": "up"} and gw.net.ops("c1").count("restore") == 1  # untouched
    assert resolved.state == ActivationState.FAILED
    assert ("resolve", OPERATOR.identity) in audit(resolved)
    assert await engine.fallout() == []
    with pytest.raises(StateError):
        await engine.resolve(result.id, "a", "again")


async def test_fallout_actions_on_an_activation_without_fallout_are_refused(gw: Gateway, engine: Engine) -> None:
    result = await gw.run(engine, kv("a", "c1"))
    assert result.state == ActivationState.COMPLETED
    for action in (engine.retry, engine.force_rollback):
        with pytest.raises(StateError):
            await action(result.id)


async def test_a_confirmed_commit_that_cannot_be_cancelled_falls_out_then_retry_finds_the_timer_fired(
        gw: Gateway, engine: Engine) -> None:
    gw.net.mismatch("r1")
    gw.net.fail("r1", "cancel_commit", DeviceRejectedError("cancel-commit refused"), times=None)
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"))
    a = task(result, "a")
    assert result.state == ActivationState.FALLOUT and a.rollback is not None
    assert "cancel-commit refused" in a.rollback.reason and "reverts the change by itself" in a.rollback.reason
    assert gw.net.pending("r1") is not None
    gw.net.clear()
    assert gw.net.expire_timers("r1") == 1  # the device's timer ran out meanwhile
    await engine.retry(result.id)
    after = await gw.settle(engine, result.id)
    a = task(after, "a")
    assert after.state == ActivationState.ROLLED_BACK, (a.state, a.rollback)
    assert a.rollback is not None and "device-timer" in a.rollback.method
    assert gw.net.config("r1") == INITIAL


# -- the Rollback RPC ---------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["r1", "c1"])
async def test_rollback_of_a_completed_activation_restores_the_snapshot(gw: Gateway, engine: Engine,
                                                                       device: str) -> None:
    result = await gw.run(engine, kv("a", device, "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED
    await engine.rollback(result.id, caller=OPERATOR)
    undone = await gw.settle(engine, result.id)
    assert undone.state == ActivationState.ROLLED_BACK
    a = task(undone, "a")
    assert a.state == TaskState.ROLLED_BACK and a.rollback is not None and "restore" in a.rollback.method
    assert gw.net.config(device) == INITIAL
    assert ("rollback", OPERATOR.identity) in audit(undone)
    with pytest.raises(StateError):  # only a completed (or partial) activation
        await engine.rollback(result.id)


async def test_rollback_of_a_completed_activation_is_refused_when_the_device_changed_since(
        gw: Gateway, engine: Engine) -> None:
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"))
    gw.net.set("r1", {"if.ge2": "built-on-top"})  # someone built on the change
    await engine.rollback(result.id)
    undone = await gw.settle(engine, result.id)
    a = task(undone, "a")
    assert undone.state == ActivationState.FALLOUT and a.state == TaskState.FALLOUT
    assert a.rollback is not None and "changed since" in a.rollback.reason
    assert gw.net.config("r1") == INITIAL | {"if.ge1": "up", "if.ge2": "built-on-top"}  # untouched
    assert gw.net.ops("r1").count("restore") == 0


async def test_rollback_of_a_partial_activation_undoes_only_its_completed_tasks(gw: Gateway,
                                                                               engine: Engine) -> None:
    gw.net.fail("c2", "load", DeviceRejectedError("no"))
    result = await gw.run(engine, kv("a", "r2", "if.ge1", "up"), kv("b", "c2", "if.ge1", "up"), atomic=False)
    assert result.state == ActivationState.PARTIAL
    await engine.rollback(result.id, caller=OPERATOR)
    undone = await gw.settle(engine, result.id)
    assert undone.state == ActivationState.ROLLED_BACK
    assert states(undone) == {"a": TaskState.ROLLED_BACK, "b": TaskState.ROLLED_BACK}
    assert gw.net.config("r2") == gw.net.config("c2") == INITIAL
    assert gw.net.ops("c2").count("restore") == 0  # b was already rolled back: not touched again


# -- several tasks of one scope: the earliest snapshot, each task's undo ----------------------------------
async def test_two_failed_tasks_of_one_scope_are_restored_newest_first_with_their_undo(
        gw: Gateway, engine: Engine) -> None:
    gw.net.mismatch("c1", skip=1)  # the second task's verification fails
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up", service="kvu"),
                          kv("b", "c1", "if.ge2", "up", service="kvu", deps=("a",)))
    assert states(result) == {"a": TaskState.ROLLED_BACK, "b": TaskState.ROLLED_BACK}
    assert gw.net.config("c1") == INITIAL
    restores = [(snapshot.content, undo) for device, snapshot, undo in gw.net.restores if device == "c1"]
    assert restores == [
        ("if.ge1 = up\nif.ge2 = down", "# undo of if.ge2\nno if.ge2\n"),  # b's snapshot: a already applied
        (initial_text(), "# undo of if.ge1\nno if.ge1\n"),  # then a's: the earliest
    ]


async def test_rollback_rpc_of_two_tasks_of_one_scope_passes_each_tasks_undo(gw: Gateway, engine: Engine) -> None:
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up", service="kvu"),
                          kv("b", "c1", "if.ge2", "up", service="kvu", deps=("a",)))
    assert result.state == ActivationState.COMPLETED
    await engine.rollback(result.id)
    undone = await gw.settle(engine, result.id)
    assert undone.state == ActivationState.ROLLED_BACK and gw.net.config("c1") == INITIAL
    restores = [(snapshot.content, undo) for device, snapshot, undo in gw.net.restores if device == "c1"]
    assert restores == [
        ("if.ge1 = up\nif.ge2 = down", "# undo of if.ge2\nno if.ge2\n"),
        (initial_text(), "# undo of if.ge1\nno if.ge1\n"),
    ]


# -- cancel -------------------------------------------------------------------------------------------
async def test_cancel_mid_activation_rolls_back_what_was_sent_and_skips_the_rest(gw: Gateway,
                                                                               engine: Engine) -> None:
    ids: list[str] = []

    async def cancel_now() -> None:  # during r1's push, from "outside"
        await engine.cancel(ids[0], caller=OPERATOR)

    gw.net.on("r1", "load", cancel_now, after=True)
    submitted = await engine.submit(request(kv("a", "r1", "if.ge1", "up"), kv("b", "c1", "if.ge1", "up",
                                                                             deps=("a",))))
    ids.append(submitted.activation_id)
    await asyncio.wait_for(engine.wait_idle(), timeout=10)
    result = await engine.get(submitted.activation_id)
    assert result.state == ActivationState.CANCELLED, states(result)
    assert task(result, "a").state == TaskState.ROLLED_BACK
    assert task(result, "b").state == TaskState.CANCELLED
    assert gw.net.config("r1") == INITIAL and gw.net.ops("c1") == []
    assert ("cancel", OPERATOR.identity) in audit(result)
    with pytest.raises(StateError):
        await engine.cancel(submitted.activation_id)
