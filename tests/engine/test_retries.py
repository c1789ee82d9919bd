"""Automatic retries before the push: a retryable error in connect, lock or snapshot (nothing sent
yet) is tried again with backoff under the profile's RetryPolicy, each attempt an event; never a
rejection, never after the push, never past the attempts or the deadline."""

from __future__ import annotations

import dataclasses

import pytest

from drivers.base import RetryPolicy
from drivers.errors import ConnectError, DeviceErrorInfo, DeviceRejectedError, DeviceTimeoutError, LockDeniedError
from drivers.profiles import parse_profile
from drivers.errors import ConfigurationError
from gateway.engine.lifecycle import retry_delay_s
from gateway.model import TaskState
from gateway.results import ActivationState
from tests import scripted_gateway
from tests.scripted_gateway import INITIAL, Gateway, kv, task

POLICY = RetryPolicy(attempts=3, initial_delay_s=0.02, max_delay_s=0.05, deadline_s=5.0)


@pytest.fixture(autouse=True)
def retrying_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    profiles = {name: dataclasses.replace(p, retry=POLICY) for name, p in scripted_gateway.PROFILES.items()}
    monkeypatch.setattr(scripted_gateway, "PROFILES", profiles)


async def retries(gw: Gateway, engine: object, activation_id: str) -> list[str]:
    events = await engine.journal.events(activation_id)  # type: ignore[attr-defined]
    return [e.message for e in events if e.message.startswith("retrying in")]


async def test_a_refused_connection_is_retried_until_the_device_answers(gw: Gateway) -> None:
    engine = await gw.engine()
    gw.net.fail("r1", "open", ConnectError("connection refused"), times=2)
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED and gw.net.config("r1") == INITIAL | {"if.ge1": "up"}
    said = await retries(gw, engine, result.id)
    assert len(said) == 2 and "(attempt 2 of 3)" in said[0] and "(attempt 3 of 3)" in said[1]
    assert "connection refused" in said[0]


async def test_a_denied_lock_and_a_snapshot_timeout_are_retried(gw: Gateway) -> None:
    engine = await gw.engine()
    gw.net.fail("r1", "lock", LockDeniedError("lock held by session 7", info=DeviceErrorInfo("lock denied",
                                                                                                tag="lock-denied")))
    gw.net.fail("r2", "read", DeviceTimeoutError("no answer"))
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"), kv("b", "r2", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED
    assert len(await retries(gw, engine, result.id)) == 2


async def test_a_rejection_is_not_retried(gw: Gateway) -> None:
    engine = await gw.engine()
    gw.net.fail("r1", "lock", DeviceRejectedError("not allowed", retryable=False))
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"))
    assert task(result, "a").state != TaskState.COMPLETED and not await retries(gw, engine, result.id)
    assert gw.net.ops("r1").count("lock") == 1


async def test_nothing_is_retried_after_the_push(gw: Gateway) -> None:
    engine = await gw.engine()
    gw.net.fail("c1", "verify", DeviceTimeoutError("verify timed out"))  # retryable, but the change was sent
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up"))
    assert task(result, "a").state == TaskState.ROLLED_BACK and not await retries(gw, engine, result.id)
    assert gw.net.ops("c1").count("load") == 1 and gw.net.config("c1") == INITIAL


async def test_the_attempts_run_out(gw: Gateway) -> None:
    engine = await gw.engine()
    gw.net.fail("r1", "open", ConnectError("connection refused"), times=None)
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"))
    a = task(result, "a")
    assert a.state == TaskState.FAILED and a.error is not None and a.error.kind == "ConnectError"
    assert len(await retries(gw, engine, result.id)) == 2 and gw.net.ops("r1").count("open") == 3


def test_the_backoff_grows_jitters_and_stops_at_the_attempts_or_the_deadline() -> None:
    p = RetryPolicy(attempts=5, initial_delay_s=1.0, max_delay_s=4.0, deadline_s=20.0)
    assert retry_delay_s(p, 1, elapsed_s=0, draw=0.0) == 0.5 and retry_delay_s(p, 1, elapsed_s=0, draw=0.999) < 1.0
    assert retry_delay_s(p, 2, elapsed_s=0, draw=0.0) == 1.0
    assert retry_delay_s(p, 4, elapsed_s=0, draw=1.0) == 4.0  # capped by max_delay_s
    assert retry_delay_s(p, 5, elapsed_s=0, draw=0.0) is None  # the attempts are used up
    assert retry_delay_s(p, 2, elapsed_s=19.5, draw=0.0) is None  # past the deadline
    assert retry_delay_s(RetryPolicy(), 1, elapsed_s=0, draw=0.0) is None  # the default: no retry


def test_the_profile_says_the_policy_and_refuses_nonsense() -> None:
    base = {"platform": "x", "driver": "netconf"}
    p = parse_profile(base | {"retry": {"attempts": 4, "max_delay_s": 2}}, source="x.yaml")
    assert p.retry == RetryPolicy(attempts=4, max_delay_s=2.0)
    with pytest.raises(ConfigurationError) as err:
        parse_profile(base | {"retry": {"attempts": 0, "backoff": 2, "deadline_s": -1}}, source="x.yaml")
    text = str(err.value)
    assert "x.yaml" in text and "retry.attempts" in text and "retry.backoff: unknown" in text and "retry.deadline_s" in text


async def test_a_rollback_asks_again_for_a_denied_lock(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a crash, the dead gateway's session may hold the device's lock for a moment: the
    recovery's rollback asks again (a few seconds) instead of falling out at once."""
    from gateway.engine import transaction

    monkeypatch.setattr(transaction, "ROLLBACK_LOCK_RETRY",
                        RetryPolicy(attempts=4, initial_delay_s=0.02, max_delay_s=0.05, deadline_s=5))
    first = await gw.engine()
    reached = gw.net.crash_at("r1", "load")
    submitted = await first.submit(scripted_gateway.request(kv("a", "r1", "if.ge1", "up")))
    await reached.wait()
    await gw.crash(first)
    gw.net.clear()
    denied = LockDeniedError("lock held by session 3", info=DeviceErrorInfo("lock denied", tag="lock-denied"))
    gw.net.fail("r1", "lock", denied, times=2)
    second = await gw.engine()  # recovers
    await second.wait_idle()
    result = await second.get(submitted.activation_id)
    assert result.state == ActivationState.ROLLED_BACK and gw.net.config("r1") == INITIAL
    assert gw.net.ops("r1").count("lock") >= 4  # the first push's, two denied, the granted one

    reached = gw.net.crash_at("r1", "load")  # again, and this time the lock is never granted
    submitted = await second.submit(scripted_gateway.request(kv("a", "r1", "if.ge2", "up"), request_id="r2"))
    await reached.wait()
    await gw.crash(second)
    gw.net.clear()
    gw.net.fail("r1", "lock", denied, times=None)
    third = await gw.engine()
    await third.wait_idle()
    result = await third.get(submitted.activation_id)
    a = task(result, "a")
    assert result.state == ActivationState.FALLOUT and a.rollback is not None and "lock" in a.rollback.reason
