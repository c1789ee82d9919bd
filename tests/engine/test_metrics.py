"""`/metrics` of a real engine over the scripted network: scraped over HTTP and parsed with the
Prometheus text parser, the counters move with what happened (completed, failed, fallout, a
repair), the gauges show the running work and the queue, and no label carries a parameter."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from drivers.errors import DeviceRejectedError
from gateway.engine import Engine
from gateway.metrics import MetricsEndpoint
from gateway.results import ActivationState
from tests.scripted_gateway import Gateway, cut_overrun_grace, gate, kv, request

SECRET_VALUE = "s3cret-param-value"


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    assert SECRET_VALUE not in text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_follow_the_work(gw: Gateway, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = MetricsEndpoint(engine, listen="127.0.0.1:0", refresh_s=0.05)
    port = endpoint.start()
    try:
        before = await asyncio.to_thread(scrape, port)
        ok = await gw.run(engine, kv("a", "r1", "if.ge1", SECRET_VALUE), request_id="ok")
        assert ok.state == ActivationState.COMPLETED
        gw.net.fail("c1", "load", DeviceRejectedError("no"))
        bad = await gw.run(engine, kv("a", "c1", "if.ge1", "up"), request_id="bad")
        assert bad.state in (ActivationState.FAILED, ActivationState.ROLLED_BACK)
        gw.net.mismatch("c2")
        gw.net.fail("c2", "restore", DeviceRejectedError("restore refused"))
        out = await gw.run(engine, kv("a", "c2", "if.ge1", "up"), request_id="out")
        assert out.state == ActivationState.FALLOUT
        await engine.retry(out.id)  # the restore goes through now
        await asyncio.wait_for(engine.wait_idle(), timeout=10)

        cut_overrun_grace(monkeypatch, 30.0)  # the held push is not cut short while the test looks
        held = gate(gw.net, "r2", "load")  # one change in progress on r2, one waiting for it
        first = await engine.submit(request(kv("a", "r2", "if.ge1", "up"), request_id="held"))
        await asyncio.wait_for(held.reached.wait(), timeout=5)
        second = await engine.submit(request(kv("a", "r2", "if.ge2", "up"), request_id="queued"))
        for _ in range(100):
            await asyncio.sleep(0.02)
            during = await asyncio.to_thread(scrape, port)
            if value(during, "agw_device_queue_depth", device="r2") == 1:
                break
        assert value(during, "agw_device_queue_depth", device="r2") == 1
        assert value(during, "agw_devices_busy") >= 1 and value(during, "agw_activations_running") == 2
        assert value(during, "agw_sessions_open") >= 1
        held.release.set()
        await asyncio.wait_for(engine.wait_idle(), timeout=10)
        assert {(await engine.get(a.activation_id)).state for a in (first, second)} == {ActivationState.COMPLETED}
        await asyncio.sleep(0.2)  # a refresh of the fallout count
        after = await asyncio.to_thread(scrape, port)
    finally:
        await endpoint.stop()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("agw_activations_total", outcome="completed") == 3
    assert delta("agw_activations_total", outcome="fallout") == 1
    assert delta("agw_activations_total", outcome=bad.state.value) == 1
    assert delta("agw_tasks_total", service="kv", platform="scripted-nc", outcome="completed") == 3
    assert delta("agw_activation_duration_seconds_count", outcome="completed") == 3
    assert delta("agw_task_phase_duration_seconds_count", phase="commit", platform="scripted-nc") == 3
    assert delta("agw_device_errors_total", kind="DeviceRejectedError", platform="scripted-cli") >= 2
    assert delta("agw_device_errors_total", kind="VerificationError", platform="scripted-cli") == 1
    assert delta("agw_repairs_total", action="retry", outcome="rolledBack") == 1
    assert delta("agw_journal_commit_seconds_count") > 0
    assert value(after, "agw_fallout_open") == 0 and value(after, "agw_activations_running") == 0
    assert value(after, "agw_device_queue_depth", device="r2") == 0
