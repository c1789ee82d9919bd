"""List, ListFallout and Get through a real gRPC server, a real engine and a real journal (SQLite
file and PostgreSQL), read by a client with a stock channel (4 MB receive limit): pages under the
response cap, every activation exactly once, oversized ones clipped and marked, bad tokens refused."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import AsyncIterator

import grpc
import grpc.aio
import pytest

from gateway.api import status
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
from gateway.api.server import start_server, stop_server
from gateway.api.validate import DEFAULT_LIMITS
from gateway.engine import Engine
from gateway.journal import SqlJournal
from gateway.journal.testing import journal, journal_url, pg_admin  # noqa: F401 - fixtures
from gateway.model import Action, TaskState
from gateway.results import TaskResult

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
CAP = DEFAULT_LIMITS.max_response_bytes
STOCK_RECEIVE_LIMIT = 4 * 1024 * 1024
MARK = "[… clipped by the gateway: "
RENDERED = "<config><interfaces><interface><name>ge-0/0/{i}</name><description>{d}</description></interface>" \
           "</interfaces></config>"


@pytest.fixture
async def stub(journal: SqlJournal) -> AsyncIterator[pb_grpc.ActivationServiceStub]:  # noqa: F811 - fixture
    engine = Engine(journal=journal, inventory=None, profiles=None, templates=None,
                    credentials=SimpleNamespace(resolve=None), registry=None,  # type: ignore[arg-type]
                    select_endpoint=None)
    server, port = await start_server(engine, listen="127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")  # stock options: 4 MB receive limit
    try:
        yield pb_grpc.ActivationServiceStub(channel)
    finally:
        await channel.close()
        await stop_server(server, grace_s=0.5)


def tasks(n: int, *, device: str = "nc1", rendered_bytes: int = 0, state: TaskState = TaskState.COMPLETED,
          tag: str = "") -> list[TaskResult]:
    out = []
    for i in range(n):
        description = f"{tag} uplink {i:04} " + "-" * 240
        rendered = "x" * rendered_bytes if rendered_bytes else RENDERED.format(i=i, d=description)
        out.append(TaskResult(id=f"t{i:04}", device=device if i else "edge1", service="interface",
                              action=Action.CREATE, state=state, platform="netconfd", driver="netconf",
                              rendered=rendered, diff=f"+ description {tag} uplink {i}\n- description old"))
    return out


async def create(j: SqlJournal, aid: str, task_list: list[TaskResult], *, created_at: datetime) -> None:
    await j.create_activation(activation_id=aid, request_id=f"req-{aid}", fingerprint="fp", order_ref="",
                              atomic=True, dry_run=False, tasks=task_list, created_at=created_at,
                              submitted_by="spiffe://agw.local/orchestrator")


async def list_all(stub: pb_grpc.ActivationServiceStub, **request: object) -> tuple[list[str], list[int]]:
    ids: list[str] = []
    sizes: list[int] = []
    token = ""
    while True:
        resp = await stub.List(pb.ListRequest(page_token=token, **request))  # type: ignore[arg-type]
        sizes.append(resp.ByteSize())
        assert resp.ByteSize() <= CAP
        ids.extend(a.id for a in resp.activations)
        assert all(len(a.tasks) == 1000 and MARK not in a.tasks[-1].rendered for a in resp.activations)
        token = resp.next_page_token
        if not token:
            return ids, sizes


async def test_thirty_activations_of_a_thousand_tasks_page_through_a_stock_client(
    journal: SqlJournal, stub: pb_grpc.ActivationServiceStub  # noqa: F811 - fixture
) -> None:
    started = time.monotonic()
    expected = []
    for n in range(30):
        aid = f"act-{n:02}"
        await create(journal, aid, tasks(1000, device="nc1" if n % 2 else "r1", tag=aid),
                     created_at=T0 + timedelta(seconds=n // 3))  # ties of three
        expected.append(aid)
    expected = sorted(expected, key=lambda a: (int(a[4:]) // 3, a), reverse=True)  # newest first, ties by id
    one = await stub.Get(pb.GetRequest(activation_id="act-00"))
    assert 400_000 < one.ByteSize() < CAP  # ~14 MB in all: far over one response
    for request in ({}, {"page_size": 1000}, {"limit": 1000}, {"page_size": 5}):
        ids, sizes = await list_all(stub, **request)
        assert ids == expected, request  # every activation exactly once, in order
        assert max(sizes) <= CAP < STOCK_RECEIVE_LIMIT
        assert sum(sizes) > 13 * 1024 * 1024 and len(sizes) >= 4  # what one List used to send
    ids, _ = await list_all(stub, device="r1", page_size=1000)
    assert ids == [a for a in expected if int(a[4:]) % 2 == 0]
    assert time.monotonic() - started < 120


async def test_an_activation_over_the_cap_comes_clipped_and_marked_from_list_and_get(
    journal: SqlJournal, stub: pb_grpc.ActivationServiceStub  # noqa: F811 - fixture
) -> None:
    await create(journal, "small-before", tasks(3), created_at=T0)
    await create(journal, "huge", tasks(1000, rendered_bytes=5000), created_at=T0 + timedelta(seconds=1))
    await create(journal, "small-after", tasks(3), created_at=T0 + timedelta(seconds=2))
    pages = []
    token = ""
    while True:
        resp = await stub.List(pb.ListRequest(page_token=token))
        assert resp.ByteSize() <= CAP
        pages.append([a.id for a in resp.activations])
        if resp.activations and resp.activations[0].id == "huge":
            huge = resp.activations[0]
        token = resp.next_page_token
        if not token:
            break
    # the page ends before the huge one, which opens the next page, clipped (what it leaves may fit)
    assert pages[0] == ["small-after"] and pages[1][0] == "huge"
    assert [aid for page in pages for aid in page] == ["small-after", "huge", "small-before"]
    for got in (huge, await stub.Get(pb.GetRequest(activation_id="huge"))):
        assert got.ByteSize() <= CAP and len(got.tasks) == 1000
        t = got.tasks[0]
        assert t.rendered.startswith("x") and MARK in t.rendered and "of 5000 bytes shown" in t.rendered
        assert t.diff == "+ description  uplink 0\n- description old"  # short fields stay whole
        assert (t.id, t.device, got.submitted_by) == ("t0000", "edge1", "spiffe://agw.local/orchestrator")
    small = await stub.Get(pb.GetRequest(activation_id="small-after"))
    assert MARK not in str(small)


async def test_list_fallout_pages_and_clips(
    journal: SqlJournal, stub: pb_grpc.ActivationServiceStub  # noqa: F811 - fixture
) -> None:
    for n in range(3):
        await create(journal, f"f{n}", tasks(1000, state=TaskState.FALLOUT, tag=f"f{n}"),
                     created_at=T0 + timedelta(seconds=n))
    await create(journal, "fine", tasks(5), created_at=T0)
    await create(journal, "huge", tasks(1, rendered_bytes=5 * 1024 * 1024, state=TaskState.FALLOUT),
                 created_at=T0 + timedelta(seconds=9))
    seen: list[tuple[str, str]] = []
    huge: list[pb.FalloutItem] = []
    token = ""
    pages = 0
    while True:
        resp = await stub.ListFallout(pb.ListFalloutRequest(page_size=1000, page_token=token))
        assert resp.ByteSize() <= CAP
        seen.extend((i.activation_id, i.task.id) for i in resp.items)
        huge.extend(i for i in resp.items if i.activation_id == "huge")
        pages += 1
        token = resp.next_page_token
        if not token:
            break
    assert seen == [(f"f{n}", f"t{i:04}") for n in range(3) for i in range(1000)] + [("huge", "t0000")]
    assert pages >= 4  # 3000 tasks of ~0.5 kB, then the huge one alone
    assert MARK in huge[0].task.rendered and f"of {5 * 1024 * 1024} bytes shown" in huge[0].task.rendered
    default = await stub.ListFallout(pb.ListFalloutRequest())
    assert len(default.items) == 50 and default.next_page_token


async def test_bad_page_tokens_are_invalid_argument_naming_page_token(
    journal: SqlJournal, stub: pb_grpc.ActivationServiceStub  # noqa: F811 - fixture
) -> None:
    for n in range(3):
        await create(journal, f"a{n}", tasks(2), created_at=T0 + timedelta(seconds=n))
    first = await stub.List(pb.ListRequest(page_size=1, device="nc1"))
    token = first.next_page_token
    assert token and [a.id for a in first.activations] == ["a2"]
    cases = [
        pb.ListRequest(page_token=token),  # other filters
        pb.ListRequest(page_token=token, device="nc1", states=[pb.ACTIVATION_STATE_FAILED]),
        pb.ListRequest(page_token=token[:-4], device="nc1"),  # truncated
        pb.ListRequest(page_token="%%%not-a-token%%%", device="nc1"),
        pb.ListRequest(page_token="eyJ2IjoxLCJrIjoibGlzdCJ9", device="nc1"),  # made up
        pb.ListRequest(page_token="A" * 5000, device="nc1"),  # too long
        pb.ListRequest(page_size=1001),
        pb.ListRequest(page_size=-1),
    ]
    for request in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.List(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (request, err.value.details())
        fields = [v.field for v in status.bad_request_details(err.value.trailing_metadata())]
        assert fields == (["page_size"] if request.page_size else ["page_token"]), request
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListFallout(pb.ListFalloutRequest(page_token=token))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in err.value.details()
    rest = await stub.List(pb.ListRequest(page_size=5, device="nc1", page_token=token))
    assert [a.id for a in rest.activations] == ["a1", "a0"] and rest.next_page_token == ""
