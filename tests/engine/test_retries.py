"""Automatic retries (gateway/engine/retries.py). Before the push: a retryable error in connect,
lock or snapshot (nothing sent yet) is tried again with backoff under the task's policy, each
attempt an event; never a rejection, never past the attempts or the deadline. After a push whose
outcome is unknown (the answer to load or commit lost): the device is read first, and each branch
of what the read finds (nothing applied, the change there, something else) has its test. The
policy is the profile's, or the activation's over it (journaled, used by a repair too)."""

from __future__ import annotations

import dataclasses

import pytest

from drivers.base import RetryPolicy
from drivers.errors import (ConnectError, DeviceErrorInfo, DeviceRejectedError, DeviceTimeoutError, LockDeniedError,
                            SessionLostError)
from drivers.profiles import parse_profile
from drivers.errors import ConfigurationError
from gateway.engine.lifecycle import retry_delay_s
from gateway.engine.retries import effective
from gateway.errors import ConflictError
from gateway.model import Action, RetryOverride, TaskSpec, TaskState
from gateway.engine import Engine
from gateway.results import ActivationResult, ActivationState
from tests import scripted_gateway
from tests.scripted_gateway import INITIAL, NC, PROFILES, Gateway, kv, task

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


async def test_after_the_push_nothing_is_retried_from_the_start(gw: Gateway) -> None:
    """A verify that times out: the change was sent, so the task never starts over (no "retrying
    in"); the device is read again, holds the change, and the task carries on."""
    engine = await gw.engine()
    gw.net.fail("c1", "verify", DeviceTimeoutError("verify timed out"))  # retryable, but the change was sent
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up"))
    assert task(result, "a").state == TaskState.COMPLETED and not await retries(gw, engine, result.id)
    assert gw.net.ops("c1").count("load") == 1 and gw.net.config("c1") == INITIAL | {"if.ge1": "up"}
    assert (await outcome_events(engine, result.id))[-1].endswith("holds the change (verified); carrying on")


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
    from gateway.engine import rollback_lock

    monkeypatch.setattr(rollback_lock, "ROLLBACK_LOCK_RETRY",
                        RetryPolicy(attempts=4, initial_delay_s=0.02, max_delay_s=0.05, deadline_s=5))
    denied = LockDeniedError("lock held by session 3", info=DeviceErrorInfo("lock denied", tag="lock-denied"))
    second, result = await recovered_after_crash(gw, await gw.engine(), at="load", after=True, value="if.ge1",
                                                 request_id="req", lock=denied, denials=2)
    assert result.state == ActivationState.ROLLED_BACK and gw.net.config("r1") == INITIAL
    assert gw.net.ops("r1").count("lock") >= 4  # the first push's, two denied, the granted one

    # again, and this time the lock is never granted
    _, result = await recovered_after_crash(gw, second, at="load", after=True, value="if.ge2", request_id="r2",
                                            lock=denied, denials=None)
    a = task(result, "a")
    assert result.state == ActivationState.FALLOUT and a.rollback is not None and "lock" in a.rollback.reason


# -- read-then-retry: a push whose outcome is unknown is never sent again before the device is read --------
async def outcome_events(engine: object, activation_id: str) -> list[str]:
    """The read-then-retry decisions and announcements of an activation, in order."""
    events = await engine.journal.events(activation_id)  # type: ignore[attr-defined]
    return [e.message for e in events if e.message.startswith(("outcome of", "read after"))]


def lost(what: str = "connection reset") -> SessionLostError:
    return SessionLostError(what)


async def test_a_push_lost_before_it_reached_the_device_is_read_then_pushed_again(gw: Gateway) -> None:
    engine = await gw.engine()
    gw.net.fail("c1", "load", lost())  # CLI: the load never took effect, the answer is lost
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED and gw.net.config("c1") == INITIAL | {"if.ge1": "up"}
    said = await outcome_events(engine, result.id)
    assert len(said) == 2 and said[0].startswith("outcome of push unknown") and "(attempt 2 of 3)" in said[0]
    assert "equals its snapshot, nothing was applied; pushing again (attempt 2 of 3)" in said[1]
    ops = gw.net.ops("c1")
    assert ops.count("load") == 2 and ops.count("open") == 2  # reconnected, then the one new push
    assert ops.index("verify") < ops.index("load", ops.index("load") + 1)  # read before the second push


async def test_a_push_that_took_effect_before_its_answer_was_lost_is_not_pushed_again(gw: Gateway) -> None:
    engine = await gw.engine()
    gw.net.fail("c1", "load", lost(), after=True)  # live on the device, then the session drops
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED and gw.net.config("c1") == INITIAL | {"if.ge1": "up"}
    assert gw.net.ops("c1").count("load") == 1
    said = await outcome_events(engine, result.id)
    assert said[-1] == "read after the unknown push: c1 holds the change (verified); carrying on"


async def test_a_confirmed_commit_that_took_effect_is_confirmed_by_its_persist_id_from_a_new_session(
        gw: Gateway) -> None:
    """r1 keeps the pending commit across sessions (persist-id) and, as netconfd, refuses the lock
    to another session meanwhile: the new session reads without the lock, carries on, confirms."""
    engine = await gw.engine()
    gw.net.hang("r1", "commit", after=True)  # the commit took effect; its answer never comes (timeout)
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED, task(result, "a")
    assert gw.net.config("r1") == INITIAL | {"if.ge1": "up"} and gw.net.pending("r1") is None  # confirmed
    ops = gw.net.ops("r1")
    assert ops.count("commit") == 1 and ops.count("confirm") == 1 and "cancel_commit" not in ops
    said = await outcome_events(engine, result.id)
    assert said[0].startswith("outcome of commit unknown (") and "commit did not finish within" in said[0]
    assert ops.count("lock") == 2  # the second, from the new session, refused while the commit is pending
    assert "holds the change (verified); carrying on; confirmed commit agw-" in said[-1]
    assert "pending, confirmed with its persist-id" in said[-1]


async def test_a_commit_lost_before_it_took_effect_is_discarded_and_pushed_again(gw: Gateway) -> None:
    engine = await gw.engine()
    gw.net.fail("r1", "commit", lost())
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED and gw.net.config("r1") == INITIAL | {"if.ge1": "up"}
    ops = gw.net.ops("r1")
    assert ops.count("commit") == 2 and ops.count("load") == 2 and "discard" in ops
    assert ops.index("discard") < ops.index("load", ops.index("load") + 1)  # nothing stale is committed
    assert "pushing again" in (await outcome_events(engine, result.id))[-1]


async def test_a_device_that_lost_its_pending_confirmed_commit_is_noticed_and_pushed_again(gw: Gateway) -> None:
    """The commit took effect, then the device restarted (its pending commit reverted, the session
    gone): the read shows the snapshot, so the change is pushed again and completes."""
    engine = await gw.engine()

    def restarted() -> None:
        gw.net.expire_timers("r1")
        gw.net.kill_sessions("r1")

    gw.net.on("r1", "commit", restarted, after=True)
    gw.net.fail("r1", "commit", lost("device restarted"), after=True)
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED and gw.net.config("r1") == INITIAL | {"if.ge1": "up"}
    assert gw.net.ops("r1").count("commit") == 2 and gw.net.pending("r1") is None
    assert "equals its snapshot, nothing was applied; pushing again" in (await outcome_events(engine, result.id))[-1]


async def test_a_session_bound_confirmed_commit_reverts_with_its_session_and_is_pushed_again(gw: Gateway) -> None:
    """n1 has no persist-id: its pending commit reverts when the session that armed it ends, so
    the read after the lost commit shows the snapshot and the change is pushed again."""
    engine = await gw.engine()
    gw.net.fail("n1", "commit", lost(), after=True)
    result = await gw.run(engine, kv("a", "n1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED and gw.net.config("n1") == INITIAL | {"if.ge1": "up"}
    assert gw.net.ops("n1").count("commit") == 2


async def test_a_device_holding_neither_the_snapshot_nor_the_change_is_rolled_back(gw: Gateway) -> None:
    engine = await gw.engine()
    gw.net.fail("c1", "load", lost(), partial=True)  # the first of the two lines went live
    result = await gw.run(engine, TaskSpec(id="a", device="c1", service="system", action=Action.MODIFY,
                                           parameters={"contact": "noc", "location": "lab"}))
    a = task(result, "a")
    assert result.state == ActivationState.ROLLED_BACK and a.state == TaskState.ROLLED_BACK, a
    assert a.error is not None and a.error.kind == "VerificationError" and "neither its snapshot" in a.error.message
    assert gw.net.config("c1") == INITIAL and gw.net.ops("c1").count("load") == 1
    assert (await outcome_events(engine, result.id))[-1].endswith("matches neither its snapshot nor the change; "
                                                                    "rolling back")


async def test_the_read_is_retried_until_the_attempts_run_out_then_the_rollback_takes_over(gw: Gateway) -> None:
    engine = await gw.engine()
    gw.net.fail("c1", "load", lost(), after=True)
    gw.net.fail("c1", "open", ConnectError("connection refused"), skip=1, times=None)  # never back
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up"))
    a = task(result, "a")
    assert a.state == TaskState.FALLOUT and a.rollback is not None and a.rollback.retryable, a
    assert a.error is not None and a.error.kind == "ConnectError"
    said = await outcome_events(engine, result.id)
    assert len(said) == 2 and all(m.startswith("outcome of push unknown") for m in said)  # attempts 2 and 3
    events = await engine.journal.events(result.id)
    assert sum(e.message.startswith("reconnecting in") for e in events) == 2  # the rollback's, same policy
    assert gw.net.ops("c1").count("open") == 1 + 2 + 3 and gw.net.ops("c1").count("load") == 1


async def test_without_a_retry_policy_a_lost_push_is_rolled_back_at_once(gw: Gateway,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scripted_gateway, "PROFILES", {n: dataclasses.replace(p, retry=RetryPolicy())
                                                       for n, p in scripted_gateway.PROFILES.items()})
    engine = await gw.engine()
    gw.net.fail("c1", "load", lost(), after=True)
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up"))
    assert task(result, "a").state == TaskState.ROLLED_BACK and gw.net.config("c1") == INITIAL
    assert not await outcome_events(engine, result.id) and gw.net.ops("c1").count("load") == 1


# -- the activation's own policy ---------------------------------------------------------------------------
def no_profile_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scripted_gateway, "PROFILES", {n: dataclasses.replace(p, retry=RetryPolicy())
                                                       for n, p in scripted_gateway.PROFILES.items()})


QUICK = RetryOverride(attempts=4, initial_delay_s=0.02, max_delay_s=0.05)


async def test_the_activation_policy_overrides_the_profile_and_is_journaled(gw: Gateway,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    no_profile_retry(monkeypatch)
    engine = await gw.engine()
    gw.net.fail("r1", "open", ConnectError("connection refused"), times=3)
    submitted = await engine.submit(dataclasses.replace(scripted_gateway.request(kv("a", "r1")), retry=QUICK))
    await engine.wait_idle()
    result = await engine.get(submitted.activation_id)
    assert result.state == ActivationState.COMPLETED
    said = await retries(gw, engine, result.id)
    assert len(said) == 3 and "(attempt 4 of 4)" in said[-1]
    rec = await engine.journal.recovery(result.id, "a")
    assert rec.retry == QUICK  # what a repair after a restart runs with


async def test_a_repair_after_a_restart_runs_with_the_activation_policy(gw: Gateway,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    no_profile_retry(monkeypatch)
    first = await gw.engine()
    reached = gw.net.crash_at("r1", "load")
    submitted = await first.submit(dataclasses.replace(scripted_gateway.request(kv("a", "r1")), retry=QUICK))
    await reached.wait()
    await gw.crash(first)
    gw.net.clear()
    gw.net.fail("r1", "open", ConnectError("connection refused"), times=2)  # back at the third try
    second = await gw.engine()  # recovers
    await second.wait_idle()
    result = await second.get(submitted.activation_id)
    assert result.state == ActivationState.ROLLED_BACK and gw.net.config("r1") == INITIAL
    events = await second.journal.events(result.id)
    assert sum(e.message.startswith("reconnecting in") for e in events) == 2


async def test_the_same_request_id_with_another_policy_is_a_conflict(gw: Gateway,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    no_profile_retry(monkeypatch)
    engine = await gw.engine()
    req = dataclasses.replace(scripted_gateway.request(kv("a", "r1")), retry=QUICK)
    first = await engine.submit(req)
    again = await engine.submit(dataclasses.replace(req, retry=RetryOverride(attempts=4, initial_delay_s=0.02,
                                                                              max_delay_s=0.05)))
    assert again.activation_id == first.activation_id and not again.created
    with pytest.raises(ConflictError):
        await engine.submit(dataclasses.replace(req, retry=RetryOverride(attempts=5)))
    with pytest.raises(ConflictError):
        await engine.submit(dataclasses.replace(req, retry=None))
    await engine.wait_idle()


def test_the_effective_policy_takes_each_field_the_activation_gives() -> None:
    profile = RetryPolicy(attempts=3, initial_delay_s=1.0, max_delay_s=4.0, deadline_s=20.0)
    assert effective(profile, None) == profile
    assert effective(profile, RetryOverride(attempts=7, deadline_s=90)) == RetryPolicy(
        attempts=7, initial_delay_s=1.0, max_delay_s=4.0, deadline_s=90.0)
    assert effective(RetryPolicy(), RetryOverride(attempts=1)).attempts == 1  # an activation may turn retries off


async def test_a_verify_lost_while_the_commit_is_pending_reads_again_and_confirms(gw: Gateway) -> None:
    engine = await gw.engine()
    gw.net.fail("r1", "verify", lost())  # the commit is pending under the persist-id; the session drops
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED and gw.net.pending("r1") is None
    ops = gw.net.ops("r1")
    assert ops.count("load") == ops.count("commit") == ops.count("confirm") == 1
    assert "carrying on; confirmed commit" in (await outcome_events(engine, result.id))[-1]



async def test_a_commit_the_device_did_not_cancel_is_waited_for_until_its_timer(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway dies while its confirmed commit is being sent; the recovery's cancel-commit by
    persist-id finds nothing to cancel, yet the device refuses its lock because a confirmed commit
    is pending (netconfd, when the committing session died while the commit was applied). The
    device's timer reverts it within confirm_timeout_s: the rollback waits for the lock until then
    (an event says so) instead of falling out after its usual ~10 s; past that bound it falls out."""
    from gateway.engine import rollback_lock

    monkeypatch.setattr(rollback_lock, "ROLLBACK_LOCK_RETRY",
                        RetryPolicy(attempts=2, initial_delay_s=0.01, max_delay_s=0.01, deadline_s=0.05))
    monkeypatch.setattr(rollback_lock, "TIMER_POLL_S", 0.01)
    pending = LockDeniedError("in-use: cannot perform the operation with confirmed-commit pending",
                              info=DeviceErrorInfo("confirmed-commit pending", tag="in-use"))
    # the commit is journaled as pending and never reaches the device; more denials than
    # ROLLBACK_LOCK_RETRY waits for
    second, result = await recovered_after_crash(gw, await gw.engine(), at="commit", after=False, value="if.ge1",
                                                 request_id="req", lock=pending, denials=8)
    a = task(result, "a")
    assert result.state == ActivationState.ROLLED_BACK and gw.net.config("r1") == INITIAL, (a.rollback, a.error)
    assert a.rollback is not None and a.rollback.method.startswith("device-timer")
    events = [e.message for e in await second.journal.events(result.id)]
    assert any("reverts by its timer: waiting up to" in m for m in events), events

    # past the timer's bound, a lock still denied is a fallout (the bound made short here)
    monkeypatch.setattr(rollback_lock, "TIMER_GRACE_S", 0.2 - PROFILES[NC].confirm_timeout_s)
    _, result = await recovered_after_crash(gw, second, at="commit", after=False, value="if.ge2", request_id="r2",
                                            lock=pending, denials=None)
    a = task(result, "a")
    assert result.state == ActivationState.FALLOUT and a.rollback is not None
    assert "confirmed-commit pending" in a.rollback.reason


async def recovered_after_crash(gw: Gateway, engine: Engine, *, at: str, after: bool, value: str, request_id: str,
                                lock: LockDeniedError, denials: int | None) -> tuple[Engine, ActivationResult]:
    """Submit a task on r1, let the gateway "die" at ``at``, deny the lock ``denials`` times (None:
    always) and start a new gateway: the recovering engine and the activation once it is idle."""
    reached = gw.net.crash_at("r1", at, after=after)
    submitted = await engine.submit(scripted_gateway.request(kv("a", "r1", value, "up"), request_id=request_id))
    await reached.wait()
    await gw.crash(engine)
    gw.net.clear()
    gw.net.fail("r1", "lock", lock, times=denials)
    recovering = await gw.engine()
    await recovering.wait_idle()
    return recovering, await recovering.get(submitted.activation_id)
