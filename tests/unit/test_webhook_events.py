"""The pure parts of the result events (gateway/events): the CloudEvents envelope, the signature,
the retry schedule, the filters, the subscribers file, the verdict of an HTTP answer, and the
payload builder of the outbox."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.errors import ConfigurationError
from gateway.events import cloudevents
from gateway.events.sink import Verdict
from gateway.events.subscribers import Filter, RetryPolicy, parse_subscribers, resolve_secret
from gateway.events.webhooks import retry_after_s, verdict_of
from gateway.journal.deliveries import OutboxEvent
from gateway.journal.outbox import END_STATES, MAX_PAYLOAD_CHARS, build_payload, encode_payload, event_type
from gateway.model import Action, TaskState
from gateway.results import ActivationResult, ActivationState, TaskResult

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
SECRET = "0123456789abcdef-secret"
ENV = {"HOOK_SECRET": SECRET}


def event(**data: object) -> OutboxEvent:
    return OutboxEvent(id="0b9d6c1e-8a4e-4d43-9f0e-2b1f7c6a5d10", activation_id="act-1", seq=7,
                       type="net.agw.activation.completed", time=T0,
                       payload=json.dumps({"activation_id": "act-1", "outcome": "completed", **data}))


# -- envelope and signature --------------------------------------------------------------------------------


def test_the_envelope_is_a_structured_cloudevent() -> None:
    ce = cloudevents.envelope(event(tasks=[]), source="agw://gw1")
    assert ce == {"specversion": "1.0", "id": "0b9d6c1e-8a4e-4d43-9f0e-2b1f7c6a5d10", "source": "agw://gw1",
                  "type": "net.agw.activation.completed", "subject": "act-1", "time": "2026-03-01T12:00:00Z",
                  "datacontenttype": "application/json",
                  "data": {"activation_id": "act-1", "outcome": "completed", "tasks": []}}
    body = cloudevents.body(event(tasks=[]), source="agw://gw1")
    assert json.loads(body) == ce and body == cloudevents.body(event(tasks=[]), source="agw://gw1")


def test_the_signature_covers_the_timestamp_and_the_exact_body() -> None:
    body = cloudevents.body(event(), source="agw://gw1")
    h = cloudevents.headers(event_id="e1", attempt=3, secret=SECRET, timestamp=1_700_000_000, payload=body)
    assert h["Content-Type"] == "application/cloudevents+json; charset=utf-8"
    assert h["X-Agw-Event-Id"] == "e1" and h["X-Agw-Delivery-Attempt"] == "3"
    assert h["X-Agw-Timestamp"] == "1700000000" and h["X-Agw-Signature"].startswith("sha256=")
    now = 1_700_000_010.0
    assert cloudevents.verify(SECRET, h, body, now=now)
    assert cloudevents.verify(SECRET.encode(), {k.lower(): v for k, v in h.items()}, body, now=now)
    assert not cloudevents.verify("another-secret-of-length", h, body, now=now)
    assert not cloudevents.verify(SECRET, h, body.replace(b"completed", b"failed"), now=now)
    assert not cloudevents.verify(SECRET, {**h, "X-Agw-Timestamp": "1700000001"}, body, now=now)  # replay trick
    assert not cloudevents.verify(SECRET, h, body, now=now + cloudevents.TOLERANCE_S)  # too old
    assert not cloudevents.verify(SECRET, {}, body, now=now)
    # what a receiver in another language computes: hex HMAC-SHA256 of "<ts>." + body
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert h["X-Agw-Signature"] == f"sha256={expected}"


# -- the retry schedule ----------------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_and_jitter_only_shortens() -> None:
    p = RetryPolicy(base_delay_s=1, max_delay_s=300, max_attempts=20, jitter=0.2)
    assert [p.delay_s(n, 0.0) for n in range(1, 11)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert p.delay_s(1000, 0.0) == 300
    assert p.delay_s(3, 0.999) == pytest.approx(4 * 0.8, rel=1e-3)
    for rand in (0.0, 0.3, 0.99):
        assert 0.8 * 16 <= p.delay_s(5, rand) <= 16


def test_a_delivery_dies_after_its_attempts_or_its_window() -> None:
    p = RetryPolicy(base_delay_s=1, max_delay_s=300, max_attempts=5, max_age_s=3600, jitter=0)
    assert p.next_attempt(failed=1, started_at=T0, now=T0, rand=0) == T0 + timedelta(seconds=1)
    assert p.next_attempt(failed=4, started_at=T0, now=T0, rand=0) == T0 + timedelta(seconds=8)
    assert p.next_attempt(failed=5, started_at=T0, now=T0, rand=0) is None  # no attempts left
    late = T0 + timedelta(seconds=3599)
    assert p.next_attempt(failed=2, started_at=T0, now=late, rand=0) is None  # past the window
    # a receiver's Retry-After is honoured, up to the max delay
    assert p.next_attempt(failed=1, started_at=T0, now=T0, rand=0, retry_after_s=60) == T0 + timedelta(seconds=60)
    assert p.next_attempt(failed=1, started_at=T0, now=T0, rand=0, retry_after_s=9999) == T0 + timedelta(seconds=300)


def test_the_defaults() -> None:
    p = RetryPolicy()
    assert (p.base_delay_s, p.max_delay_s, p.max_attempts, p.max_age_s) == (1.0, 300.0, 20, 86400.0)


# -- filters --------------------------------------------------------------------------------------------------


def data(outcome: str = "completed", *tasks: tuple[str, str]) -> dict[str, object]:
    return {"outcome": outcome, "tasks": [{"device": d, "service": s} for d, s in tasks]}


GROUPS = {"pe1": frozenset({"core", "edge"}), "ce7": frozenset({"access"})}


def groups_of(device: str) -> frozenset[str]:
    return GROUPS.get(device, frozenset())


def test_an_empty_filter_takes_everything() -> None:
    assert Filter().matches(data("fallout"), groups_of)


def test_filters_by_outcome_service_group_and_device_glob() -> None:
    d = data("completed", ("pe1", "l3vpn"), ("ce7", "interface"))
    assert Filter(outcomes=frozenset({"completed", "fallout"})).matches(d, groups_of)
    assert not Filter(outcomes=frozenset({"fallout"})).matches(d, groups_of)
    assert Filter(services=frozenset({"interface"})).matches(d, groups_of)
    assert not Filter(services=frozenset({"system"})).matches(d, groups_of)
    assert Filter(groups=frozenset({"core"})).matches(d, groups_of)
    assert not Filter(groups=frozenset({"dc"})).matches(d, groups_of)
    assert Filter(devices=("pe*",)).matches(d, groups_of)
    assert not Filter(devices=("p?2",)).matches(d, groups_of)


def test_the_task_filters_hold_for_one_same_task() -> None:
    d = data("completed", ("pe1", "l3vpn"), ("ce7", "interface"))
    assert Filter(services=frozenset({"l3vpn"}), groups=frozenset({"core"})).matches(d, groups_of)
    # l3vpn is on pe1 (core), interface on ce7 (access): no task is both
    assert not Filter(services=frozenset({"interface"}), groups=frozenset({"core"})).matches(d, groups_of)
    assert not Filter(services=frozenset({"l3vpn"}), devices=("ce*",)).matches(d, groups_of)


# -- the subscribers file --------------------------------------------------------------------------------


def test_a_full_subscribers_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    config = parse_subscribers({
        "source": "agw://prod", "poll_interval_s": 0.5, "concurrency": 4,
        "defaults": {"retry": {"max_attempts": 10, "max_delay_s": 60}, "timeouts": {"total_s": 8}},
        "subscribers": [
            {"name": "oss", "url": "https://oss.example.net/hook", "secret": "env:HOOK_SECRET", "ca": str(ca),
             "filter": {"services": ["l3vpn"], "groups": ["core"], "devices": "pe*", "outcomes": ["fallout"]},
             "retry": {"max_attempts": 50}},
            {"name": "local", "url": "http://127.0.0.1:8080/hook", "secret": "env:HOOK_SECRET",
             "retry_client_errors": True},
            {"name": "bus", "kind": "nats", "url": "nats://127.0.0.1:4222", "stream": "AGW_RESULTS",
             "token": "env:HOOK_SECRET", "filter": {"outcomes": ["completed"]}},
            {"name": "bus2", "kind": "nats", "url": "tls://nats.example.net:4222", "stream": "S2",
             "subject_prefix": "net.results", "duplicate_window_s": 600},
        ]}, origin="subs.yaml", environ=ENV)
    assert (config.source, config.poll_interval_s, config.concurrency) == ("agw://prod", 0.5, 4)
    oss, local, bus, bus2 = config.subscribers
    assert (bus.kind, bus.secret, bus.url) == ("nats", None, "nats://127.0.0.1:4222") and bus.nats is not None
    assert (bus.nats.stream, bus.nats.subject("completed"), bus.nats.subjects) == (
        "AGW_RESULTS", "agw.activation.completed", "agw.activation.>")
    assert bus.nats.token is not None and bus.nats.token.reveal() == SECRET and SECRET not in repr(bus)
    assert bus2.nats is not None and (bus2.nats.subject("fallout"), bus2.nats.duplicate_window_s, bus2.nats.token) == (
        "net.results.fallout", 600, None)
    assert oss.nats is None and oss.kind == "webhook"
    assert oss.secret.reveal() == SECRET and SECRET not in repr(oss)
    assert (oss.retry.max_attempts, oss.retry.max_delay_s, oss.timeouts.total_s) == (50, 60, 8)
    assert (local.retry.max_attempts, local.retry_client_errors) == (10, True)
    assert oss.filter == Filter(services=frozenset({"l3vpn"}), groups=frozenset({"core"}), devices=("pe*",),
                                outcomes=frozenset({"fallout"}))
    assert oss.ca == ca and oss.lease_s > oss.timeouts.total_s
    assert config.get("local") is local and config.get("x") is None


def test_the_default_source_is_the_host() -> None:
    config = parse_subscribers({"subscribers": []}, origin="s", environ=ENV)
    assert config.source.startswith("agw://") and config.subscribers == ()


@pytest.mark.parametrize("sub, message", [
    ({"url": "https://x/h", "secret": "env:HOOK_SECRET"}, "name: required"),
    ({"name": "a b", "url": "https://x/h", "secret": "env:HOOK_SECRET"}, "name: required"),
    ({"name": "a", "secret": "env:HOOK_SECRET"}, "a url is required"),
    ({"name": "a", "url": "http://10.0.0.1/h", "secret": "env:HOOK_SECRET"}, "in clear"),
    ({"name": "a", "url": "https://u:p@x/h", "secret": "env:HOOK_SECRET"}, "no credentials in the URL"),
    ({"name": "a", "url": "https://x/h", "secret": SECRET}, "never the secret itself"),
    ({"name": "a", "url": "https://x/h", "secret": "env:MISSING"}, "MISSING is not set"),
    ({"name": "a", "url": "https://x/h", "secret": "env:SHORT"}, "shorter than 16"),
    ({"name": "a", "url": "https://x/h", "secret": "env:HOOK_SECRET", "colour": 1}, "unknown key(s) colour"),
    ({"name": "a", "url": "https://x/h", "secret": "env:HOOK_SECRET", "filter": {"outcomes": ["done"]}},
     "unknown outcome(s) done"),
    ({"name": "a", "url": "https://x/h", "secret": "env:HOOK_SECRET", "retry": {"max_attempts": 0}},
     "max_attempts: must be a whole number > 0"),
    ({"name": "a", "url": "https://x/h", "secret": "env:HOOK_SECRET", "retry": {"base_delay_s": 9,
                                                                                "max_delay_s": 1}},
     "base_delay_s must not exceed max_delay_s"),
    ({"name": "a", "url": "https://x/h", "secret": "env:HOOK_SECRET", "kind": "sqs"}, "must be one of webhook, nats"),
    ({"name": "a", "url": "ftp://x/h", "secret": "env:HOOK_SECRET"}, "is not a URL of scheme http or https"),
    ({"name": "a", "kind": "nats", "url": "https://x", "stream": "S"}, "is not a URL of scheme nats or tls"),
    ({"name": "a", "kind": "nats", "url": "nats://10.0.0.1:4222", "stream": "S"}, "use tls, or set insecure"),
    ({"name": "a", "kind": "nats", "url": "nats://127.0.0.1:4222"}, "stream: required"),
    ({"name": "a", "kind": "nats", "url": "nats://127.0.0.1:4222", "stream": "S", "subject_prefix": "agw.*"},
     "no wildcards"),
    ({"name": "a", "kind": "nats", "url": "nats://127.0.0.1:4222", "stream": "S", "secret": "env:HOOK_SECRET"},
     "unknown key(s) secret"),
    ({"name": "a", "kind": "nats", "url": "nats://127.0.0.1:4222", "stream": "S", "token": "plain"},
     "never the secret itself"),
])
def test_a_bad_subscriber_is_refused_with_the_reason(sub: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        parse_subscribers({"subscribers": [sub]}, origin="subs.yaml", environ={**ENV, "SHORT": "tiny"})
    assert message in str(err.value) and "subs.yaml" in str(err.value)
    assert SECRET not in str(err.value)


def test_every_problem_is_named_at_once_and_names_are_unique() -> None:
    sub = {"name": "a", "url": "https://x/h", "secret": "env:HOOK_SECRET"}
    with pytest.raises(ConfigurationError) as err:
        parse_subscribers({"subscribers": [sub, sub, {"name": "b"}], "concurrency": 0}, origin="s", environ=ENV)
    text = str(err.value)
    assert "used twice" in text and "subscriber b.url" in text and "concurrency" in text


def test_a_secret_from_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "hook.secret"
    path.write_text(SECRET + "\n")
    os.chmod(path, 0o600)
    assert resolve_secret(f"file:{path}", where="w", environ={}).reveal() == SECRET  # type: ignore[union-attr]
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        resolve_secret(f"file:{path}", where="w", environ={})
    with pytest.raises(ConfigurationError, match="absolute"):
        resolve_secret("file:hook.secret", where="w", environ={})


# -- the verdict of an answer ----------------------------------------------------------------------------


@pytest.mark.parametrize("status, verdict", [
    (200, Verdict.DELIVERED), (202, Verdict.DELIVERED), (204, Verdict.DELIVERED),
    (500, Verdict.RETRY), (502, Verdict.RETRY), (503, Verdict.RETRY),
    (408, Verdict.RETRY), (425, Verdict.RETRY), (429, Verdict.RETRY),
    (400, Verdict.DEAD), (401, Verdict.DEAD), (404, Verdict.DEAD), (413, Verdict.DEAD), (301, Verdict.DEAD),
])
def test_the_verdict_of_a_status(status: int, verdict: Verdict) -> None:
    assert verdict_of(status) == verdict
    if verdict == Verdict.DEAD:
        assert verdict_of(status, retry_client_errors=True) == Verdict.RETRY


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = T0.timestamp()
    assert retry_after_s("120", now=now) == 120
    assert retry_after_s("Sun, 01 Mar 2026 12:01:00 GMT", now=now) == pytest.approx(60)
    assert retry_after_s("soon", now=now) is None and retry_after_s(None, now=now) is None


# -- the payload -----------------------------------------------------------------------------------------------


def activation(*tasks: TaskResult) -> ActivationResult:
    return ActivationResult(id="act-1", request_id="r", order_ref="o", atomic=False, state=ActivationState.COMPLETED,
                            created_at=T0, updated_at=T0, tasks=tasks, submitted_by="me")


def test_the_payload_and_its_bounds() -> None:
    t = TaskResult(id="t", device="d", service="s", action=Action.CREATE, state=TaskState.COMPLETED, rendered="r")
    p = build_payload(activation(t), outcome="completed", seq=5, time=T0 + timedelta(seconds=2))
    assert (p["outcome"], p["seq"], p["duration_ms"], p["ended_at"]) == ("completed", 5, 2000.0, "2026-03-01T12:00:02+00:00")
    assert p["tasks"][0]["rendered"] == "r" and p["texts_omitted"] is False
    big = [TaskResult(id=f"t{i}", device="d", service="s", action=Action.CREATE, state=TaskState.COMPLETED,
                      rendered="x" * 30_000) for i in range(40)]
    text = encode_payload(activation(*big), outcome="completed", seq=5, time=T0)
    assert len(text) <= MAX_PAYLOAD_CHARS
    p = json.loads(text)
    assert p["texts_omitted"] is True and len(p["tasks"]) == 40 and p["tasks"][0]["rendered"] == ""


def test_every_end_state_has_a_type() -> None:
    assert END_STATES == {"completed", "partial", "rolledBack", "failed", "cancelled", "fallout"}
    assert event_type("rolledBack") == "net.agw.activation.rolledBack"
