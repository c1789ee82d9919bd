"""Three `agw serve` replicas on one PostgreSQL journal, on the lab: the split brain of issue 13
cannot happen, and a replica's death costs nothing but time.

Before: gateway B started on A's journal "recovered" A's live activation at once while A went on
and confirmed it; the journal said both `cancelled` and `completed`. Now every replica is active:
B leaves A's live work alone (A is alive: its lease is held), answers Watch and Get on it, and
an activation submitted to both is one activation. When the owner is killed (SIGKILL, at each
phase) or frozen (SIGSTOP), exactly one other replica takes its work over after the lease and
every device ends either as intended or as it was, with the journal saying which. A frozen replica
resumed after the takeover touches nothing and exits non-zero. nc2 is slowed with a 300 ms delay so
that each phase lasts long enough to be hit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.journal.testing import pg_admin, pg_url  # noqa: F401 - fixtures
from gateway.engine.rollback_lock import TIMER_GRACE_S
from gateway.results import ActivationState
from tests.integration.gateway_harness import SubprocessGateway, interface_xml, make_profiles
from tests.integration.test_activation_netconf import iface_task, ifname, rid, wait_for_event

log = logging.getLogger(__name__)
LEASE_S = 3.0
TAKEOVER_S = LEASE_S * 4 + 30
CONFIRM_TIMEOUT_S = 20
"""nc2's confirmed-commit timer here: the bound of a rollback that waits for it."""


@pytest.fixture
def replicas(lab: Any, tmp_path: Path, pg_url: str) -> Iterator[list[SubprocessGateway]]:  # noqa: F811
    profiles = make_profiles(tmp_path / "profiles", {"netconfd": {"timeouts": {"operation_s": 20, "connect_s": 20},
                                                                  "confirm_timeout_s": CONFIRM_TIMEOUT_S}})
    gateways = []
    for which in ("a", "b", "c"):
        (tmp_path / which).mkdir()
        gateways.append(SubprocessGateway(data_dir=tmp_path / which, inventory=lab.inventory_path,
                                          profiles=profiles, journal_url=pg_url, journal_lease_s=LEASE_S))
    try:
        for g in gateways:
            g.start(wait=False)
        for g in gateways:
            g.wait_listening(60)  # every replica listens at once: none is a standby
        yield gateways
    finally:
        for g in gateways:
            if g.proc is not None and g.proc.poll() is None:
                g.signal(signal.SIGCONT)
            g.stop()


async def test_replicas_share_the_work_without_split_brain(lab: Any, replicas: list[SubprocessGateway]) -> None:
    a, b, _ = replicas
    nc2, name, other, third_name = lab.node("nc2"), ifname(), ifname(), ifname()
    chan_a, client_a = a.client()
    chan_b, client_b = b.client()
    with lab.faulted("nc2", "delay", 300):
        request_id = rid()
        tasks = [iface_task("t", "nc2", name, description="split brain?")]
        one, two = await asyncio.gather(client_a.submit(tasks, request_id=request_id),
                                        client_b.submit(tasks, request_id=request_id))
        assert one == two  # duplicate Submits to two replicas: one activation
        aid = one
        # more activations for the same device, on A and on B: one change at a time on nc2
        second = await client_b.submit([iface_task("t", "nc2", other, description="second")], request_id=rid())
        third = await client_a.submit([iface_task("t", "nc2", third_name, description="third")], request_id=rid())
        await wait_for_event(client_b, aid, task_id="t", phase="push", timeout_s=60)
        watched = asyncio.create_task(_watch(client_b, aid))  # on B, whoever runs it
        first = await client_b.get(aid, wait_ms=60_000)
        after = await client_a.get(second, wait_ms=60_000)
        last = await client_b.get(third, wait_ms=60_000)
    history = await asyncio.wait_for(watched, timeout=30)
    await chan_a.close()
    await chan_b.close()
    assert first.state == ActivationState.COMPLETED, first
    assert after.state == ActivationState.COMPLETED, after
    assert last.state == ActivationState.COMPLETED, last
    assert [e.seq for e in history] == list(range(1, len(history) + 1)) and history[-1].state == "completed"
    assert not [e for e in history if e.phase == "recover"]  # nobody "recovered" live work
    assert name in await asyncio.to_thread(interface_xml, nc2, name)
    assert other in await asyncio.to_thread(interface_xml, nc2, other)
    assert third_name in await asyncio.to_thread(interface_xml, nc2, third_name)
    # the activations' work on nc2 did not overlap: one ran after the other
    spans = sorted([_device_span(await _events(b, x)) for x in (aid, second, third)])
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:])), spans


# "commit": killed while its confirmed commit is on the way, netconfd may apply the commit as the
# session dies and keep it pending where its persist-id does not reach ("persistent confirmed commit
# not active", then "lock ... with confirmed-commit pending"): the taker's rollback waits for the
# device's timer (CONFIRM_TIMEOUT_S) and rolls back (gateway/engine/rollback_lock.py). Reproduced in
# 3 runs of 8 of this case alone before the fix.
@pytest.mark.parametrize("phase", ["connect", "push", "commit", "verify", "confirm"])
async def test_a_killed_replicas_work_is_taken_over_by_exactly_one_other(
        lab: Any, replicas: list[SubprocessGateway], phase: str) -> None:
    a, b, c = replicas
    nc2, name = lab.node("nc2"), ifname()
    before = await asyncio.to_thread(interface_xml, nc2, name)
    channel, client = a.client()
    with lab.faulted("nc2", "delay", 300):
        aid = await client.submit([iface_task("t", "nc2", name, description=f"killed at {phase}")], request_id=rid())
        await wait_for_event(client, aid, task_id="t", phase=phase, timeout_s=60)
        a.kill()  # SIGKILL: its sessions (database and NETCONF) end with the process
        killed_at = time.monotonic()
    await channel.close()
    channel, client = b.client()
    result = await client.get(aid, wait_ms=int((TAKEOVER_S + CONFIRM_TIMEOUT_S + TIMER_GRACE_S) * 1000))
    took_s = time.monotonic() - killed_at
    if result.state == ActivationState.FALLOUT:  # the dead session's datastore lock outlived the wait
        await client.stub.RetryFallout(pb.FalloutActionRequest(activation_id=aid))
        result = await client.get(aid, wait_ms=60_000)
    history = [e async for e in client.stub.Watch(pb.WatchRequest(activation_id=aid))]
    await channel.close()
    now = await asyncio.to_thread(interface_xml, nc2, name)
    log.warning("killed at %s: %s after %.1f s", phase, result.state.value, took_s)
    # the device as intended or as it was, and the journal says which
    if result.state == ActivationState.COMPLETED:
        assert name in now
    else:  # rolled back, or cancelled when it had not touched the device yet
        assert result.state in (ActivationState.ROLLED_BACK, ActivationState.CANCELLED), (
            result.state, [(t.state, t.rollback, t.error) for t in result.tasks], [(e.phase, e.state, e.message)
                                                                                  for e in history])
        assert now == before
    takeovers = [e for e in history if e.phase == "recover" and not e.task_id and e.state == "inProgress"]
    assert len(takeovers) == 1, history  # exactly one replica took it over
    assert len([e for e in history if not e.task_id and e.state in ("completed", "rolledBack", "cancelled")]) == 1
    assert b.proc is not None and b.proc.poll() is None and c.proc is not None and c.proc.poll() is None


async def test_a_frozen_replica_is_taken_over_and_never_touches_the_device_again(
        lab: Any, replicas: list[SubprocessGateway]) -> None:
    a, b, c = replicas
    nc2, name = lab.node("nc2"), ifname()
    before = await asyncio.to_thread(interface_xml, nc2, name)
    channel, client = a.client()
    with lab.faulted("nc2", "delay", 300):
        aid = await client.submit([iface_task("t", "nc2", name, description="frozen")], request_id=rid())
        await wait_for_event(client, aid, task_id="t", phase="push", timeout_s=60)
        a.signal(signal.SIGSTOP)  # frozen mid-push, its NETCONF session (and datastore lock) still open
    await channel.close()
    channel, client = c.client()
    result = await client.get(aid, wait_ms=int(TAKEOVER_S * 1000))
    assert result.state in (ActivationState.ROLLED_BACK, ActivationState.FALLOUT), result

    a.signal(signal.SIGCONT)  # A resumes where it was: it must find its lease gone and stop
    assert a.proc is not None
    code = await asyncio.to_thread(a.proc.wait, 30)
    assert code != 0 and "lost its journal lease" in a.log_text(), a.log_text()[-2000:]
    if result.state == ActivationState.FALLOUT:  # A's frozen session held nc2's lock; it is gone now
        await client.stub.RetryFallout(pb.FalloutActionRequest(activation_id=aid))
        result = await client.get(aid, wait_ms=60_000)
    assert result.state == ActivationState.ROLLED_BACK, result
    assert await asyncio.to_thread(interface_xml, nc2, name) == before
    history = [e async for e in client.stub.Watch(pb.WatchRequest(activation_id=aid))]
    await channel.close()
    assert not [e for e in history if e.state == "completed"], "one outcome"
    took_over = next(i for i, e in enumerate(history) if e.phase == "recover")
    assert not [e for e in history[took_over:] if e.phase in ("push", "validate", "commit", "verify", "confirm")]
    assert b.proc is not None and b.proc.poll() is None


DEVICE_PHASES = ("lock", "snapshot", "push", "validate", "commit", "verify", "confirm", "unlock")


def _device_span(events: list[pb.Event]) -> tuple[Any, Any]:
    """When the activation's work on the device began and ended (its device steps' events)."""
    times = [e.time.ToDatetime() for e in events if e.task_id and e.phase in DEVICE_PHASES]
    return min(times), max(times)


async def _watch(client: Any, aid: str) -> list[pb.Event]:
    return [e async for e in client.stub.Watch(pb.WatchRequest(activation_id=aid))]


async def _events(g: SubprocessGateway, aid: str) -> list[pb.Event]:
    channel, client = g.client()
    try:
        return await _watch(client, aid)
    finally:
        await channel.close()
