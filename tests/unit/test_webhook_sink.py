"""The webhook sink against a real HTTP receiver on 127.0.0.1 (tests/webhook_receiver.py): what
each kind of answer becomes, and the bounds — an endless body, a receiver that never answers, a
closed port — each ending the attempt within its time limit."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from gateway.events import cloudevents
from gateway.events.sink import Verdict
from gateway.events.subscribers import Subscriber, Timeouts
from gateway.events.webhooks import WebhookSink
from gateway.journal.deliveries import OutboxEvent
from gateway.secrets import Secret
from tests.webhook_receiver import Receiver, receiver  # noqa: F401 - fixture

SECRET = "the-webhook-secret-0123456789"
EVENT = OutboxEvent(id="e-1", activation_id="act-1", seq=3, type="net.agw.activation.failed",
                    time=datetime(2026, 3, 1, tzinfo=timezone.utc), payload=json.dumps({"outcome": "failed"}))


def sink(r: Receiver, *, total_s: float = 5.0, max_body: int = 1024) -> WebhookSink:
    sub = Subscriber(name="hook", url=r.url, secret=Secret(SECRET), max_response_bytes=max_body,
                     timeouts=Timeouts(connect_s=min(total_s, 2.0), total_s=total_s))
    return WebhookSink(sub, source="agw://test")


async def test_a_2xx_is_delivered_with_the_signed_cloudevent(receiver: Receiver) -> None:
    s = sink(receiver)
    try:
        outcome = await s.deliver(EVENT, attempt=2)
    finally:
        await s.aclose()
    assert (outcome.verdict, outcome.status) == (Verdict.DELIVERED, 204)
    [req] = receiver.requests
    assert req.path == "/hook" and req.event_id == "e-1" and req.attempt == 2
    assert cloudevents.verify(SECRET, req.headers, req.body, now=time.time())
    assert req.json()["id"] == "e-1" and req.json()["data"] == {"outcome": "failed"}
    assert req.headers["user-agent"].startswith("agw")


async def test_answers_become_verdicts(receiver: Receiver) -> None:
    s = sink(receiver)
    try:
        receiver.mode = "fail"
        failed = await s.deliver(EVENT, attempt=1)
        assert (failed.verdict, failed.status) == (Verdict.RETRY, 500)
        assert failed.detail == "HTTP 500: receiver failing on purpose"
        receiver.mode, receiver.status = "status", 404
        gone = await s.deliver(EVENT, attempt=2)
        assert (gone.verdict, gone.status, gone.detail) == (Verdict.DEAD, 404, "HTTP 404")
        receiver.status, receiver.answer_headers = 429, {"Retry-After": "7"}
        busy = await s.deliver(EVENT, attempt=3)
        assert (busy.verdict, busy.retry_after_s) == (Verdict.RETRY, 7.0)
        receiver.status = 302  # redirects are not followed
        assert (await s.deliver(EVENT, attempt=4)).verdict == Verdict.DEAD
    finally:
        await s.aclose()


async def test_an_endless_body_is_not_read_beyond_its_bound(receiver: Receiver) -> None:
    receiver.mode = "huge"
    s = sink(receiver, total_s=30.0, max_body=4096)
    try:
        receiver.status = 200
        t0 = time.monotonic()
        ok = await s.deliver(EVENT, attempt=1)
        assert ok.verdict == Verdict.DELIVERED  # the body of a 2xx is not read at all
        receiver.status = 503
        refused = await s.deliver(EVENT, attempt=2)
        assert (refused.verdict, refused.status) == (Verdict.RETRY, 503)
        assert refused.detail.startswith("HTTP 503: xxxx") and len(refused.detail) <= 250
        assert time.monotonic() - t0 < 25  # far less than the 60 s the receiver would go on
    finally:
        receiver.release()
        await s.aclose()


async def test_a_receiver_that_never_answers_is_cut_at_the_total_timeout(receiver: Receiver) -> None:
    receiver.mode, receiver.delay_s = "slow", 60.0
    s = sink(receiver, total_s=0.5)
    try:
        t0 = time.monotonic()
        outcome = await s.deliver(EVENT, attempt=1)
        assert outcome.verdict == Verdict.RETRY and outcome.status is None
        assert "0.5" in outcome.detail or "timed out" in outcome.detail, outcome.detail
        assert time.monotonic() - t0 < 20
    finally:
        receiver.release()
        await s.aclose()


async def test_a_closed_port_is_retried(receiver: Receiver) -> None:
    receiver.down()
    s = sink(receiver)
    try:
        outcome = await s.deliver(EVENT, attempt=1)
    finally:
        await s.aclose()
    assert outcome.verdict == Verdict.RETRY and outcome.status is None and "ConnectError" in outcome.detail
