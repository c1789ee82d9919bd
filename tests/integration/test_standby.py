"""Two `agw serve` on one PostgreSQL journal, on the lab: the split brain of issue 13 cannot happen.

Gateway A runs an activation on nc2 (slowed with a 300 ms delay), gateway B is started on the same
journal. Before: B "recovered" A's live activation at once while A went on and confirmed it, and
the journal said both `cancelled` and `completed`. Now: B stands by (it does not even listen)
while A holds the journal's lease; A is frozen (SIGSTOP) mid-activation; PostgreSQL ends A's lease
session, B takes over and rolls the activation back; A is resumed (SIGCONT), finds its lease gone,
touches nothing and exits non-zero. One owner at a time, one outcome, nc2 as it was.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.journal.testing import pg_admin, pg_url  # noqa: F401 - fixtures
from gateway.results import ActivationState
from tests.integration.gateway_harness import SubprocessGateway, interface_xml, make_profiles
from tests.integration.test_activation_netconf import iface_task, ifname, rid, wait_for_event

log = logging.getLogger(__name__)
LEASE_S = 3.0


async def test_a_frozen_active_gateway_is_taken_over_and_never_touches_the_device_again(
        lab: Any, tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    profiles = make_profiles(tmp_path / "profiles", {"netconfd": {"timeouts": {"operation_s": 20, "connect_s": 20}}})
    nc2, name = lab.node("nc2"), ifname()
    before = await asyncio.to_thread(interface_xml, nc2, name)
    gateways = {}
    for which in ("a", "b"):
        (tmp_path / which).mkdir()
        gateways[which] = SubprocessGateway(data_dir=tmp_path / which, inventory=lab.inventory_path, profiles=profiles,
                                            journal_url=pg_url, journal_lease_s=LEASE_S)
    a, b = gateways["a"], gateways["b"]
    a.start()
    try:
        b.start(wait=False)
        await asyncio.sleep(LEASE_S * 1.5)
        assert b.proc is not None and b.proc.poll() is None and not b.listening()  # a standby, recovering nothing
        assert "standby: another gateway is active on this journal" in b.log_text()

        channel, client = a.client()
        with lab.faulted("nc2", "delay", 300):
            aid = await client.submit([iface_task("t", "nc2", name, description="split brain?")], request_id=rid())
            await wait_for_event(client, aid, task_id="t", phase="push", timeout_s=60)
            a.signal(signal.SIGSTOP)  # frozen mid-push, its NETCONF session (and datastore lock) still open
            frozen_at = time.monotonic()
        await channel.close()

        await asyncio.to_thread(b.wait_listening, LEASE_S * 4 + 30)  # took over: recovered, then listens
        took_s = time.monotonic() - frozen_at
        channel, client = b.client()
        result = await client.get(aid, wait_ms=60_000)
        assert result.state in (ActivationState.ROLLED_BACK, ActivationState.FALLOUT), result
        log.warning("B took over %.1f s after A froze; its rollback ended %s (%s)", took_s, result.state.value,
                    result.tasks[0].rollback.reason if result.tasks[0].rollback else "")

        a.signal(signal.SIGCONT)  # A resumes where it was: it must find its lease gone and stop
        assert a.proc is not None
        code = await asyncio.to_thread(a.proc.wait, 30)
        assert code != 0 and "lost the journal's lease" in a.log_text(), a.log_text()[-2000:]

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
        assert took_s < LEASE_S * 4 + 30
    finally:
        for g in gateways.values():
            if g.proc is not None and g.proc.poll() is None:
                g.signal(signal.SIGCONT)
            g.stop()


async def test_a_killed_active_gateway_is_taken_over_and_its_activation_rolled_back(
        lab: Any, tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    profiles = make_profiles(tmp_path / "profiles", {"netconfd": {"timeouts": {"operation_s": 20, "connect_s": 20}}})
    nc2, name = lab.node("nc2"), ifname()
    before = await asyncio.to_thread(interface_xml, nc2, name)
    gateways = []
    for which in ("a", "b"):
        (tmp_path / which).mkdir()
        gateways.append(SubprocessGateway(data_dir=tmp_path / which, inventory=lab.inventory_path,
                                          profiles=profiles, journal_url=pg_url, journal_lease_s=LEASE_S))
    a, b = gateways
    a.start()
    try:
        b.start(wait=False)
        channel, client = a.client()
        with lab.faulted("nc2", "delay", 300):
            aid = await client.submit([iface_task("t", "nc2", name, description="killed")], request_id=rid())
            await wait_for_event(client, aid, task_id="t", phase="push", timeout_s=60)
            a.kill()  # SIGKILL: its sessions (database and NETCONF) end with the process
        await channel.close()
        await asyncio.to_thread(b.wait_listening, LEASE_S * 4 + 30)
        channel, client = b.client()
        result = await client.get(aid, wait_ms=60_000)
        await channel.close()
        assert result.state == ActivationState.ROLLED_BACK, result
        assert await asyncio.to_thread(interface_xml, nc2, name) == before
    finally:
        for g in gateways:
            g.stop()
