"""A task that fails is recorded with its error and rolled back; the device equals its snapshot."""

from __future__ import annotations

import time

import pytest

from drivers.base import Endpoint
from drivers.errors import DeviceErrorInfo, DeviceRejectedError, SessionLostError
from drivers.secrets import Credential
from drivers.testing.scripted import Operation
from gateway.engine import Engine
from gateway.model import TaskState
from gateway.results import ActivationState
from tests.scripted_gateway import NC, PROFILES, INITIAL, Gateway, initial_text, kv, states, task

# phase -> the driver operation it runs, per kind of device (a CLI-like device has no lock,
# validate, commit or confirm); "touched": a change may have reached the device by then
NC_PHASES: list[tuple[str, Operation, bool]] = [
    ("lock", "lock", False), ("snapshot", "read", False), ("push", "load", True), ("validate", "validate", True),
    ("commit", "commit", True), ("verify", "verify", True), ("confirm", "confirm", True),
]
CLI_PHASES: list[tuple[str, Operation, bool]] = [
    ("snapshot", "read", False), ("push", "load", True), ("verify", "verify", True),
]
MATRIX = [pytest.param("r1", *p, id=f"nc-{p[0]}") for p in NC_PHASES] + \
         [pytest.param("n1", *p, id=f"nc-session-{p[0]}") for p in NC_PHASES if p[0] in ("commit", "verify", "confirm")] + \
         [pytest.param("c1", *p, id=f"cli-{p[0]}") for p in CLI_PHASES]


def rejected() -> DeviceRejectedError:
    return DeviceRejectedError("bad value", info=DeviceErrorInfo("bad value", tag="invalid-value", path="/if/ge1"))


# -- the device refuses the change -------------------------------------------------------------------
@pytest.mark.parametrize("device, method", [("r1", "discard"), ("c1", "restore")])
async def test_a_change_rejected_at_push_is_rolled_back(gw: Gateway, engine: Engine, device: str,
                                                        method: str) -> None:
    gw.net.fail(device, "load", rejected(), partial=True)  # CLI: the first line is live before the refusal
    result = await gw.run(engine, kv("a", device, "if.ge1", "up"))
    assert result.state == ActivationState.ROLLED_BACK
    a = task(result, "a")
    assert a.state == TaskState.ROLLED_BACK
    assert a.error is not None and a.error.kind == "DeviceRejectedError" and a.error.phase == "push"
    assert not a.error.retryable and a.error.device_error is not None and a.error.device_error.tag == "invalid-value"
    assert a.rollback is not None and a.rollback.ok and method in a.rollback.method, a.rollback
    assert gw.net.config(device) == INITIAL
    assert gw.net.text(device, "if") == initial_text()


async def test_an_atomic_activation_rolls_back_the_device_that_succeeded_when_the_other_refuses(
        gw: Gateway, engine: Engine) -> None:
    gw.net.fail("c1", "load", rejected())
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"), kv("b", "c1", "if.ge1", "up", deps=("a",)))
    assert result.state == ActivationState.ROLLED_BACK
    assert states(result) == {"a": TaskState.ROLLED_BACK, "b": TaskState.ROLLED_BACK}
    a = task(result, "a")
    assert a.rollback is not None and "cancel-commit" in a.rollback.method  # r1's timer cancelled
    assert gw.net.config("r1") == gw.net.config("c1") == INITIAL
    assert gw.net.pending("r1") is None


async def test_independent_tasks_roll_back_only_the_one_that_failed(gw: Gateway, engine: Engine) -> None:
    gw.net.fail("c1", "load", rejected())
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"), kv("b", "c1", "if.ge1", "up"), atomic=False)
    assert result.state == ActivationState.PARTIAL
    assert states(result) == {"a": TaskState.COMPLETED, "b": TaskState.ROLLED_BACK}
    assert gw.net.config("r1") == INITIAL | {"if.ge1": "up"} and gw.net.config("c1") == INITIAL


# -- verification fails ------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["r1", "c1"])
async def test_a_failed_verification_is_rolled_back(gw: Gateway, engine: Engine, device: str) -> None:
    gw.net.mismatch(device)
    result = await gw.run(engine, kv("a", device, "if.ge1", "up"))
    assert result.state == ActivationState.ROLLED_BACK
    a = task(result, "a")
    assert a.state == TaskState.ROLLED_BACK
    assert a.error is not None and a.error.kind == "VerificationError" and a.error.phase == "verify"
    assert a.verification is not None and not a.verification.ok
    assert any("scripted mismatch" in m for m in a.verification.mismatches)
    assert a.rollback is not None and a.rollback.ok
    assert gw.net.config(device) == INITIAL


async def test_an_out_of_band_change_in_scope_fails_verification_as_unexpected(gw: Gateway, engine: Engine) -> None:
    gw.net.drift("c1", {"if.ge2": "admin-up"}, at="verify")  # someone else edits the scope meanwhile
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up"))
    a = task(result, "a")
    assert a.state == TaskState.ROLLED_BACK and a.error is not None and a.error.kind == "VerificationError"
    assert "the change did not name" in a.error.message
    assert a.verification is not None and any("if.ge2" in m for m in a.verification.mismatches)
    assert gw.net.config("c1") == INITIAL  # a failed activation's own rollback puts the snapshot back


async def test_a_change_outside_the_scope_does_not_disturb_verification(gw: Gateway, engine: Engine) -> None:
    gw.net.drift("c1", {"sys.name": "renamed"}, at="verify")
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED
    assert gw.net.config("c1") == INITIAL | {"if.ge1": "up", "sys.name": "renamed"}


# -- a device that stops answering: the engine's guard cuts it -----------------------------------------
@pytest.mark.parametrize("device, phase, op, touched", MATRIX)
async def test_a_hang_in_each_phase_is_cut_by_the_engine_and_rolled_back(
        gw: Gateway, engine: Engine, device: str, phase: str, op: Operation, touched: bool) -> None:
    gw.net.hang(device, op)
    started = time.monotonic()
    result = await gw.run(engine, kv("a", device, "if.ge1", "up"))
    assert time.monotonic() - started < 1.5, "the hang was not cut by the engine's guard"
    a = task(result, "a")
    assert a.error is not None and a.error.kind == "DeviceTimeoutError" and a.error.phase == phase, a.error
    assert a.error.retryable
    if touched:
        assert result.state == ActivationState.ROLLED_BACK and a.state == TaskState.ROLLED_BACK, (a.state, a.rollback)
        assert a.rollback is not None and a.rollback.ok
    else:
        assert result.state == ActivationState.FAILED and a.state == TaskState.FAILED
    assert gw.net.config(device) == INITIAL
    assert gw.net.pending(device) is None and gw.net.devices[device].lock_owner is None


# -- a driver bug (not an AgwError) -------------------------------------------------------------------
@pytest.mark.parametrize("device, phase, op, touched", MATRIX)
async def test_a_driver_bug_in_each_phase_is_recorded_not_lost(
        gw: Gateway, engine: Engine, device: str, phase: str, op: Operation, touched: bool) -> None:
    gw.net.bug(device, op, KeyError("the driver's own bug"))
    result = await gw.run(engine, kv("a", device, "if.ge1", "up"))
    assert result.state.final, result.state
    a = task(result, "a")
    assert a.error is not None and a.error.kind == "InternalError" and a.error.phase == phase, a.error
    assert "incident" in a.error.message and "the driver's own bug" not in a.error.message
    assert a.state == (TaskState.ROLLED_BACK if touched else TaskState.FAILED)
    assert result.state == (ActivationState.ROLLED_BACK if touched else ActivationState.FAILED)
    assert gw.net.config(device) == INITIAL and gw.net.pending(device) is None


# -- a retryable device error (the session is dropped and the rollback reconnects) ----------------------
async def test_a_session_lost_during_commit_is_rolled_back_from_a_new_session(gw: Gateway, engine: Engine) -> None:
    gw.net.fail("r1", "commit", SessionLostError("connection reset"), after=True)  # the commit took effect
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"))
    a = task(result, "a")
    assert a.state == TaskState.ROLLED_BACK and a.error is not None and a.error.kind == "SessionLostError"
    assert a.error.retryable
    assert gw.net.ops("r1").count("open") == 2, gw.net.ops("r1")
    assert a.rollback is not None and "cancel-commit" in a.rollback.method
    assert gw.net.config("r1") == INITIAL and gw.net.pending("r1") is None


# -- around the edges: the unlock, someone else's lock, the rollback itself ----------------------------
async def test_a_hang_at_unlock_after_confirm_still_completes_and_frees_the_device(gw: Gateway,
                                                                                   engine: Engine) -> None:
    gw.net.hang("r1", "unlock")
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"))
    assert result.state == ActivationState.COMPLETED
    assert gw.net.config("r1") == INITIAL | {"if.ge1": "up"}
    assert gw.net.devices["r1"].lock_owner is None  # the stuck session was dropped, its lock with it


async def test_a_datastore_locked_by_someone_else_fails_the_task_before_anything_is_sent(
        gw: Gateway, engine: Engine) -> None:
    other = gw.net.driver_class()(endpoint=Endpoint(device="r1", host="192.0.2.9", port=830, platform=NC,
                                                    credential=Credential(ref="env:X", username="x")),
                                  profile=PROFILES[NC])
    await other.open()
    await other.lock()
    try:
        result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"))
    finally:
        await other.close()
    a = task(result, "a")
    assert result.state == ActivationState.FAILED and a.state == TaskState.FAILED
    assert a.error is not None and a.error.kind == "LockDeniedError" and a.error.retryable and a.error.phase == "lock"
    assert "load" not in gw.net.ops("r1") and gw.net.config("r1") == INITIAL


async def test_a_restore_that_hangs_during_the_rollback_falls_out(gw: Gateway, engine: Engine) -> None:
    gw.net.mismatch("c1")
    gw.net.hang("c1", "restore")
    started = time.monotonic()
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up"))
    assert time.monotonic() - started < 1.5
    a = task(result, "a")
    assert result.state == ActivationState.FALLOUT and a.state == TaskState.FALLOUT
    assert a.rollback is not None and not a.rollback.ok and "did not finish within" in a.rollback.reason
    await engine.retry(result.id)  # the device answers again
    after = await gw.settle(engine, result.id)
    assert after.state == ActivationState.ROLLED_BACK and gw.net.config("c1") == INITIAL


async def test_a_device_unreadable_after_the_restore_falls_out(gw: Gateway, engine: Engine) -> None:
    gw.net.mismatch("c1")
    gw.net.fail("c1", "read", SessionLostError("connection reset"), skip=2)  # snapshot, pre-restore read; then
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up"))
    a = task(result, "a")
    assert result.state == ActivationState.FALLOUT and a.state == TaskState.FALLOUT
    assert a.rollback is not None and "could not re-read the device" in a.rollback.reason
    assert gw.net.config("c1") == INITIAL  # restored, but not proven: a person decides


async def test_two_tasks_on_one_device_where_the_second_is_refused_are_both_rolled_back(gw: Gateway,
                                                                                        engine: Engine) -> None:
    gw.net.fail("r1", "load", rejected(), skip=1)
    result = await gw.run(engine, kv("a", "r1", "if.ge1", "up"), kv("b", "r1", "if.ge2", "up", deps=("a",)))
    assert states(result) == {"a": TaskState.ROLLED_BACK, "b": TaskState.ROLLED_BACK}
    a = task(result, "a")
    assert a.rollback is not None and "discard" in a.rollback.method and "cancel-commit" in a.rollback.method
    assert gw.net.config("r1") == INITIAL and gw.net.pending("r1") is None and gw.net.devices["r1"].candidate is None


async def test_an_independent_task_whose_dependency_failed_is_cancelled_untouched(gw: Gateway,
                                                                                  engine: Engine) -> None:
    gw.net.fail("c1", "load", rejected())
    result = await gw.run(engine, kv("a", "c1", "if.ge1", "up"), kv("b", "c2", "if.ge1", "up", deps=("a",)),
                          atomic=False)
    assert states(result) == {"a": TaskState.ROLLED_BACK, "b": TaskState.CANCELLED}
    assert result.state == ActivationState.ROLLED_BACK
    assert gw.net.ops("c2") == [] and gw.net.config("c2") == INITIAL
