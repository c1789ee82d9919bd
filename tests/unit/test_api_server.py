"""The gRPC edge, end to end in process: a real grpc.aio server on port 0, a real grpc.aio client,
and the in-memory engine double (our own facade, see test_api_support)."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import AsyncIterator

import grpc
import grpc.aio
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from gateway.api import status
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
from gateway.api.server import SERVICE_NAME, serve, start_server, stop_server
from gateway.api.validate import EdgeLimits
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
from tests.unit.test_api_support import MemoryEngine

Code = grpc.StatusCode


class Edge:
    def __init__(self, engine: MemoryEngine, server: grpc.aio.Server, port: int, channel: grpc.aio.Channel) -> None:
        self.engine = engine
        self.server = server
        self.port = port
        self.channel = channel
        self.stub = pb_grpc.ActivationServiceStub(channel)


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    engine = MemoryEngine()
    server, port = await start_server(engine, listen="127.0.0.1:0")
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    try:
        yield Edge(engine, server, port, channel)
    finally:
        await channel.close()
        await stop_server(server, grace_s=0.5)


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


# -- Submit --------------------------------------------------------------------------------------
async def test_submit_translates_the_request_for_the_engine(edge: Edge) -> None:
    params = {"name": "eth1", "mtu": 1500, "ratio": 0.5, "enabled": True, "note": None,
              "ipv4": {"address": "198.18.0.1", "prefix_length": 24}, "vlans": [10, 20]}
    resp = await edge.stub.Submit(submit(task(params=params), task("t2", device="r1", depends_on=("t1",)),
                                         order_ref="ORD-7"))
    assert resp.created and resp.activation_id == "act-1"
    req = edge.engine.submitted[0]
    assert req.request_id == "req-1" and req.order_ref == "ORD-7" and req.atomic is True  # unset -> true
    t1, t2 = req.tasks
    assert (t1.id, t1.device, t1.service, t1.action) == ("t1", "nc1", "interface", Action.CREATE)
    assert t1.parameters == params
    assert type(t1.parameters["mtu"]) is int and type(t1.parameters["ipv4"]["prefix_length"]) is int
    assert type(t1.parameters["ratio"]) is float and t1.parameters["vlans"] == [10, 20]
    assert t2.depends_on == ("t1",)


async def test_submit_atomic_false_is_kept(edge: Edge) -> None:
    await edge.stub.Submit(submit(atomic=False))
    assert edge.engine.submitted[0].atomic is False


async def test_submit_is_idempotent_and_rejects_changed_content(edge: Edge) -> None:
    first = await edge.stub.Submit(submit())
    again = await edge.stub.Submit(submit())
    assert again.activation_id == first.activation_id and first.created and not again.created
    assert len(edge.engine.submitted) == 1
    err = await rpc_error(edge.stub.Submit(submit(task(params={"name": "eth2"}))))
    assert err.code() == Code.ALREADY_EXISTS and "req-1" in err.details()


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
    assert edge.engine.calls == []


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


async def test_too_many_tasks_and_a_flood_of_violations_stay_readable(edge: Edge) -> None:
    tasks = [task(f"t{i}", device="") for i in range(1001)]
    err = await rpc_error(edge.stub.Submit(submit(*tasks)))
    assert err.code() == Code.INVALID_ARGUMENT
    assert "tasks: 1001 tasks, more than the limit of 1000" in err.details()
    assert f"... and {1002 - status.MAX_VIOLATIONS_SHOWN} more" in err.details()
    assert len(status.bad_request_details(err.trailing_metadata())) == status.MAX_VIOLATIONS_SHOWN


async def test_semantic_errors_come_from_the_engine_all_at_once(edge: Edge) -> None:
    req = submit(task("a", device="nowhere", depends_on=("b",)), task("b", service="vpn", depends_on=("a",)))
    err = await rpc_error(edge.stub.Submit(req))
    assert err.code() == Code.INVALID_ARGUMENT
    for text in ("tasks[0].device: unknown device 'nowhere'", "tasks[1].service: unknown service 'vpn'",
                 "dependency cycle"):
        assert text in err.details()


async def test_dry_run_is_validated_and_passed_through(edge: Edge) -> None:
    result = await edge.stub.DryRun(submit())
    assert result.dry_run and result.state == pb.ACTIVATION_STATE_COMPLETED
    assert result.tasks[0].diff == "+ t1" and result.tasks[0].state == pb.TASK_STATE_COMPLETED
    err = await rpc_error(edge.stub.DryRun(pb.SubmitRequest(request_id="x", tasks=[task(device="")])))
    assert err.code() == Code.INVALID_ARGUMENT and "tasks[0].device: required" in err.details()
    assert not edge.engine.submitted


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
    edge.engine.fail_next = exc
    err = await rpc_error(edge.stub.Get(pb.GetRequest(activation_id="x")))
    assert err.code() == code
    if is_internal(exc):  # configuration and journal text stay in the log (test_api_hostile)
        assert exc.message not in err.details() and "; see the gateway log)" in err.details()
    else:
        assert exc.message in err.details()


async def test_unexpected_errors_are_internal_generic_and_logged(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    edge.engine.fail_next = RuntimeError("password=hunter2 leaked by a bug")
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


async def test_cancel_and_rollback_state_errors(edge: Edge) -> None:
    aid = (await edge.stub.Submit(submit())).activation_id
    err = await rpc_error(edge.stub.Rollback(pb.RollbackRequest(activation_id=aid)))
    assert err.code() == Code.FAILED_PRECONDITION
    cancelled = await edge.stub.Cancel(pb.CancelRequest(activation_id=aid))
    assert cancelled.state == pb.ACTIVATION_STATE_CANCELLED
    err = await rpc_error(edge.stub.Cancel(pb.CancelRequest(activation_id=aid)))
    assert err.code() == Code.FAILED_PRECONDITION and "cannot be cancelled" in err.details()


# -- Watch & Get ---------------------------------------------------------------------------------
async def test_late_watcher_gets_past_then_live_events_and_the_stream_ends(edge: Edge) -> None:
    edge.engine.failing_devices = {"r1"}
    aid = (await edge.stub.Submit(submit(task("a"), task("b", device="r1")))).activation_id
    call = edge.stub.Watch(pb.WatchRequest(activation_id=aid))
    first = await call.read()  # the past event, before anything else happened
    assert (first.seq, first.state, first.task_id) == (1, "acknowledged", "")
    run = asyncio.ensure_future(edge.engine.run(aid))
    events = [first]
    while (ev := await call.read()) is not grpc.aio.EOF:
        events.append(ev)
    await run
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].state == "rolledBack" and events[-1].task_id == ""
    assert ("b", "commit", "failed") in [(e.task_id, e.phase, e.state) for e in events]
    assert events[1].time.ToDatetime() > events[0].time.ToDatetime()
    assert await call.code() == Code.OK
    # a watcher arriving after the end gets the whole history, then the end
    replay = [e async for e in edge.stub.Watch(pb.WatchRequest(activation_id=aid))]
    assert replay == events
    # and the result carries the parsed device error, rollback and timings
    got = await edge.stub.Get(pb.GetRequest(activation_id=aid))
    a, b = got.tasks
    assert got.state == pb.ACTIVATION_STATE_ROLLED_BACK
    assert b.state == pb.TASK_STATE_FAILED and b.error.kind == "DeviceRejectedError"
    assert (b.error.device_error.tag, b.error.device_error.path) == ("invalid-value", "/if:interfaces")
    assert a.state == pb.TASK_STATE_ROLLED_BACK and a.rollback.ok and a.rollback.method == "cancel-commit"
    assert a.timings[0].phase == "push" and a.timings[0].duration_ms == 1.5 and a.rendered


async def test_watch_unknown_and_empty_ids(edge: Edge) -> None:
    err = await rpc_error(_drain(edge.stub.Watch(pb.WatchRequest(activation_id="nope"))))
    assert err.code() == Code.NOT_FOUND
    err = await rpc_error(_drain(edge.stub.Watch(pb.WatchRequest())))
    assert err.code() == Code.INVALID_ARGUMENT


async def _drain(call: grpc.aio.UnaryStreamCall) -> list[pb.Event]:
    return [e async for e in call]


async def test_a_watcher_that_leaves_releases_the_engine_subscription(edge: Edge) -> None:
    aid = (await edge.stub.Submit(submit())).activation_id
    call = edge.stub.Watch(pb.WatchRequest(activation_id=aid))
    assert (await call.read()).state == "acknowledged"
    call.cancel()
    for _ in range(100):
        if edge.engine._changed._waiters is None or not edge.engine._changed._waiters:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.01)
    assert not edge.engine._changed._waiters  # type: ignore[attr-defined]
    assert (await edge.stub.Get(pb.GetRequest(activation_id=aid))).id == aid  # server still fine


# -- List & fallout ------------------------------------------------------------------------------
async def test_list_filters_are_translated(edge: Edge) -> None:
    await edge.stub.Submit(submit())
    since = timestamp_pb2.Timestamp(seconds=1)
    resp = await edge.stub.List(pb.ListRequest(states=[pb.ACTIVATION_STATE_ACKNOWLEDGED], device="nc1", since=since))
    assert [a.id for a in resp.activations] == ["act-1"]
    name, args = edge.engine.calls[-1]
    assert name == "list" and args[1] == "nc1" and args[4] == 10 and args[2].year == 1970 and args[3] is None
    resp = await edge.stub.List(pb.ListRequest(device="r1"))
    assert not resp.activations


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


async def test_fallout_list_and_actions(edge: Edge) -> None:
    edge.engine.fallout_devices = {"r1"}
    aid = (await edge.stub.Submit(submit(task("a"), task("b", device="r1")))).activation_id
    await edge.engine.run(aid)
    items = (await edge.stub.ListFallout(pb.ListFalloutRequest())).items
    assert [(i.activation_id, i.task.id, i.task.rollback.reason) for i in items] == [(aid, "b", "device unreachable")]
    err = await rpc_error(edge.stub.ResolveFallout(pb.FalloutActionRequest(activation_id=aid)))
    assert err.code() == Code.INVALID_ARGUMENT
    assert "task_id: required" in err.details() and "note: required" in err.details()
    err = await rpc_error(edge.stub.RetryFallout(pb.FalloutActionRequest(activation_id="missing")))
    assert err.code() == Code.NOT_FOUND
    err = await rpc_error(edge.stub.ForceRollbackFallout(pb.FalloutActionRequest(activation_id=aid, task_id="a")))
    assert err.code() == Code.FAILED_PRECONDITION
    done = await edge.stub.ResolveFallout(pb.FalloutActionRequest(activation_id=aid, task_id="b", note="fixed by hand"))
    assert done.tasks[1].note == "fixed by hand" and done.state == pb.ACTIVATION_STATE_ROLLED_BACK
    assert edge.engine.calls[-1] == ("resolve", (aid, "b", "fixed by hand"))


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
        await edge.stub.Submit(submit(task(params={"description": "customer-secret-42"})),
                               metadata=(("x-request-id", "corr-9"),))
        await rpc_error(edge.stub.Submit(pb.SubmitRequest(request_id="r")))
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


async def test_serve_until_stopped_then_health_is_gone() -> None:
    engine = MemoryEngine()
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
