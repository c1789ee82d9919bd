"""Running one activation: scheduling only — dependencies, device locks and the atomic barrier.

What happens on a device is :mod:`gateway.engine.transaction`'s: the tasks of one activation on
one device endpoint share one :class:`~gateway.engine.transaction.DeviceTransaction` (one session,
one datastore lock, one confirmed-commit timer)::

    atomic:       every task prepared (up to verified) in dependency order, per device in turn
                  ─► all verified: every transaction confirmed, then completed
                  ─► any failure (or cancel): every transaction rolled back
    independent:  each task is its own transaction, prepared, confirmed or rolled back as soon as
                  its dependencies completed; a task whose dependency did not complete is cancelled

The gateway's own per-device locks (:class:`~gateway.engine.devices.DeviceLocks`) are held for
the whole activation (atomic) or task (independent): one change at a time per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Coroutine, Iterable

from gateway import logs, metrics, tracing
from gateway.engine.context import EngineContext, error_view
from gateway.engine.plan import Plan, PlannedTask
from gateway.engine.lifecycle import Leg, Work, task_transition
from gateway.engine.transaction import DeviceTransaction, planned_connect
from gateway.errors import DeviceBusyError, Phase
from gateway.incidents import public_text
from gateway.model import TaskState
from gateway.results import ActivationState
from gateway.transitions import TaskChanges, Transition

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


@dataclass(eq=False, kw_only=True)
class TaskRun(Leg):
    """A task of the running activation: its leg of a device transaction, and its plan."""

    planned: PlannedTask
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def device(self) -> str:
        return self.planned.spec.device


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


@dataclass(frozen=True)
class _Outcome:
    """A finished task as :func:`gateway.metrics.observe_activation` reads it."""

    run: TaskRun

    @property
    def service(self) -> str:
        return self.run.planned.spec.service

    @property
    def platform(self) -> str:
        return self.run.planned.platform

    @property
    def outcome(self) -> str:
        return self.run.state.value

    @property
    def phases(self) -> Iterable[tuple[str, float]]:
        return ((t.phase, t.duration_ms / 1000.0) for t in self.run.clock.timings)


class ActivationRun:
    def __init__(self, ctx: EngineContext, *, activation_id: str, plan: Plan, attempt: int = 1) -> None:
        self.ctx = ctx
        self.id = activation_id
        self.plan = plan
        self.atomic = plan.request.atomic
        self.attempt = attempt
        self.cancel_event = asyncio.Event()
        self.started = time.monotonic()
        self.tasks = {p.spec.id: TaskRun(id=p.spec.id, planned=p) for p in plan.tasks}
        self.failed = asyncio.Event()  # atomic: some task failed, stop and roll back all
        self._txns: list[DeviceTransaction] = []
        platforms: dict[str, set[str]] = {}
        for p in plan.tasks:
            platforms.setdefault(p.spec.device, set()).add(p.platform)
        self._multi_platform = {d for d, names in platforms.items() if len(names) > 1}

    def _note(self, tr: TaskRun, phase: Phase, *, state: TaskState, message: str,
              task: TaskChanges | None = None) -> None:
        """A transition of a task that announces no device action (not waited for)."""
        self.ctx.note(task_transition(self.id, tr, phase, state=state, message=message, task=task))

    def _transaction(self, tr: TaskRun, *, suffix: str = "") -> DeviceTransaction:
        p = tr.planned
        persist_id = f"agw-{self.id}-{p.spec.device}-{self.attempt}"
        if p.spec.device in self._multi_platform:
            persist_id += f"-{p.platform}"

        txn = DeviceTransaction(self.ctx, activation_id=self.id, device=p.spec.device, caps=p.capabilities,
                                profile=p.profile, connect=planned_connect(self.ctx, p), persist_id=persist_id + suffix,
                                attempt=self.attempt, cancelled=self.cancel_event.is_set, retry=self.plan.request.retry)
        self._txns.append(txn)
        return txn

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
                await _gather_sliced(self._task_span(tr, self._run_one(tr)) for tr in self.tasks.values())
        finally:
            for txn in self._txns:
                await txn.release()
        states = [tr.state for tr in self.tasks.values()]
        final = final_activation_state(states, cancelled=self.cancel_event.is_set())
        await self.ctx.record(Transition(activation_id=self.id, state=final.value, phase="end",
                                         message=f"activation {final.value}", activation_state=final))
        metrics.observe_activation(final.value, time.monotonic() - self.started,
                                   (_Outcome(tr) for tr in self.tasks.values()))
        return final

    # -- atomic: every device transaction confirmed together or rolled back together -------------
    async def _run_atomic(self) -> None:
        txns: dict[tuple[str, str], DeviceTransaction] = {}
        for tr in self.tasks.values():
            key = (tr.device, tr.planned.platform)
            if key not in txns:
                txns[key] = self._transaction(tr)
        of = {tr.id: txns[(tr.device, tr.planned.platform)] for tr in self.tasks.values()}
        async with self._device_locks(list(self.tasks.values())) as locked:
            if not locked:
                return
            await _gather_sliced(self._task_span(tr, self._prepare_when_ready(tr, of[tr.id]))
                                 for tr in self.tasks.values())
            if not self.failed.is_set() and not self.cancel_event.is_set():
                results = await asyncio.gather(*(txn.confirm() for txn in txns.values()), return_exceptions=True)
                if any(isinstance(r, BaseException) for r in results):
                    self.failed.set()
            if self.failed.is_set() or self.cancel_event.is_set():
                await asyncio.gather(*(txn.rollback() for txn in txns.values()))
                for n, tr in enumerate(self.tasks.values(), 1):  # nothing was sent: noted, the end is awaited
                    if tr.state in (TaskState.PENDING, TaskState.ACKNOWLEDGED):
                        why = ("not started: another task of this atomic activation failed" if self.failed.is_set()
                               else "cancelled before it started")
                        self._note(tr, Phase.VALIDATE, state=TaskState.CANCELLED, message=why,
                                   task=TaskChanges(note="not started"))
                    if n % START_SLICE == 0:
                        await asyncio.sleep(0)
            else:
                for txn in txns.values():
                    await txn.release()
                    txn.completed()

    async def _task_span(self, tr: TaskRun, work: Coroutine[Any, Any, None]) -> None:
        """``work`` (one task's) in a span of its own (gateway.tracing), its end state noted."""
        with tracing.span("task", task_id=tr.id, device=tr.device, service=tr.planned.spec.service,
                          platform=tr.planned.platform) as current:
            try:
                await work
            finally:  # atomic: the task's span ends verified (inProgress); confirm is the transaction's
                current.set_attribute("agw.state", tr.state.value)
                current.set_attribute("agw.verified", tr.prepared_ok)

    async def _prepare_when_ready(self, tr: TaskRun, txn: DeviceTransaction) -> None:
        logs.bind(task=tr.id, on_device=tr.device)  # this asyncio task's log records (gateway.logs)
        try:
            for dep in tr.planned.spec.depends_on:
                await self.tasks[dep].done.wait()
            if self.failed.is_set() or self.cancel_event.is_set():
                return
            if not all(self.tasks[d].prepared_ok for d in tr.planned.spec.depends_on):
                return
            async with txn.serial:
                if self.failed.is_set() or self.cancel_event.is_set():  # while queued behind another task
                    return
                ok = await txn.prepare(tr, Work(change=tr.planned.change, profile=tr.planned.profile))
            if not ok:
                self.failed.set()
        finally:
            tr.done.set()

    # -- independent tasks: each task is its own transaction ----------------------------------------
    async def _run_one(self, tr: TaskRun) -> None:
        logs.bind(task=tr.id, on_device=tr.device)  # this asyncio task's log records (gateway.logs)
        try:
            for dep in tr.planned.spec.depends_on:
                await self.tasks[dep].done.wait()
            bad = [d for d in tr.planned.spec.depends_on if self.tasks[d].state != TaskState.COMPLETED]
            if bad or self.cancel_event.is_set():
                why = f"dependency {', '.join(bad)} did not complete" if bad else "cancelled before it started"
                await self.ctx.record(task_transition(self.id, tr, Phase.VALIDATE, state=TaskState.CANCELLED,
                                                      message=why, task=TaskChanges(note=why)))
                return
            txn = self._transaction(tr, suffix=f"-{tr.id}")
            async with self._device_locks([tr]) as locked:
                if not locked:
                    return
                ok = await txn.prepare(tr, Work(change=tr.planned.change, profile=tr.planned.profile))
                if ok and not self.cancel_event.is_set():
                    try:
                        await txn.confirm()
                    except Exception:  # noqa: BLE001 - recorded by confirm
                        ok = False
                    if ok:
                        await txn.release()
                        txn.completed()
                if tr.state != TaskState.COMPLETED:
                    await txn.rollback()
                await txn.release()
        finally:
            tr.done.set()

    @contextlib.asynccontextmanager
    async def _device_locks(self, trs: list[TaskRun]) -> AsyncIterator[bool]:
        """Hold the devices' locks for the block (True). When one stays busy past the engine's
        ``lock_wait_s`` (:class:`DeviceBusyError`), nothing is sent: the tasks of ``trs`` on that
        device fail with the error, the others (of an atomic activation) are cancelled, and the
        block gets False."""
        try:
            lease = await self.ctx.locks.acquire([tr.device for tr in trs], owner=f"activation {self.id}")
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


__all__ = ["ActivationRun", "TaskRun", "final_activation_state"]
