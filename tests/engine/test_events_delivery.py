"""Result events end to end: the real engine over the scripted network writes them to the outbox
with each end state, the real dispatcher delivers them as signed CloudEvents to a real HTTP
receiver on 127.0.0.1 (tests/webhook_receiver.py), on SQLite and on PostgreSQL.

Covered: completed, rolledBack and fallout (and the fallout retry's outcome) each make one event
of the right type and payload; the signature verifies with the secret and not with another; a
receiver that fails then recovers gets the event after retries; one that is down for the whole
retry budget makes a dead letter, which ``agw events replay`` sends again; a gateway stopped (or
dying) mid-delivery loses nothing and a duplicate carries the same id; filters by service, group
and outcome; two replicas on one PostgreSQL journal never send one delivery at once.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

from drivers.errors import DeviceRejectedError
from gateway.cli import main
from gateway.engine import Engine
from gateway.events import Dispatcher, EventsConfig, Filter, RetryPolicy, Subscriber, Timeouts
from gateway.events import cloudevents, subscribers as subscribers_module
from gateway.journal import JournalOptions
from gateway.journal.deliveries import Delivery
from gateway.journal.testing import BACKENDS, pg_admin, pg_url  # noqa: F401 - fixtures
from gateway.results import ActivationResult, ActivationState
from gateway.secrets import Secret
from tests.scripted_gateway import Gateway, cut_overrun_grace, kv
from tests.webhook_receiver import Receiver, receiver  # noqa: F401 - fixture

SECRET = "the-webhook-secret-0123456789"
FAST = RetryPolicy(base_delay_s=0.05, max_delay_s=0.2, max_attempts=4, jitter=0.0)
WAIT_S = 60.0


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    """"" for the Gateway's SQLite file, else a fresh PostgreSQL schema."""
    return "" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def _gateway(tmp_path: Path, templates_root: Path, url: str) -> Gateway:
    g = Gateway.create(tmp_path, templates_root=templates_root)
    if url:
        g.journal_url = url
        g.journal_options = JournalOptions(connect_timeout_s=3)
    return g


class Hub:
    """The dispatchers of a test (stopped before the engines: they read the engines' journals)."""

    def __init__(self) -> None:
        self.dispatchers: list[Dispatcher] = []

    async def start(self, engine: Engine, *subs: Subscriber, groups: dict[str, frozenset[str]] | None = None,
                    concurrency: int = 8) -> Dispatcher:
        config = EventsConfig(subscribers=subs, source="agw://test", poll_interval_s=0.05, concurrency=concurrency)
        d = Dispatcher(engine.journal, config, groups_of=lambda dev: (groups or {}).get(dev, frozenset()),
                       refresh_s=0.05)
        await d.start()
        self.dispatchers.append(d)
        return d

    async def stop_all(self) -> None:
        for d in self.dispatchers:
            await d.stop(grace_s=0)


@pytest.fixture
async def egw(tmp_path: Path, templates_root: Path, backend_url: str,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Gateway, Hub]]:
    cut_overrun_grace(monkeypatch)
    g = _gateway(tmp_path, templates_root, backend_url)
    hub = Hub()
    try:
        yield g, hub
    finally:
        await hub.stop_all()
        await g.close()


def hook(r: Receiver, name: str = "hook", *, retry: RetryPolicy = FAST, total_s: float = 5.0,
         flt: Filter = Filter()) -> Subscriber:
    return Subscriber(name=name, url=r.url, secret=Secret(SECRET), retry=retry, filter=flt,
                      timeouts=Timeouts(connect_s=min(2.0, total_s), total_s=total_s))


async def until(check: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def deliveries(engine: Engine, **kw: str) -> list[Delivery]:
    found: list[Delivery] = await engine.journal.outbox.list(**kw)
    return found


def delivered_ids(r: Receiver) -> set[str]:
    return set(r.ids())


async def fallen_out(g: Gateway, engine: Engine, request_id: str) -> ActivationResult:
    g.net.mismatch("c1")
    g.net.fail("c1", "restore", DeviceRejectedError("restore refused: config in use"), times=None)
    result = await g.run(engine, kv("a", "c1", "if.ge1", "up"), request_id=request_id)
    assert result.state == ActivationState.FALLOUT
    g.net.clear()
    return result


def journal_url_of(g: Gateway) -> str:
    return g.journal_url or f"sqlite:///{g.journal_path}"


async def agw(*args: str) -> tuple[int, str]:
    """The ``agw`` command in a thread (it runs its own event loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


# -- the events ---------------------------------------------------------------------------------------------


async def test_each_end_makes_one_signed_event_of_its_type(egw: tuple[Gateway, Hub], receiver: Receiver) -> None:
    g, hub = egw
    engine = await g.engine()
    done = await g.run(engine, kv("a", "r1", "if.ge1", "up"), request_id="done")
    assert done.state == ActivationState.COMPLETED
    await engine.rollback(done.id)
    assert (await g.settle(engine, done.id)).state == ActivationState.ROLLED_BACK
    fallen = await fallen_out(g, engine, "fallen")
    await engine.retry(fallen.id)
    assert (await g.settle(engine, fallen.id)).state == ActivationState.ROLLED_BACK

    outbox = engine.journal.outbox
    kinds = {aid: [e.type.rsplit(".", 1)[1] for e in await outbox.events(aid)] for aid in (done.id, fallen.id)}
    assert kinds == {done.id: ["completed", "rolledBack"], fallen.id: ["fallout", "rolledBack"]}
    first = (await outbox.events(done.id))[0]
    data = first.data()
    assert data["outcome"] == "completed" and data["activation_id"] == done.id and data["request_id"] == "done"
    [t] = data["tasks"]
    assert (t["id"], t["device"], t["service"], t["action"], t["state"]) == ("a", "r1", "kv", "create", "completed")
    assert t["rendered"].strip() == "if.ge1 = up" and t["verification"]["ok"] is True and t["timings"]
    journaled = {e.seq: e.state for e in await engine.journal.events(done.id)}
    assert journaled[first.seq] == "completed"  # the seq of the record that ended it
    fall = (await outbox.events(fallen.id))[0].data()
    assert fall["outcome"] == "fallout" and fall["tasks"][0]["state"] == "fallout"
    assert fall["tasks"][0]["error"]["kind"] == "VerificationError"
    assert fall["tasks"][0]["rollback"]["ok"] is False and "restore refused" in fall["tasks"][0]["rollback"]["reason"]

    await hub.start(engine, hook(receiver))
    await until(lambda: len(receiver.requests) >= 4, "four deliveries")
    await asyncio.sleep(0.3)  # nothing more comes
    got = receiver.requests
    assert len(got) == 4 and len(delivered_ids(receiver)) == 4
    for req in got:
        assert req.headers["content-type"].startswith("application/cloudevents+json")
        assert cloudevents.verify(SECRET, req.headers, req.body, now=time.time())
        assert not cloudevents.verify("another-secret-0123456789", req.headers, req.body, now=time.time())
        assert not cloudevents.verify(SECRET, req.headers, req.body + b" ", now=time.time())
        ce = req.json()
        assert ce["specversion"] == "1.0" and ce["source"] == "agw://test" and ce["id"] == req.event_id
        assert ce["datacontenttype"] == "application/json" and ce["subject"] == ce["data"]["activation_id"]
        assert ce["type"] == "net.agw.activation." + ce["data"]["outcome"]
    await until(lambda: _all_delivered(engine, 4), "four deliveries marked delivered")


async def _all_delivered(engine: Engine, n: int) -> bool:
    rows = await deliveries(engine)
    return len(rows) == n and all(r.state == "delivered" and r.delivered_at is not None for r in rows)


async def test_a_failing_receiver_gets_the_event_once_it_recovers(egw: tuple[Gateway, Hub], receiver: Receiver) -> None:
    g, hub = egw
    engine = await g.engine()
    receiver.mode = "fail"
    await hub.start(engine, hook(receiver, retry=RetryPolicy(base_delay_s=0.05, max_delay_s=0.2, max_attempts=50,
                                                              jitter=0.5)))
    done = await g.run(engine, kv("a", "r1", "if.ge1", "up"))
    await until(lambda: len(receiver.requests) >= 3, "three failed attempts")
    [row] = await deliveries(engine)
    assert row.state == "pending" and row.last_status == 500 and "HTTP 500" in row.last_error
    receiver.mode = "ok"
    await until(lambda: _all_delivered(engine, 1), "the delivery after the receiver recovered")
    [row] = await deliveries(engine)
    assert row.attempts >= 4 and row.activation_id == done.id and row.last_error == ""
    assert len(set(receiver.ids())) == 1  # every attempt the same event id
    assert [r.attempt for r in receiver.requests] == list(range(1, len(receiver.requests) + 1))


async def test_a_receiver_down_for_every_attempt_makes_a_dead_letter_that_replay_sends(
        egw: tuple[Gateway, Hub], receiver: Receiver) -> None:
    g, hub = egw
    engine = await g.engine()
    receiver.down()  # connection refused
    died = sample("agw_event_deliveries_total", subscriber="hook", outcome="dead")
    retried = sample("agw_event_deliveries_total", subscriber="hook", outcome="retry")
    lagged = sample("agw_event_delivery_lag_seconds_count", subscriber="hook")
    await hub.start(engine, hook(receiver, retry=RetryPolicy(base_delay_s=0.05, max_delay_s=0.1, max_attempts=3)))
    await g.run(engine, kv("a", "r1", "if.ge1", "up"))
    await until(lambda: _in_state(engine, "dead"), "a dead letter")
    [dead] = await deliveries(engine, state="dead")
    assert dead.attempts == 3 and "ConnectError" in dead.last_error
    assert sample("agw_event_deliveries_total", subscriber="hook", outcome="dead") == died + 1
    assert sample("agw_event_deliveries_total", subscriber="hook", outcome="retry") == retried + 2
    await until(lambda: sample("agw_event_deliveries_dead") == 1, "the dead-letter gauge")
    url = journal_url_of(g)
    code, out = await agw("events", "list", "--state", "dead", "--json", "--journal", url)
    assert code == 0 and [r["event_id"] for r in json.loads(out)] == [dead.event_id]
    receiver.up()  # the same port again
    code, out = await agw("events", "replay", "--dead", "--journal", url)
    assert code == 0 and "1 delivery" in out, out
    await until(lambda: _all_delivered(engine, 1), "the replayed delivery")
    assert receiver.ids() == [dead.event_id]
    assert sample("agw_event_delivery_lag_seconds_count", subscriber="hook") == lagged + 1
    await until(lambda: sample("agw_event_deliveries_dead") == 0 and sample("agw_event_deliveries_pending") == 0,
                "the gauges after the replay")
    code, out = await agw("events", "list", "--journal", url)
    assert code == 0 and dead.event_id in out and "delivered" in out
    code, _ = await agw("events", "replay", "--journal", url)  # neither an id nor --dead
    assert code == 2


async def _in_state(engine: Engine, state: str) -> bool:
    return bool(await deliveries(engine, state=state))


async def test_a_gateway_stopped_mid_delivery_delivers_after_its_restart(egw: tuple[Gateway, Hub],
                                                                         receiver: Receiver) -> None:
    g, hub = egw
    first = await g.engine()
    receiver.mode, receiver.delay_s = "slow", 30.0
    dispatcher = await hub.start(first, hook(receiver, total_s=20.0))
    await g.run(first, kv("a", "r1", "if.ge1", "up"))
    await until(lambda: len(receiver.requests) == 1, "the first attempt reaching the receiver")
    await dispatcher.stop(grace_s=0.1)  # the attempt is cut short and released
    await g.stop(first)
    receiver.release()
    receiver.mode = "ok"
    second = await g.engine()
    await hub.start(second, hook(receiver, total_s=20.0))
    await until(lambda: _all_delivered(second, 1), "the delivery after the restart")
    ids = receiver.ids()
    assert len(ids) == 2 and len(set(ids)) == 1  # delivered again, with the same id: the receiver drops it


async def test_a_dispatcher_that_dies_mid_attempt_leaves_it_to_be_sent_after_its_lease(
        egw: tuple[Gateway, Hub], receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    g, hub = egw
    monkeypatch.setattr(subscribers_module, "LEASE_MARGIN_S", 0.5)
    engine = await g.engine()
    receiver.mode, receiver.delay_s = "slow", 30.0
    dead = await hub.start(engine, hook(receiver, total_s=1.0))
    await g.run(engine, kv("a", "r1", "if.ge1", "up"))
    await until(lambda: len(receiver.requests) == 1, "the first attempt")
    # the process dies: its loop and its attempt end where they are, nothing is released
    for task in [dead._loop_task, *dead._inflight]:
        assert task is not None
        task.cancel()
    dead._loop_task = None
    dead._inflight.clear()
    hub.dispatchers.remove(dead)
    receiver.release()
    receiver.mode = "ok"
    await hub.start(engine, hook(receiver, total_s=1.0))
    await until(lambda: _all_delivered(engine, 1), "the delivery after the lease ran out")
    [row] = await deliveries(engine)
    assert row.attempts == 2 and len(set(receiver.ids())) == 1 and len(receiver.ids()) == 2


async def test_filters_by_service_group_and_outcome(egw: tuple[Gateway, Hub], receiver: Receiver) -> None:
    g, hub = egw
    other = Receiver().up()
    try:
        engine = await g.engine()
        await hub.start(engine,
                        hook(receiver, "kv-completed", flt=Filter(services=frozenset({"kv"}),
                                                                  outcomes=frozenset({"completed"}))),
                        hook(other, "core-trouble", flt=Filter(groups=frozenset({"core"}),
                                                               outcomes=frozenset({"fallout", "rolledBack"}))),
                        groups={"c1": frozenset({"core"}), "r2": frozenset({"core"})})
        kv_done = await g.run(engine, kv("a", "r1", "if.ge1", "up"), request_id="kv-done")  # → kv-completed
        kvu_done = await g.run(engine, kv("a", "r2", "if.ge1", "up", service="kvu"), request_id="kvu")  # → nobody
        fallen = await fallen_out(g, engine, "fallen")  # c1 is core → core-trouble
        await until(lambda: _in_state(engine, "delivered"), "a delivery")
        await until(lambda: len(receiver.requests) >= 1 and len(other.requests) >= 1, "both receivers")
        await asyncio.sleep(0.5)
        assert [r.json()["subject"] for r in receiver.requests] == [kv_done.id]
        assert [r.json()["subject"] for r in other.requests] == [fallen.id]
        routed = {(d.activation_id, d.subscriber) for d in await deliveries(engine)}
        assert routed == {(kv_done.id, "kv-completed"), (fallen.id, "core-trouble")}
        assert kvu_done.id not in {d.activation_id for d in await deliveries(engine)}
    finally:
        other.down()


async def test_two_replicas_on_one_postgresql_journal_never_send_one_delivery_at_once(
        tmp_path: Path, templates_root: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
        receiver: Receiver) -> None:
    cut_overrun_grace(monkeypatch)
    g = _gateway(tmp_path, templates_root, pg_url)
    hub = Hub()
    try:
        a, b = await g.engine(), await g.engine()
        receiver.mode, receiver.delay_s = "slow", 0.3  # answers take a while: wide windows for a race
        sub = hook(receiver, total_s=10.0)
        one = await hub.start(a, sub, concurrency=4)
        two = await hub.start(b, sub, concurrency=4)
        ids = []
        for n in range(8):
            ids.append((await g.run(a if n % 2 else b, kv("a", f"r{1 + n % 2}", "if.ge1", f"v{n}"),
                                    request_id=f"r{n}")).id)
        await until(lambda: _all_delivered(a, 8), "eight deliveries")
        got = receiver.ids()
        assert receiver.overlaps == [] and len(got) == len(set(got)) == 8
        assert {r.json()["subject"] for r in receiver.requests} == set(ids)
        assert one.rounds and two.rounds
    finally:
        await hub.stop_all()
        await g.close()


def test_agw_serve_reads_the_subscribers_file_before_it_starts(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import cli, cli_serve
    from gateway.app import build_dispatcher, build_engine

    path = tmp_path / "subscribers.yaml"
    path.write_text("subscribers:\n  - name: oss\n    url: http://127.0.0.1:9/hook\n"
                    "    secret: env:AGW_TEST_HOOK_SECRET\n    filter: {outcomes: [fallout]}\n")
    monkeypatch.setenv("AGW_TEST_HOOK_SECRET", SECRET)
    seen: list[Dispatcher | None] = []

    async def fake_serve(config: object, build: object, **_: object) -> None:
        seen.append(build_dispatcher(config, build_engine(config)))  # type: ignore[arg-type]

    monkeypatch.setattr(cli_serve, "_serve", fake_serve)
    args = ["serve", "--data-dir", str(tmp_path / "data"), "--subscribers", str(path)]
    result = CliRunner().invoke(cli.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [dispatcher] = seen
    assert dispatcher is not None and [s.name for s in dispatcher.config.subscribers] == ["oss"]
    assert dispatcher.config.subscribers[0].filter.outcomes == {"fallout"}
    monkeypatch.delenv("AGW_TEST_HOOK_SECRET")
    refused = CliRunner().invoke(cli.main, args)
    assert refused.exit_code == 2 and "AGW_TEST_HOOK_SECRET is not set" in refused.output
    assert SECRET not in refused.output
    seen.clear()
    result = CliRunner().invoke(cli.main, ["serve", "--data-dir", str(tmp_path / "data")], catch_exceptions=False)
    assert result.exit_code == 0 and seen == [None]  # no file: no dispatcher
