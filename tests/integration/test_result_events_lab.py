"""Issue 11's end-to-end test: result events from real activations on the lab, to a real webhook
receiver (tests/webhook_receiver.py) and a real NATS JetStream server (tests/nats_server.py), across
a gateway killed in the middle of delivering them.

``agw serve`` runs in its own process with a subscribers file naming both. Order A completes;
both subscribers get its event. Then the receiver goes down (connection refused) and nats-server
stops answering (SIGSTOP: a publish waits for its PubAck) while A is rolled back (Rollback RPC)
and order B completes and falls out (its interface changed behind the gateway's back, so the
Rollback cannot be proven and needs a person). The receiver comes back but holds its answers, so
attempts reach it and wait. The gateway is SIGKILLed while those deliveries are failing and in
flight, started again, the receiver answers and nats-server runs again. Every outcome arrives at
both — A completed and rolledBack, B completed and fallout — nothing is lost, and the duplicates
(the attempts the receiver got before the kill) carry the same event id and the same bytes. The
Subscribe RPC of the restarted gateway streams the same four events, in order.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Callable

import grpc
import pytest
from click.testing import CliRunner

from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.cli import main
from gateway.events import cloudevents
from gateway.results import ActivationState
from tests.integration.gateway_harness import IF_NS, SubprocessGateway, interface_xml, make_profiles, ncclient_edit
from tests.integration.test_activation_netconf import CONFIRM_TIMEOUT_S, iface_task, ifname, rid
from tests.nats_server import NatsServer, Stored, nats_server, read_stream  # noqa: F401 - fixture
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.lab]

SECRET = "the-e2e-webhook-secret-0123456789"
STREAM = "AGW_E2E"
WAIT_S = 120.0


def subscribers_file(path: Path, receiver: Receiver, nats: NatsServer) -> Path:
    path.write_text(f"""\
source: agw://e2e
poll_interval_s: 0.2
defaults:
  retry: {{base_delay_s: 0.2, max_delay_s: 1, max_attempts: 10000, max_age_s: 3600, jitter: 0}}
  timeouts: {{connect_s: 2, total_s: 4}}
subscribers:
  - name: hook
    url: {receiver.url}
    secret: env:AGW_E2E_HOOK_SECRET
  - name: bus
    kind: nats
    url: {nats.url}
    stream: {STREAM}
    subject_prefix: agw.e2e
    duplicate_window_s: 900
""")
    return path


async def until(check: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def deliveries(data_dir: Path) -> list[dict[str, Any]]:
    """``agw events list --json`` on the gateway's journal (beside the running gateway)."""
    result = await asyncio.to_thread(CliRunner().invoke, main, ["events", "list", "--json", "--data-dir",
                                                                str(data_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


async def nats_ids(nats: NatsServer) -> set[str]:
    return {m.msg_id for m in await read_stream(nats.url, STREAM)}


async def test_outcomes_reach_a_webhook_and_nats_across_a_gateway_killed_mid_delivery(
        lab: Any, tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGW_E2E_HOOK_SECRET", SECRET)
    receiver = Receiver().up()
    data = tmp_path / "data"
    data.mkdir()
    profiles = make_profiles(tmp_path / "profiles", {"netconfd": {"confirm_timeout_s": CONFIRM_TIMEOUT_S,
                                                                  "timeouts": {"operation_s": 8, "connect_s": 8}}})
    gateway = SubprocessGateway(data_dir=data, inventory=lab.inventory_path, profiles=profiles,
                                subscribers=subscribers_file(tmp_path / "subscribers.yaml", receiver, nats_server))
    nc1 = lab.node("nc1")
    channel: grpc.aio.Channel | None = None
    try:
        gateway.start()
        channel, client = gateway.client()
        # A completes while everything is up: both subscribers get it (NATS connected, stream made)
        a = await client.submit([iface_task("t", "nc1", ifname(), description="order A")], request_id=rid())
        assert (await client.outcome(a)).state == ActivationState.COMPLETED
        await until(lambda: len(receiver.ids()) == 1, "A completed at the receiver")
        await until(lambda: nats_ids(nats_server), "A completed on NATS")

        # the receiver goes down, nats-server stops answering; A rolled back, B completes then falls out
        receiver.down()
        nats_server.pause()
        await client.stub.Rollback(pb.RollbackRequest(activation_id=a))
        assert (await client.outcome(a)).state == ActivationState.ROLLED_BACK
        name = ifname()
        b = await client.submit([iface_task("t", "nc1", name, description="order B")], request_id=rid())
        assert (await client.outcome(b)).state == ActivationState.COMPLETED
        await asyncio.to_thread(ncclient_edit, nc1, f'<config><interfaces xmlns="{IF_NS}"><interface><name>{name}'
                                                    f'</name><description>theirs</description></interface>'
                                                    f'</interfaces></config>')
        await client.stub.Rollback(pb.RollbackRequest(activation_id=b))
        fallen = await client.outcome(b)
        assert fallen.state == ActivationState.FALLOUT, fallen
        assert "theirs" in await asyncio.to_thread(interface_xml, nc1, name)  # not overwritten

        async def failing() -> bool:  # every new event tried (and failing, or waiting) at both
            rows = [r for r in await deliveries(data) if r["state"] == "pending"]
            return len(rows) == 6 and all(r["attempts"] >= 1 for r in rows)

        await until(failing, "attempts of the three new events to both subscribers")
        receiver.mode, receiver.delay_s = "slow", 600.0
        receiver.up()  # the same port: attempts arrive now, their answers held
        await until(lambda: len(set(receiver.ids())) >= 2, "attempts held at the receiver")
        await channel.close()
        channel = None
        gateway.kill()  # SIGKILL in the middle of delivering them

        receiver.release()
        receiver.mode = "ok"
        nats_server.resume()
        gateway.start()
        channel, client = gateway.client()

        async def delivered() -> bool:
            rows = await deliveries(data)
            return len(rows) == 8 and all(r["state"] == "delivered" for r in rows)

        await until(delivered, "every delivery after the restart")
        stream = client.stub.Subscribe(pb.SubscribeRequest(from_start=True))
        events = [await stream.read() for _ in range(4)]
        stream.cancel()
    finally:
        if channel is not None:
            await channel.close()
        gateway.stop()
        receiver.down()
        if nats_server.running:
            nats_server.resume()

    outcomes = {pb.ACTIVATION_STATE_COMPLETED: "completed", pb.ACTIVATION_STATE_ROLLED_BACK: "rolledBack",
                pb.ACTIVATION_STATE_FALLOUT: "fallout"}
    expected = [(e.subject, outcomes[e.outcome]) for e in events]
    assert expected == [(a, "completed"), (a, "rolledBack"), (b, "completed"), (b, "fallout")]
    ids = {e.id for e in events}
    assert len(ids) == 4

    # the webhook: every event, signed; copies of one event carry its id and the same bytes
    bodies: dict[str, bytes] = {}
    for req in receiver.requests:
        assert req.event_id in ids and cloudevents.verify(SECRET, req.headers, req.body, now=req.at)
        assert bodies.setdefault(req.event_id, req.body) == req.body
    assert set(bodies) == ids
    assert len(receiver.requests) > len(ids)  # the held attempts came again after the restart
    hooked = sorted((json.loads(body)["subject"], json.loads(body)["data"]["outcome"]) for body in bodies.values())
    assert hooked == sorted(expected)
    for body in bodies.values():  # each task with its parameters (the order's own words), as submitted
        [sent] = json.loads(body)["data"]["tasks"]
        assert sent["parameters"]["description"] in ("order A", "order B") and sent["parameters"]["name"]

    # NATS: every event on its subject, Nats-Msg-Id = the event id, the webhook's very bytes
    msgs: list[Stored] = await read_stream(nats_server.url, STREAM)
    assert {m.msg_id for m in msgs} == ids
    for m in msgs:
        ce = m.json()
        assert ce["id"] == m.msg_id and m.subject == f"agw.e2e.{ce['data']['outcome']}" and m.data == bodies[m.msg_id]
    by_id = {e.id: e for e in events}
    for event_id, body in bodies.items():
        assert json.loads(body)["data"] == json.loads(by_id[event_id].data)  # what Subscribe streams too
