"""Automatic retries on the lab: a device cut off when the activation starts (connections fail
at once: no route) comes back a few seconds later, and the activation completes without a person,
each retry an event. Under 30 % packet loss (NETCONF and the FRR CLI device) an activation with its
own retry policy completes without a person. netconfd killed while its confirmed commit is in
flight (it loses the pending commit) and started again: the gateway reads the device, sees the
snapshot, pushes again and completes. Real netconfd, FRR, sshd, the gateway's real drivers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.results import ActivationState
from tests.integration.gateway_harness import InProcessGateway, interface_xml, make_profiles, submit_request
from tests.integration.test_activation_netconf import iface_task, ifname, rid, wait_for_event


async def test_a_device_that_comes_back_is_retried_and_the_activation_completes(lab: Any, tmp_path: Path) -> None:
    profiles = make_profiles(tmp_path / "profiles", {"netconfd": {
        "retry": {"attempts": 10, "initial_delay_s": 0.5, "max_delay_s": 2, "deadline_s": 60},
        "timeouts": {"connect_s": 5}}})
    gateway = InProcessGateway(data_dir=tmp_path / "data", inventory=lab.inventory_path, profiles=profiles)
    client = await gateway.start()
    try:
        nc1, name = lab.node("nc1"), ifname()
        with lab.faulted("nc1", "cut"):
            aid = await client.submit([iface_task("t", "nc1", name, description="retried")], request_id=rid())
            await wait_for_event(client, aid, task_id="t", phase="connect", message_part="retrying in")
            await asyncio.sleep(2)
        result = await client.wait(aid, timeout_s=90)
        assert result.state == ActivationState.COMPLETED, result
        assert "retried" in await asyncio.to_thread(interface_xml, nc1, name)
        history = [e async for e in client.stub.Watch(pb.WatchRequest(activation_id=aid))]
        retried = [e.message for e in history if e.message.startswith("retrying in")]
        assert retried and all("(attempt " in m for m in retried)
    finally:
        await gateway.stop()


async def test_a_fallout_from_a_cut_device_heals_by_itself_when_the_device_is_back(lab: Any, tmp_path: Path) -> None:
    """Issue 12's self-healing: nc1 is cut after its change was committed (a confirmed commit, its
    timer running) while the atomic activation waits for r1; the rollback cannot reach nc1 and the
    task falls out. nc1 comes back; without a person, the gateway's background retry rolls it back."""
    from gateway.model import TaskState
    from tests.integration.test_activation_netconf import CONFIRM_TIMEOUT_S

    profiles = make_profiles(tmp_path / "profiles", {"netconfd": {"confirm_timeout_s": CONFIRM_TIMEOUT_S,
                                                                  "timeouts": {"connect_s": 5, "operation_s": 5}}})
    gateway = InProcessGateway(data_dir=tmp_path / "data", inventory=lab.inventory_path, profiles=profiles,
                               self_healing_interval_s=1.0)
    client = await gateway.start()
    try:
        nc1, name = lab.node("nc1"), ifname()
        before = await asyncio.to_thread(interface_xml, nc1, name)
        with lab.faulted("r1", "stop", daemon="netconfd"):
            aid = await client.submit([iface_task("a", "nc1", name, description="healed"),
                                       iface_task("b", "r1", ifname(), description="healed")], request_id=rid())
            await wait_for_event(client, aid, task_id="a", phase="verify", message_part="verified")
            with lab.faulted("nc1", "cut"):
                result = await client.wait(aid, timeout_s=60)
                assert result.state == ActivationState.FALLOUT, result
                a = next(t for t in result.tasks if t.id == "a")
                assert a.state == TaskState.FALLOUT and a.rollback.retryable, a.rollback
        deadline = asyncio.get_running_loop().time() + 90
        while (result := await client.get(aid)).state != ActivationState.ROLLED_BACK:
            assert asyncio.get_running_loop().time() < deadline, result
            await asyncio.sleep(1)
        assert await asyncio.to_thread(interface_xml, nc1, name) == before
        history = [e async for e in client.stub.Watch(pb.WatchRequest(activation_id=aid))]
        assert any(e.actor == "agw:self-healing" and e.message == "retry requested" for e in history)
    finally:
        await gateway.stop()


POLICY = pb.RetryPolicy(attempts=12, initial_delay_s=0.5, max_delay_s=3, deadline_s=150)
"""The activations' own retry policy (the profiles have none: it is all the activation's)."""


ROUNDS = 3


async def submit_with_policy(client: Any, tasks: list[dict[str, Any]]) -> str:
    msg = submit_request(tasks, request_id=rid())
    msg.retry.CopyFrom(POLICY)
    return str((await client.stub.Submit(msg)).activation_id)


async def messages(client: Any, aid: str) -> list[str]:
    return [e.message async for e in client.stub.Watch(pb.WatchRequest(activation_id=aid))]


async def test_under_30_percent_loss_the_activations_complete_without_a_person(lab: Any, tmp_path: Path) -> None:
    """nc1 (NETCONF) and cli1 (FRR over SSH) each drop 30 % of the packets they receive, with
    short operation timeouts: every timeout is retried under the activation's policy (read first
    when it came after the push) until the change is verified."""
    from tests.integration.test_activation_mixed import cli_running_config

    fast = {"timeouts": {"connect_s": 2, "operation_s": 1, "commit_s": 1.5}}
    profiles = make_profiles(tmp_path / "profiles", {"netconfd": fast, "frr": fast})
    gateway = InProcessGateway(data_dir=tmp_path / "data", inventory=lab.inventory_path, profiles=profiles)
    client = await gateway.start()
    try:
        nc1, cli1, tag = lab.node("nc1"), lab.node("cli1"), rid()[-8:]
        names = [ifname() for _ in range(ROUNDS)]
        aids: list[str] = []
        with lab.faulted("nc1", "loss", 30), lab.faulted("cli1", "loss", 30):
            for n, name in enumerate(names):  # one after the other: each opens its own sessions
                aids.append(await submit_with_policy(client, [iface_task("t", "nc1", name, description="lossy")]))
                aids.append(await submit_with_policy(client, [{
                    "id": "t", "device": "cli1", "service": "prefix-list",
                    "parameters": {"name": f"PL-LOSS-{tag}-{n}", "seq": 5, "rule": "permit", "prefix": "10.9.0.0/16"}}]))
                for aid in aids[-2:]:
                    result = await client.wait(aid, timeout_s=240)
                    assert result.state == ActivationState.COMPLETED, result
        for name in names:
            assert "lossy" in await asyncio.to_thread(interface_xml, nc1, name)
        running = await asyncio.to_thread(cli_running_config, cli1)
        assert all(f"PL-LOSS-{tag}-{n}" in running for n in range(ROUNDS))
        retried = 0
        for aid in aids:  # every retry an event naming its attempt
            said = [m for m in await messages(client, aid) if m.startswith(("retrying in", "outcome of"))]
            assert all("(attempt " in m for m in said), said
            retried += len(said)
        print(f"{len(aids)} activations under 30 % loss, {retried} retries")  # noqa: T201 - the measure (-s)
    finally:
        await gateway.stop()


async def test_netconfd_killed_during_the_commit_and_restarted_the_change_is_pushed_again(
        lab: Any, tmp_path: Path) -> None:
    """The commit is on its way (150 ms each way) when netconfd is killed: whether or not it took
    effect, the pending confirmed commit is gone with the daemon (running reverts to the startup
    file, which an unconfirmed commit never writes). netconfd is started again once the engine said
    it is reading; the read shows the snapshot, the change is pushed again and completes."""
    from tests.integration.test_activation_netconf import wait_for_event

    profiles = make_profiles(tmp_path / "profiles", {"netconfd": {"timeouts": {"connect_s": 8, "operation_s": 8}}})
    gateway = InProcessGateway(data_dir=tmp_path / "data", inventory=lab.inventory_path, profiles=profiles)
    client = await gateway.start()
    try:
        nc1, name = lab.node("nc1"), ifname()
        try:
            with lab.faulted("nc1", "delay", 150):  # undone before the restart (its readiness probe is quick)
                aid = await submit_with_policy(client, [iface_task("t", "nc1", name, description="restarted")])
                await wait_for_event(client, aid, task_id="t", phase="commit", message_part="confirmed commit",
                                     timeout_s=60)
                await asyncio.to_thread(lab.fault, "nc1", "kill", None, "netconfd")
                await wait_for_event(client, aid, task_id="t", phase="commit", message_part="outcome of commit unknown",
                                     timeout_s=60)
        finally:
            await asyncio.to_thread(lab.fault, "nc1", "restart", None, "netconfd")
        result = await client.wait(aid, timeout_s=120)
        assert result.state == ActivationState.COMPLETED, result
        assert "restarted" in await asyncio.to_thread(interface_xml, nc1, name)
        said = await messages(client, aid)
        assert any("equals its snapshot, nothing was applied; pushing again" in m for m in said), said
    finally:
        await gateway.stop()
