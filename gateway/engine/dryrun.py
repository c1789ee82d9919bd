"""DryRun: render and diff against the live devices. Nothing is changed and nothing journaled.

A DryRun must never stall the gateway or hold up real work:

* **One deadline for the whole DryRun** (``timeout_s``: the engine's ``dry_run_timeout_s``, or
  the caller's gRPC deadline if shorter). When it passes, the answer goes out at once: a task
  still talking to its device gets a timeout error, the tasks after it on that device say they
  were not tried. Its device work is cancelled in the background, its session closed (a NETCONF
  device drops the session's candidate edits and datastore lock with it), and only then is the
  device's lock released, so no activation ever shares a half-used session.
* **Devices in parallel**: each device's tasks run in request order, different devices at once;
  one device that never answers does not hold up the others.
* **Short lock waits**: each task takes its device's lock for its own reads only
  (``lock_wait_s``, a few seconds at most); a device busy for longer makes that task's result an
  error saying so (:class:`~gateway.errors.DeviceBusyError`). The lock is released between tasks,
  so an activation waiting for the device goes first: a DryRun delays a real activation by no
  more than one task's own reads.

What a task does on its device is :meth:`DeviceTransaction.preview
<gateway.engine.transaction.DeviceTransaction.preview>`: under the datastore lock where the device
has one, read the scope, then the driver's ``preview`` (NETCONF stages the change in the candidate,
reads it and discards it; CLI and SNMP compute the diff locally); the same session, timeout guard
and lock rules as an activation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, Collection

from gateway.engine.context import EngineContext, error_view, utcnow
from gateway.engine.lifecycle import Work
from gateway.engine.plan import Plan, PlannedTask
from gateway.engine.transaction import DeviceTransaction, planned_connect
from gateway.errors import DeviceBusyError, DeviceTimeoutError, Phase
from gateway.model import TaskState
from gateway.render.masking import Redactor
from gateway.results import ActivationResult, ActivationState, TaskResult

log = logging.getLogger(__name__)

OWNER = "a DryRun"


@dataclass
class _Group:
    """One device's tasks of a DryRun and where they are."""

    device: str
    tasks: list[PlannedTask]
    current: PlannedTask | None = None
    txn: DeviceTransaction | None = None


def _result(p: PlannedTask, *, diff: str = "", exc: BaseException | None = None, note: str = "") -> TaskResult:
    """A dry run's task result, the task's secret parameter values masked in every text."""
    redact = Redactor(p.secrets)
    error = None if exc is None else error_view(exc, phase=Phase.DIFF)
    if error is not None and redact:
        error = dataclasses.replace(error, message=redact(error.message))
    return TaskResult(
        id=p.spec.id, device=p.spec.device, service=p.spec.service, action=p.spec.action,
        state=TaskState.COMPLETED if exc is None else TaskState.FAILED, depends_on=p.spec.depends_on,
        platform=p.platform, driver=p.profile.driver, rendered=redact(p.change.content), diff=redact(diff),
        error=error, note=redact(note), parameters=p.parameters,
    )


class DryRun:
    def __init__(self, ctx: EngineContext, plan: Plan, *, deadline: float, timeout_s: float, lock_wait_s: float,
                 spawn: Callable[..., Any]) -> None:
        """``deadline``: the event loop's time by which the answer is due; ``spawn`` runs the
        clean-up of cut-off device work in the background (the engine's task set)."""
        self.ctx = ctx
        self.plan = plan
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.lock_wait_s = lock_wait_s
        self.spawn = spawn
        self.results: dict[str, TaskResult] = {}

    async def run(self) -> ActivationResult:
        request = self.plan.request
        started = utcnow()
        groups: dict[str, _Group] = {}
        for p in sorted(self.plan.tasks, key=lambda p: p.index):
            groups.setdefault(p.spec.device, _Group(p.spec.device, [])).tasks.append(p)
        work = {asyncio.ensure_future(self._device(g)): g for g in groups.values()}
        left = self.deadline - asyncio.get_running_loop().time()
        try:
            _, late = await asyncio.wait(set(work), timeout=max(0.0, left)) if work else (set(), set())
        except asyncio.CancelledError:  # the caller went away: stop the device work too
            for task in work:
                task.cancel()
            self.spawn(self._clean_up(set(work)), name="dry-run-clean-up")
            raise
        for task in late:
            self._cut_off(work[task])
            task.cancel()
        if late:
            self.spawn(self._clean_up(late), name="dry-run-clean-up")
        for task in work:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("a DryRun's device work failed", exc_info=task.exception())
        results = [self.results.get(p.spec.id) or _result(p, exc=RuntimeError("no result"))
                   for p in sorted(self.plan.tasks, key=lambda p: p.index)]
        ok = all(r.state == TaskState.COMPLETED for r in results)
        state = ActivationState.COMPLETED if ok else ActivationState.FAILED
        return ActivationResult(id="", request_id=request.request_id, order_ref=request.order_ref,
                                atomic=request.atomic, state=state, created_at=started, updated_at=utcnow(),
                                dry_run=True, tasks=tuple(results))

    def _cut_off(self, group: _Group) -> None:
        """Results for the tasks of a device whose work the deadline cut off."""
        for p in group.tasks:
            if p.spec.id in self.results:
                continue
            if p is group.current:
                why = f"no answer within the DryRun's deadline ({self.timeout_s:g} s); nothing was changed"
            else:
                why = f"not tried: the DryRun's deadline ({self.timeout_s:g} s) passed first"
            exc = DeviceTimeoutError(why, device=group.device, phase=Phase.DIFF)
            self.results[p.spec.id] = _result(p, exc=exc)

    async def _clean_up(self, late: Collection[asyncio.Future[None]]) -> None:
        await asyncio.gather(*late, return_exceptions=True)

    async def _device(self, group: _Group) -> None:
        loop = asyncio.get_running_loop()
        for p in group.tasks:
            group.current = None
            wait_s = max(0.0, min(self.lock_wait_s, self.deadline - loop.time()))
            try:
                lease = await self.ctx.locks.acquire([group.device], owner=OWNER, wait_s=wait_s)
            except DeviceBusyError as exc:
                self.results[p.spec.id] = _result(p, exc=exc)
                continue
            group.current = p
            try:
                self.results[p.spec.id] = await self._task(group, p)
            except asyncio.CancelledError:  # the deadline: the session may be mid-RPC, drop it
                if group.txn is not None and group.txn.driver is not None:
                    await self.ctx.pool.discard(group.txn.driver)
                    group.txn.driver = None
                raise
            finally:
                lease.release()

    async def _task(self, group: _Group, p: PlannedTask) -> TaskResult:
        txn = group.txn = DeviceTransaction(self.ctx, activation_id="", device=p.spec.device, caps=p.capabilities,
                                            profile=p.profile, connect=planned_connect(self.ctx, p))
        try:
            diff = await txn.preview(Work(change=p.change, profile=p.profile))
        except Exception as exc:  # noqa: BLE001 - the task's result says what failed
            return _result(p, exc=exc)
        finally:
            await txn.release()  # a failed session is dropped, not given back
        return _result(p, diff=diff)


__all__ = ["DryRun"]
