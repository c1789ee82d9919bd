"""DryRun against real devices when one never answers: the answer comes by the deadline, the
other device's diff is in it, nothing is changed, and a real activation is not held up."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any, AsyncIterator

import pytest

from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.results import ActivationState
from tests.integration.gateway_harness import Client, InProcessGateway, interface_xml, make_profiles, submit_request

pytestmark = [pytest.mark.lab]

DRY_RUN_TIMEOUT_S = 2.0


def iface_task(tid: str, device: str, name: str, **params: Any) -> dict[str, Any]:
    return {"id": tid, "device": device, "service": "interface", "action": "create",
            "parameters": {"name": name, **params}}


@pytest.fixture(scope="module")
async def gateway(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[InProcessGateway, Client]]:
    root = tmp_path_factory.mktemp("gw-edge")
    profiles = make_profiles(root / "profiles", {"netconfd": {"timeouts": {"operation_s": 8, "connect_s": 8}}})
    gw = InProcessGateway(data_dir=root / "data", inventory=lab.inventory_path, profiles=profiles)
    gw.engine.settings = dataclasses.replace(gw.engine.settings, dry_run_timeout_s=DRY_RUN_TIMEOUT_S)
    client = await gw.start()
    yield gw, client
    await gw.stop()


async def test_a_dry_run_with_a_silent_device_answers_by_its_deadline_and_changes_nothing(
        gateway: tuple[InProcessGateway, Client], lab: Any) -> None:
    gw, client = gateway
    nc1, name = lab.node("nc1"), f"agw{uuid.uuid4().hex[:8]}"
    before = await asyncio.to_thread(interface_xml, nc1, name)
    with lab.faulted("r1", "stop", daemon="netconfd"):  # r1 takes the connection and never answers
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        reply = await client.stub.DryRun(submit_request(
            [iface_task("r", "r1", name, description="dry"), iface_task("n", "nc1", name, description="dry")],
            request_id=f"dry-{uuid.uuid4()}"))
        took = loop.time() - t0
        assert took < DRY_RUN_TIMEOUT_S + 1.5, took
        r, n = reply.tasks
        assert n.state == pb.TASK_STATE_COMPLETED and "dry" in n.diff
        assert r.state == pb.TASK_STATE_FAILED and "deadline" in r.error.message, r.error
        assert await asyncio.to_thread(interface_xml, nc1, name) == before  # the DryRun changed nothing
        # a real activation on nc1 right away: not held up by the DryRun's cut-off work on r1
        t0 = loop.time()
        aid = await client.submit([iface_task("t", "nc1", name, description="real")], request_id=f"real-{uuid.uuid4()}")
        assert (await client.outcome(aid, timeout_s=30)).state == ActivationState.COMPLETED
        assert loop.time() - t0 < 10
    assert "<description>real</description>" in await asyncio.to_thread(interface_xml, nc1, name)
    await gw.engine.wait_idle()  # the DryRun's cut-off work on r1 ended: its session is gone, r1's lock free
    assert not gw.engine.ctx.locks.busy("r1")
    again = await client.stub.DryRun(submit_request([iface_task("r", "r1", name, description="dry")],
                                                    request_id=f"dry-{uuid.uuid4()}"))
    assert again.tasks[0].state == pb.TASK_STATE_COMPLETED and again.tasks[0].diff
    aid = await client.submit([{**iface_task("t", "nc1", name), "action": "delete"}], request_id=f"del-{uuid.uuid4()}")
    assert (await client.outcome(aid, timeout_s=30)).state == ActivationState.COMPLETED
