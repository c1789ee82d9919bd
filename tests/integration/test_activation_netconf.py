"""The activation core end to end: gRPC in, real netconfd devices of the lab out.

Every device check is an independent read with ncclient, not through the gateway.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import grpc
import pytest

from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.model import TaskState
from gateway.results import ActivationState
from tests.integration.gateway_harness import (
    Client,
    InProcessGateway,
    SubprocessGateway,
    interface_xml,
    make_profiles,
    submit_request,
    system_xml,
)

pytestmark = [pytest.mark.lab]

CONFIRM_TIMEOUT_S = 12


def ifname() -> str:
    return f"agw{uuid.uuid4().hex[:8]}"


def rid() -> str:
    return f"test-{uuid.uuid4()}"


def iface_task(tid: str, device: str, name: str, *, action: str = "create", **params: Any) -> dict[str, Any]:
    return {"id": tid, "device": device, "service": "interface", "action": action,
            "parameters": {"name": name, **params}}


@pytest.fixture(scope="module")
async def gw(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    root = tmp_path_factory.mktemp("gw")
    profiles = make_profiles(root / "profiles", {"netconfd": {"confirm_timeout_s": CONFIRM_TIMEOUT_S,
                                                              "timeouts": {"operation_s": 4, "connect_s": 4}}})
    gateway = InProcessGateway(data_dir=root / "data", inventory=lab.inventory_path, profiles=profiles)
    client = await gateway.start()
    yield client
    await gateway.stop()


async def test_create_modify_delete_interface(gw: Client, lab: Any) -> None:
    nc1, name = lab.node("nc1"), ifname()
    aid = await gw.submit([iface_task("t1", "nc1", name, description="first", ipv4={"address": "192.0.2.1", "prefix_length": 24})],
                          request_id=rid())
    result = await gw.wait(aid)
    assert result.state == ActivationState.COMPLETED, result
    task = result.tasks[0]
    assert task.state == TaskState.COMPLETED and task.verification is not None and task.verification.ok
    assert name in task.rendered and "first" in task.diff
    assert {t.phase for t in task.timings} >= {"connect", "snapshot", "push", "commit", "verify", "confirm"}
    seen = await asyncio.to_thread(interface_xml, nc1, name)
    assert "<description>first</description>" in seen and "192.0.2.1" in seen

    aid = await gw.submit([iface_task("t1", "nc1", name, action="modify", description="second")], request_id=rid())
    assert (await gw.wait(aid)).state == ActivationState.COMPLETED
    seen = await asyncio.to_thread(interface_xml, nc1, name)
    assert "<description>second</description>" in seen and "192.0.2.1" in seen

    aid = await gw.submit([iface_task("t1", "nc1", name, action="delete")], request_id=rid())
    assert (await gw.wait(aid)).state == ActivationState.COMPLETED
    assert name not in await asyncio.to_thread(interface_xml, nc1, name)


async def test_system_contact_and_location(gw: Client, lab: Any) -> None:
    contact = f"noc-{uuid.uuid4().hex[:6]}@example.net"
    aid = await gw.submit([{"id": "s", "device": "r1", "service": "system", "action": "modify",
                            "parameters": {"contact": contact, "location": "rack 7"}}], request_id=rid())
    assert (await gw.wait(aid)).state == ActivationState.COMPLETED
    seen = await asyncio.to_thread(system_xml, lab.node("r1"))
    assert contact in seen and "rack 7" in seen


async def test_device_rejects_config_rolls_back(gw: Client, lab: Any) -> None:
    nc1, name = lab.node("nc1"), ifname()
    before = await asyncio.to_thread(interface_xml, nc1, name)
    aid = await gw.submit([iface_task("bad", "nc1", name, type="notAnIanaType")], request_id=rid())
    result = await gw.wait(aid)
    task = result.tasks[0]
    assert result.state == ActivationState.ROLLED_BACK and task.state == TaskState.ROLLED_BACK, result
    assert task.error is not None and task.error.device_error is not None
    assert task.error.device_error.tag  # the parsed rpc-error tag, e.g. invalid-value
    assert task.rollback is not None and task.rollback.ok
    assert await asyncio.to_thread(interface_xml, nc1, name) == before


async def test_atomic_three_devices_third_fails_rolls_back_all(gw: Client, lab: Any) -> None:
    names = {d: ifname() for d in ("nc1", "nc2", "r1")}
    before = {d: await asyncio.to_thread(interface_xml, lab.node(d), n) for d, n in names.items()}
    tasks = [iface_task("a", "nc1", names["nc1"], description="atomic"),
             iface_task("b", "nc2", names["nc2"], description="atomic"),
             iface_task("c", "r1", names["r1"], type="notAnIanaType")]
    tasks[2]["depends_on"] = ["a", "b"]
    result = await gw.wait(await gw.submit(tasks, request_id=rid()))
    assert result.state == ActivationState.ROLLED_BACK, result
    assert all(t.state == TaskState.ROLLED_BACK for t in result.tasks), [(t.id, t.state) for t in result.tasks]
    assert all(t.rollback is not None and t.rollback.ok for t in result.tasks)
    for d, n in names.items():
        assert await asyncio.to_thread(interface_xml, lab.node(d), n) == before[d], d


async def test_duplicate_submit_is_one_activation_one_push(gw: Client, lab: Any) -> None:
    name, request_id = ifname(), rid()
    tasks = [iface_task("t", "nc1", name, description="once")]
    ids = await asyncio.gather(*(gw.submit(tasks, request_id=request_id) for _ in range(5)))
    assert len(set(ids)) == 1
    await gw.wait(ids[0])
    pushes = [e for e in await gw.events(ids[0]) if e.phase == "push"]
    assert len(pushes) == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.submit([iface_task("t", "nc1", name, description="different")], request_id=request_id)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_two_activations_on_one_device_are_serialized(gw: Client, lab: Any) -> None:
    a, b = ifname(), ifname()
    ids = await asyncio.gather(gw.submit([iface_task("t", "nc1", a, description="A")], request_id=rid()),
                               gw.submit([iface_task("t", "nc1", b, description="B")], request_id=rid()))
    results = [await gw.wait(i) for i in ids]
    assert all(r.state == ActivationState.COMPLETED for r in results)
    spans = []
    for i in ids:
        events = await gw.events(i)
        start = min(e.time.ToDatetime() for e in events if e.phase == "connect")
        end = max(e.time.ToDatetime() for e in events if e.phase == "confirm")
        spans.append((start, end))
    spans.sort()
    assert spans[0][1] <= spans[1][0], f"device work overlapped: {spans}"
    for n, desc in ((a, "A"), (b, "B")):
        assert f"<description>{desc}</description>" in await asyncio.to_thread(interface_xml, lab.node("nc1"), n)


async def test_dry_run_changes_nothing(gw: Client, lab: Any) -> None:
    nc1, name = lab.node("nc1"), ifname()
    before = await asyncio.to_thread(interface_xml, nc1, name)
    reply = await gw.stub.DryRun(submit_request([iface_task("t", "nc1", name, description="dry")], request_id=rid()))
    assert reply.tasks[0].diff and "dry" in reply.tasks[0].diff
    assert await asyncio.to_thread(interface_xml, nc1, name) == before


async def test_rollback_of_a_completed_activation_is_verified(gw: Client, lab: Any) -> None:
    nc1, name = lab.node("nc1"), ifname()
    before = await asyncio.to_thread(interface_xml, nc1, name)
    aid = await gw.submit([iface_task("t", "nc1", name, description="to be undone")], request_id=rid())
    assert (await gw.wait(aid)).state == ActivationState.COMPLETED
    await gw.stub.Rollback(pb.RollbackRequest(activation_id=aid))
    result = await gw.wait(aid)
    assert result.state == ActivationState.ROLLED_BACK and result.tasks[0].rollback.ok, result
    assert await asyncio.to_thread(interface_xml, nc1, name) == before


async def test_bad_input_lists_every_error(gw: Client) -> None:
    tasks = [
        {"id": "a", "device": "no-such-device", "service": "interface", "parameters": {"name": "x"}},
        {"id": "b", "device": "nc1", "service": "no-such-service", "parameters": {}},
        {"id": "c", "device": "nc1", "service": "interface", "parameters": {"name": "x", "mtu": "big",
                                                                             "ipv4": {"address": "999.1.1.1", "prefix_length": 40}}},
    ]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.submit(tasks, request_id=rid())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    text = err.value.details()
    for needle in ("tasks[0].device", "tasks[1].service", "tasks[2].parameters", "999.1.1.1"):
        assert needle in text, text

    cyclic = [iface_task("a", "nc1", "x"), iface_task("b", "nc1", "y")]
    cyclic[0]["depends_on"], cyclic[1]["depends_on"] = ["b"], ["a"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.submit(cyclic, request_id=rid())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "cycle" in err.value.details()

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.submit([iface_task("a", "nc1", "x"), iface_task("a", "nc1", "y")], request_id=rid())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "duplicate" in err.value.details()

    huge = [iface_task("a", "nc1", "x", description="d" * 200)] + [
        iface_task(f"t{i}", "nc1", f"x{i}") for i in range(5000)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.submit(huge, request_id=rid())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "tasks" in err.value.details()


async def wait_for_event(client: Client, aid: str, *, task_id: str, phase: str, message_part: str = "",
                         timeout_s: float = 30) -> None:
    async def follow() -> None:
        async for ev in client.stub.Watch(pb.WatchRequest(activation_id=aid)):
            if ev.task_id == task_id and ev.phase == phase and message_part in ev.message:
                return
        raise AssertionError(f"activation ended before {task_id}/{phase}")

    await asyncio.wait_for(follow(), timeout=timeout_s)


async def test_device_cut_mid_activation_falls_out_then_heals_by_retry(gw: Client, lab: Any) -> None:
    nc1, name = lab.node("nc1"), ifname()
    before = await asyncio.to_thread(interface_xml, nc1, name)
    # r1 hangs (SIGSTOP), so the atomic activation waits at its barrier after nc1 is committed
    with lab.faulted("r1", "stop", daemon="netconfd"):
        aid = await gw.submit([iface_task("a", "nc1", name, description="cut"),
                               iface_task("b", "r1", ifname(), description="cut")], request_id=rid())
        await wait_for_event(gw, aid, task_id="a", phase="verify", message_part="verified")
        with lab.faulted("nc1", "cut"):
            result = await gw.wait(aid, timeout_s=60)
            assert result.state == ActivationState.FALLOUT, result
            task = next(t for t in result.tasks if t.id == "a")
            assert task.state == TaskState.FALLOUT and "timer" in task.rollback.reason
            fallout = await gw.stub.ListFallout(pb.ListFalloutRequest())
            assert any(i.activation_id == aid for i in fallout.items)
    await asyncio.sleep(CONFIRM_TIMEOUT_S + 2)  # the device's own timer reverts the change
    assert await asyncio.to_thread(interface_xml, nc1, name) == before
    await gw.stub.RetryFallout(pb.FalloutActionRequest(activation_id=aid, task_id="a"))  # runs in the background
    result = await gw.get(aid, wait_ms=30_000)
    assert result.state == ActivationState.ROLLED_BACK, result
    assert next(t for t in result.tasks if t.id == "a").state == TaskState.ROLLED_BACK


async def test_get_with_wait_answers_when_the_activation_ends_or_the_wait_is_over(gw: Client, lab: Any) -> None:
    """Get with wait_ms is a long poll: it answers at the end of the wait with the current state
    while the activation runs, and as soon as the activation ends otherwise."""
    a, b = ifname(), ifname()
    with lab.faulted("r1", "stop", daemon="netconfd"):  # the atomic activation waits for r1
        aid = await gw.submit([iface_task("a", "nc1", a, description="waited"),
                               iface_task("b", "r1", b, description="waited")], request_id=rid())
        t0 = asyncio.get_running_loop().time()
        running = await gw.get(aid, wait_ms=400)
        assert asyncio.get_running_loop().time() - t0 >= 0.39
        assert running.state in (ActivationState.ACKNOWLEDGED, ActivationState.IN_PROGRESS), running
    t0 = asyncio.get_running_loop().time()
    done = await gw.get(aid, wait_ms=60_000)
    assert done.state == ActivationState.COMPLETED, done
    assert asyncio.get_running_loop().time() - t0 < 30  # answered at the end, not after the minute
    assert {t.state for t in done.tasks} == {TaskState.COMPLETED}
    # an ended activation is answered at once, whatever the wait
    t0 = asyncio.get_running_loop().time()
    assert (await gw.get(aid, wait_ms=60_000)).state == ActivationState.COMPLETED
    assert asyncio.get_running_loop().time() - t0 < 5
    # every transition is in the journal, in order, the ones not waited for included
    events = await gw.events(aid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    phases_a = [(e.phase, e.state) for e in events if e.task_id == "a"]
    assert phases_a[0] == ("connect", "inProgress") and phases_a[-1] == ("confirm", "completed"), phases_a
    assert [p for p, _ in phases_a].index("push") < [p for p, _ in phases_a].index("verify")
    assert (events[-1].task_id, events[-1].state) == ("", "completed")


async def test_get_wait_longer_than_five_minutes_is_refused(gw: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.stub.Get(pb.GetRequest(activation_id=str(uuid.uuid4()), wait_ms=300_001))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "wait_ms" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.stub.Get(pb.GetRequest(activation_id=str(uuid.uuid4()), wait_ms=10))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_sigkill_between_commit_and_confirm_recovers(lab: Any, tmp_path: Path) -> None:
    profiles = make_profiles(tmp_path / "profiles", {"netconfd": {"confirm_timeout_s": 120,
                                                                  "timeouts": {"operation_s": 30, "connect_s": 30}}})
    nc1, name = lab.node("nc1"), ifname()
    before = await asyncio.to_thread(interface_xml, nc1, name)
    proc = SubprocessGateway(data_dir=tmp_path / "data", inventory=lab.inventory_path, profiles=profiles)
    (tmp_path / "data").mkdir()
    proc.start()
    try:
        with lab.faulted("r1", "stop", daemon="netconfd"):
            channel, client = proc.client()
            aid = await client.submit([iface_task("a", "nc1", name, description="killed"),
                                       iface_task("b", "r1", ifname(), description="killed")], request_id=rid())
            await wait_for_event(client, aid, task_id="a", phase="verify", message_part="verified")
            await channel.close()
            proc.kill()  # SIGKILL: nc1 holds a confirmed commit with a persist-id, unconfirmed
            assert name in await asyncio.to_thread(interface_xml, nc1, name)
        proc.start()  # recovery runs before the server listens
        channel, client = proc.client()
        result = await client.get(aid)
        await channel.close()
        assert result.state == ActivationState.ROLLED_BACK, result
        assert next(t for t in result.tasks if t.id == "a").rollback.ok
        assert await asyncio.to_thread(interface_xml, nc1, name) == before
    finally:
        proc.stop()


async def test_verification_failure_rolls_back(lab: Any, tmp_path: Path) -> None:
    """A device that lies: netconfd 2.13 answers <ok/> to a commit after <validate> on the
    candidate, and drops the change. With the quirk switched off in the profile the gateway walks
    into it; the read-back must catch it and the task must end rolled back."""
    profiles = make_profiles(tmp_path / "profiles", {"netconfd": {"quirks": {"validate_drops_candidate": False},
                                                                  "capabilities": {"validate": True}}})
    gateway = InProcessGateway(data_dir=tmp_path / "data", inventory=lab.inventory_path, profiles=profiles)
    client = await gateway.start()
    try:
        nc1, name = lab.node("nc1"), ifname()
        before = await asyncio.to_thread(interface_xml, nc1, name)
        result = await client.wait(await client.submit([iface_task("t", "nc1", name, description="lost")],
                                                       request_id=rid()))
        task = result.tasks[0]
        assert task.state == TaskState.ROLLED_BACK, result
        assert task.verification is not None and not task.verification.ok and task.verification.mismatches
        assert task.error is not None and task.error.kind == "VerificationError"
        assert await asyncio.to_thread(interface_xml, nc1, name) == before
    finally:
        await gateway.stop()


async def test_cancel_rolls_back_what_was_done(gw: Client, lab: Any) -> None:
    nc1, name = lab.node("nc1"), ifname()
    before = await asyncio.to_thread(interface_xml, nc1, name)
    with lab.faulted("r1", "stop", daemon="netconfd"):
        aid = await gw.submit([iface_task("a", "nc1", name, description="cancel me"),
                               iface_task("b", "r1", ifname(), description="cancel me")], request_id=rid())
        await wait_for_event(gw, aid, task_id="a", phase="verify", message_part="verified")
        await gw.stub.Cancel(pb.CancelRequest(activation_id=aid))
        result = await gw.wait(aid, timeout_s=60)
    assert result.state == ActivationState.CANCELLED, result
    assert next(t for t in result.tasks if t.id == "a").state == TaskState.ROLLED_BACK
    assert await asyncio.to_thread(interface_xml, nc1, name) == before
    with pytest.raises(grpc.aio.AioRpcError) as err:  # final: cannot be cancelled again
        await gw.stub.Cancel(pb.CancelRequest(activation_id=aid))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_get_unknown_and_list_by_device(gw: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.stub.Get(pb.GetRequest(activation_id="no-such-activation"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await gw.stub.List(pb.ListRequest(device="nc1", limit=5))
    assert listed.activations and all(any(t.device == "nc1" for t in a.tasks) for a in listed.activations)


async def test_wrong_password_fails_cleanly_and_never_leaks(lab: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    import yaml

    secret = f"wrong-{uuid.uuid4().hex}"
    monkeypatch.setenv("AGW_BADCRED_USERNAME", "labadmin")
    monkeypatch.setenv("AGW_BADCRED_PASSWORD", secret)
    inventory = yaml.safe_load(lab.inventory_path.read_text())
    inventory["devices"]["nc1"]["endpoints"][0]["credentials"] = "env:AGW_BADCRED"
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory))
    gateway = InProcessGateway(data_dir=tmp_path / "data", inventory=tmp_path / "inventory.yaml",
                               profiles=make_profiles(tmp_path / "profiles", {}))
    client = await gateway.start()
    caplog.set_level("DEBUG")
    try:
        aid = await client.submit([iface_task("t", "nc1", ifname(), description="x")], request_id=rid())
        result = await client.wait(aid)
        task = result.tasks[0]
        assert task.state == TaskState.FAILED and task.error is not None
        assert task.error.kind == "AuthenticationError", task.error
        events = await client.events(aid)
        everything = repr(result) + "".join(str(e) for e in events) + caplog.text
        db = b"".join(f.read_bytes() for f in (tmp_path / "data").iterdir() if f.name.startswith("journal.db"))
        assert secret not in everything and secret.encode() not in db
    finally:
        await gateway.stop()


async def test_rollback_after_out_of_band_change_falls_out_then_force_rollback_and_resolve(gw: Client, lab: Any) -> None:
    """Someone changed the device after the activation: Rollback refuses to overwrite it
    (fallout, with the diff); force-rollback puts the snapshot back; resolve closes a fallout
    with a person's note."""
    from tests.integration.gateway_harness import IF_NS, ncclient_edit

    nc1 = lab.node("nc1")
    outcomes = {}
    for action in ("force", "resolve"):
        name = ifname()
        before = await asyncio.to_thread(interface_xml, nc1, name)
        aid = await gw.submit([iface_task("t", "nc1", name, description="ours")], request_id=rid())
        assert (await gw.wait(aid)).state == ActivationState.COMPLETED
        await asyncio.to_thread(ncclient_edit, nc1, f'<config><interfaces xmlns="{IF_NS}"><interface><name>{name}</name>'
                                                    f'<description>theirs</description></interface></interfaces></config>')
        await gw.stub.Rollback(pb.RollbackRequest(activation_id=aid))
        result = await gw.wait(aid)
        task = result.tasks[0]
        assert result.state == ActivationState.FALLOUT and task.state == TaskState.FALLOUT, result
        assert "changed since the activation" in task.rollback.reason and "theirs" in task.rollback.diff
        assert "theirs" in await asyncio.to_thread(interface_xml, nc1, name)  # not overwritten
        if action == "force":
            await gw.stub.ForceRollbackFallout(pb.FalloutActionRequest(activation_id=aid, task_id="t"))
            result = await gw.wait(aid)  # the action runs in the background: follow it to its end
            assert result.state == ActivationState.ROLLED_BACK and result.tasks[0].rollback.ok, result
            assert await asyncio.to_thread(interface_xml, nc1, name) == before
        else:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await gw.stub.ResolveFallout(pb.FalloutActionRequest(activation_id=aid, task_id="t", note=""))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            await gw.stub.ResolveFallout(pb.FalloutActionRequest(activation_id=aid, task_id="t",
                                                                 note="kept the NOC's description, ticket 42"))
            result = await gw.get(aid)
            assert result.state == ActivationState.FAILED and "ticket 42" in result.tasks[0].note, result
        outcomes[action] = result.state
        fallout = await gw.stub.ListFallout(pb.ListFalloutRequest())
        assert all(i.activation_id != aid for i in fallout.items)
    assert outcomes == {"force": ActivationState.ROLLED_BACK, "resolve": ActivationState.FAILED}


async def test_two_tasks_on_one_device_share_one_revert_timer(gw: Client, lab: Any) -> None:
    """An atomic activation with two tasks on nc2: the second commit is a follow-up confirmed
    commit under the same persist-id, so both changes are confirmed - or reverted - together."""
    nc2, name = lab.node("nc2"), ifname()
    contact = f"two-{uuid.uuid4().hex[:6]}@example.net"
    tasks = [iface_task("if", "nc2", name, description="two tasks"),
             {"id": "sys", "device": "nc2", "service": "system", "action": "modify", "depends_on": ["if"],
              "parameters": {"contact": contact}}]
    result = await gw.wait(await gw.submit(tasks, request_id=rid()))
    assert result.state == ActivationState.COMPLETED, result
    assert "two tasks" in await asyncio.to_thread(interface_xml, nc2, name)
    assert contact in await asyncio.to_thread(system_xml, nc2)

    name2 = ifname()
    before_if, before_sys = await asyncio.to_thread(interface_xml, nc2, name2), await asyncio.to_thread(system_xml, nc2)
    tasks = [iface_task("if", "nc2", name2, description="reverted together"),
             {"id": "sys", "device": "nc2", "service": "system", "action": "modify", "depends_on": ["if"],
              "parameters": {"contact": "never-kept@example.net"}},
             iface_task("bad", "nc1", ifname(), type="notAnIanaType")]
    tasks[2]["depends_on"] = ["sys"]
    result = await gw.wait(await gw.submit(tasks, request_id=rid()))
    assert result.state == ActivationState.ROLLED_BACK, result
    assert {t.id: t.state for t in result.tasks} == {"if": TaskState.ROLLED_BACK, "sys": TaskState.ROLLED_BACK,
                                                      "bad": TaskState.ROLLED_BACK}
    assert await asyncio.to_thread(interface_xml, nc2, name2) == before_if
    assert await asyncio.to_thread(system_xml, nc2) == before_sys
