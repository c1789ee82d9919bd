"""One device transaction: the per-device change lifecycle, and the only rollback.

A :class:`DeviceTransaction` is one activation's work on one device: one session, one datastore
lock, one confirmed-commit timer (persist-id) for all its tasks, which are confirmed or rolled
back together. Each task runs the steps its device's effective capabilities call for
(:func:`~gateway.engine.lifecycle.steps_for`; what is missing is emulated and named in the task's
result, :func:`~gateway.engine.lifecycle.emulations`)::

    per task:  connect ─► [lock] ─► snapshot ─► push ─► [validate] ─► [commit, with timer + persist-id] ─► verify
    then:      confirm (when a timer is armed) ─► unlock                  every task verified
    or:        rollback ─► unlock                                          anything failed or was cancelled

The transaction itself moves through :class:`TxnState` (a move not in :data:`MOVES` is a bug)::

    OPEN ─► PREPARING ─► PREPARED ─► CONFIRMED
     │          │            │
     └──────────┴────────────┴─► ROLLING_BACK ─► ROLLED_BACK | FALLOUT

Every step writes one typed :class:`~gateway.transitions.Transition` before it acts on the device;
what a restart needs (snapshot, persist-id, what is pending) is durable first.

**The one rollback** (:meth:`DeviceTransaction.rollback`) serves a failed or cancelled activation,
crash recovery, the Rollback RPC and the fallout actions (:class:`Mode`), with one set of rules:

1. take the device's datastore lock first (when it has one and the transaction does not hold it)
   — after cancelling, by its persist-id, a confirmed commit a dead session left pending, which a
   device may hold against the lock (netconfd refuses ``<lock>`` while one is pending);
2. discard what is staged in a candidate; cancel a pending confirmed commit (by persist-id when
   the device keeps it across sessions, else only on the session that armed it);
3. for each scope the tasks touched: read the device; equal to the *earliest* snapshot of that
   scope → nothing to restore. Otherwise, when the mode allows it (:func:`may_restore`), restore
   each task's snapshot, newest first, with its explicit undo, then read again;
4. compare with the earliest snapshot: equal → ``rolledBack``; different, unreadable, or any
   exception on the way (recorded, never lost) → ``fallout``, for a person to decide;
5. unlock.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import logging
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from drivers.base import Capabilities, ChangeSet, DeviceProfile, Driver, RetryPolicy
from drivers import checks
from gateway.engine.context import EngineContext, error_view, verification_view
from gateway.engine import retries, rollback_lock
from gateway.engine.devices import session_is_suspect
from gateway.engine.plan import PlannedTask
from gateway import metrics, tracing
from gateway.errors import (AgwError, DeviceTimeoutError, FencedError, LockDeniedError, Phase, StateError,
                            VerificationError)
from gateway.incidents import public_text
from gateway.model import RetryOverride, TaskState
from gateway.results import RollbackView
from gateway.engine.lifecycle import (BEFORE_PUSH, MOVES, CancelRequested, Connect, Leg, Mode, TxnState, Work,
                                      emulations, may_restore, retry_delay_s, steps_for, task_transition)
from gateway.transitions import Pending, RecoveryChanges, TaskChanges, Transition

log = logging.getLogger(__name__)

T = TypeVar("T")

OVERRUN_GRACE_S = 2.0
"""A driver operation still running this long after its own timeout is cancelled by the engine
(a plugin that ignores its timeouts must not hold a device, and the activation, forever)."""


def planned_connect(ctx: EngineContext, p: PlannedTask) -> Connect:
    """How a transaction for the planned task ``p`` opens (or reuses) its session."""

    async def connect() -> Driver:
        return await ctx.pool.get(
            device=p.spec.device, platform=p.platform, address=p.address, port=p.port,
            credentials_ref=p.credentials_ref, profile=p.profile,
            known_hosts=p.known_hosts, host_key_check=p.host_key_check)

    return connect


class DeviceTransaction:
    """One activation's work on one device (see the module docstring)."""

    def __init__(self, ctx: EngineContext, *, activation_id: str, device: str, caps: Capabilities,
                 profile: DeviceProfile, connect: Connect, persist_id: str = "", attempt: int = 1,
                 cancelled: Callable[[], bool] = lambda: False, retry: RetryOverride | None = None) -> None:
        self.ctx = ctx
        self.activation_id = activation_id
        self.device = device
        self.caps = caps
        self.profile = profile
        self.connect = connect
        self.persist_id = persist_id
        self.attempt = attempt
        self.cancelled = cancelled
        self.override = retry  # the activation's own retry policy, journaled with each task it starts
        self.retry = retries.effective(profile.retry, retry)
        self.state = TxnState.OPEN
        self.legs: list[Leg] = []
        self.driver: Driver | None = None
        self.locked = False
        self.armed = False  # a confirmed commit awaits confirm (its timer runs on the device)
        self.timer_until: float | None = None  # a commit the device did not cancel reverts by then (monotonic)
        self.broken = False  # the session failed: reconnect before rolling back
        self.steps = steps_for(caps)
        self.emulated = emulations(caps)
        self.serial = asyncio.Lock()  # the transaction's tasks, one at a time

    # -- state and journal ------------------------------------------------------------------------
    def _move(self, to: TxnState) -> None:
        if to not in MOVES[self.state]:
            raise StateError(f"device transaction on {self.device}: {self.state.value} -> {to.value} is not a move",
                             device=self.device)
        self.state = to

    def transition(self, leg: Leg, phase: Phase | str, **kw: Any) -> Transition:
        return task_transition(self.activation_id, leg, phase, **kw)

    async def record(self, leg: Leg, phase: Phase | str, **kw: Any) -> None:
        """Journal a transition and wait for it: it announces an action on the device."""
        await self.ctx.record(self.transition(leg, phase, **kw))

    def note(self, leg: Leg, phase: Phase | str, **kw: Any) -> None:
        """Journal a transition that announces no device action (see :meth:`EngineContext.note`)."""
        self.ctx.note(self.transition(leg, phase, **kw))

    # -- session and guarded calls ------------------------------------------------------------------
    async def session(self) -> Driver:
        if self.driver is None or not self.driver.is_open or self.broken:
            if self.driver is not None:
                await self.ctx.pool.discard(self.driver)
                self.driver = None
            self.driver = await self.connect()
            self.broken = False
            self.locked = False  # a new session holds no lock
        return self.driver

    def _limit_s(self, phase: Phase) -> float:
        t = self.profile.timeouts
        if phase in (Phase.COMMIT, Phase.CONFIRM):
            return t.commit_s
        if phase == Phase.ROLLBACK:  # a restore may load and commit
            return t.operation_s + t.commit_s
        return t.operation_s

    async def call(self, phase: Phase, op: Awaitable[T], *, extra_s: float = 0.0) -> T:
        """A driver operation, cancelled when it overruns its own timeout (plus ``extra_s``: a
        verify's service checks may wait) by :data:`OVERRUN_GRACE_S` (the session is dropped: it
        may be mid-request). Refused, the device untouched, once this gateway has lost the
        journal's claim (another gateway may be running the work)."""
        if not self.ctx.journal.holds_claim():
            if inspect.iscoroutine(op):
                op.close()
            raise FencedError(f"{phase.value} not sent: this gateway lost the journal's lease", device=self.device,
                              phase=phase)
        limit_s = self._limit_s(phase) + extra_s + OVERRUN_GRACE_S
        try:
            return await asyncio.wait_for(op, timeout=limit_s)
        except asyncio.TimeoutError as exc:
            self.broken = True
            raise DeviceTimeoutError(f"{phase.value} did not finish within {limit_s:g} s",
                                     device=self.device, phase=phase) from exc

    def _failed(self, exc: BaseException) -> None:
        """A step raised: drop the session unless the error says it is still sound."""
        metrics.DEVICE_ERRORS.labels(type(exc).__name__ if isinstance(exc, AgwError) else "internal",
                                     self.profile.platform).inc()
        if isinstance(exc, AgwError):
            if exc.device is None:
                exc.device = self.device
            if session_is_suspect(exc):
                self.broken = True
        else:  # a driver bug: nothing says what the session is in
            self.broken = True

    # -- one task, up to verified ---------------------------------------------------------------------
    async def prepare(self, leg: Leg, work: Work) -> bool:
        """Run one task's steps up to verified. False (the task recorded as failing) on any error."""
        self.legs.append(leg)
        self._move(TxnState.PREPARING)
        leg.undo = work.change.undo
        phase = Phase.CONNECT
        budget = retries.Budget(self.retry)
        try:
            n = 0
            while n < len(self.steps):
                phase = self.steps[n]
                if self.cancelled():
                    raise CancelRequested()
                leg.clock.start(phase)
                try:
                    with tracing.span(phase.value, task_id=leg.id, attempt=budget.attempt):
                        await self._step(phase, leg, work)
                except AgwError as exc:
                    if leg.touched and retries.outcome_unknown(exc, phase):  # read the device, never push blindly
                        n = self.steps.index(await retries.recheck(self, leg, work, phase, exc, budget))
                        continue
                    delay_s = self._retry_delay_s(exc, phase, leg, budget)
                    if delay_s is None:
                        raise
                    self._failed(exc)  # a suspect session is dropped: the next attempt reconnects
                    await self.record(leg, phase, message=f"retrying in {delay_s:.1f} s ({budget.shown}): "
                                                          f"{public_text(exc)}")
                    await asyncio.sleep(delay_s)
                    budget.spend()
                    n = 0  # from connect again; a datastore lock taken stays taken
                    continue
                n += 1
            leg.prepared_ok = True
            if all(lg.prepared_ok for lg in self.legs):
                self._move(TxnState.PREPARED)
            return True
        except CancelRequested:
            await self.record(leg, phase, message="cancel requested", task=TaskChanges(note="cancelled by request"))
            return False
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, then rolled back
            self._failed(exc)
            log.info("task %s of %s failed in %s: %s", leg.id, self.activation_id, phase.value, exc)
            leg.clock.stop()
            await self.record(leg, phase, message=f"failed: {public_text(exc)}",
                              task=TaskChanges(error=error_view(exc, phase=phase), timings=leg.clock.snapshot()))
            return False

    def _retry_delay_s(self, exc: AgwError, phase: Phase, leg: Leg, budget: retries.Budget) -> float | None:
        """The wait before trying again, or None: only a retryable error, only before anything was
        sent (:data:`BEFORE_PUSH`), only as the task's policy allows (:mod:`gateway.engine.retries`)."""
        if not exc.retryable or phase not in BEFORE_PUSH or leg.touched or self.cancelled():
            return None
        return budget.delay_s()

    async def _step(self, phase: Phase, leg: Leg, work: Work) -> None:
        change = work.change
        if phase == Phase.CONNECT:
            # connect, lock and snapshot only read: this event announces them
            self.note(leg, phase, state=TaskState.IN_PROGRESS,
                      message=f"{self.profile.driver}: connect, lock, snapshot ({retries.describe(self.retry)})",
                      task=TaskChanges(emulated=self.emulated),
                      recovery=None if self.override is None else RecoveryChanges(retry=self.override))
            await self.session()
        elif phase == Phase.LOCK:
            if not self.locked:
                drv = await self.session()
                await self.call(phase, drv.lock())
                self.locked = True
        elif phase == Phase.SNAPSHOT:
            drv = await self.session()
            leg.snapshot = await self.call(phase, drv.read(drv.scope_of(change)))
        elif phase == Phase.PUSH:
            pending = Pending.STAGED if self.caps.candidate else Pending.APPLIED
            await self.record(leg, phase, recovery=RecoveryChanges(
                snapshot=leg.snapshot, undo=leg.undo, pending=pending, phase=phase.value,
                persist_id=self.persist_id, attempt=self.attempt))
            leg.touched = True
            leg.staged = self.caps.candidate
            await self.call(phase, (await self.session()).load(change))
        elif phase == Phase.VALIDATE:
            await self.record(leg, phase)
            await self.call(phase, (await self.session()).validate(change))
        elif phase == Phase.COMMIT:
            await self._commit(leg)
        elif phase == Phase.VERIFY:
            await self._verify(leg, change)

    async def _commit(self, leg: Leg) -> None:
        drv = await self.session()
        if self.caps.confirmed_commit:
            timeout_s = self.profile.confirm_timeout_s
            await self.record(leg, Phase.COMMIT,
                              message=f"confirmed commit, device reverts in {timeout_s} s unless confirmed",
                              recovery=RecoveryChanges(pending=Pending.CONFIRMED_COMMIT, persist_id=self.persist_id))
            self.armed = True
            await self.call(Phase.COMMIT, drv.commit(confirm_timeout_s=timeout_s, persist_id=self.pid()))
        else:
            await self.record(leg, Phase.COMMIT, recovery=RecoveryChanges(pending=Pending.APPLIED))
            await self.call(Phase.COMMIT, drv.commit())
        leg.staged = False

    def pid(self) -> str | None:
        """The persist-id to give the device (None when it keeps a pending commit per session)."""
        return self.persist_id if self.caps.persist_id else None

    async def _verify(self, leg: Leg, change: ChangeSet) -> None:
        assert leg.snapshot is not None
        drv = await self.session()
        snapshot = leg.snapshot
        verification = await self.call(Phase.VERIFY, drv.verify(change, snapshot),
                                       extra_s=checks.allowance_for(change, self.profile))
        after = verification.readback
        if after is None:
            after = await self.call(Phase.VERIFY, drv.read(snapshot.scope))
        leg.after = after
        self.note(leg, Phase.VERIFY, message="verified" if verification.ok else "verification failed",
                  task=TaskChanges(verification=verification_view(verification),
                                   diff=drv.diff(snapshot, after)),
                  recovery=RecoveryChanges(after=after))
        if not verification.ok:
            shown = "; ".join(str(m) for m in verification.mismatches[:5])
            unexpected = sum(1 for m in verification.mismatches if m.unexpected)
            what = (f"{len(verification.mismatches)} difference(s), {unexpected} the change did not name"
                    if unexpected else f"{len(verification.mismatches)} mismatch(es)")
            raise VerificationError(f"read-back is not the snapshot with the change applied ({what}): {shown}",
                                    device=self.device, phase=Phase.VERIFY)

    # -- the end: confirm, or roll back ------------------------------------------------------------------
    @tracing.traced("confirm")
    async def confirm(self) -> None:
        """Disarm the device's revert timer (every task verified). Raises (recorded) on failure."""
        if self.armed:
            leg = self.legs[0]
            leg.clock.start(Phase.CONFIRM)
            await self.record(leg, Phase.CONFIRM, message=f"confirming commit {self.persist_id}")
            try:
                await self.call(Phase.CONFIRM, (await self.session()).confirm(persist_id=self.pid()))
            except Exception as exc:  # noqa: BLE001
                self._failed(exc)
                await self.record(leg, Phase.CONFIRM, message=f"confirm failed: {public_text(exc)}",
                                  task=TaskChanges(error=error_view(exc, phase=Phase.CONFIRM)))
                raise
            self.armed = False
        self._move(TxnState.CONFIRMED)

    def completed(self) -> None:
        """Record every task completed (after :meth:`confirm`; nothing left on the device)."""
        for leg in self.legs:
            leg.clock.stop()
            self.note(leg, Phase.CONFIRM, state=TaskState.COMPLETED, message="verified and confirmed",
                      task=TaskChanges(timings=leg.clock.snapshot()), recovery=RecoveryChanges(pending=Pending.NONE))

    @tracing.traced("rollback")
    async def rollback(self, mode: Mode = Mode.FAILURE, *, legs: Sequence[Leg] | None = None,
                       pending: Pending = Pending.NONE) -> None:
        """The one verified rollback (module docstring) of ``legs`` (default: this transaction's
        tasks). ``pending``: what the journal says is outstanding on the device, for a
        transaction rebuilt from it (a running one knows: staged legs, an armed timer)."""
        legs = list(self.legs if legs is None else legs)
        self._move(TxnState.ROLLING_BACK)
        if pending == Pending.CONFIRMED_COMMIT and self.caps.confirmed_commit and self.caps.persist_id:
            self.armed = True  # rebuilt from the journal: the timer is addressable by its persist-id
        for leg in legs:  # nothing was sent for these: nothing to roll back
            if leg.touched or leg.state.final or leg.state == TaskState.FALLOUT:
                continue
            leg.clock.stop()
            if self.cancelled():
                await self.record(leg, Phase.ROLLBACK, state=TaskState.CANCELLED,
                                  message="cancelled before any change reached the device",
                                  task=TaskChanges(note="cancelled by request", timings=leg.clock.snapshot()))
            elif leg.state == TaskState.IN_PROGRESS:
                await self.record(leg, Phase.ROLLBACK, state=TaskState.FAILED,
                                  message="failed before any change reached the device",
                                  task=TaskChanges(timings=leg.clock.snapshot()))
        touched = [leg for leg in legs if leg.touched and leg.snapshot is not None]
        if not touched:
            self._move(TxnState.ROLLED_BACK)
            return
        label = "rollback" if mode == Mode.FAILURE else mode.value
        first = touched[0]
        await self.record(first, Phase.ROLLBACK if mode != Mode.RECOVER else Phase.RECOVER,
                          message=f"{label}: bringing {self.device} back to its pre-change snapshot")
        views = await self._bring_back(touched, mode, label, pending)
        for leg in touched:
            leg.clock.start(Phase.ROLLBACK_VERIFY)
            leg.clock.stop()
            view = views[leg.id]
            await self.record(
                leg, Phase.ROLLBACK_VERIFY, state=TaskState.ROLLED_BACK if view.ok else TaskState.FALLOUT,
                message="rolled back, device equals its snapshot" if view.ok else f"fallout: {view.reason}",
                task=TaskChanges(rollback=view, timings=leg.clock.snapshot()),
                recovery=RecoveryChanges(pending=Pending.NONE if view.ok else (
                    Pending.CONFIRMED_COMMIT if self.armed else Pending.APPLIED)))
        self._move(TxnState.ROLLED_BACK if all(v.ok for v in views.values()) else TxnState.FALLOUT)

    async def _bring_back(self, legs: list[Leg], mode: Mode, label: str, pending: Pending) -> dict[str, RollbackView]:
        """Rules 1-4 of the module docstring; every outcome is a :class:`RollbackView` per leg."""
        methods: list[str] = []
        try:
            drv = await retries.connected(self, legs[0])
            if self.armed and not self.locked:
                # rebuilt after a restart: a device with another session's confirmed commit pending
                # refuses the lock (netconfd: in-use) until the commit is cancelled by its persist-id
                await rollback_lock.cancel_timer(self, drv, legs[0], methods)
            if self.caps.lock and not self.locked:
                await rollback_lock.lock_for_rollback(self, drv, legs[0])
            if self.caps.candidate and (pending == Pending.STAGED or any(leg.staged for leg in legs)):
                await self.call(Phase.ROLLBACK, drv.discard())  # edits in the candidate never reach running
                for leg in legs:
                    leg.staged = False
                methods.append("discard")
            if self.armed:
                await rollback_lock.cancel_timer(self, drv, legs[0], methods)
        except Exception as exc:  # noqa: BLE001 - recorded as every leg's reason
            self._failed(exc)
            reason = f"{label} ({'+'.join(methods) or 'none'}) failed: {public_text(exc)}"
            if self.armed:
                reason += (f"; the device's confirmed-commit timer (persist-id {self.persist_id}) reverts the change "
                           f"by itself within {self.profile.confirm_timeout_s} s; retry once the device answers")
            return {leg.id: RollbackView(method="+".join(methods) or "none", ok=False, reason=reason,
                                         retryable=_passing(exc)) for leg in legs}
        views: dict[str, RollbackView] = {}
        for group in _by_scope(legs).values():
            views.update(await self._restore_scope(group, mode, label, list(methods)))
        return views

    async def _restore_scope(self, group: list[Leg], mode: Mode, label: str, methods: list[str]) -> dict[str, RollbackView]:
        """Rules 3 and 4 for the legs of one scope (in activation order)."""
        earliest = group[0].snapshot
        assert earliest is not None
        after = group[-1].after  # what the device held after the scope's last change (None: never verified)
        try:
            drv = await self.session()
            try:
                now = await self.call(Phase.ROLLBACK_VERIFY, drv.read(earliest.scope))
            except Exception as exc:  # noqa: BLE001
                self._failed(exc)
                return _all(group, RollbackView(method="+".join(methods) or "none", ok=False,
                                                reason=f"could not re-read the device: {public_text(exc)}",
                                                retryable=_passing(exc)))
            if now.content != earliest.content:
                if not may_restore(mode, now=now, after=after):
                    return _all(group, RollbackView(
                        method="+".join(methods) or "none", ok=False,
                        reason="the device changed since the activation (it matches neither the snapshot nor "
                               "what the gateway pushed); force-rollback overwrites it with the snapshot",
                        diff=drv.diff(earliest, now)))
                for leg in reversed(group):
                    assert leg.snapshot is not None
                    await self.call(Phase.ROLLBACK, drv.restore(leg.snapshot, leg.undo))
                methods.append("restore")
                try:
                    now = await self.call(Phase.ROLLBACK_VERIFY, drv.read(earliest.scope))
                except Exception as exc:  # noqa: BLE001
                    self._failed(exc)
                    return _all(group, RollbackView(method="+".join(methods), ok=False,
                                                    reason=f"could not re-read the device: {public_text(exc)}",
                                                    retryable=_passing(exc)))
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            return _all(group, RollbackView(method="+".join(methods) or "none", ok=False,
                                            reason=f"{label} ({'+'.join(methods) or 'none'}) failed: {public_text(exc)}",
                                            retryable=_passing(exc)))
        method = "+".join(methods) or "none"
        if now.content == earliest.content:
            return _all(group, RollbackView(method=method, ok=True))
        return _all(group, RollbackView(method=method, ok=False, reason="device differs from the pre-change snapshot",
                                        diff=drv.diff(earliest, now)))

    # -- DryRun ---------------------------------------------------------------------------------------
    @tracing.traced("preview")
    async def preview(self, work: Work) -> str:
        """What the device would make of ``work.change``, nothing changed: under the datastore lock
        (when the device has one), read the scope and ask the driver's preview (NETCONF stages the
        change in the candidate and discards it). Call :meth:`release` after."""
        try:
            drv = await self.session()
            if self.caps.lock and not self.locked:
                await self.call(Phase.LOCK, drv.lock())
                self.locked = True
            snapshot = await self.call(Phase.DIFF, drv.read(drv.scope_of(work.change)))
            return await self.call(Phase.DIFF, drv.preview(work.change, snapshot))
        except Exception as exc:
            self._failed(exc)
            raise

    async def release(self) -> None:
        """Unlock (when the session is sound) and give the session back, or drop a broken one."""
        if self.locked and self.driver is not None and not self.broken:
            try:
                await self.call(Phase.UNLOCK, self.driver.unlock())
            except Exception as exc:  # noqa: BLE001 - the session is dropped instead
                log.warning("unlock of %s failed: %s", self.device, public_text(exc))
                self.broken = True
        self.locked = False
        if self.broken and self.driver is not None:
            await self.ctx.pool.discard(self.driver)
            self.driver = None


def _by_scope(legs: Sequence[Leg]) -> dict[str, list[Leg]]:
    groups: dict[str, list[Leg]] = {}
    for leg in legs:
        assert leg.snapshot is not None
        groups.setdefault(leg.snapshot.scope, []).append(leg)
    return groups


def _all(legs: Sequence[Leg], view: RollbackView) -> dict[str, RollbackView]:
    return {leg.id: view for leg in legs}



def _passing(exc: BaseException) -> bool:
    """A rollback failure that may pass by itself (unreachable, timed out, lock denied)."""
    return isinstance(exc, AgwError) and exc.retryable and not isinstance(exc, FencedError)

__all__ = ["CancelRequested", "Connect", "DeviceTransaction", "Leg", "MOVES", "Mode", "OVERRUN_GRACE_S", "TxnState", "Work",
           "planned_connect",
           "emulations", "may_restore", "steps_for", "task_transition"]
