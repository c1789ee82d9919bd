"""Running one activation: the change pipeline per task, the atomic barrier, verified rollback.

Per task::

    connect ─► [lock] ─► snapshot ─► push ─► [commit with revert timer + persist-id] ─► verify
            ─► (atomic: wait until every task of the activation is verified)
            ─► [confirm] ─► [unlock] ─► completed

Tasks of one activation that share a device share one *device transaction* (:class:`DeviceTxn`):
one session, one datastore lock, one confirmed-commit timer (persist-id), so they are confirmed
or reverted together. In an atomic activation all device transactions are confirmed only after
every task is verified; any failure rolls back every device transaction. Otherwise each task is
its own transaction.

Rollback is always verified: after cancel-commit / discard / restore the device is read again
and compared with the pre-change snapshot. Equal → ``rolledBack``; different or unreachable →
``fallout`` (a person decides: retry, force-rollback or resolve).

Every transition is written to the journal *before* the action it announces, with what recovery
needs (snapshot, persist-id, what is pending on the device).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Coroutine, Iterable

from drivers.base import Capabilities, Driver, Snapshot
from gateway.engine.context import EngineContext, PhaseClock, error_view, utcnow, verification_view
from gateway.engine.devices import session_is_suspect
from gateway.engine.plan import Plan, PlannedTask
from gateway.errors import AgwError, DeviceBusyError, Phase, VerificationError
from gateway.incidents import public_text
from gateway.model import TaskState
from gateway.results import ActivationState, RollbackView
from gateway.transitions import Pending, RecoveryChanges, TaskChanges, Transition

log = logging.getLogger(__name__)

START_SLICE = 8
"""Tasks of one activation started per event-loop turn: the first steps of a thousand tasks in one
turn would keep every other call waiting (a health check among them) for a tenth of a second."""


async def _gather_sliced(coros: Iterable[Coroutine[Any, Any, Any]]) -> list[Any]:
    """``asyncio.gather`` of ``coros``, started :data:`START_SLICE` at a time, one slice per turn
    of the event loop (the order they start in is kept)."""
    started: list[asyncio.Future[Any]] = []
    pending = iter(coros)
    try:
        for n, coro in enumerate(pending, 1):
            started.append(asyncio.ensure_future(coro))
            if n % START_SLICE == 0:
                await asyncio.sleep(0)
    except BaseException:
        for future in started:
            future.cancel()
        for coro in pending:  # never started: close them
            coro.close()
        raise
    return await asyncio.gather(*started)


class CancelRequested(Exception):
    """Raised at a phase boundary when the activation was cancelled."""


@dataclass
class TaskRun:
    planned: PlannedTask
    state: TaskState = TaskState.ACKNOWLEDGED
    clock: PhaseClock = field(default_factory=PhaseClock)
    snapshot: Snapshot | None = None
    touched: bool = False  # something may have been sent that changes the device
    staged: bool = False  # loaded into a candidate, not yet committed
    done: asyncio.Event = field(default_factory=asyncio.Event)
    prepared_ok: bool = False

    @property
    def id(self) -> str:
        return self.planned.spec.id

    @property
    def device(self) -> str:
        return self.planned.spec.device


@dataclass
class DeviceTxn:
    """The tasks of one activation on one device that are confirmed or reverted together."""

    device: str
    persist_id: str
    tasks: list[TaskRun] = field(default_factory=list)
    driver: Driver | None = None
    locked: bool = False
    pending_confirm: bool = False
    broken: bool = False  # the session failed: reconnect before rolling back
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # tasks of the transaction, one at a time

    def caps(self) -> Capabilities:
        return self.tasks[0].planned.capabilities


def final_activation_state(states: list[TaskState], *, cancelled: bool) -> ActivationState:
    if any(s == TaskState.FALLOUT for s in states):
        return ActivationState.FALLOUT
    if states and all(s == TaskState.COMPLETED for s in states):
        return ActivationState.COMPLETED
    if cancelled:
        return ActivationState.CANCELLED
    if any(s == TaskState.COMPLETED for s in states):
        return ActivationState.PARTIAL
    if any(s == TaskState.ROLLED_BACK for s in states):
        return ActivationState.ROLLED_BACK
    if all(s == TaskState.CANCELLED for s in states):
        return ActivationState.CANCELLED
    return ActivationState.FAILED


class ActivationRun:
    def __init__(self, ctx: EngineContext, *, activation_id: str, plan: Plan, attempt: int = 1) -> None:
        self.ctx = ctx
        self.id = activation_id
        self.plan = plan
        self.atomic = plan.request.atomic
        self.attempt = attempt
        self.cancel_event = asyncio.Event()
        self.tasks = {p.spec.id: TaskRun(planned=p) for p in plan.tasks}
        self.failed = asyncio.Event()  # atomic: some task failed, stop and roll back all

    # -- journal helpers ---------------------------------------------------------------------
    async def _rec(self, tr: TaskRun, phase: Phase, *, state: TaskState | None = None, message: str = "",
                   task: TaskChanges | None = None, recovery: RecoveryChanges | None = None) -> None:
        await self.ctx.record(self._transition(tr, phase, state, message, task, recovery))

    def _note(self, tr: TaskRun, phase: Phase, *, state: TaskState | None = None, message: str = "",
              task: TaskChanges | None = None, recovery: RecoveryChanges | None = None) -> None:
        """Like :meth:`_rec` for a transition that announces no device action: not waited for
        (see :meth:`EngineContext.note`)."""
        self.ctx.note(self._transition(tr, phase, state, message, task, recovery))

    def _transition(self, tr: TaskRun, phase: Phase, state: TaskState | None, message: str,
                    task: TaskChanges | None, recovery: RecoveryChanges | None) -> Transition:
        """A task transition; a new ``state`` is applied to ``tr`` too."""
        if state is not None:
            tr.state = state
            task = TaskChanges(state=state) if task is None else dataclasses.replace(task, state=state)
        return Transition(activation_id=self.id, task_id=tr.id, phase=phase, state=(state or tr.state).value,
                          message=message, task=task, recovery=recovery)

    def _persist_id(self, device: str) -> str:
        return f"agw-{self.id}-{device}-{self.attempt}"

    def _check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise CancelRequested()

    # -- entry point -------------------------------------------------------------------------
    async def run(self) -> ActivationState:
        self.ctx.note(Transition(activation_id=self.id, state=ActivationState.IN_PROGRESS.value, phase="start",
                                 message=f"{len(self.tasks)} task(s), atomic={self.atomic}",
                                 activation_state=ActivationState.IN_PROGRESS))
        for n, tr in enumerate(self.tasks.values(), 1):
            if tr.planned.spec.depends_on:
                self._note(tr, Phase.VALIDATE, state=TaskState.PENDING,
                           message="waiting for " + ", ".join(tr.planned.spec.depends_on))
            if n % START_SLICE == 0:
                await asyncio.sleep(0)  # a thousand-task activation: let the loop answer in between
        try:
            if self.atomic:
                await self._run_atomic()
            else:
                await self._run_independent()
        finally:
            await self._release_all()
        states = [tr.state for tr in self.tasks.values()]
        final = final_activation_state(states, cancelled=self.cancel_event.is_set())
        await self.ctx.record(Transition(activation_id=self.id, state=final.value, phase="end",
                                         message=f"activation {final.value}", activation_state=final))
        return final

    # -- atomic: every device transaction confirmed together or reverted together ------------
    async def _run_atomic(self) -> None:
        txns: dict[str, DeviceTxn] = {}
        for tr in self.tasks.values():
            txn = txns.setdefault(tr.device, DeviceTxn(device=tr.device, persist_id=self._persist_id(tr.device)))
            txn.tasks.append(tr)
        self._txns = txns
        async with self._device_locks(list(self.tasks.values()), txns) as locked:
            if not locked:
                return
            await _gather_sliced(self._prepare_when_ready(tr, txns[tr.device]) for tr in self.tasks.values())
            if not self.failed.is_set() and not self.cancel_event.is_set():
                results = await asyncio.gather(*(self._confirm(txn) for txn in txns.values()), return_exceptions=True)
                if any(isinstance(r, BaseException) for r in results):
                    self.failed.set()
            if self.failed.is_set() or self.cancel_event.is_set():
                await asyncio.gather(*(self._rollback_txn(txn) for txn in txns.values()))
                for n, tr in enumerate(self.tasks.values(), 1):  # nothing was sent: noted, the end is awaited
                    if tr.state in (TaskState.PENDING, TaskState.ACKNOWLEDGED):
                        self._note(tr, Phase.VALIDATE, state=TaskState.CANCELLED,
                                   message="not started: another task of this atomic activation failed"
                                   if self.failed.is_set() else "cancelled before it started",
                                   task=TaskChanges(note="not started"))
                    if n % START_SLICE == 0:
                        await asyncio.sleep(0)
            else:
                for txn in txns.values():
                    await self._unlock(txn)
                    for tr in txn.tasks:
                        tr.clock.stop()
                        self._note(tr, Phase.CONFIRM, state=TaskState.COMPLETED, message="verified and confirmed",
                                   task=TaskChanges(timings=tr.clock.snapshot()),
                                   recovery=RecoveryChanges(pending=Pending.NONE))

    async def _prepare_when_ready(self, tr: TaskRun, txn: DeviceTxn) -> None:
        try:
            for dep in tr.planned.spec.depends_on:
                await self.tasks[dep].done.wait()
            if self.failed.is_set() or self.cancel_event.is_set():
                return
            if not all(self.tasks[d].prepared_ok for d in tr.planned.spec.depends_on):
                return
            async with txn.lock:
                if self.failed.is_set() or self.cancel_event.is_set():  # while queued behind another task
                    return
                ok = await self._prepare(tr, txn)
            if not ok:
                self.failed.set()
        finally:
            tr.done.set()

    # -- independent tasks: each task is its own transaction ------------------------------------
    async def _run_independent(self) -> None:
        self._txns = {}

        async def one(tr: TaskRun) -> None:
            try:
                for dep in tr.planned.spec.depends_on:
                    await self.tasks[dep].done.wait()
                bad = [d for d in tr.planned.spec.depends_on if self.tasks[d].state != TaskState.COMPLETED]
                if bad or self.cancel_event.is_set():
                    why = f"dependency {', '.join(bad)} did not complete" if bad else "cancelled before it started"
                    await self._rec(tr, Phase.VALIDATE, state=TaskState.CANCELLED, message=why,
                                    task=TaskChanges(note=why))
                    return
                txn = DeviceTxn(device=tr.device, persist_id=f"{self._persist_id(tr.device)}-{tr.id}", tasks=[tr])
                self._txns[tr.id] = txn
                async with self._device_locks([tr], [tr.device]) as locked:
                    if not locked:
                        return
                    ok = await self._prepare(tr, txn)
                    if ok and not self.cancel_event.is_set():
                        try:
                            await self._confirm(txn)
                        except Exception:  # noqa: BLE001 - recorded by _confirm
                            ok = False
                        if ok:
                            await self._unlock(txn)
                            tr.clock.stop()
                            self._note(tr, Phase.CONFIRM, state=TaskState.COMPLETED,
                                       message="verified and confirmed",
                                       task=TaskChanges(timings=tr.clock.snapshot()),
                                       recovery=RecoveryChanges(pending=Pending.NONE))
                    if tr.state != TaskState.COMPLETED:
                        await self._rollback_txn(txn)
                    await self._release(txn)
            finally:
                tr.done.set()

        await _gather_sliced(one(tr) for tr in self.tasks.values())

    @contextlib.asynccontextmanager
    async def _device_locks(self, trs: list[TaskRun], devices: Iterable[str]) -> AsyncIterator[bool]:
        """Hold the devices' locks for the block (True). When one stays busy past the engine's
        ``lock_wait_s`` (:class:`DeviceBusyError`), nothing is sent: the tasks of ``trs`` on that
        device fail with the error, the others (of an atomic activation) are cancelled, and the
        block gets False."""
        try:
            lease = await self.ctx.locks.acquire(devices, owner=f"activation {self.id}")
        except DeviceBusyError as exc:
            log.info("activation %s: %s", self.id, exc)
            for n, tr in enumerate(trs, 1):  # nothing was sent: noted (the activation's end is awaited)
                if tr.device == exc.device:
                    self._note(tr, Phase.LOCK, state=TaskState.FAILED, message=f"failed: {public_text(exc)}",
                               task=TaskChanges(error=error_view(exc, phase=Phase.LOCK)))
                else:
                    why = f"not started: device {exc.device} of this atomic activation stayed busy"
                    self._note(tr, Phase.LOCK, state=TaskState.CANCELLED, message=why, task=TaskChanges(note=why))
                if n % START_SLICE == 0:
                    await asyncio.sleep(0)
            yield False
            return
        try:
            yield True
        finally:
            lease.release()

    # -- the pipeline up to "verified" ---------------------------------------------------------
    async def _session(self, txn: DeviceTxn, tr: TaskRun) -> Driver:
        if txn.driver is None or not txn.driver.is_open or txn.broken:
            if txn.driver is not None:
                await self.ctx.pool.discard(txn.driver)
                txn.driver = None
            p = tr.planned
            txn.driver = await self.ctx.pool.get(
                device=p.spec.device, platform=p.platform, address=p.address, port=p.port,
                credentials_ref=p.credentials_ref, profile=p.profile,
                known_hosts=p.known_hosts, host_key_check=p.host_key_check,
            )
            txn.broken = False
        return txn.driver

    async def _prepare(self, tr: TaskRun, txn: DeviceTxn) -> bool:
        """Run one task up to verified. False (and the task recorded as failing) on any error."""
        p = tr.planned
        caps = p.capabilities
        phase = Phase.CONNECT
        try:
            self._check_cancel()
            self._note(tr, Phase.CONNECT, state=TaskState.IN_PROGRESS,
                       message=f"{p.profile.driver} {p.address}:{p.port}: connect, lock, snapshot")
            tr.clock.start(Phase.CONNECT)
            drv = await self._session(txn, tr)
            # lock and snapshot only read: they are announced by the connect event above
            if caps.lock and not txn.locked:
                phase = Phase.LOCK
                tr.clock.start(phase)
                await drv.lock()
                txn.locked = True
            phase = Phase.SNAPSHOT
            tr.clock.start(phase)
            tr.snapshot = await drv.read(drv.scope_of(p.change))
            self._check_cancel()
            phase = Phase.PUSH
            tr.clock.start(phase)
            pending = Pending.STAGED if caps.candidate else Pending.APPLIED
            await self._rec(tr, phase, recovery=RecoveryChanges(
                snapshot=tr.snapshot, pending=pending, phase=phase.value, persist_id=txn.persist_id, attempt=self.attempt))
            tr.touched = True
            tr.staged = caps.candidate
            await drv.load(p.change)
            if caps.validate:
                phase = Phase.VALIDATE
                tr.clock.start(phase)
                await self._rec(tr, phase)
                await drv.validate(p.change)
            if caps.candidate:
                phase = Phase.COMMIT
                tr.clock.start(phase)
                if caps.confirmed_commit:
                    timeout_s = p.profile.confirm_timeout_s
                    await self._rec(tr, phase, message=f"confirmed commit, device reverts in {timeout_s} s unless confirmed",
                                    recovery=RecoveryChanges(pending=Pending.CONFIRMED_COMMIT,
                                                             persist_id=txn.persist_id))
                    txn.pending_confirm = True
                    await drv.commit(confirm_timeout_s=timeout_s, persist_id=txn.persist_id)
                else:
                    await self._rec(tr, phase, recovery=RecoveryChanges(pending=Pending.APPLIED))
                    await drv.commit()
                tr.staged = False
            phase = Phase.VERIFY
            tr.clock.start(phase)
            verification = await drv.verify(p.change, tr.snapshot)
            after = verification.readback or await drv.read(tr.snapshot.scope)
            diff = drv.diff(tr.snapshot, after)
            self._note(tr, phase, message="verified" if verification.ok else "verification failed",
                       task=TaskChanges(verification=verification_view(verification), diff=diff),
                       recovery=RecoveryChanges(after=after))
            if not verification.ok:
                shown = "; ".join(str(m) for m in verification.mismatches[:5])
                unexpected = sum(1 for m in verification.mismatches if m.unexpected)
                what = (f"{len(verification.mismatches)} difference(s), {unexpected} the change did not name"
                        if unexpected else f"{len(verification.mismatches)} mismatch(es)")
                raise VerificationError(
                    f"read-back is not the snapshot with the change applied ({what}): {shown}",
                    device=tr.device, phase=Phase.VERIFY,
                )
            tr.prepared_ok = True
            return True
        except CancelRequested:
            await self._rec(tr, phase, message="cancel requested", task=TaskChanges(note="cancelled by request"))
            return False
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, then rolled back
            if isinstance(exc, AgwError) and exc.device is None:
                exc.device = tr.device
            if session_is_suspect(exc):
                txn.broken = True
            log.info("task %s of %s failed in %s: %s", tr.id, self.id, phase.value, exc)
            tr.clock.stop()
            await self._rec(tr, phase, message=f"failed: {public_text(exc)}",
                            task=TaskChanges(error=error_view(exc, phase=phase), timings=tr.clock.snapshot()))
            return False

    async def _confirm(self, txn: DeviceTxn) -> None:
        if not txn.pending_confirm or txn.driver is None:
            return
        tr = txn.tasks[0]
        tr.clock.start(Phase.CONFIRM)
        await self._rec(tr, Phase.CONFIRM, message=f"confirming commit {txn.persist_id}")
        try:
            await txn.driver.confirm(persist_id=txn.persist_id)
            txn.pending_confirm = False
        except Exception as exc:  # noqa: BLE001
            if session_is_suspect(exc):
                txn.broken = True
            await self._rec(tr, Phase.CONFIRM, message=f"confirm failed: {public_text(exc)}",
                            task=TaskChanges(error=error_view(exc, phase=Phase.CONFIRM)))
            raise

    async def _unlock(self, txn: DeviceTxn) -> None:
        if txn.locked and txn.driver is not None and not txn.broken:
            try:
                await txn.driver.unlock()
            except Exception as exc:  # noqa: BLE001 - the session is dropped instead
                log.warning("unlock of %s failed: %s", txn.device, exc)
                txn.broken = True
        txn.locked = False

    async def _release(self, txn: DeviceTxn) -> None:
        await self._unlock(txn)
        if txn.broken and txn.driver is not None:
            await self.ctx.pool.discard(txn.driver)
            txn.driver = None

    async def _release_all(self) -> None:
        for txn in getattr(self, "_txns", {}).values():
            await self._release(txn)

    # -- verified rollback ------------------------------------------------------------------------
    async def _rollback_txn(self, txn: DeviceTxn) -> None:
        """Undo everything this transaction did on its device, then verify each task's scope."""
        touched = [tr for tr in txn.tasks if tr.touched]
        if not touched:
            for tr in txn.tasks:
                if tr.state == TaskState.IN_PROGRESS:
                    tr.clock.stop()
                    await self._rec(tr, Phase.ROLLBACK, state=TaskState.FAILED,
                                    message="failed before any change reached the device",
                                    task=TaskChanges(timings=tr.clock.snapshot()))
            return
        caps = txn.caps()
        method = "none"
        reason = ""
        first = touched[0]
        await self._rec(first, Phase.ROLLBACK, message="rolling back")
        try:
            drv = await self._session(txn, first)
            if caps.candidate and any(tr.staged for tr in touched):
                await drv.discard()  # edits still in the candidate never reach running
                method = "discard"
            applied = [tr for tr in touched if not tr.staged]
            if txn.pending_confirm:
                await self._rec(first, Phase.ROLLBACK, message=f"cancelling confirmed commit {txn.persist_id}")
                reverted = await drv.cancel_commit(persist_id=txn.persist_id)
                txn.pending_confirm = False
                method = "cancel-commit" if reverted else "device-timer"
            elif applied:
                for tr in reversed(applied):
                    if tr.snapshot is not None:
                        await drv.restore(tr.snapshot, tr.planned.change.undo)
                method = "restore"
        except Exception as exc:  # noqa: BLE001
            if session_is_suspect(exc):
                txn.broken = True
            reason = f"rollback ({method}) failed: {public_text(exc)}"
            if txn.pending_confirm:
                timeout_s = first.planned.profile.confirm_timeout_s
                reason += (f"; the device's confirmed-commit timer (persist-id {txn.persist_id}) reverts the change "
                           f"by itself within {timeout_s} s; retry once the device answers")
        await self._verify_rollback(txn, touched, method=method, reason=reason)

    async def _verify_rollback(self, txn: DeviceTxn, touched: list[TaskRun], *, method: str, reason: str) -> None:
        for tr in touched:
            tr.clock.start(Phase.ROLLBACK_VERIFY)
            view: RollbackView
            if reason or tr.snapshot is None:
                view = RollbackView(method=method, ok=False, reason=reason or "no snapshot was taken")
            else:
                try:
                    drv = await self._session(txn, tr)
                    now = await drv.read(tr.snapshot.scope)
                    if now.content == tr.snapshot.content:
                        view = RollbackView(method=method, ok=True)
                    else:
                        view = RollbackView(method=method, ok=False, reason="device differs from the pre-change snapshot",
                                            diff=drv.diff(tr.snapshot, now))
                except Exception as exc:  # noqa: BLE001
                    if session_is_suspect(exc):
                        txn.broken = True
                    view = RollbackView(method=method, ok=False, reason=f"could not re-read the device: {public_text(exc)}")
            tr.clock.stop()
            state = TaskState.ROLLED_BACK if view.ok else TaskState.FALLOUT
            await self._rec(tr, Phase.ROLLBACK_VERIFY, state=state,
                            message="rolled back, device equals its snapshot" if view.ok else f"fallout: {view.reason}",
                            task=TaskChanges(rollback=view, timings=tr.clock.snapshot()),
                            recovery=RecoveryChanges(pending=Pending.NONE if view.ok else (
                                Pending.CONFIRMED_COMMIT if txn.pending_confirm else Pending.APPLIED)))


__all__ = ["ActivationRun", "CancelRequested", "final_activation_state", "utcnow"]
