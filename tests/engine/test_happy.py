"""Activations that succeed: one task, two tasks on one device, atomic across two devices."""

from __future__ import annotations

from gateway.engine import Engine
from gateway.model import TaskState
from gateway.results import ActivationState
from tests.scripted_gateway import INITIAL, Gateway, kv, states, task


async def test_one_task_on_a_netconf_like_device_is_committed_confirmed_and_verified(gw: Gateway,
                                                                                     engine: Engine) -> None:
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED, result
    a = task(result, "a")
    assert a.state == TaskState.COMPLETED and a.error is None
    assert a.verification is not None and a.verification.ok and a.verification.checked == 1
    assert "+if.ge1 = up" in a.diff and "-if.ge1 = down" in a.diff
    assert gw.net.config("r1") == INITIAL | {"if.ge1": "up"}
    assert gw.net.pending("r1") is None, "the confirmed commit was confirmed"
    assert gw.net.devices["r1"].lock_owner is None and gw.net.devices["r1"].candidate is None
    assert gw.net.ops("r1") == ["open", "lock", "read", "load", "validate", "commit", "verify", "confirm", "unlock"]
    assert not any("confirmed commit" in note for note in a.emulated)  # the device has it natively


async def test_one_task_on_a_cli_like_device_names_what_the_gateway_emulates(gw: Gateway, engine: Engine) -> None:
    result = await gw.run(engine, kv("a", "c1", "if.ge2", "up"))
    assert result.state == ActivationState.COMPLETED
    a = task(result, "a")
    assert gw.net.config("c1") == INITIAL | {"if.ge2": "up"}
    assert gw.net.ops("c1") == ["open", "read", "load", "verify"]
    emulated = " | ".join(a.emulated)
    for what in ("no datastore lock", "no candidate", "no confirmed commit", "snapshot-and-restore",
                 "gateway-computed diff", "no atomic push"):
        assert what in emulated, a.emulated


async def test_two_tasks_on_one_device_share_one_session_lock_and_confirm(gw: Gateway, engine: Engine) -> None:
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"), kv("b", "r1", "if.ge2", "up", deps=("a",)))
    assert result.state == ActivationState.COMPLETED
    assert states(result) == {"a": TaskState.COMPLETED, "b": TaskState.COMPLETED}
    assert gw.net.config("r1") == INITIAL | {"if.ge1": "up", "if.ge2": "up"}
    ops = gw.net.ops("r1")
    assert ops.count("open") == 1 and ops.count("lock") == 1 and ops.count("unlock") == 1
    assert ops.count("commit") == 2 and ops.count("confirm") == 1, ops  # one timer, confirmed once
    assert gw.net.pending("r1") is None


async def test_an_atomic_activation_across_two_devices_completes_on_both(gw: Gateway, engine: Engine) -> None:
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"), kv("b", "c1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED
    assert states(result) == {"a": TaskState.COMPLETED, "b": TaskState.COMPLETED}
    assert gw.net.config("r1") == gw.net.config("c1") == INITIAL | {"if.ge1": "up"}
    assert any("no confirmed commit" in n for n in task(result, "b").emulated)
    assert not any("no confirmed commit" in n for n in task(result, "a").emulated)


async def test_independent_tasks_each_complete(gw: Gateway, engine: Engine) -> None:
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"), kv("b", "c2", "sys.name", "edge"), atomic=False)
    assert result.state == ActivationState.COMPLETED
    assert gw.net.config("c2") == INITIAL | {"sys.name": "edge"}


async def test_a_delete_removes_the_key(gw: Gateway, engine: Engine) -> None:
    from gateway.model import Action

    result = await gw.run(engine, kv("a", "r2", "if.ge2", action=Action.DELETE))
    assert result.state == ActivationState.COMPLETED
    assert "if.ge2" not in gw.net.config("r2")
