"""PoolService end to end in process: a real grpc.aio server on port 0, a real client, the real
engine and SQLite journal (tests/scripted_gateway.py); the permissions pools:read / pools:admin;
bad requests are INVALID_ARGUMENT naming the field; a Submit to an exhausted or unknown pool is
FAILED_PRECONDITION naming it, with nothing journaled."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import grpc
import grpc.aio
import pytest
from google.protobuf import struct_pb2

from gateway.api import status
from gateway.api.auth import AuthMode
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
from gateway.api.generated.activation.v1 import pools_pb2 as ppb
from gateway.api.generated.activation.v1 import pools_pb2_grpc as ppb_grpc
from gateway.api.policy import parse_policy
from gateway.api.server import start_server, stop_server
from gateway.engine import Engine
from gateway.errors import PermissionDeniedError
from tests.engine.test_pools import link_templates  # noqa: F401 - fixture
from tests.scripted_gateway import Gateway, cut_overrun_grace

Code = grpc.StatusCode


@pytest.fixture
async def served(tmp_path: Path, link_templates: Path,  # noqa: F811
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Engine, ppb_grpc.PoolServiceStub,
                                                                       pb_grpc.ActivationServiceStub]]:
    cut_overrun_grace(monkeypatch)
    gw = Gateway.create(tmp_path, templates_root=link_templates)
    engine = await gw.engine()
    server, port = await start_server(engine, listen="127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield engine, ppb_grpc.PoolServiceStub(channel), pb_grpc.ActivationServiceStub(channel)
    finally:
        await channel.close()
        await stop_server(server, grace_s=0)
        await gw.close()


def fields(exc: grpc.aio.AioRpcError) -> list[str]:
    return [v.field for v in status.bad_request_details(exc.trailing_metadata())]  # type: ignore[arg-type]


async def test_create_list_get_and_idempotent_create(served: tuple[Engine, ppb_grpc.PoolServiceStub, object]) -> None:
    _, pools, _ = served
    made = await pools.CreatePool(ppb.CreatePoolRequest(pool=ppb.Pool(name="links", kind="ipv4",
                                                                     prefix="10.0.0.0/30", description="d")))
    assert (made.outcome, made.pool.name, made.pool.free, made.pool.allocated) == ("created", "links", "4", 0)
    again = await pools.CreatePool(ppb.CreatePoolRequest(pool=ppb.Pool(name="links", kind="ipv4",
                                                                      prefix="10.0.0.0/30", description="d")))
    assert again.outcome == "unchanged"
    await pools.CreatePool(ppb.CreatePoolRequest(pool=ppb.Pool(name="vlans", kind="vlan", first=10, last=19)))
    listed = await pools.ListPools(ppb.ListPoolsRequest())
    assert [(p.name, p.kind, p.prefix, p.first, p.last, p.free) for p in listed.pools] == [
        ("links", "ipv4", "10.0.0.0/30", 0, 0, "4"), ("vlans", "vlan", "", 10, 19, "10")]
    got = await pools.GetPool(ppb.GetPoolRequest(name="vlans"))
    assert (got.name, got.allocated, list(got.allocations)) == ("vlans", 0, [])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pools.CreatePool(ppb.CreatePoolRequest(pool=ppb.Pool(name="vlans", kind="vlan", first=10, last=29)))
    assert caught.value.code() == Code.ALREADY_EXISTS and "needs replace" in (caught.value.details() or "")
    changed = await pools.CreatePool(ppb.CreatePoolRequest(pool=ppb.Pool(name="vlans", kind="vlan", first=10,
                                                                        last=29), replace=True))
    assert (changed.outcome, changed.pool.free) == ("updated", "20")


@pytest.mark.parametrize("pool, field", [
    (ppb.Pool(kind="ipv4", prefix="10.0.0.0/24"), "pool.name"),
    (ppb.Pool(name="Bad Name", kind="ipv4", prefix="10.0.0.0/24"), "pool.name"),
    (ppb.Pool(name="x", kind="mac"), "pool.kind"),
    (ppb.Pool(name="x", kind="ipv4", prefix="10.0.0.1/24"), "pool.prefix"),
    (ppb.Pool(name="x", kind="ipv6", prefix="10.0.0.0/24"), "pool.prefix"),
    (ppb.Pool(name="x", kind="ipv4", first=1, last=2), "pool.first"),
    (ppb.Pool(name="x", kind="vlan", first=0, last=5000), "pool"),
    (ppb.Pool(name="x", kind="vlan", prefix="10.0.0.0/8"), "pool.prefix"),
])
async def test_a_bad_definition_is_invalid_argument_naming_the_field(
        served: tuple[Engine, ppb_grpc.PoolServiceStub, object], pool: ppb.Pool, field: str) -> None:
    _, pools, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pools.CreatePool(ppb.CreatePoolRequest(pool=pool))
    assert caught.value.code() == Code.INVALID_ARGUMENT, caught.value.details()
    assert fields(caught.value) == [field], caught.value.details()


async def test_get_pool_bad_requests(served: tuple[Engine, ppb_grpc.PoolServiceStub, object]) -> None:
    _, pools, _ = served
    for request, code, field in ((ppb.GetPoolRequest(), Code.INVALID_ARGUMENT, "name"),
                                 (ppb.GetPoolRequest(name="x", limit=5000), Code.INVALID_ARGUMENT, "limit"),
                                 (ppb.CreatePoolRequest(), Code.INVALID_ARGUMENT, "pool")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await (pools.CreatePool(request) if isinstance(request, ppb.CreatePoolRequest)  # type: ignore[arg-type]
                   else pools.GetPool(request))
        assert caught.value.code() == code and fields(caught.value) == [field]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pools.GetPool(ppb.GetPoolRequest(name="nope"))
    assert caught.value.code() == Code.NOT_FOUND and "pool nope" in (caught.value.details() or "")


def submit(request_id: str, allocate: dict[str, object]) -> pb.SubmitRequest:
    params = struct_pb2.Struct()
    params.update({"name": "l1", "prefix": {"allocate": allocate}})
    return pb.SubmitRequest(request_id=request_id, tasks=[pb.Task(id="a", device="c1", service="link",
                                                                  action=pb.ACTION_CREATE, parameters=params)])


async def test_submit_allocates_and_an_exhausted_or_unknown_pool_is_failed_precondition(
        served: tuple[Engine, ppb_grpc.PoolServiceStub, pb_grpc.ActivationServiceStub]) -> None:
    engine, pools, activations = served
    await pools.CreatePool(ppb.CreatePoolRequest(pool=ppb.Pool(name="links", kind="ipv4", prefix="10.0.0.0/31")))
    done = await activations.Submit(submit("one", {"pool": "links", "prefix_length": 31}))
    await engine.wait_idle()
    got = await activations.Get(pb.GetRequest(activation_id=done.activation_id))
    assert "if.l1.prefix = 10.0.0.0/31" in got.tasks[0].rendered
    shown = await pools.GetPool(ppb.GetPoolRequest(name="links"))
    assert [(a.value, a.activation_id, a.task_id, a.param) for a in shown.allocations] == [
        ("10.0.0.0/31", done.activation_id, "a", "prefix")]
    for request_id, allocate, text in (("two", {"pool": "links", "prefix_length": 31}, "pool links (10.0.0.0/31) "
                                                                                       "is exhausted"),
                                       ("three", {"pool": "nope"}, "pool nope does not exist")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await activations.Submit(submit(request_id, allocate))
        assert caught.value.code() == Code.FAILED_PRECONDITION and text in (caught.value.details() or "")
        assert await engine.journal.find_by_request_id(request_id) is None
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await activations.Submit(submit("four", {"pool": "links", "prefix_length": "x"}))
    assert caught.value.code() == Code.INVALID_ARGUMENT
    assert fields(caught.value) == ["tasks[0].parameters.prefix.allocate.prefix_length"]


def test_the_pool_methods_need_the_pool_permissions() -> None:
    policy = parse_policy({"grants": [
        {"identity": "reader", "role": "reader", "permissions": ["pools:read"]},
        {"identity": "netadmin", "role": "reader", "permissions": ["pools:admin"]},
        {"identity": "plain", "role": "operator"},
        {"identity": "boss", "role": "admin"},
    ]}, source="p.yaml")
    mode = AuthMode(identities=True, policy=policy)
    svc = "/agw.activation.v1.PoolService/"
    assert mode.decide("reader", svc + "ListPools") and mode.decide("reader", svc + "GetPool")
    with pytest.raises(PermissionDeniedError, match="CreatePool: it needs the permission pools:admin"):
        mode.decide("reader", svc + "CreatePool")
    for method in ("ListPools", "GetPool", "CreatePool"):  # pools:admin includes pools:read
        assert mode.decide("netadmin", svc + method) and mode.decide("boss", svc + method)
        with pytest.raises(PermissionDeniedError, match="pools:"):
            mode.decide("plain", svc + method)
    with pytest.raises(PermissionDeniedError, match="pools:admin"):
        mode.decide("reader", svc + "SomethingNew")
