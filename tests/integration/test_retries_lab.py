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
