"""Result events to NATS JetStream end to end: the real engine over the scripted network writes them
to the outbox, the real dispatcher publishes them with the JetStream sink to a real nats-server
(tests/nats_server.py, started by the test), on SQLite and on PostgreSQL; a JetStream consumer
reads the stream back.

Covered: every end arrives once on its outcome's subject as the CloudEvent a webhook would get,
``Nats-Msg-Id`` = the event id; a replay within the duplicate window is acknowledged as a
duplicate and not stored twice; the stream is made when missing and a stream that does not capture
the subjects is a retry that says so; an event over the server's max_payload is a dead letter;
nats-server stopped while events are produced and started again (same port, same store) gets all
of them; the gateway stopped, or dying, while an attempt waits for its PubAck delivers after its
restart, nothing lost, and a duplicate carries the same id.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator

import pytest

from gateway.engine import Engine
from gateway.events import RetryPolicy, Subscriber, Timeouts
from gateway.events import cloudevents, subscribers as subscribers_module
from gateway.events.jetstream import JetStreamSink
from gateway.events.subscribers import NatsTarget
from gateway.results import ActivationState
from tests.engine.test_events_delivery import (  # noqa: F401 - fixtures
    Hub,
    backend_url,
    deliveries,
    egw,
    fallen_out,
    until,
)
from gateway.journal.testing import pg_admin, pg_url  # noqa: F401 - fixtures
from tests.nats_server import NatsServer, Stored, nats_server, read_stream  # noqa: F401 - fixture
from tests.scripted_gateway import Gateway, kv

STREAM = "AGW_TEST"
PATIENT = RetryPolicy(base_delay_s=0.1, max_delay_s=0.5, max_attempts=1000, jitter=0.0)


def bus(server: NatsServer, name: str = "bus", *, total_s: float = 3.0, retry: RetryPolicy = PATIENT,
        stream: str = STREAM) -> Subscriber:
    return Subscriber(name=name, url=server.url, kind="nats", retry=retry,
                      nats=NatsTarget(stream=stream, subject_prefix="agw.activation", duplicate_window_s=600),
                      timeouts=Timeouts(connect_s=min(2.0, total_s), total_s=total_s))


async def all_delivered(engine: Engine, n: int) -> bool:
    rows = await deliveries(engine)
    return len(rows) == n and all(r.state == "delivered" for r in rows)


async def stored(server: NatsServer) -> list[Stored]:
    return await read_stream(server.url, STREAM)


def check_stream(msgs: list[Stored], events: dict[str, object]) -> None:
    """Every event is in the stream, nothing else is; copies of one event share its id and bytes."""
    assert {m.msg_id for m in msgs} == set(events)
    for m in msgs:
        ce = m.json()
        assert ce["id"] == m.msg_id and m.subject == "agw.activation." + ce["data"]["outcome"]
        assert m.data == events[m.msg_id]


async def outbox_bodies(engine: Engine, *activation_ids: str) -> dict[str, object]:
    found = {}
    for aid in activation_ids:
        for e in await engine.journal.outbox.events(aid):
            found[e.id] = cloudevents.body(e, source="agw://test")
    return found


async def test_every_end_arrives_once_on_its_subject_and_a_replay_is_a_duplicate(
        egw: tuple[Gateway, Hub], nats_server: NatsServer) -> None:
    g, hub = egw
    engine = await g.engine()
    await hub.start(engine, bus(nats_server))
    done = await g.run(engine, kv("a", "r1", "if.ge1", "up"), request_id="done")
    await engine.rollback(done.id)
    assert (await g.settle(engine, done.id)).state == ActivationState.ROLLED_BACK
    fallen = await fallen_out(g, engine, "fallen")
    await until(lambda: all_delivered(engine, 3), "three deliveries")
    msgs = await stored(nats_server)
    assert [m.subject for m in msgs] == ["agw.activation.completed", "agw.activation.rolledBack",
                                         "agw.activation.fallout"]
    events = await outbox_bodies(engine, done.id, fallen.id)
    check_stream(msgs, events)
    assert len(msgs) == 3 and [m.json()["subject"] for m in msgs] == [done.id, done.id, fallen.id]
    assert all(m.headers["Content-Type"].startswith("application/cloudevents+json") for m in msgs)
    first = msgs[0].msg_id
    [before] = [r for r in await deliveries(engine) if r.event_id == first]
    assert await engine.journal.outbox.replay(now=datetime.now(timezone.utc), event_id=first) == 1
    await until(lambda: _delivered_after(engine, first, before.delivered_at), "the replay's delivery")
    assert len(await stored(nats_server)) == 3  # JetStream kept the first copy: the same Nats-Msg-Id


async def _delivered_after(engine: Engine, event_id: str, when: datetime | None) -> bool:
    [row] = [r for r in await deliveries(engine) if r.event_id == event_id]
    return row.state == "delivered" and row.delivered_at is not None and when is not None and row.delivered_at > when


async def test_nats_stopped_while_events_are_produced_gets_all_of_them_when_it_is_back(
        egw: tuple[Gateway, Hub], nats_server: NatsServer) -> None:
    g, hub = egw
    engine = await g.engine()
    await hub.start(engine, bus(nats_server, total_s=1.0))
    ids = [(await g.run(engine, kv("a", "r1", "if.ge1", "v0"), request_id="before")).id]
    await until(lambda: all_delivered(engine, 1), "the first event (the sink is connected)")
    nats_server.stop()
    for n in range(1, 4):
        ids.append((await g.run(engine, kv("a", f"r{1 + n % 2}", "if.ge1", f"v{n}"), request_id=f"r{n}")).id)
    await until(lambda: _failed_attempts(engine, 3), "failed attempts while nats-server is down")
    rows = await deliveries(engine, state="pending")
    assert len(rows) == 3 and all(r.last_error for r in rows), rows
    nats_server.start()  # the same port and store
    await until(lambda: all_delivered(engine, 4), "every event after nats-server came back")
    msgs = await stored(nats_server)
    check_stream(msgs, await outbox_bodies(engine, *ids))
    assert sorted({m.json()["subject"] for m in msgs}) == sorted(ids)


async def _failed_attempts(engine: Engine, n: int) -> bool:
    rows = await deliveries(engine, state="pending")
    return len(rows) == n and all(r.attempts >= 2 for r in rows)


@pytest.fixture
async def paused(nats_server: NatsServer) -> AsyncIterator[NatsServer]:
    """The server, SIGCONT-ed at the end whatever happens."""
    try:
        yield nats_server
    finally:
        if nats_server.running:
            nats_server.resume()


async def test_a_gateway_stopped_while_waiting_for_a_puback_delivers_after_its_restart(
        egw: tuple[Gateway, Hub], paused: NatsServer) -> None:
    g, hub = egw
    first = await g.engine()
    dispatcher = await hub.start(first, bus(paused, total_s=20.0))
    warm = await g.run(first, kv("a", "r1", "if.ge1", "warm"), request_id="warm")
    await until(lambda: all_delivered(first, 1), "a first event (connected, stream made)")
    paused.pause()  # the publish goes out, its PubAck never comes
    done = await g.run(first, kv("a", "r2", "if.ge1", "up"), request_id="in-flight")
    await until(lambda: _in_flight(first), "the attempt waiting for its PubAck")
    await dispatcher.stop(grace_s=0.1)  # cut short, released (due again at once)
    hub.dispatchers.remove(dispatcher)
    await g.stop(first)
    paused.resume()
    second = await g.engine()
    await hub.start(second, bus(paused, total_s=20.0))
    await until(lambda: all_delivered(second, 2), "the delivery after the restart")
    msgs = await stored(paused)
    check_stream(msgs, await outbox_bodies(second, warm.id, done.id))
    assert len(msgs) == 2  # the cut attempt's message may have landed: its retry was a duplicate
    [row] = [r for r in await deliveries(second) if r.activation_id == done.id]
    assert row.attempts == 2


async def _in_flight(engine: Engine) -> bool:
    rows = await deliveries(engine, state="pending")
    return len(rows) == 1 and rows[0].attempts == 1


async def test_a_gateway_that_dies_mid_attempt_leaves_it_to_be_sent_after_its_lease(
        egw: tuple[Gateway, Hub], paused: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    g, hub = egw
    monkeypatch.setattr(subscribers_module, "LEASE_MARGIN_S", 0.5)
    engine = await g.engine()
    dead = await hub.start(engine, bus(paused, total_s=2.0))
    await g.run(engine, kv("a", "r1", "if.ge1", "warm"), request_id="warm")
    await until(lambda: all_delivered(engine, 1), "a first event")
    paused.pause()
    await g.run(engine, kv("a", "r2", "if.ge1", "up"), request_id="lost")
    await until(lambda: _in_flight(engine), "the attempt waiting for its PubAck")
    for task in [dead._loop_task, *dead._inflight]:  # the process dies: nothing is released
        assert task is not None
        task.cancel()
    dead._loop_task = None
    dead._inflight.clear()
    hub.dispatchers.remove(dead)
    paused.resume()
    await hub.start(engine, bus(paused, total_s=2.0))
    await until(lambda: all_delivered(engine, 2), "the delivery after the lease ran out")
    msgs = await stored(paused)
    assert len(msgs) == len({m.msg_id for m in msgs}) == 2
    await _close_sinks(dead)


async def _close_sinks(dispatcher: object) -> None:
    for sink in getattr(dispatcher, "_sinks", {}).values():
        await sink.aclose()


async def test_a_stream_that_does_not_capture_the_subjects_is_a_retry_that_says_so(
        egw: tuple[Gateway, Hub], nats_server: NatsServer) -> None:
    import nats

    nc = await nats.connect(servers=[nats_server.url])
    try:
        await nc.jetstream().add_stream(name=STREAM, subjects=["elsewhere.>"])
    finally:
        await nc.close()
    g, hub = egw
    engine = await g.engine()
    await hub.start(engine, bus(nats_server, total_s=1.0))
    await g.run(engine, kv("a", "r1", "if.ge1", "up"))
    await until(lambda: _failed_attempts(engine, 1), "failed attempts")
    [row] = await deliveries(engine, state="pending")
    assert "no JetStream stream answered on agw.activation.completed" in row.last_error, row.last_error
    assert await read_stream(nats_server.url, STREAM) == []  # the gateway never changes a stream


async def test_an_event_over_the_servers_max_payload_is_a_dead_letter(tmp_path: Path) -> None:
    import json

    from gateway.events.sink import Verdict
    from gateway.journal.deliveries import OutboxEvent

    server = NatsServer(tmp_path / "small").start(config="max_payload: 2048\n")
    try:
        sink = JetStreamSink(bus(server), source="agw://test")
        event = OutboxEvent(id="e-big", activation_id="a1", seq=3, type="net.agw.activation.completed",
                            time=datetime.now(timezone.utc), payload=json.dumps({"tasks": ["x" * 4000]}))
        outcome = await sink.deliver(event, attempt=1)
        assert outcome.verdict == Verdict.DEAD and "max_payload" in outcome.detail, outcome
        small = OutboxEvent(id="e-small", activation_id="a1", seq=3, type="net.agw.activation.completed",
                            time=datetime.now(timezone.utc), payload=json.dumps({"tasks": []}))
        assert (await sink.deliver(small, attempt=1)).verdict == Verdict.DELIVERED
        assert (await sink.deliver(small, attempt=2)).verdict == Verdict.DELIVERED  # a duplicate: stored once
        assert [m.msg_id for m in await read_stream(server.url, STREAM)] == ["e-small"]
        await sink.aclose()
    finally:
        server.stop()


async def test_a_nats_server_that_is_not_there_is_a_retry_naming_it(tmp_path: Path) -> None:
    from gateway.events.sink import Verdict
    from gateway.journal.deliveries import OutboxEvent

    server = NatsServer(tmp_path / "never")
    server.port = 1  # nothing listens there
    sink = JetStreamSink(bus(server, total_s=3.0), source="agw://test")
    try:
        event = OutboxEvent(id="e1", activation_id="a1", seq=3, type="net.agw.activation.completed",
                            time=datetime.now(timezone.utc), payload="{}")
        outcome = await asyncio.wait_for(sink.deliver(event, attempt=1), timeout=30)
        assert outcome.verdict == Verdict.RETRY and "cannot connect to nats://127.0.0.1:1" in outcome.detail, outcome
    finally:
        await sink.aclose()


# -- authentication: a user and password, a client certificate ---------------------------------------
def _one_event(event_id: str) -> "OutboxEvent":
    from gateway.journal.deliveries import OutboxEvent

    return OutboxEvent(id=event_id, activation_id="a1", seq=3, type="net.agw.activation.completed",
                       time=datetime.now(timezone.utc), payload="{}")


async def test_a_server_that_needs_a_user_and_password_gets_them_and_a_wrong_one_is_a_retry(tmp_path: Path) -> None:
    from gateway.events.sink import Verdict
    from gateway.secrets import Secret

    password = "n4ts-pass-word"
    server = NatsServer(tmp_path / "auth").start(
        config=f'authorization {{ user: agw, password: "{password}" }}\n')
    try:
        def sink(user: str, secret: str) -> JetStreamSink:
            sub = bus(server, total_s=3.0)
            target = NatsTarget(stream=STREAM, subject_prefix="agw.activation", user=user, password=Secret(secret))
            return JetStreamSink(Subscriber(name=sub.name, url=sub.url, kind="nats", retry=sub.retry, nats=target,
                                            timeouts=sub.timeouts), source="agw://test")

        good = sink("agw", password)
        assert (await good.deliver(_one_event("e-auth"), attempt=1)).verdict == Verdict.DELIVERED
        await good.aclose()
        assert [m.msg_id for m in await read_stream(server.url, STREAM, user="agw", password=password)] == ["e-auth"]
        bad = sink("agw", "not-the-password")
        outcome = await asyncio.wait_for(bad.deliver(_one_event("e-refused"), attempt=1), timeout=30)
        await bad.aclose()
        assert outcome.verdict == Verdict.RETRY and "not-the-password" not in outcome.detail, outcome
        assert "authorization" in outcome.detail.lower(), outcome
    finally:
        server.stop()


async def test_a_server_that_verifies_client_certificates_accepts_the_configured_one(tmp_path: Path) -> None:
    import ssl

    from gateway.events.sink import Verdict
    from gateway.pki import development_pki

    pki = development_pki(tmp_path / "pki", clients=("gateway",))
    ca = tmp_path / "pki" / "ca.pem"
    server = NatsServer(tmp_path / "mtls").start(config=(
        f'tls {{ cert_file: "{pki["server"].cert}", key_file: "{pki["server"].key}", ca_file: "{ca}", '
        'verify: true }\n'))
    url = f"tls://127.0.0.1:{server.port}"
    try:
        def sink(with_cert: bool) -> JetStreamSink:
            sub = bus(server, total_s=3.0)
            target = NatsTarget(stream=STREAM, subject_prefix="agw.activation",
                                client_cert=pki["gateway"].cert if with_cert else None,
                                client_key=pki["gateway"].key if with_cert else None)
            return JetStreamSink(Subscriber(name=sub.name, url=url, kind="nats", retry=sub.retry, nats=target,
                                            ca=ca, timeouts=sub.timeouts), source="agw://test")

        with_cert = sink(True)
        assert (await with_cert.deliver(_one_event("e-mtls"), attempt=1)).verdict == Verdict.DELIVERED
        await with_cert.aclose()
        tls = ssl.create_default_context(cafile=str(ca))
        tls.load_cert_chain(str(pki["gateway"].cert), str(pki["gateway"].key))
        assert [m.msg_id for m in await read_stream(url, STREAM, tls=tls)] == ["e-mtls"]
        without = sink(False)
        outcome = await asyncio.wait_for(without.deliver(_one_event("e-nocert"), attempt=1), timeout=30)
        await without.aclose()
        assert outcome.verdict == Verdict.RETRY, outcome
    finally:
        server.stop()


def test_nats_credentials_in_the_subscribers_file_are_checked(tmp_path: Path) -> None:
    from gateway.errors import ConfigurationError

    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    cert.write_text("x")
    key.write_text("x")
    base = {"name": "bus", "kind": "nats", "url": "tls://nats.example.net:4222", "stream": "S"}
    env = {"PW": "pass-word"}

    def parse(**extra: object) -> object:
        return subscribers_module.parse_subscribers({"subscribers": [{**base, **extra}]}, origin="t.yaml", environ=env)

    target = parse(user="agw", password="env:PW", client_cert=str(cert), client_key=str(key)).subscribers[0].nats  # type: ignore[attr-defined]
    assert target.user == "agw" and target.password.reveal() == "pass-word" and target.client_key == key
    assert "pass-word" not in repr(target)
    for extra, says in (({"user": "agw"}, "user and password go together"),
                        ({"password": "env:PW"}, "user and password go together"),
                        ({"token": "env:PW", "user": "agw", "password": "env:PW"}, "not both"),
                        ({"client_cert": str(cert)}, "client_cert and client_key go together"),
                        ({"client_cert": str(cert), "client_key": str(tmp_path / "none")}, "is not a readable file"),
                        ({"user": "a b", "password": "env:PW"}, "a name without spaces")):
        with pytest.raises(ConfigurationError) as info:
            parse(**extra)
        assert says in str(info.value), (extra, str(info.value))
    with pytest.raises(ConfigurationError, match="needs a tls:// url"):
        subscribers_module.parse_subscribers({"subscribers": [{**base, "url": "nats://127.0.0.1:4222",
                                                               "client_cert": str(cert), "client_key": str(key)}]},
                                             origin="t.yaml", environ=env)
