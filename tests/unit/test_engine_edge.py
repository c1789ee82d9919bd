"""Nothing a request does stalls the gateway or freezes unrelated work: the real engine (SQLite
journal in memory, the repository's templates and device profiles, a small inventory) with an
in-memory scripted driver registered for the ``netconfd`` platform, alone and behind a real gRPC
server. The driver is our own contract implemented small (not a protocol): devices that answer
after a delay, never answer, or wait for a test's go."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import grpc
import grpc.aio
import pytest

from drivers.base import Capabilities, ChangeSet, Driver, PayloadFormat, Snapshot, Verification
from drivers.registry import Registry
from gateway.api import status
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
from gateway.api.server import start_server, stop_server
from gateway.app import REPO_ROOT
from gateway.engine import Engine
from gateway.engine.limits import EngineSettings
from gateway.errors import ResourceExhaustedError
from gateway.inventory import CredentialResolver, Inventory, ProfileStore, select_endpoint
from gateway.journal import open_journal
from gateway.model import Action, ActivationRequest, Caller, TaskSpec, TaskState
from gateway.render import TemplateStore
from gateway.results import ActivationState
from tests.integration.gateway_harness import submit_request

DEVICES = ("d1", "d2", "d3")


@dataclass
class Script:
    """What the scripted devices do, and what happened (``events``: (device, operation))."""

    delay_s: dict[str, float] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)  # never answer (after connecting)
    gate: dict[str, asyncio.Event] = field(default_factory=dict)  # load waits for it
    state: dict[str, list[str]] = field(default_factory=dict)  # device -> what was loaded, in order
    events: list[tuple[str, str]] = field(default_factory=list)

    async def step(self, device: str, op: str) -> None:
        self.events.append((device, op))
        if device in self.hang and op != "open":
            await asyncio.Event().wait()
        if self.delay_s.get(device):
            await asyncio.sleep(self.delay_s[device])
        if op == "load" and device in self.gate:
            await self.gate[device].wait()

    def ops(self, device: str) -> list[str]:
        return [op for d, op in self.events if d == device]


class ScriptedDriver(Driver):
    name = "netconf"
    payload_format = PayloadFormat.XML
    supported = Capabilities()
    script: ClassVar[Script]

    async def open(self) -> None:
        await self.script.step(self.device, "open")
        self._open = True

    async def close(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return getattr(self, "_open", False)

    def _snapshot(self) -> Snapshot:
        return Snapshot(content="\n".join(self.script.state.get(self.device, [])), scope="all")

    def scope_of(self, change: ChangeSet) -> str:
        return "all"

    async def read(self, scope: str) -> Snapshot:
        await self.script.step(self.device, "read")
        return self._snapshot()

    async def preview(self, change: ChangeSet, snapshot: Snapshot) -> str:
        await self.script.step(self.device, "preview")
        return f"+ {len(change.content)} bytes"

    def diff(self, before: Snapshot, after: Snapshot) -> str:
        return "" if before == after else "changed"

    async def load(self, change: ChangeSet) -> None:
        await self.script.step(self.device, "load")
        self.script.state.setdefault(self.device, []).append(change.content)

    async def verify(self, change: ChangeSet, before: Snapshot) -> Verification:
        return Verification(ok=True, checked=1, readback=self._snapshot())

    async def restore(self, snapshot: Snapshot, undo: str | None = None) -> None:
        await self.script.step(self.device, "restore")
        self.script.state[self.device] = snapshot.content.split("\n") if snapshot.content else []


def task(tid: str, device: str = "d1", *deps: str) -> TaskSpec:
    return TaskSpec(id=tid, device=device, service="interface", action=Action.CREATE,
                    parameters={"name": f"ge-{tid}", "description": f"task {tid}"}, depends_on=tuple(deps))


def request(*tasks: TaskSpec, request_id: str = "r1", atomic: bool = True) -> ActivationRequest:
    return ActivationRequest(request_id=request_id, atomic=atomic, tasks=tasks)


def as_dicts(*tasks: TaskSpec) -> list[dict[str, Any]]:
    return [{"id": t.id, "device": t.device, "service": t.service, "action": t.action.value,
             "parameters": dict(t.parameters), "depends_on": list(t.depends_on)} for t in tasks]


@pytest.fixture
def make_engine(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AGW_EDGE_TEST_USERNAME", "u")
    monkeypatch.setenv("AGW_EDGE_TEST_PASSWORD", "edge-test-password")
    engines: list[Engine] = []

    def make(script: Script, **settings: Any) -> Engine:
        ScriptedDriver.script = script
        registry: Registry[Driver] = Registry("agw.test-edge-drivers", Driver)
        registry.register("netconf", ScriptedDriver)
        inventory = Inventory.from_mapping({"devices": {
            d: {"address": "127.0.0.1", "host_key_check": False,
                "endpoints": [{"platform": "netconfd", "port": 830, "credentials": "env:AGW_EDGE_TEST"}]}
            for d in DEVICES}})
        engine = Engine(journal=open_journal("sqlite://"), inventory=inventory,
                        profiles=ProfileStore.load(REPO_ROOT / "device_profiles"),
                        templates=TemplateStore(root=REPO_ROOT / "templates"), credentials=CredentialResolver(),
                        registry=registry, select_endpoint=select_endpoint, settings=EngineSettings(**settings))
        engines.append(engine)
        return engine

    return make


async def started(engine: Engine) -> Engine:
    await engine.start()
    return engine


class Edge:
    def __init__(self, engine: Engine, server: grpc.aio.Server, channel: grpc.aio.Channel) -> None:
        self.engine, self.server, self.channel = engine, server, channel
        self.stub = pb_grpc.ActivationServiceStub(channel)

    async def close(self) -> None:
        await self.channel.close()
        await stop_server(self.server, grace_s=0.5)
        await self.engine.stop(grace_s=1)


async def edge(engine: Engine) -> Edge:
    await engine.start()
    server, port = await start_server(engine, listen="127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}",
                                        options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    return Edge(engine, server, channel)


async def rpc_error(coro: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    return info.value


# -- long dependency chains and cycles, through a real server ------------------------------------------
async def test_a_990_task_chain_is_planned_over_grpc_and_runs_in_dependency_order(make_engine: Any) -> None:
    script = Script()
    e = await edge(make_engine(script))
    try:
        tasks = [task(f"t{i}", DEVICES[i % 3], f"t{i + 1}") for i in range(989)] + [task("t989", "d2")]
        reply = await e.stub.Submit(submit_request(as_dicts(*tasks), request_id="chain"))
        result = await e.engine.get(reply.activation_id, wait_s=120)
        assert result.state == ActivationState.COMPLETED, [(t.id, t.state, t.error) for t in result.tasks[:3]]
        assert sum(1 for _, op in script.events if op == "load") == 990
        for d in DEVICES:  # on each device, the chain's tasks were applied from its end to its start
            ids = [int(c.split("task t")[1].split("<")[0]) for c in script.state[d]]
            assert ids == sorted(ids, reverse=True)
    finally:
        await e.close()


async def test_a_1000_task_cycle_over_grpc_is_invalid_argument_naming_it_clipped(make_engine: Any) -> None:
    e = await edge(make_engine(Script()))
    try:
        tasks = [task(f"t{i}", "d1", f"t{(i + 1) % 1000}") for i in range(1000)]
        err = await rpc_error(e.stub.Submit(submit_request(as_dicts(*tasks), request_id="cycle")))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "dependency cycle of 1000 tasks: t0 -> t1" in err.details() and "991 more -> t0" in err.details()
        assert len(err.details()) < 400
        tail = [task(f"t{i}", "d1", f"t{i + 1}") for i in range(999)] + [task("t999", "d1", "t997")]
        err = await rpc_error(e.stub.DryRun(submit_request(as_dicts(*tail), request_id="tail")))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "dependency cycle: t997 -> t998 -> t999 -> t997" in err.details()
    finally:
        await e.close()


# -- device locks in activations ----------------------------------------------------------------------
async def test_a_device_that_stays_busy_fails_its_task_with_device_busy_and_nothing_is_sent(make_engine: Any) -> None:
    script = Script()
    engine = await started(make_engine(script, lock_wait_s=0.2))
    try:
        held = await engine.ctx.locks.acquire(["d1"], owner="someone else")
        independent = await engine.submit(request(task("a", "d1"), task("b", "d2"), request_id="ind", atomic=False))
        atomic = await engine.submit(request(task("a", "d1"), task("b", "d3"), request_id="atomic"))
        ind = await engine.get(independent.activation_id, wait_s=10)
        ato = await engine.get(atomic.activation_id, wait_s=10)
        held.release()
        a, b = ind.tasks
        assert ind.state == ActivationState.PARTIAL and b.state == TaskState.COMPLETED
        assert a.state == TaskState.FAILED and a.error is not None and a.error.kind == "DeviceBusyError"
        assert "device d1 is busy (someone else)" in a.error.message and a.error.retryable
        assert ato.state == ActivationState.FAILED
        assert [t.state for t in ato.tasks] == [TaskState.FAILED, TaskState.CANCELLED]
        assert ato.tasks[0].error is not None and ato.tasks[0].error.kind == "DeviceBusyError"
        assert script.ops("d1") == [] and script.ops("d3") == []  # nothing sent, not even a connect
    finally:
        await engine.stop(grace_s=1)


async def test_an_atomic_activation_waiting_for_a_slow_device_does_not_freeze_its_fast_ones(make_engine: Any) -> None:
    script = Script(gate={"d1": asyncio.Event()})
    engine = await started(make_engine(script))
    try:
        slow = await engine.submit(request(task("s", "d1"), request_id="slow"))  # holds d1 until the gate opens
        while "load" not in script.ops("d1"):
            await asyncio.sleep(0.01)
        atomic = await engine.submit(request(task("a", "d1"), task("b", "d2"), request_id="atomic"))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        quick = await engine.submit(request(task("q", "d2"), request_id="quick"))
        assert (await engine.get(quick.activation_id, wait_s=5)).state == ActivationState.COMPLETED
        assert time.monotonic() - t0 < 2  # d2 was free: the atomic activation waits for d1 holding nothing
        assert (await engine.get(atomic.activation_id)).state != ActivationState.COMPLETED
        script.gate["d1"].set()
        assert (await engine.get(slow.activation_id, wait_s=5)).state == ActivationState.COMPLETED
        assert (await engine.get(atomic.activation_id, wait_s=5)).state == ActivationState.COMPLETED
    finally:
        await engine.stop(grace_s=1)


# -- DryRun: one deadline, short lock waits, devices in parallel, never a change ------------------------
async def test_a_dry_run_ends_by_its_deadline_when_a_device_never_answers(make_engine: Any) -> None:
    script = Script(hang={"d1"}, delay_s={"d2": 0.3, "d3": 0.3})
    engine = await started(make_engine(script, dry_run_timeout_s=1.0))
    try:
        t0 = time.monotonic()
        result = await engine.dry_run(request(task("a", "d1"), task("a2", "d1"), task("b", "d2"), task("c", "d3")))
        took = time.monotonic() - t0
        assert 0.9 < took < 1.6, took
        a, a2, b, c = result.tasks
        assert result.state == ActivationState.FAILED and result.dry_run
        assert b.state == c.state == TaskState.COMPLETED and b.diff and c.diff
        assert a.state == a2.state == TaskState.FAILED and a.error is not None and a2.error is not None
        assert a.error.kind == "DeviceTimeoutError" and "deadline (1 s)" in a.error.message
        assert "not tried" in a2.error.message
        # d2 and d3 each took 2 x 0.3 s (read, preview) at the same time, not one after the other
        assert script.ops("d2") == ["open", "read", "preview"] and script.ops("d3") == ["open", "read", "preview"]
        assert not any(op in ("load", "restore") for _, op in script.events) and not script.state  # nothing changed
        await engine.wait_idle()  # the cut-off work is cleaned up in the background
        assert not engine.ctx.locks.busy("d1") and len(engine.ctx.pool) == 2  # d1's session dropped
    finally:
        await engine.stop(grace_s=1)


async def test_a_dry_run_on_a_busy_device_says_so_quickly_instead_of_waiting(make_engine: Any) -> None:
    script = Script(gate={"d1": asyncio.Event()})
    engine = await started(make_engine(script, dry_run_lock_wait_s=0.2))
    try:
        busy = await engine.submit(request(task("x", "d1"), request_id="busy"))
        while "load" not in script.ops("d1"):
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        result = await engine.dry_run(request(task("a", "d1"), task("b", "d2"), request_id="dry"))
        assert time.monotonic() - t0 < 1.5
        a, b = result.tasks
        assert b.state == TaskState.COMPLETED
        assert a.state == TaskState.FAILED and a.error is not None and a.error.kind == "DeviceBusyError"
        assert "device d1 is busy" in a.error.message
        script.gate["d1"].set()
        assert (await engine.get(busy.activation_id, wait_s=5)).state == ActivationState.COMPLETED
    finally:
        await engine.stop(grace_s=1)


async def test_a_dry_run_lets_a_real_activation_go_between_its_tasks(make_engine: Any) -> None:
    script = Script(delay_s={"d1": 0.1})
    engine = await started(make_engine(script))
    try:
        dry = asyncio.create_task(engine.dry_run(request(task("a", "d1"), task("b", "d1"), task("c", "d1"),
                                                         request_id="dry")))
        while script.ops("d1").count("read") < 1:
            await asyncio.sleep(0.005)
        real = await engine.submit(request(task("r", "d1"), request_id="real"))
        assert (await engine.get(real.activation_id, wait_s=10)).state == ActivationState.COMPLETED
        assert (await dry).state == ActivationState.COMPLETED
        ops = script.ops("d1")
        # the DryRun's first task, then the activation (read, load), then the DryRun's other two
        assert ops.index("load") < [i for i, op in enumerate(ops) if op == "preview"][1], ops
    finally:
        await engine.stop(grace_s=1)


async def test_a_dry_run_answers_before_the_callers_grpc_deadline(make_engine: Any) -> None:
    script = Script(hang={"d1"})
    e = await edge(make_engine(script, dry_run_timeout_s=30))
    try:
        t0 = time.monotonic()
        reply = await e.stub.DryRun(submit_request(as_dicts(task("a", "d1"), task("b", "d2")), request_id="dl"),
                                    timeout=1.5)
        assert time.monotonic() - t0 < 1.5
        assert [t.state for t in reply.tasks] == [pb.TASK_STATE_FAILED, pb.TASK_STATE_COMPLETED]
        assert "deadline" in reply.tasks[0].error.message
    finally:
        await e.close()


# -- per-caller limits ---------------------------------------------------------------------------------
async def test_activations_over_the_callers_limit_are_resource_exhausted_with_retry_info(make_engine: Any) -> None:
    script = Script(gate={"d1": asyncio.Event()})
    e = await edge(make_engine(script, max_activations_per_caller=2))
    try:
        first = await e.stub.Submit(submit_request(as_dicts(task("a", "d1")), request_id="one"))
        await e.stub.Submit(submit_request(as_dicts(task("b", "d1")), request_id="two"))
        err = await rpc_error(e.stub.Submit(submit_request(as_dicts(task("c", "d2")), request_id="three")))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "2 activations" in err.details()
        assert status.retry_after_s(err.trailing_metadata()) == pytest.approx(5.0)
        again = await e.stub.Submit(submit_request(as_dicts(task("a", "d1")), request_id="one"))  # a retry: not new
        assert again.activation_id == first.activation_id
        err = await rpc_error(e.stub.Submit(submit_request(as_dicts(task("x", "d1")), request_id="one")))
        assert err.code() == grpc.StatusCode.ALREADY_EXISTS  # same id, other content: still the conflict
        script.gate["d1"].set()
        await e.engine.wait_idle()
        assert e.engine.activation_slots.used(Caller()) == 0
        await e.stub.Submit(submit_request(as_dicts(task("c", "d2")), request_id="three"))
    finally:
        await e.close()


async def test_the_limits_count_per_caller_identity_and_dry_runs_separately(make_engine: Any) -> None:
    script = Script(hang={"d1"})
    engine = await started(make_engine(script, max_activations_per_caller=1, max_dry_runs_per_caller=1,
                                       dry_run_timeout_s=1.0))
    try:
        alice, bob = Caller(identity="spiffe://x/alice"), Caller(identity="spiffe://x/bob")
        await engine.submit(request(task("a", "d1"), request_id="a1"), caller=alice)  # hangs on d1: stays running
        with pytest.raises(ResourceExhaustedError) as info:
            await engine.submit(request(task("a", "d2"), request_id="a2"), caller=alice)
        assert info.value.retry_after_s == 5.0 and "spiffe://x/alice" in info.value.message
        await engine.submit(request(task("b", "d2"), request_id="b1"), caller=bob)  # another caller: own count
        dry = asyncio.create_task(engine.dry_run(request(task("d", "d1"), request_id="d1"), caller=alice))
        await asyncio.sleep(0.05)
        with pytest.raises(ResourceExhaustedError) as info:
            await engine.dry_run(request(task("d", "d2"), request_id="d2"), caller=alice)
        assert info.value.retry_after_s == 1.0 and "DryRuns" in info.value.message
        other = await engine.dry_run(request(task("d", "d2"), request_id="d3"), caller=bob)
        assert other.state == ActivationState.COMPLETED
        await dry
        assert engine.dry_run_slots.used(alice) == 0
    finally:
        await engine.stop(grace_s=0.5)


def test_agw_serve_passes_the_per_caller_limits_to_the_engine(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from gateway import cli, cli_serve
    from gateway.app import build_engine

    seen: list[Engine] = []

    async def fake_serve(config: Any, build: Any, **_: Any) -> None:
        seen.append(build_engine(config))

    monkeypatch.setattr(cli_serve, "_serve", fake_serve)
    result = CliRunner().invoke(cli.main, ["serve", "--data-dir", str(tmp_path), "--max-activations-per-caller", "7",
                                           "--max-dry-runs-per-caller", "2", "--max-subscriptions-per-caller", "3"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    settings = seen[0].settings
    assert (settings.max_activations_per_caller, settings.max_dry_runs_per_caller) == (7, 2)
    assert seen[0].activation_slots.limit == 7 and seen[0].dry_run_slots.limit == 2
    assert settings.max_subscriptions_per_caller == 3 and seen[0].results.slots.limit == 3
    refused = CliRunner().invoke(cli.main, ["serve", "--data-dir", str(tmp_path), "--max-dry-runs-per-caller", "0"])
    assert refused.exit_code != 0 and "--max-dry-runs-per-caller" in refused.output


def test_planning_on_several_threads_at_once_gives_what_planning_alone_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planner's path is thread-safe: template store caches, validators, Jinja, the XML
    checks and the NETCONF driver's check of each rendered change (one lxml parser per thread)."""
    from concurrent.futures import ThreadPoolExecutor

    from drivers.registry import drivers

    monkeypatch.setenv("AGW_EDGE_TEST_USERNAME", "u")
    inventory = Inventory.from_mapping({"devices": {
        d: {"address": "127.0.0.1", "host_key_check": False,
            "endpoints": [{"platform": "netconfd", "port": 830, "credentials": "env:AGW_EDGE_TEST"}]} for d in DEVICES}})
    engine = Engine(journal=open_journal("sqlite://"), inventory=inventory,
                    profiles=ProfileStore.load(REPO_ROOT / "device_profiles"),
                    templates=TemplateStore(root=REPO_ROOT / "templates", recheck_s=0.0),
                    credentials=CredentialResolver(), registry=drivers, select_endpoint=select_endpoint)

    def req(k: int) -> ActivationRequest:
        return request(*(TaskSpec(id=f"t{i}", device=DEVICES[i % 3], service="interface", action=Action.CREATE,
                                  parameters={"name": f"ge-0/0/{i}", "description": f"circuit {k}-{i} & a < b",
                                              "ipv4": {"address": "192.0.2.1", "prefix_length": 31}})
                         for i in range(150)), request_id=f"r{k}")

    def contents(k: int) -> list[str]:
        return [p.change.content for p in engine.plan(req(k)).tasks]

    alone = [contents(k) for k in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(contents, range(8)))
    assert together == alone and "&amp; a &lt; b" in alone[3][0]


# -- shutdown: open streams end at once, not at the end of the grace period ----------------------------
async def test_a_shutdown_ends_open_watch_and_subscribe_streams_with_unavailable_at_once(make_engine: Any) -> None:
    """Callers that never hang up (a Watch of an activation still running, a Subscribe waiting
    for the next result) used to hold ``stop_server`` for its whole grace period: each now ends
    with UNAVAILABLE saying what to do, and the in-flight unary call still gets its answer."""
    script = Script(gate={"d1": asyncio.Event()})
    engine = await started(make_engine(script))
    server, port = await start_server(engine, listen="127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.ActivationServiceStub(channel)
    try:
        reply = await stub.Submit(submit_request(as_dicts(task("a", "d1")), request_id="held"))
        while "load" not in script.ops("d1"):
            await asyncio.sleep(0.01)
        watch = stub.Watch(pb.WatchRequest(activation_id=reply.activation_id))
        first = await watch.read()  # the stream is open and positioned
        assert first.activation_id == reply.activation_id
        subscribe = stub.Subscribe(pb.SubscribeRequest())
        while engine.results.streams != 1:
            await asyncio.sleep(0.01)
        stopping = asyncio.create_task(stop_server(server, grace_s=300))
        with pytest.raises(grpc.aio.AioRpcError) as watched:
            while True:
                await watch.read()
        assert watched.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down: watch again" in (watched.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as subscribed:
            while True:
                await subscribe.read()
        assert subscribed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "subscribe again with the cursor" in (subscribed.value.details() or "")
        await asyncio.wait_for(stopping, timeout=60)  # far within the 300 s grace: nothing held it
        assert engine.results.streams == 0 and engine.ctx.bus.watched() == []
    finally:
        script.gate["d1"].set()
        await channel.close()
        await stop_server(server, grace_s=0)
        await engine.stop(grace_s=5)
