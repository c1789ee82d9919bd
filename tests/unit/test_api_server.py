"""The gRPC edge, end to end in process: a real grpc.aio server on port 0, a real grpc.aio client,
and the real engine (gateway.engine.Engine) over the scripted device network with a SQLite
journal in a temporary directory (tests/scripted_gateway.py). The engine's facade calls are
recorded on the way (FacadeCalls): what the edge answers by itself must not reach the engine."""

from __future__ import annotations

import asyncio
import logging
import math
from pathlib import Path
from typing import AsyncIterator

import grpc
import grpc.aio
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from drivers.errors import DeviceErrorInfo
from drivers.testing.scripted import ScriptedNetwork
from gateway.api import status
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
from gateway.api.server import SERVICE_NAME, serve, start_server, stop_server
from gateway.api.validate import EdgeLimits
from gateway.engine import Engine
from gateway.errors import (
    ConfigurationError,
    ConflictError,
    ConnectError,
    DeviceRejectedError,
    DriverUnavailableError,
    JournalError,
    NotFoundError,
    RenderError,
    StateError,
)
from gateway.incidents import is_internal
from gateway.model import Action
from tests.scripted_gateway import EDGE_DEVICES, INITIAL, FacadeCalls, Gateway, cut_overrun_grace, gate

Code = grpc.StatusCode
HOLD_GRACE_S = 10.0
"""The engine's overrun grace while a test holds a device operation (gate): longer than any hold."""


class Edge:
    def __init__(self, gw: Gateway, engine: Engine, server: grpc.aio.Server, port: int,
                 channel: grpc.aio.Channel) -> None:
        self.gw = gw
        self.net: ScriptedNetwork = gw.net
        self.engine = engine
        self.calls = FacadeCalls(engine)  # before the server serves: every call is seen
        self.server = server
        self.port = port
        self.channel = channel
        self.stub = pb_grpc.ActivationServiceStub(channel)

    async def outcome(self, activation_id: str) -> pb.Activation:
        """The activation once it ended (final, or fallout), through Get with a wait."""
        result: pb.Activation = await self.stub.Get(pb.GetRequest(activation_id=activation_id, wait_ms=10_000))
        return result


@pytest.fixture
async def edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Edge]:
    cut_overrun_grace(monkeypatch)
    gw = Gateway.create(tmp_path, devices=EDGE_DEVICES)
    engine = await gw.engine()
    server = None
    try:
        server, port = await start_server(engine, listen="127.0.0.1:0")
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        )
        try:
            yield Edge(gw, engine, server, port, channel)
        finally:
            await channel.close()
    finally:
        if server is not None:
            await stop_server(server, grace_s=0.5)
        await gw.close()


def task(tid: str = "t1", *, device: str = "nc1", service: str = "interface", action: int = pb.ACTION_CREATE,
         params: dict | None = None, depends_on: tuple[str, ...] = ()) -> pb.Task:
    s = struct_pb2.Struct()
    s.update(params if params is not None else {"name": "eth1", "description": "uplink"})
    return pb.Task(id=tid, device=device, service=service, action=action, parameters=s, depends_on=list(depends_on))


def submit(*tasks: pb.Task, request_id: str = "req-1", **kw: object) -> pb.SubmitRequest:
    return pb.SubmitRequest(request_id=request_id, tasks=list(tasks) or [task()], **kw)  # type: ignore[arg-type]


async def rpc_error(coro: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro  # type: ignore[misc]
    return info.value


def rejected(message: str = "bad value") -> DeviceRejectedError:
    return DeviceRejectedError(message, info=DeviceErrorInfo(message, tag="invalid-value", path="/if:interfaces"))


# -- Submit --------------------------------------------------------------------------------------
async def test_submit_translates_the_request_for_the_engine(edge: Edge) -> None:
    params = {"name": "eth1", "mtu": 1500, "ratio": 0.5, "enabled": True, "note": None,
              "ipv4": {"address": "198.18.0.1", "prefix_length": 24}, "vlans": [10, 20]}
    resp = await edge.stub.Submit(submit(task(service="opaque", params=params),
                                         task("t2", device="r1", depends_on=("t1",)), order_ref="ORD-7"))
    assert resp.created and resp.activation_id
    req = edge.calls.last("submit").args[0]  # what the engine was given
    assert req.request_id == "req-1" and req.order_ref == "ORD-7" and req.atomic is True  # unset -> true
    t1, t2 = req.tasks
    assert (t1.id, t1.device, t1.service, t1.action) == ("t1", "nc1", "opaque", Action.CREATE)
    assert t1.parameters == params
    assert type(t1.parameters["mtu"]) is int and type(t1.parameters["ipv4"]["prefix_length"]) is int
    assert type(t1.parameters["ratio"]) is float and t1.parameters["vlans"] == [10, 20]
    assert t2.depends_on == ("t1",)
    # and what the engine made of it, as journaled
    got = await edge.outcome(resp.activation_id)
    assert (got.id, got.request_id, got.order_ref, got.atomic) == (resp.activation_id, "req-1", "ORD-7", True)
    assert got.state == pb.ACTIVATION_STATE_COMPLETED
    assert [(t.id, t.device, t.service, list(t.depends_on)) for t in got.tasks] == [
        ("t1", "nc1", "opaque", []), ("t2", "r1", "interface", ["t1"])]
    assert got.tasks[1].rendered == "if.eth1.description = uplink\nif.eth1.type = ethernetCsmacd\n"
    assert edge.net.config("r1") == INITIAL | {"if.eth1.description": "uplink", "if.eth1.type": "ethernetCsmacd"}


async def test_submit_atomic_false_is_kept(edge: Edge) -> None:
    resp = await edge.stub.Submit(submit(atomic=False))
    assert edge.calls.last("submit").args[0].atomic is False
    assert (await edge.outcome(resp.activation_id)).atomic is False


async def test_submit_is_idempotent_and_rejects_changed_content(edge: Edge) -> None:
    first = await edge.stub.Submit(submit())
    again = await edge.stub.Submit(submit())
    assert again.activation_id == first.activation_id and first.created and not again.created
    assert [a.id for a in (await edge.stub.List(pb.ListRequest())).activations] == [first.activation_id]
    err = await rpc_error(edge.stub.Submit(submit(task(params={"name": "eth2"}))))
    assert err.code() == Code.ALREADY_EXISTS and "'req-1'" in err.details()
    assert first.activation_id in err.details() and "different content" in err.details()


async def test_every_structural_violation_is_listed_and_the_engine_is_not_called(edge: Edge) -> None:
    nan = float("nan")
    bad = pb.SubmitRequest(request_id="", tasks=[
        task("a", device="", depends_on=("a", "ghost")),
        task("a", service=""),
        task("", action=pb.ACTION_UNSPECIFIED),
        task("d", service="../etc", action=9, params={"x": {"y": [1, nan]}}),
    ])
    err = await rpc_error(edge.stub.Submit(bad))
    assert err.code() == Code.INVALID_ARGUMENT
    expected = [
        "request_id: required",
        "tasks[1].id: duplicate of tasks[0].id 'a'",
        "tasks[0].device: required",
        "tasks[0].depends_on[0]: a task cannot depend on itself",
        "tasks[0].depends_on[1]: unknown task id 'ghost'",
        "tasks[1].service: required",
        "tasks[2].id: required",
        "tasks[2].action: required (create, modify or delete)",
        "tasks[3].service: must be letters, digits, '_' or '-'",
        "tasks[3].action: unknown value 9",
        "tasks[3].parameters.x.y[1]: not a finite number",
    ]
    for text in expected:
        assert text in err.details(), text
    details = status.bad_request_details(err.trailing_metadata())
    assert {f"{v.field}: {v.reason}" for v in details} == set(expected)
    assert edge.calls.names() == []


async def test_no_tasks(edge: Edge) -> None:
    err = await rpc_error(edge.stub.Submit(pb.SubmitRequest(request_id="r")))
    assert err.code() == Code.INVALID_ARGUMENT and "tasks: at least one task is required" in err.details()


async def test_oversized_parameters_and_request_are_answered_by_the_edge(edge: Edge) -> None:
    big = task(params={"blob": "x" * (65 * 1024)})
    err = await rpc_error(edge.stub.Submit(submit(big)))
    assert err.code() == Code.INVALID_ARGUMENT
    assert "tasks[0].parameters:" in err.details() and "more than the limit of 65536" in err.details()
    # 70 tasks x 60 KiB: each task within its limit, the whole request over 4 MiB
    many = [task(f"t{i}", params={"blob": "y" * (60 * 1024)}) for i in range(70)]
    err = await rpc_error(edge.stub.Submit(submit(*many)))
    assert err.code() == Code.INVALID_ARGUMENT
    assert "request:" in err.details() and "more than the limit of 4194304" in err.details()
    assert "tasks[0].parameters" not in err.details()
    assert edge.calls.names() == []


async def test_too_many_tasks_and_a_flood_of_violations_stay_readable(edge: Edge) -> None:
    tasks = [task(f"t{i}", device="") for i in range(1001)]
    err = await rpc_error(edge.stub.Submit(submit(*tasks)))
    assert err.code() == Code.INVALID_ARGUMENT
    assert "tasks: 1001 tasks, more than the limit of 1000" in err.details()
    assert f"... and {1002 - status.MAX_VIOLATIONS_SHOWN} more" in err.details()
    assert len(status.bad_request_details(err.trailing_metadata())) == status.MAX_VIOLATIONS_SHOWN


async def test_semantic_errors_come_from_the_engine_all_at_once(edge: Edge) -> None:
    req = submit(task("a", device="nowhere", depends_on=("b",)), task("b", service="vpn", depends_on=("a",)),
                 task("c", params={"name": "eth1", "mtu": 9000}))
    err = await rpc_error(edge.stub.Submit(req))
    assert err.code() == Code.INVALID_ARGUMENT
    for text in ("tasks[0].device: unknown device 'nowhere'", "tasks[1].service: unknown service 'vpn'",
                 "tasks[0].depends_on: dependency cycle: a -> b -> a", "tasks[2].parameters"):
        assert text in err.details(), err.details()
    fields = {v.field for v in status.bad_request_details(err.trailing_metadata())}
    assert {"tasks[0].device", "tasks[1].service", "tasks[0].depends_on"} <= fields
    assert edge.calls.names() == ["submit"]
    assert not (await edge.stub.List(pb.ListRequest())).activations  # nothing journaled
    assert edge.net.calls == []  # nor sent


async def test_dry_run_is_validated_and_passed_through(edge: Edge) -> None:
    result = await edge.stub.DryRun(submit())
    assert result.dry_run and result.state == pb.ACTIVATION_STATE_COMPLETED
    t1 = result.tasks[0]
    assert t1.state == pb.TASK_STATE_COMPLETED and t1.rendered.startswith("if.eth1.description = uplink")
    assert "+if.eth1.description = uplink" in t1.diff and " if.ge1 = down" in t1.diff
    assert edge.net.config("nc1") == INITIAL  # read, never changed
    err = await rpc_error(edge.stub.DryRun(pb.SubmitRequest(request_id="x", tasks=[task(device="")])))
    assert err.code() == Code.INVALID_ARGUMENT and "tasks[0].device: required" in err.details()
    assert edge.calls.names() == ["dry_run"]  # the second never reached the engine
    assert not (await edge.stub.List(pb.ListRequest())).activations  # a DryRun journals nothing


# -- status mapping -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (NotFoundError("no activation x"), Code.NOT_FOUND),
        (ConflictError("same id"), Code.ALREADY_EXISTS),
        (StateError("final"), Code.FAILED_PRECONDITION),
        (ConfigurationError("bad inventory"), Code.FAILED_PRECONDITION),
        (DriverUnavailableError("pip install x"), Code.FAILED_PRECONDITION),
        (ConnectError("refused", device="nc1"), Code.UNAVAILABLE),
        (DeviceRejectedError("invalid-value", device="nc1"), Code.ABORTED),
        (DeviceRejectedError("busy", device="nc1", retryable=True), Code.UNAVAILABLE),
        (JournalError("disk full"), Code.UNAVAILABLE),
        (RenderError("template interface/netconfd.j2 line 3: 'mtu' is undefined"), Code.INVALID_ARGUMENT),
    ],
)
async def test_domain_errors_map_to_status_codes(edge: Edge, exc: Exception, code: Code) -> None:
    edge.calls.fail_next = exc  # as the engine raises it
    err = await rpc_error(edge.stub.Get(pb.GetRequest(activation_id="x")))
    assert err.code() == code
    if is_internal(exc):  # configuration and journal text stay in the log (test_api_hostile)
        assert exc.message not in err.details() and "; see the gateway log)" in err.details()
    else:
        assert exc.message in err.details()


async def test_the_engines_own_refusals_map_to_status_codes(edge: Edge) -> None:
    err = await rpc_error(edge.stub.Get(pb.GetRequest(activation_id="x")))
    assert err.code() == Code.NOT_FOUND and "activation x not found" in err.details()
    aid = (await edge.stub.Submit(submit())).activation_id
    assert (await edge.outcome(aid)).state == pb.ACTIVATION_STATE_COMPLETED
    err = await rpc_error(edge.stub.Cancel(pb.CancelRequest(activation_id=aid)))
    assert err.code() == Code.FAILED_PRECONDITION and "only a running activation can be cancelled" in err.details()
    err = await rpc_error(edge.stub.Submit(submit(task(params={"name": "eth9"}))))
    assert err.code() == Code.ALREADY_EXISTS


async def test_unexpected_errors_are_internal_generic_and_logged(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    edge.calls.fail_next = RuntimeError("password=hunter2 leaked by a bug")
    with caplog.at_level(logging.ERROR, logger="gateway.api.status"):
        err = await rpc_error(edge.stub.Cancel(pb.CancelRequest(activation_id="x")))
    assert err.code() == Code.INTERNAL
    assert "hunter2" not in err.details() and "incident" in err.details()
    assert any(r.exc_info and "hunter2" in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.parametrize("rpc", ["Get", "Cancel", "Rollback"])
async def test_empty_activation_id_is_invalid(edge: Edge, rpc: str) -> None:
    req = {"Get": pb.GetRequest, "Cancel": pb.CancelRequest, "Rollback": pb.RollbackRequest}[rpc]()
    err = await rpc_error(getattr(edge.stub, rpc)(req))
    assert err.code() == Code.INVALID_ARGUMENT and "activation_id: required" in err.details()
    assert edge.calls.names() == []


async def test_cancel_and_rollback_state_errors(edge: Edge, monkeypatch: pytest.MonkeyPatch) -> None:
    cut_overrun_grace(monkeypatch, HOLD_GRACE_S)
    held = gate(edge.net, "nc1", "load")
    aid = (await edge.stub.Submit(submit())).activation_id
    await asyncio.wait_for(held.reached.wait(), 5)  # the push is under way
    err = await rpc_error(edge.stub.Rollback(pb.RollbackRequest(activation_id=aid)))
    assert err.code() == Code.FAILED_PRECONDITION
    assert "is inProgress; only a completed (or partial) activation can be rolled back" in err.details()
    asked = await edge.stub.Cancel(pb.CancelRequest(activation_id=aid))
    assert asked.id == aid and asked.state == pb.ACTIVATION_STATE_IN_PROGRESS  # the run stops at its next step
    held.release.set()
    cancelled = await edge.outcome(aid)
    assert cancelled.state == pb.ACTIVATION_STATE_CANCELLED
    assert cancelled.tasks[0].state == pb.TASK_STATE_ROLLED_BACK and cancelled.tasks[0].rollback.ok
    assert edge.net.config("nc1") == INITIAL
    err = await rpc_error(edge.stub.Cancel(pb.CancelRequest(activation_id=aid)))
    assert err.code() == Code.FAILED_PRECONDITION
    assert "is cancelled; only a running activation can be cancelled" in err.details()


# -- Watch & Get ---------------------------------------------------------------------------------
async def test_late_watcher_gets_past_then_live_events_and_the_stream_ends(
        edge: Edge, monkeypatch: pytest.MonkeyPatch) -> None:
    cut_overrun_grace(monkeypatch, HOLD_GRACE_S)
    held = gate(edge.net, "nc1", "lock")
    edge.net.fail("r1", "commit", rejected())
    aid = (await edge.stub.Submit(submit(task("a"), task("b", device="r1", depends_on=("a",))))).activation_id
    await asyncio.wait_for(held.reached.wait(), 5)
    call = edge.stub.Watch(pb.WatchRequest(activation_id=aid))
    first = await call.read()  # a past event: the activation is held at its first device step
    assert (first.seq, first.state, first.task_id) == (1, "acknowledged", "")
    held.release.set()
    events = [first]
    while (ev := await call.read()) is not grpc.aio.EOF:
        events.append(ev)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].state == "rolledBack" and events[-1].task_id == ""
    failed = [e for e in events if (e.task_id, e.phase) == ("b", "commit") and e.message.startswith("failed: ")]
    assert len(failed) == 1 and "bad value" in failed[0].message
    times = [e.time.ToDatetime() for e in events]
    assert times == sorted(times) and times[-1] > times[0]
    assert await call.code() == Code.OK
    # a watcher arriving after the end gets the whole history, then the end
    replay = [e async for e in edge.stub.Watch(pb.WatchRequest(activation_id=aid))]
    assert replay == events
    # and the result carries the parsed device error, rollback and timings
    got = await edge.stub.Get(pb.GetRequest(activation_id=aid))
    a, b = got.tasks
    assert got.state == pb.ACTIVATION_STATE_ROLLED_BACK
    assert b.state == pb.TASK_STATE_ROLLED_BACK and b.error.kind == "DeviceRejectedError" and b.error.phase == "commit"
    assert (b.error.device_error.tag, b.error.device_error.path) == ("invalid-value", "/if:interfaces")
    assert a.state == pb.TASK_STATE_ROLLED_BACK and a.rollback.ok and a.rollback.method == "cancel-commit"
    assert [t.phase for t in a.timings][:4] == ["connect", "lock", "snapshot", "push"]
    assert all(t.duration_ms >= 0 for t in a.timings) and a.rendered
    assert edge.net.config("nc1") == edge.net.config("r1") == INITIAL


async def test_watch_unknown_and_empty_ids(edge: Edge) -> None:
    err = await rpc_error(_drain(edge.stub.Watch(pb.WatchRequest(activation_id="nope"))))
    assert err.code() == Code.NOT_FOUND
    err = await rpc_error(_drain(edge.stub.Watch(pb.WatchRequest())))
    assert err.code() == Code.INVALID_ARGUMENT


async def _drain(call: grpc.aio.UnaryStreamCall) -> list[pb.Event]:
    return [e async for e in call]


async def test_a_watcher_that_leaves_releases_the_engine_subscription(
        edge: Edge, monkeypatch: pytest.MonkeyPatch) -> None:
    cut_overrun_grace(monkeypatch, HOLD_GRACE_S)
    held = gate(edge.net, "nc1", "load")
    aid = (await edge.stub.Submit(submit())).activation_id
    await asyncio.wait_for(held.reached.wait(), 5)
    subscribers = edge.engine.ctx.bus._subscribers  # the engine's live event fan-out
    call = edge.stub.Watch(pb.WatchRequest(activation_id=aid))
    assert (await call.read()).state == "acknowledged"
    assert subscribers.get(aid)  # the watcher waits for live events
    call.cancel()
    for _ in range(100):
        if not subscribers.get(aid):
            break
        await asyncio.sleep(0.01)
    assert not subscribers.get(aid)
    held.release.set()
    assert (await edge.outcome(aid)).state == pb.ACTIVATION_STATE_COMPLETED  # server and engine still fine


@pytest.mark.parametrize("action", ["Rollback", "RetryFallout"])
async def test_a_watch_opened_right_after_a_rollback_or_retry_follows_it_to_the_end(
        edge: Edge, monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    if action == "Rollback":
        aid = (await edge.stub.Submit(submit())).activation_id
        assert (await edge.outcome(aid)).state == pb.ACTIVATION_STATE_COMPLETED
    else:  # the restore is refused once: fallout, and the retry's restore goes through
        edge.net.mismatch("c1")
        edge.net.fail("c1", "restore", DeviceRejectedError("restore refused"))
        aid = (await edge.stub.Submit(submit(task(device="c1")))).activation_id
        assert (await edge.outcome(aid)).state == pb.ACTIVATION_STATE_FALLOUT
    started = asyncio.Event()  # the repair starts late (a busy journal writer, a busy loop): the window held open
    repair = edge.engine.repairer.repair

    async def late_repair(*args: object, **kwargs: object) -> object:
        await started.wait()
        return await repair(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(edge.engine.repairer, "repair", late_repair)
    if action == "Rollback":
        answer = await edge.stub.Rollback(pb.RollbackRequest(activation_id=aid))
    else:
        answer = await edge.stub.RetryFallout(pb.FalloutActionRequest(activation_id=aid))
    assert answer.state == pb.ACTIVATION_STATE_IN_PROGRESS  # the answer says the action runs
    asyncio.get_running_loop().call_later(0.3, started.set)
    events = [e async for e in edge.stub.Watch(pb.WatchRequest(activation_id=aid), timeout=10)]
    started.set()
    assert (events[-1].task_id, events[-1].state) == ("", "rolledBack"), [(e.phase, e.state) for e in events[-3:]]
    assert (await edge.outcome(aid)).state == pb.ACTIVATION_STATE_ROLLED_BACK


# -- List & fallout ------------------------------------------------------------------------------
async def test_list_filters_are_translated(edge: Edge) -> None:
    aid = (await edge.stub.Submit(submit())).activation_id
    assert (await edge.outcome(aid)).state == pb.ACTIVATION_STATE_COMPLETED
    since = timestamp_pb2.Timestamp(seconds=1)
    resp = await edge.stub.List(pb.ListRequest(states=[pb.ACTIVATION_STATE_COMPLETED], device="nc1", since=since))
    assert [a.id for a in resp.activations] == [aid]
    kw = edge.calls.last("list_page").kwargs
    assert kw["device"] == "nc1" and kw["page_size"] == 10 and kw["since"].year == 1970 and kw["until"] is None
    assert [s.value for s in kw["states"]] == ["completed"]
    for other in (pb.ListRequest(device="r1"), pb.ListRequest(states=[pb.ACTIVATION_STATE_FALLOUT]),
                  pb.ListRequest(since=timestamp_pb2.Timestamp(seconds=4_000_000_000))):
        assert not (await edge.stub.List(other)).activations


async def test_list_bad_input(edge: Edge) -> None:
    req = pb.ListRequest(states=[42, pb.ACTIVATION_STATE_UNSPECIFIED], limit=-1,
                         since=timestamp_pb2.Timestamp(seconds=100), until=timestamp_pb2.Timestamp(seconds=50))
    err = await rpc_error(edge.stub.List(req))
    assert err.code() == Code.INVALID_ARGUMENT
    for text in ("states[0]: unknown activation state 42", "states[1]", "limit: must be between 0 and 1000"):
        assert text in err.details()
    err = await rpc_error(edge.stub.List(pb.ListRequest(since=timestamp_pb2.Timestamp(seconds=100),
                                                        until=timestamp_pb2.Timestamp(seconds=50))))
    assert "until: earlier than since" in err.details()
    err = await rpc_error(edge.stub.List(pb.ListRequest(until=timestamp_pb2.Timestamp(seconds=2**62))))
    assert "until: timestamp out of range" in err.details()
    assert edge.calls.names() == []


async def test_fallout_list_and_actions(edge: Edge) -> None:
    # r1's change fails its verification and its confirmed commit cannot be cancelled: fallout
    edge.net.mismatch("r1")
    edge.net.fail("r1", "cancel_commit", DeviceRejectedError("cancel-commit refused"), times=None)
    aid = (await edge.stub.Submit(submit(task("a"), task("b", device="r1", depends_on=("a",))))).activation_id
    assert (await edge.outcome(aid)).state == pb.ACTIVATION_STATE_FALLOUT
    items = (await edge.stub.ListFallout(pb.ListFalloutRequest())).items
    assert [(i.activation_id, i.task.id) for i in items] == [(aid, "b")]
    assert "cancel-commit refused" in items[0].task.rollback.reason and not items[0].task.rollback.ok
    err = await rpc_error(edge.stub.ResolveFallout(pb.FalloutActionRequest(activation_id=aid)))
    assert err.code() == Code.INVALID_ARGUMENT
    assert "task_id: required" in err.details() and "note: required" in err.details()
    err = await rpc_error(edge.stub.RetryFallout(pb.FalloutActionRequest(activation_id="missing")))
    assert err.code() == Code.NOT_FOUND
    err = await rpc_error(edge.stub.ForceRollbackFallout(pb.FalloutActionRequest(activation_id=aid, task_id="a")))
    assert err.code() == Code.FAILED_PRECONDITION and "no task in fallout named 'a'" in err.details()
    done = await edge.stub.ResolveFallout(pb.FalloutActionRequest(activation_id=aid, task_id="b", note="fixed by hand"))
    assert done.tasks[1].note == "resolved: fixed by hand" and done.tasks[1].state == pb.TASK_STATE_FAILED
    assert done.state == pb.ACTIVATION_STATE_ROLLED_BACK  # a was rolled back, b resolved by hand
    assert edge.calls.last("resolve").args == (aid, "b", "fixed by hand")
    assert not (await edge.stub.ListFallout(pb.ListFalloutRequest())).items


# -- health, reflection, metrics, logs, server lifecycle -----------------------------------------
async def test_health_and_reflection_answer(edge: Edge) -> None:
    health = health_pb2_grpc.HealthStub(edge.channel)
    for name in ("", SERVICE_NAME):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(edge.channel)

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        yield reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME)

    answers = [a async for a in refl.ServerReflectionInfo(ask())]
    names = {s.name for s in answers[0].list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names
    assert answers[1].file_descriptor_response.file_descriptor_proto  # the contract, served


async def test_calls_are_counted_and_logged_without_parameters(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    method = f"/{SERVICE_NAME}/Submit"

    def count(code: str) -> float:
        return REGISTRY.get_sample_value("agw_grpc_server_handled_total", {"method": method, "code": code}) or 0.0

    ok0, bad0 = count("OK"), count("INVALID_ARGUMENT")
    with caplog.at_level(logging.INFO, logger="gateway.api.interceptors"):
        await edge.stub.Submit(submit(task(params={"name": "eth1", "description": "customer-secret-42"})),
                               metadata=(("x-request-id", "corr-9"),))
        await rpc_error(edge.stub.Submit(pb.SubmitRequest(request_id="r")))
        # an aborted call's status reaches the client before the server's interceptor counts it
        for _ in range(100):
            if count("INVALID_ARGUMENT") > bad0:
                break
            await asyncio.sleep(0.01)
    assert count("OK") == ok0 + 1 and count("INVALID_ARGUMENT") == bad0 + 1
    assert (REGISTRY.get_sample_value("agw_grpc_server_handling_seconds_count", {"method": method}) or 0) >= 2
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.api.interceptors"]
    assert any(f"rpc {method} OK" in l and "cid=corr-9" in l and "request_id='req-1'" in l for l in lines)
    assert any(f"rpc {method} INVALID_ARGUMENT" in l for l in lines)
    assert not any("customer-secret-42" in r.getMessage() for r in caplog.records)


async def test_start_server_refuses_a_busy_port_and_inconsistent_limits(edge: Edge) -> None:
    with pytest.raises(ConfigurationError, match="cannot listen"):
        await start_server(edge.engine, listen=f"127.0.0.1:{edge.port}")
    with pytest.raises(ConfigurationError, match="must exceed"):
        await start_server(edge.engine, listen="127.0.0.1:0", max_message_bytes=1024,
                           limits=EdgeLimits(max_request_bytes=4096))


async def test_serve_until_stopped_then_health_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cut_overrun_grace(monkeypatch)
    gw = Gateway.create(tmp_path, devices=EDGE_DEVICES)
    engine = await gw.engine()
    try:
        await _serve_until_stopped(engine)
    finally:
        await gw.close()


async def _serve_until_stopped(engine: Engine) -> None:
    stop = asyncio.Event()
    ports: list[int] = []
    served = asyncio.ensure_future(serve(engine, listen="127.0.0.1:0", grace_s=0.2, stop=stop, on_ready=ports.append))
    for _ in range(200):
        if ports:
            break
        await asyncio.sleep(0.01)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ports[0]}") as ch:
        resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        stop.set()
        await asyncio.wait_for(served, 5)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
        assert info.value.code() in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED)


def test_map_error_is_total() -> None:
    assert status.map_error(KeyError("x")).code == Code.INTERNAL
    assert math.isfinite(1.0)  # keep math import honest for the NaN test above
