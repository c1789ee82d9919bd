"""Automatic retries of one task (issue 12): the policy it runs with, and read-then-retry after a
push whose outcome is unknown.

**The policy.** A device profile says how its devices are retried (:class:`~drivers.base.RetryPolicy`:
``attempts`` counting the first, ``initial_delay_s``, ``max_delay_s``, ``deadline_s`` from the
first attempt). An activation may carry its own (:class:`~gateway.model.RetryOverride`): each field
it gives replaces the profile's, for that activation's tasks only; a field it leaves out keeps the
profile's (:func:`effective`). Every value, the profile's and the activation's alike, is within the
same hard caps (:func:`drivers.profiles.retry_problem`: at most 20 attempts, durations in (0, 3600]
s), refused where it comes in. The override is journaled with each task that starts (its
recovery record), so a repair after a restart (:mod:`gateway.engine.repair`) runs with it too: a
rollback's first connect is retried under the same policy (:func:`connected`).

**One budget per task** (:class:`Budget`): the attempts and the deadline are shared by every kind
of retry of the task; each retry is an event naming its attempt.

1. *Before the push* (connect, lock, snapshot: nothing sent yet) a retryable error is retried from
   connect with backoff (:meth:`gateway.engine.transaction.DeviceTransaction.prepare`).
2. *After a push whose outcome is unknown* (:func:`outcome_unknown`: a retryable error — timeout,
   dropped session, refused reconnect — in push, validate, commit or verify) nothing is pushed again
   blindly. :func:`recheck` reconnects (each try an attempt, with backoff), takes the datastore
   lock again, and reads the device's scope (through the driver's ``verify``):

   * equal to the snapshot: nothing was applied (or the device lost it: a confirmed commit
     reverted by its timer or by a restart). Anything staged is discarded and the task goes on
     from the push again;
   * verification passes: the change is there. The task goes on with verify; a confirmed commit
     that took effect is pending under the activation's persist-id, confirmed with it once every
     task is verified (or cancelled with it by a rollback). A device that refuses the lock while
     a confirmed commit is pending (netconfd) is read without it after a commit: holding the
     change, the task carries on without the lock (its pending commit is confirmed by
     persist-id, which needs none); else the lock is asked again at the next attempt;
   * anything else: :class:`~gateway.errors.VerificationError`, and the transaction's one rollback
     brings the device back to the snapshot.

   Each decision is journaled (an event of the task) before the engine acts on it. A device
   whose confirmed commit is kept per session only (no ``persist_id``) and that holds the change
   after the session was lost cannot be confirmed from a new session: that is rolled back too.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from drivers.base import Driver, RetryPolicy
from gateway.errors import AgwError, FencedError, LockDeniedError, Phase, VerificationError
from gateway.incidents import public_text
from gateway.engine.lifecycle import Leg, Work, jitter, retry_delay_s
from gateway.model import RetryOverride

if TYPE_CHECKING:
    from gateway.engine.transaction import DeviceTransaction

UNKNOWN_AFTER = frozenset({Phase.PUSH, Phase.VALIDATE, Phase.COMMIT, Phase.VERIFY})
"""Steps after the push whose lost answer leaves the device's state unknown: something may have been
applied, or (verify) the device may have lost what was (a restart drops a pending confirmed commit)."""

_COMMITTED = frozenset({Phase.COMMIT, Phase.VERIFY})
"""Steps after which this task's own confirmed commit may be pending on the device."""


def effective(profile: RetryPolicy, override: RetryOverride | None) -> RetryPolicy:
    """The policy a task runs with: the activation's fields over its profile's."""
    if override is None:
        return profile
    return replace(profile, **override.given())  # type: ignore[arg-type]


def describe(policy: RetryPolicy) -> str:
    """A policy as shown in an event."""
    if policy.attempts <= 1:
        return "no automatic retry"
    return (f"up to {policy.attempts} attempts, backoff {policy.initial_delay_s:g}-{policy.max_delay_s:g} s, "
            f"within {policy.deadline_s:g} s")


def outcome_unknown(exc: AgwError, phase: Phase) -> bool:
    """A failure after which the device may or may not hold (part of) the change."""
    return exc.retryable and phase in UNKNOWN_AFTER


class Budget:
    """The attempts of one task under one policy (the first attempt starts when it is made)."""

    def __init__(self, policy: RetryPolicy, *, clock: Callable[[], float] = time.monotonic,
                 draw: Callable[[], float] = jitter) -> None:
        self.policy = policy
        self.attempt = 1
        self._clock = clock
        self._draw = draw
        self._first = clock()

    def delay_s(self) -> float | None:
        """The wait before the next attempt; None when the policy allows no more."""
        return retry_delay_s(self.policy, self.attempt, elapsed_s=self._clock() - self._first, draw=self._draw())

    def spend(self) -> int:
        """Start the next attempt; its number."""
        self.attempt += 1
        return self.attempt

    @property
    def shown(self) -> str:
        """``attempt n of m`` of the attempt about to start."""
        return f"attempt {self.attempt + 1} of {self.policy.attempts}"


async def recheck(txn: DeviceTransaction, leg: Leg, work: Work, phase: Phase, exc: AgwError,
                  budget: Budget) -> Phase:
    """Read-then-retry (module docstring, 2) after ``exc`` in ``phase``: the step to go on from
    (:data:`Phase.PUSH` again, or :data:`Phase.VERIFY`). Raises the last error when the policy
    allows no more attempts (or the activation was cancelled), a non-retryable error of the
    reconnect or read, or :class:`VerificationError` when the device holds something else."""
    assert leg.snapshot is not None
    change, snapshot, device = work.change, leg.snapshot, txn.device
    last: AgwError = exc
    while True:
        delay_s = budget.delay_s()
        if delay_s is None or txn.cancelled():
            raise last
        if last is exc:
            txn._failed(exc)  # counted, its session dropped
        await txn.record(leg, phase, message=f"outcome of {phase.value} unknown ({public_text(last)}): reading "
                                             f"{device} in {delay_s:.1f} s before anything is sent again "
                                             f"({budget.shown})")
        await asyncio.sleep(delay_s)
        budget.spend()
        txn.broken = True  # the session that lost the answer is never trusted again
        denied: LockDeniedError | None = None
        try:
            drv = await txn.session()
            if txn.caps.lock and not txn.locked:
                try:
                    await txn.call(Phase.LOCK, drv.lock())
                    txn.locked = True
                except LockDeniedError as exc_lock:
                    if not (phase in _COMMITTED and txn.caps.confirmed_commit and txn.caps.persist_id):
                        raise
                    denied = exc_lock  # our own confirmed commit, pending, may hold it (netconfd does): read
            verification = await txn.call(Phase.VERIFY, drv.verify(change, snapshot))
            now = verification.readback
            if now is None:
                now = await txn.call(Phase.VERIFY, drv.read(snapshot.scope))
        except AgwError as again:
            txn._failed(again)
            if not again.retryable:
                raise
            last = again
            continue
        if denied is not None and not (verification.ok and now.content != snapshot.content):
            last = denied  # not our commit that holds the lock: nothing may be pushed without it
            continue
        break
    others_armed = txn.caps.confirmed_commit and any(lg.prepared_ok for lg in txn.legs if lg is not leg)
    if now.content == snapshot.content:
        if txn.caps.candidate:
            await txn.call(Phase.PUSH, drv.discard())  # nothing staged by the lost session may be committed
        leg.staged = False
        txn.armed = others_armed  # this task's confirmed commit, if it took effect, is gone with it
        await txn.record(leg, phase, message=f"read after the unknown {phase.value}: {device} equals its snapshot, "
                                             f"nothing was applied; pushing again (attempt {budget.attempt} of "
                                             f"{budget.policy.attempts})")
        return Phase.PUSH
    if verification.ok:
        if txn.caps.candidate and phase not in _COMMITTED:
            await txn.call(Phase.PUSH, drv.discard())  # running holds it already: nothing of ours stays staged
        if txn.caps.confirmed_commit and phase in _COMMITTED:
            if not txn.caps.persist_id:
                raise VerificationError(
                    f"after the unknown {phase.value}: {device} holds the change, but its confirmed commit belongs to "
                    "the lost session (no persist-id) and cannot be confirmed; rolling back", device=device,
                    phase=phase, retryable=False)
            txn.armed = True
            how = f"; confirmed commit {txn.persist_id} pending, confirmed with its persist-id once every task is verified"
        else:
            how = ""
        leg.staged = False
        await txn.record(leg, phase, message=f"read after the unknown {phase.value}: {device} holds the change "
                                             f"(verified); carrying on{how}")
        return Phase.VERIFY
    shown = "; ".join(str(m) for m in verification.mismatches[:5])
    await txn.record(leg, phase, message=f"read after the unknown {phase.value}: {device} matches neither its "
                                         f"snapshot nor the change; rolling back")
    raise VerificationError(f"after the unknown {phase.value}: the device matches neither its snapshot nor the change "
                            f"({shown})", device=device, phase=phase, retryable=False)


async def connected(txn: DeviceTransaction, leg: Leg) -> Driver:
    """The session a rollback (of a running activation, or a repair after a restart) starts with:
    a retryable failure to connect is tried again under the task's policy, each try an event."""
    budget = Budget(txn.retry)
    while True:
        try:
            return await txn.session()
        except AgwError as exc:
            delay_s = budget.delay_s() if exc.retryable and not isinstance(exc, FencedError) else None
            if delay_s is None:
                raise
            txn._failed(exc)
            await txn.record(leg, Phase.ROLLBACK, message=f"reconnecting in {delay_s:.1f} s to roll back "
                                                          f"({budget.shown}): {public_text(exc)}")
            await asyncio.sleep(delay_s)
            budget.spend()


__all__ = ["Budget", "UNKNOWN_AFTER", "connected", "describe", "effective", "outcome_unknown", "recheck"]
