"""An in-memory engine with the facade of gateway.engine.Engine, for tests of the edge and the CLI.

It is our own interface implemented small, not a protocol mock: it keeps activations, events and
fallout in memory, enforces idempotency by request_id, does the engine's semantic checks (known
devices and services, dependency cycles) and can run an activation to an outcome chosen per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator, Sequence

from gateway.errors import (
    ConflictError,
    DeviceErrorInfo,
    FieldViolation,
    InputError,
    NotFoundError,
    StateError,
)
from gateway.journal import paging
from gateway.model import ANONYMOUS, ActivationRequest, Caller, TaskState
from gateway.results import (
    ActivationResult,
    ActivationState,
    ErrorView,
    Event,
    Page,
    PhaseTiming,
    RollbackView,
    SubmitResult,
    TaskResult,
    VerificationView,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _cycle_violations(req: ActivationRequest) -> list[FieldViolation]:
    index = {t.id: i for i, t in enumerate(req.tasks)}
    deps = {t.id: [d for d in t.depends_on if d in index] for t in req.tasks}
    color: dict[str, int] = {}
    out: list[FieldViolation] = []

    def visit(n: str, path: list[str]) -> None:
        color[n] = 1
        for d in deps[n]:
            if color.get(d) == 1:
                cyc = path[path.index(d):] + [d] if d in path else [n, d]
                out.append(FieldViolation(f"tasks[{index[n]}].depends_on", "dependency cycle " + " -> ".join(cyc)))
            elif d not in color:
                visit(d, path + [d])
        color[n] = 2

    for t in req.tasks:
        if t.id not in color:
            visit(t.id, [t.id])
    return out


class MemoryEngine:
    def __init__(
        self,
        *,
        devices: Sequence[str] = ("nc1", "cli1", "snmp1", "r1"),
        services: Sequence[str] = ("interface", "system"),
        auto_run: bool = False,
        failing_devices: Sequence[str] = (),
        fallout_devices: Sequence[str] = (),
    ) -> None:
        self.devices = set(devices)
        self.services = set(services)
        self.auto_run = auto_run
        self.failing_devices = set(failing_devices)
        self.fallout_devices = set(fallout_devices)
        self.fail_next: BaseException | None = None
        self.activations: dict[str, ActivationResult] = {}
        self.requests: dict[str, tuple[ActivationRequest, str]] = {}
        self.submitted: list[ActivationRequest] = []  # every request that created an activation
        self.events: dict[str, list[Event]] = {}
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self._changed = asyncio.Condition()
        self._n = 0
        self._runs: set[asyncio.Task[None]] = set()

    # -- helpers for tests ---------------------------------------------------------------------
    def _enter(self, name: str, *args: object) -> None:
        self.calls.append((name, args))
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    def _now(self) -> datetime:
        return T0 + timedelta(seconds=self._n)

    async def emit(self, activation_id: str, *, task_id: str = "", phase: str = "", state: str, message: str = "") -> None:
        async with self._changed:
            self._n += 1
            evs = self.events[activation_id]
            evs.append(Event(activation_id=activation_id, seq=len(evs) + 1, time=self._now(), task_id=task_id,
                             phase=phase, state=state, message=message))
            a = self.activations[activation_id]
            if task_id:
                tasks = tuple(dataclasses.replace(t, state=TaskState(state)) if t.id == task_id else t for t in a.tasks)
                a = dataclasses.replace(a, tasks=tasks, updated_at=self._now())
            else:
                a = dataclasses.replace(a, state=ActivationState(state), updated_at=self._now())
            self.activations[activation_id] = a
            self._changed.notify_all()

    def _update_task(self, activation_id: str, task_id: str, **changes: object) -> None:
        a = self.activations[activation_id]
        tasks = tuple(dataclasses.replace(t, **changes) if t.id == task_id else t for t in a.tasks)  # type: ignore[arg-type]
        self.activations[activation_id] = dataclasses.replace(a, tasks=tasks)

    async def run(self, activation_id: str) -> None:
        """Take the activation to its outcome: failing devices fail (all rolled back if atomic)."""
        a = self.activations[activation_id]
        await self.emit(activation_id, state="inProgress", phase="plan")
        failed = [t for t in a.tasks if t.device in self.failing_devices]
        fallout = [t for t in a.tasks if t.device in self.fallout_devices]
        for t in a.tasks:
            await self.emit(activation_id, task_id=t.id, phase="push", state="inProgress", message="pushing")
            self._update_task(
                activation_id, t.id, rendered=f"<config>{t.service}</config>", diff="+ description",
                timings=(PhaseTiming(phase="push", started_at=self._now(), duration_ms=1.5),),
            )
        for t in failed:
            self._update_task(activation_id, t.id, error=ErrorView(
                kind="DeviceRejectedError", message="bad value", phase="commit",
                device_error=DeviceErrorInfo(message="bad value", tag="invalid-value", path="/if:interfaces"),
            ))
            await self.emit(activation_id, task_id=t.id, phase="commit", state="failed", message="device rejected")
        for t in a.tasks:
            if t in failed:
                continue
            if fallout:
                if t in fallout:
                    self._update_task(activation_id, t.id, rollback=RollbackView(method="restore", ok=False, reason="device unreachable"))
                    await self.emit(activation_id, task_id=t.id, phase="rollback", state="fallout", message="device unreachable")
                else:
                    await self.emit(activation_id, task_id=t.id, phase="rollback", state="rolledBack")
            elif failed and a.atomic:
                self._update_task(activation_id, t.id, rollback=RollbackView(method="cancel-commit", ok=True))
                await self.emit(activation_id, task_id=t.id, phase="rollback", state="rolledBack", message="verified")
            else:
                self._update_task(activation_id, t.id, verification=VerificationView(ok=True, checked=3))
                await self.emit(activation_id, task_id=t.id, phase="confirm", state="completed")
        final = "fallout" if fallout else ("rolledBack" if failed and a.atomic else "completed")
        await self.emit(activation_id, state=final, message=f"activation {final}")

    # -- the facade ------------------------------------------------------------------------------
    def _check(self, request: ActivationRequest) -> None:
        out: list[FieldViolation] = []
        for i, t in enumerate(request.tasks):
            if t.device not in self.devices:
                out.append(FieldViolation(f"tasks[{i}].device", f"unknown device {t.device!r}"))
            if t.service not in self.services:
                out.append(FieldViolation(f"tasks[{i}].service", f"unknown service {t.service!r}"))
        out.extend(_cycle_violations(request))
        if out:
            raise InputError(out)

    def _result(self, aid: str, request: ActivationRequest, *, dry_run: bool = False) -> ActivationResult:
        return ActivationResult(
            id=aid, request_id=request.request_id, order_ref=request.order_ref, atomic=request.atomic,
            state=ActivationState.ACKNOWLEDGED, created_at=self._now(), updated_at=self._now(), dry_run=dry_run,
            tasks=tuple(
                TaskResult(id=t.id, device=t.device, service=t.service, action=t.action,
                           state=TaskState.ACKNOWLEDGED, depends_on=t.depends_on, platform="netconfd", driver="netconf")
                for t in request.tasks
            ),
        )

    async def submit(self, request: ActivationRequest, *, caller: Caller = ANONYMOUS) -> SubmitResult:
        self._enter("submit", request)
        self._check(request)
        known = self.requests.get(request.request_id)
        if known is not None:
            if known[0] != request:
                raise ConflictError(f"request_id {request.request_id!r} was already used with different content")
            return SubmitResult(activation_id=known[1], created=False)
        aid = f"act-{len(self.activations) + 1}"
        self.requests[request.request_id] = (request, aid)
        self.submitted.append(request)
        self.activations[aid] = self._result(aid, request)
        self.events[aid] = []
        await self.emit(aid, state="acknowledged", message="accepted")
        if self.auto_run:
            run = asyncio.get_running_loop().create_task(self.run(aid))
            self._runs.add(run)
            run.add_done_callback(self._runs.discard)
        return SubmitResult(activation_id=aid, created=True)

    async def dry_run(self, request: ActivationRequest, *, caller: Caller = ANONYMOUS,
                      deadline_s: float | None = None) -> ActivationResult:
        self._enter("dry_run", request)
        self._check(request)
        r = self._result("dry-run", request, dry_run=True)
        tasks = tuple(dataclasses.replace(t, state=TaskState.COMPLETED, rendered="<config/>", diff=f"+ {t.id}") for t in r.tasks)
        return dataclasses.replace(r, state=ActivationState.COMPLETED, tasks=tasks)

    async def watch(self, activation_id: str) -> AsyncIterator[Event]:
        self._enter("watch", activation_id)
        if activation_id not in self.activations:
            raise NotFoundError(f"no activation {activation_id!r}")
        sent = 0
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.events[activation_id]) > sent)
                batch = self.events[activation_id][sent:]
            for ev in batch:
                sent += 1
                yield ev
                if not ev.task_id and ev.state in ("completed", "partial", "failed", "cancelled", "rolledBack", "fallout"):
                    return

    async def get(self, activation_id: str, *, wait_s: float = 0.0) -> ActivationResult:
        self._enter("get", activation_id)
        if activation_id not in self.activations:
            raise NotFoundError(f"no activation {activation_id!r}")

        def ended() -> bool:
            state = self.activations[activation_id].state
            return state.final or state == ActivationState.FALLOUT

        if wait_s > 0 and not ended():
            with contextlib.suppress(asyncio.TimeoutError):
                async with self._changed:
                    await asyncio.wait_for(self._changed.wait_for(ended), timeout=wait_s)
        return self.activations[activation_id]

    async def cancel(self, activation_id: str, *, caller: Caller = ANONYMOUS) -> ActivationResult:
        self._enter("cancel", activation_id)
        a = await self.get(activation_id)
        if a.state.final:
            raise StateError(f"activation {activation_id} is {a.state.value}; it cannot be cancelled")
        await self.emit(activation_id, state="cancelled")
        return self.activations[activation_id]

    async def rollback(self, activation_id: str, *, caller: Caller = ANONYMOUS) -> ActivationResult:
        self._enter("rollback", activation_id)
        a = await self.get(activation_id)
        if a.state is not ActivationState.COMPLETED:
            raise StateError(f"activation {activation_id} is {a.state.value}; only a completed one can be rolled back")
        for t in a.tasks:
            await self.emit(activation_id, task_id=t.id, phase="rollback", state="rolledBack", message="verified")
        await self.emit(activation_id, state="rolledBack")
        return self.activations[activation_id]

    async def list_page(
        self, *, states: Sequence[ActivationState] = (), device: str = "", since: datetime | None = None,
        until: datetime | None = None, page_size: int = 50, page_token: str = "",
    ) -> Page[ActivationResult]:
        self._enter("list", tuple(states), device, since, until, page_size, page_token)
        filters = paging.ListFilters.of(states=states, device=device, since=since, until=until)
        key = lambda a: (paging.micros(a.created_at), a.id)  # noqa: E731
        out = sorted((
            a for a in self.activations.values()
            if (not states or a.state in states)
            and (not device or any(t.device == device for t in a.tasks))
            and (since is None or a.created_at >= since)
            and (until is None or a.created_at < until)
        ), key=key, reverse=True)
        if page_token:  # the journal's own tokens: newest first by (created_at, id)
            after = tuple(paging.decode_token(page_token, "list", filters.digest(), paging.LIST_SHAPE))
            out = [a for a in out if key(a) < after]
        page = out[:page_size]
        return Page(items=tuple(page), resume=tuple(paging.list_resume(filters, a.created_at, a.id) for a in page),
                    more=len(out) > page_size)

    async def fallout_page(self, *, page_size: int = 50, page_token: str = "") -> Page[tuple[str, TaskResult]]:
        self._enter("fallout", page_size, page_token)
        rows = [(paging.micros(a.created_at), a.id, i, a.created_at, t) for a in self.activations.values()
                for i, t in enumerate(a.tasks) if t.state is TaskState.FALLOUT]
        rows.sort(key=lambda r: r[:3])
        if page_token:
            after = tuple(paging.decode_token(page_token, "fallout", paging.digest("fallout", []), paging.FALLOUT_SHAPE))
            rows = [r for r in rows if r[:3] > after]
        page = rows[:page_size]
        return Page(items=tuple((r[1], r[4]) for r in page), resume=tuple(paging.fallout_resume(r[3], r[1], r[2])
                                                                          for r in page), more=len(rows) > page_size)

    def _fallout_task(self, activation_id: str, task_id: str) -> list[TaskResult]:
        a = self.activations.get(activation_id)
        if a is None:
            raise NotFoundError(f"no activation {activation_id!r}")
        tasks = [t for t in a.tasks if t.state is TaskState.FALLOUT and (not task_id or t.id == task_id)]
        if not tasks:
            raise StateError(f"activation {activation_id} has no task {task_id or ''} in fallout".replace("  ", " "))
        return tasks

    async def _settle(self, activation_id: str, task_id: str, state: str, note: str = "") -> ActivationResult:
        for t in self._fallout_task(activation_id, task_id):
            self._update_task(activation_id, t.id, note=note)
            await self.emit(activation_id, task_id=t.id, phase="fallout", state=state, message=note)
        if not any(t.state is TaskState.FALLOUT for t in self.activations[activation_id].tasks):
            await self.emit(activation_id, state="rolledBack")
        return self.activations[activation_id]

    async def retry(self, activation_id: str, task_id: str = "", *, caller: Caller = ANONYMOUS) -> ActivationResult:
        self._enter("retry", activation_id, task_id)
        return await self._settle(activation_id, task_id, "rolledBack", "retried")

    async def force_rollback(self, activation_id: str, task_id: str = "", *, caller: Caller = ANONYMOUS) -> ActivationResult:
        self._enter("force_rollback", activation_id, task_id)
        return await self._settle(activation_id, task_id, "rolledBack", "forced")

    async def resolve(self, activation_id: str, task_id: str, note: str, *, caller: Caller = ANONYMOUS) -> ActivationResult:
        self._enter("resolve", activation_id, task_id, note)
        return await self._settle(activation_id, task_id, "rolledBack", note)


def test_memory_engine_detects_a_cycle() -> None:
    from gateway.model import Action, TaskSpec

    req = ActivationRequest(request_id="r", tasks=(
        TaskSpec(id="a", device="nc1", service="interface", action=Action.CREATE, depends_on=("b",)),
        TaskSpec(id="b", device="nc1", service="interface", action=Action.CREATE, depends_on=("a",)),
    ))
    assert [v.field for v in _cycle_violations(req)] == ["tasks[1].depends_on"]
