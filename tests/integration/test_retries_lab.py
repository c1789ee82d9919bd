"""Automatic retries on the lab: a device cut off when the activation starts (connections fail
at once: no route) comes back a few seconds later, and the activation completes without a person,
each retry an event. Real netconfd, real sshd, the gateway's real NETCONF driver."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.results import ActivationState
from tests.integration.gateway_harness import InProcessGateway, interface_xml, make_profiles
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
