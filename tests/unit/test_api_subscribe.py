"""The Subscribe RPC end to end in process: a real grpc.aio server on port 0 (plain, and mutual TLS
with a policy), real grpc.aio clients, and the real engine over the scripted device network with a
SQLite journal (tests/scripted_gateway.py).

Covered: every end (completed, rolled back, fallout) arrives in order, as the outbox holds it, only
those from the moment of the call (or all, from_start); a stream cut and resumed with the cursor of
the last event received gets exactly the missing ones; filters by outcome and service; a bad
cursor (or one ahead of the journal) and bad filters are INVALID_ARGUMENT naming the field; the
per-caller limit is RESOURCE_EXHAUSTED; a caller that stops reading is cut with RESOURCE_EXHAUSTED
and loses nothing when it resumes; without the permission events:subscribe PERMISSION_DENIED, and a
scoped grant sees only the activations it may read.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import grpc
import grpc.aio
import pytest

from gateway.api import status
from gateway.api.auth import AuthMode
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
from gateway.api.policy import parse_policy
from gateway.api.server import start_server, stop_server
from gateway.api.tls import ServerTls
from gateway.api.validate import EdgeLimits
from gateway.engine import Engine
from gateway.engine.feed import decode_cursor, encode_cursor
from gateway.engine.limits import EngineSettings
from gateway.errors import FieldViolation
from gateway.pki import development_pki
from gateway.results import ActivationState
from tests.scripted_gateway import EDGE_DEVICES, Gateway, cut_overrun_grace, kv

Code = grpc.StatusCode
WAIT_S = 60.0
OUTCOME = {pb.ACTIVATION_STATE_COMPLETED: "completed", pb.ACTIVATION_STATE_ROLLED_BACK: "rolledBack",
           pb.ACTIVATION_STATE_FALLOUT: "fallout", pb.ACTIVATION_STATE_FAILED: "failed"}


async def until(check: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Reader:
    """One Subscribe call, read in the background."""

    def __init__(self, stub: pb_grpc.ActivationServiceStub, request: pb.SubscribeRequest) -> None:
        self.call = stub.Subscribe(request)
        self.got: list[pb.ResultEvent] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for msg in self.call:
                self.got.append(msg)
        except grpc.aio.AioRpcError as exc:
            self.error = exc

    async def wait(self, n: int) -> list[pb.ResultEvent]:
        await until(lambda: len(self.got) >= n or self.task.done(), f"{n} events")
        assert len(self.got) >= n, (self.got, self.error)
        return self.got

    async def failure(self) -> grpc.aio.AioRpcError:
        await asyncio.wait_for(self.task, WAIT_S)
        assert self.error is not None, self.got
        return self.error

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class Edge:
    def __init__(self, gw: Gateway, engine: Engine, port: int, channel: grpc.aio.Channel) -> None:
        self.gw, self.engine, self.port, self.channel = gw, engine, port, channel
        self.stub = pb_grpc.ActivationServiceStub(channel)
        self.readers: list[Reader] = []

    def subscribe(self, **kw: Any) -> Reader:
        reader = Reader(self.stub, pb.SubscribeRequest(**kw))
        self.readers.append(reader)
        return reader

    async def positioned(self, n: int) -> None:
        """``n`` streams are open on the engine and positioned: what ends from now on reaches them."""
        await until(lambda: self.engine.results.streams == n, f"{n} open stream(s)")

    async def done(self, request_id: str, value: str = "up", device: str = "r1", service: str = "kv") -> str:
        return (await self.gw.run(self.engine, kv("a", device, "if.ge1", value, service=service),
                                  request_id=request_id)).id

    async def rolled_back(self, activation_id: str) -> None:
        await self.engine.rollback(activation_id)
        assert (await self.gw.settle(self.engine, activation_id)).state == ActivationState.ROLLED_BACK

    async def fallout(self, request_id: str, device: str = "c1") -> str:
        """A verification mismatch whose restore is refused: the task falls out (once per device)."""
        from drivers.errors import DeviceRejectedError

        self.gw.net.mismatch(device)
        self.gw.net.fail(device, "restore", DeviceRejectedError("restore refused"), times=None)
        result = await self.gw.run(self.engine, kv("a", device, "if.ge1", "up"), request_id=request_id)
        self.gw.net.clear()
        assert result.state == ActivationState.FALLOUT
        return result.id

    async def outbox(self) -> list[Any]:
        return list(await self.engine.journal.outbox.after(0, limit=1000))


async def _edge(tmp_path: Path, *, settings: EngineSettings | None = None, limits: EdgeLimits | None = None,
                channel_options: list[tuple[str, Any]] | None = None) -> AsyncIterator[Edge]:
    gw = Gateway.create(tmp_path, devices=EDGE_DEVICES)
    gw.settings = settings or EngineSettings(results_poll_interval_s=0.2)
    engine = await gw.engine()
    server, port = await start_server(engine, listen="127.0.0.1:0", limits=limits or EdgeLimits())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=channel_options or [])
    edge = Edge(gw, engine, port, channel)
    try:
        yield edge
    finally:
        for reader in edge.readers:
            await reader.close()
        await channel.close()
        await stop_server(server, grace_s=0.5)
        await gw.close()


@pytest.fixture
async def edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Edge]:
    cut_overrun_grace(monkeypatch)
    async for e in _edge(tmp_path):
        yield e


def check_against_outbox(got: list[pb.ResultEvent], stored: list[Any]) -> None:
    """The messages are the outbox's events (same ids, data, times), in position order."""
    assert [m.id for m in got] == [e.id for e in stored]
    for m, e in zip(got, stored):
        assert (m.subject, m.type, m.data) == (e.activation_id, e.type, e.payload)
        assert m.type == "net.agw.activation." + OUTCOME[m.outcome] and json.loads(m.data)["outcome"] == OUTCOME[m.outcome]
        assert m.time.ToDatetime().replace(tzinfo=e.time.tzinfo) == e.time and decode_cursor(m.cursor) == e.position


async def test_each_end_arrives_in_order_from_the_moment_of_the_call(edge: Edge) -> None:
    old = await edge.done("before")  # before the call: not streamed
    reader = edge.subscribe()
    await edge.positioned(1)
    done = await edge.done("done")
    await edge.rolled_back(done)
    fallen = await edge.fallout("fallen")
    got = await reader.wait(3)
    assert [OUTCOME[m.outcome] for m in got] == ["completed", "rolledBack", "fallout"]
    assert [m.subject for m in got] == [done, done, fallen] and old not in {m.subject for m in got}
    check_against_outbox(got, (await edge.outbox())[1:])
    assert len({m.cursor for m in got}) == 3 and all(m.cursor and "=" not in m.cursor for m in got)
    everything = edge.subscribe(from_start=True)
    check_against_outbox(await everything.wait(4), await edge.outbox())


async def test_a_resumed_stream_gets_exactly_the_events_it_missed(edge: Edge) -> None:
    first = edge.subscribe(from_start=True)
    await edge.positioned(1)
    for n in range(2):
        await edge.done(f"r{n}", value=f"v{n}")
    received = await first.wait(2)
    cursor = received[1].cursor
    await first.close()  # the caller hangs up
    await edge.positioned(0)  # its stream (and its slot) is gone
    missed = [await edge.done(f"m{n}", value=f"m{n}", device=("r1", "r2")[n % 2]) for n in range(3)]
    resumed = edge.subscribe(after=cursor)
    assert [m.subject for m in await resumed.wait(3)] == missed
    sentinel = await edge.done("sentinel", value="s")
    got = await resumed.wait(4)
    assert [m.subject for m in got] == [*missed, sentinel]  # nothing more, nothing twice
    check_against_outbox(got, (await edge.outbox())[2:])


async def test_filters_by_outcome_and_service(edge: Edge) -> None:
    fallouts = edge.subscribe(from_start=True, outcomes=[pb.ACTIVATION_STATE_FALLOUT])
    kvu = edge.subscribe(from_start=True, services=["kvu"])
    await edge.positioned(2)
    await edge.done("kv")
    other = await edge.done("kvu", service="kvu")
    fallen = await edge.fallout("fallen")
    sentinel = await edge.done("kvu-2", value="again", service="kvu")
    assert [m.subject for m in await kvu.wait(2)] == [other, sentinel]
    await edge.fallout("fallen-2", device="c2")
    got = await fallouts.wait(2)
    assert got[0].subject == fallen and {OUTCOME[m.outcome] for m in got} == {"fallout"}


async def _refused(edge: Edge, **kw: Any) -> grpc.aio.AioRpcError:
    reader = edge.subscribe(**kw)
    return await reader.failure()


@pytest.mark.parametrize(("request_kw", "field"), [
    ({"after": "not a cursor"}, "after"),
    ({"after": "bm90LW91cnM"}, "after"),  # base64 of something else
    ({"after": encode_cursor(999)}, "after"),  # ahead of this journal
    ({"after": encode_cursor(0), "from_start": True}, "from_start"),
    ({"outcomes": [pb.ACTIVATION_STATE_IN_PROGRESS]}, "outcomes[0]"),
    ({"services": ["kv", " "]}, "services[1]"),
])
async def test_a_bad_request_is_invalid_argument_naming_the_field(edge: Edge, request_kw: dict[str, Any],
                                                                  field: str) -> None:
    err = await _refused(edge, **request_kw)
    assert err.code() == Code.INVALID_ARGUMENT and field in err.details(), err
    assert field in [v.field for v in status.bad_request_details(err.trailing_metadata())]
    await edge.positioned(0)


async def test_a_caller_has_a_bounded_number_of_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cut_overrun_grace(monkeypatch)
    settings = EngineSettings(results_poll_interval_s=0.2, max_subscriptions_per_caller=2)
    async for edge in _edge(tmp_path, settings=settings):
        one, _two = edge.subscribe(), edge.subscribe()
        await edge.positioned(2)
        err = await _refused(edge)
        assert err.code() == Code.RESOURCE_EXHAUSTED and "Subscribe streams" in err.details(), err
        assert status.retry_after_s(err.trailing_metadata()) is not None
        await one.close()
        await edge.positioned(1)
        three = edge.subscribe()
        await edge.positioned(2)
        aid = await edge.done("after")
        assert [m.subject for m in await three.wait(1)] == [aid]


async def test_a_caller_that_stops_reading_is_cut_and_loses_nothing_when_it_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cut_overrun_grace(monkeypatch)
    limits = EdgeLimits(subscribe_buffer=2, subscribe_stall_s=0.5)
    # a client that takes 1 KiB ahead at most (no window growth): a stopped reader stalls the stream soon
    small_window = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]
    async for edge in _edge(tmp_path, limits=limits, channel_options=small_window):
        for n in range(12):
            await edge.done(f"r{n}", value=f"v{n}", device=("r1", "r2")[n % 2])
        stored = await edge.outbox()
        call = edge.stub.Subscribe(pb.SubscribeRequest(from_start=True))
        got = [await call.read()]
        await until(lambda: edge.engine.results.streams == 0, "the stream cut (its feed closed)")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            while (msg := await call.read()) is not grpc.aio.EOF:
                got.append(msg)
        assert err.value.code() == Code.RESOURCE_EXHAUSTED and "read too slowly" in err.value.details()
        assert 1 <= len(got) < len(stored)
        check_against_outbox(got, stored[:len(got)])
        resumed = edge.subscribe(after=got[-1].cursor)
        check_against_outbox(await resumed.wait(len(stored) - len(got)), stored[len(got):])


# -- authorization: mutual TLS and a policy ------------------------------------------------------------

TRUST = "spiffe://agw.local"
POLICY = {"grants": [
    {"identity": f"{TRUST}/admin", "role": "admin"},
    {"identity": f"{TRUST}/oss", "role": "reader", "permissions": ["events:subscribe"]},
    {"identity": f"{TRUST}/edge", "role": "reader", "devices": ["r1"], "permissions": ["events:subscribe"]},
    {"identity": f"{TRUST}/reader", "role": "reader"},
]}


async def test_subscribe_needs_the_permission_and_a_scoped_grant_sees_its_activations_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cut_overrun_grace(monkeypatch)
    pki = tmp_path / "pki"
    development_pki(pki, clients=("admin", "oss", "edge", "reader"))
    gw = Gateway.create(tmp_path, devices=EDGE_DEVICES)
    gw.settings = EngineSettings(results_poll_interval_s=0.2)
    engine = await gw.engine()
    tls = ServerTls(cert=pki / "server.pem", key=pki / "server.key", client_ca=pki / "ca.pem")
    server, port = await start_server(engine, listen="127.0.0.1:0", tls=tls,
                                      auth=AuthMode(identities=True, policy=parse_policy(POLICY)))
    channels: list[grpc.aio.Channel] = []

    def stub(who: str) -> pb_grpc.ActivationServiceStub:
        creds = grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes(), (pki / f"{who}.key").read_bytes(),
                                             (pki / f"{who}.pem").read_bytes())
        channels.append(grpc.aio.secure_channel(f"127.0.0.1:{port}", creds))
        return pb_grpc.ActivationServiceStub(channels[-1])

    readers: list[Reader] = []
    try:
        denied = Reader(stub("reader"), pb.SubscribeRequest(from_start=True))
        err = await denied.failure()
        assert err.code() == Code.PERMISSION_DENIED and "events:subscribe" in err.details(), err
        readers = [Reader(stub(who), pb.SubscribeRequest(from_start=True)) for who in ("admin", "oss", "edge")]
        await until(lambda: engine.results.streams == 3, "three streams")
        on_r1 = (await gw.run(engine, kv("a", "r1", "if.ge1", "up"), request_id="r1")).id
        on_r2 = (await gw.run(engine, kv("a", "r2", "if.ge1", "up"), request_id="r2")).id
        last_r1 = (await gw.run(engine, kv("a", "r1", "if.ge1", "down"), request_id="r1-2")).id
        admin, oss, edge = readers
        assert [m.subject for m in await admin.wait(3)] == [on_r1, on_r2, last_r1]
        assert [m.subject for m in await oss.wait(3)] == [on_r1, on_r2, last_r1]
        assert [m.subject for m in await edge.wait(2)] == [on_r1, last_r1]  # r2 is outside its grant
    finally:
        for reader in readers:
            await reader.close()
        for ch in channels:
            await ch.close()
        await stop_server(server, grace_s=0.5)
        await gw.close()


def test_cursors_are_opaque_and_checked() -> None:
    from gateway.errors import InputError

    for position in (0, 1, 42, 2**62):
        assert decode_cursor(encode_cursor(position)) == position
    for bad in ("", "!!", "YWd3MTo", encode_cursor(1) + "x" * 80, "YWd3MTowMQ"):  # ... "agw1:01"
        with pytest.raises(InputError) as err:
            decode_cursor(bad)
        assert err.value.violations[0] == FieldViolation(
            "after", "not a cursor this gateway gave out (use the cursor of an event received, or leave it empty)")
