"""The engine's facade: what the gRPC edge and the CLI call.

``submit`` plans (validates and renders everything), journals the activation and returns its id
at once; the work runs in the background. ``start`` recovers every activation the journal says
was in flight when the gateway last stopped.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import socket
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Callable, Sequence

from drivers.base import Driver
from drivers.registry import Registry
from gateway import logs, metrics, offload, tracing
from gateway.engine import retention as retention_policy
from gateway.engine.context import EngineContext, utcnow
from gateway.engine.devices import DeviceLocks, SessionPool
from gateway.engine.dryrun import DryRun
from gateway.engine.events import EventBus
from gateway.engine.feed import ResultFeed
from gateway.engine.healing import Healer
from gateway.engine.limits import CallerSlots, EngineSettings
from gateway.engine import allocation
from gateway.engine.plan import Plan, make_plan
from gateway.engine.lifecycle import Mode
from gateway.engine.repair import Repairer
from gateway.engine.replicas import ClusterDevices, Replicas
from gateway.engine.runner import ActivationRun
from gateway.errors import AgwError, StateError
from gateway.journal.base import Journal
from gateway.incidents import incident, public_text
from gateway.model import ANONYMOUS, ActivationRequest, Caller, TaskState
from gateway.results import ActivationResult, ActivationState, Event, Page, ResultEvent, SubmitResult, TaskResult
from gateway.transitions import Transition

log = logging.getLogger(__name__)

AUDIT_ACTIONS = {Mode.RETRY: "retry", Mode.FORCE: "force-rollback"}
"""The audit trail's name of each fallout action (events of that phase carry the caller)."""

GET_POLL_S = 0.1
"""How often a waiting ``get`` re-reads the journal for an activation that runs elsewhere."""

DRY_RUN_ANSWER_S = 0.25
"""A DryRun with a caller's deadline answers this long before it (at most a tenth of it): time
for the answer to travel."""


class Engine:
    def __init__(
        self,
        *,
        journal: Journal,
        inventory: Any,
        profiles: Any,
        templates: Any,
        credentials: Any,
        registry: Registry[Driver],
        select_endpoint: Any,
        session_idle_s: float = 300.0,
        settings: EngineSettings | None = None,
        retention: timedelta = timedelta(0),
        retention_interval_s: float = retention_policy.DEFAULT_INTERVAL_S,
    ) -> None:
        self.journal = journal
        self.inventory = inventory
        self.profiles = profiles
        self.templates = templates
        self.select_endpoint = select_endpoint
        self.registry = registry
        self.session_idle_s = session_idle_s
        self.retention = retention  # 0: keep everything (else: see gateway.engine.retention)
        self.retention_interval_s = retention_interval_s
        self._retainer: asyncio.Task[None] | None = None
        pool = SessionPool(registry=registry, resolve_credential=credentials.resolve)
        self.settings = settings or EngineSettings()
        s = self.settings
        offload.configure(s.plan_workers)
        locks = DeviceLocks(wait_s=s.lock_wait_s, max_rounds=s.lock_max_rounds)
        self.ctx = EngineContext(journal=journal, pool=pool, locks=locks, bus=EventBus())
        self.activation_slots = CallerSlots(what="activations", limit=s.max_activations_per_caller,
                                            retry_after_s=s.activation_retry_after_s)
        self.dry_run_slots = CallerSlots(what="DryRuns", limit=s.max_dry_runs_per_caller,
                                         retry_after_s=s.dry_run_retry_after_s)
        self._slot_of: dict[str, Caller] = {}  # activation id -> the caller whose slot it holds
        self.results = ResultFeed(journal, poll_interval_s=s.results_poll_interval_s,
                                  max_per_caller=s.max_subscriptions_per_caller)
        self.ctx.bus.listen(self.results.heard)
        self.repairer = Repairer(self.ctx, inventory=inventory, profiles=profiles,
                                 capabilities_for=self.capabilities_for)
        self._runs: dict[str, ActivationRun | None] = {}  # None: a rollback is running
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running: dict[str, asyncio.Task[Any]] = {}  # activation id -> its run or rollback
        self._fallout_open: int | None = None
        self._healer: asyncio.Task[None] | None = None
        self.lost_claim = asyncio.Event()
        """Set when this engine lost the journal's claim (PostgreSQL lease): it has stopped its work."""
        self.replicas: Replicas | None = None
        """Set on a journal shared by replicas (PostgreSQL): takeover, device leases, remote events."""

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.journal.start()
        try:  # this engine recovers what the journal says is in flight: no other may run it meanwhile
            await self.journal.claim(holder=f"agw on {socket.gethostname()} pid {os.getpid()}",
                                     on_lost=self._lost_claim)
        except BaseException:
            await self.journal.close()
            raise
        cluster = self.journal.cluster
        if cluster is not None:  # replicas: recover what this one adopts or takes over, and keep looking
            devices = ClusterDevices(cluster, spawn=lambda coro: self._spawn(coro, name="device-leases"))
            self.ctx.locks.cluster = devices
            self.replicas = Replicas(self, cluster, devices)
            await self.replicas.start()
        else:
            await self.recover()
        self._spawn_reaper()
        if self.settings.self_healing_interval_s > 0:
            healer = Healer(self, interval_s=self.settings.self_healing_interval_s,
                            max_attempts=self.settings.self_healing_max_attempts)
            self._healer = asyncio.create_task(healer.run(), name="self-healing")
        if self.retention > timedelta(0):
            self._retainer = asyncio.create_task(
                retention_policy.keep_pruning(self.journal, keep=self.retention, interval_s=self.retention_interval_s),
                name="journal-retention")

    def _spawn_reaper(self) -> None:
        """Close pooled sessions nobody used for ``session_idle_s`` (devices limit sessions)."""

        async def reap() -> None:
            while True:
                await asyncio.sleep(max(1.0, self.session_idle_s / 4))
                await self.ctx.pool.close_idle(idle_s=self.session_idle_s, busy=self.ctx.locks.busy)

        self._reaper = asyncio.create_task(reap(), name="session-reaper")

    def close_streams(self) -> None:
        """End every open Watch and Subscribe stream now (:class:`ShuttingDownError`), so that a
        shutdown does not wait its grace period for callers that never hang up."""
        self.ctx.bus.close()
        self.results.close()

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """Let running activations finish for ``grace_s``, then stop them. Whatever is cut off
        is recovered at the next start (and NETCONF devices revert by themselves meanwhile)."""
        self.close_streams()
        if self._healer is not None:  # no new self-healing retry from here on
            self._healer.cancel()
            await asyncio.gather(self._healer, return_exceptions=True)
        if self.replicas is not None:  # no new takeover (what is left of this one is taken over)
            await self.replicas.stop()
        try:
            await asyncio.wait_for(self.wait_idle(), timeout=grace_s)
        except asyncio.TimeoutError:
            log.warning("%d activation(s) still running after %.0f s; stopping them", len(self._tasks), grace_s)
        reaper = getattr(self, "_reaper", None)
        if reaper is not None:
            reaper.cancel()

        if self._retainer is not None:
            self._retainer.cancel()
            await asyncio.gather(self._retainer, return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ctx.pool.close_all()
        await self.journal.close()

    # -- metrics (gateway/metrics.py) ---------------------------------------------------------------
    def gauges(self) -> dict[str, Any]:
        busy, queues = self.ctx.locks.gauges()
        return {"running": len(self._runs), "busy": busy, "queues": queues, "sessions": len(self.ctx.pool),
                "fallout": self._fallout_open}

    async def _count_repair(self, activation_id: str, mode: Mode) -> None:
        metrics.REPAIRS.labels(mode.value, (await self.journal.get(activation_id)).state.value).inc()

    async def refresh_gauges(self) -> None:
        """Count what is read from the journal for the gauges (tasks in fallout)."""
        self._fallout_open = await self.journal.fallout_count()

    def _lost_claim(self) -> None:
        """The journal's lease is gone: another gateway may take this one's work over at any moment.
        Abandon it at once, as a crash would (no rollback: the device calls and journal writes
        are refused anyway; the new active gateway recovers it from the journal)."""
        self.lost_claim.set()
        for t in list(self._tasks):
            t.cancel()

    async def wait_idle(self) -> None:
        """Wait for every background activation (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Any, *, name: str, activation_id: str = "") -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if activation_id:
            self._running[activation_id] = task

            def forget(t: asyncio.Task[Any]) -> None:
                if self._running.get(activation_id) is t:
                    del self._running[activation_id]

            task.add_done_callback(forget)
        return task

    async def recover(self, ids: Sequence[str] | None = None) -> None:
        """Roll back every activation that was in flight when the gateway stopped (``ids``: those
        taken over from a dead replica)."""
        for activation_id in (await self.journal.unfinished()) if ids is None else ids:
            if activation_id in self._runs:
                continue
            self._runs[activation_id] = None  # busy here meanwhile
            try:
                await self._recover_one(activation_id)
            finally:
                self._runs.pop(activation_id, None)

    async def _recover_one(self, activation_id: str) -> None:
        result = await self.journal.get(activation_id)
        log.warning("recovering activation %s (state %s)", activation_id, result.state.value)
        try:
            with logs.bound(activation=activation_id):
                await self.repairer.repair(result, mode=Mode.RECOVER)
            await self._count_repair(activation_id, Mode.RECOVER)
        except StateError:
            states = [t.state for t in result.tasks]
            final = ActivationState.CANCELLED if all(s != TaskState.COMPLETED for s in states) else ActivationState.PARTIAL
            await self.ctx.record(Transition(activation_id=activation_id, phase="recover", state=final.value,
                                             message="gateway restarted; nothing was in flight",
                                             activation_state=final))

    # -- activation RPCs -----------------------------------------------------------------------------
    def plan(self, request: ActivationRequest) -> Plan:
        return make_plan(request, inventory=self.inventory, profiles=self.profiles, templates=self.templates,
                         select_endpoint=self.select_endpoint, driver_for=self.driver_for)

    async def _off_loop(self, fn: Any, request: ActivationRequest) -> Any:
        """``fn(request)`` on a planning thread when the request has more than
        ``plan_inline_max_tasks`` tasks (validating and rendering a thousand tasks takes a third
        of a second: the loop must keep answering meanwhile), else right here."""
        s = self.settings
        if not s.plan_off_loop or len(request.tasks) <= s.plan_inline_max_tasks:
            return fn(request)
        return await offload.run(fn, request)

    def _plan_with_results(self, request: ActivationRequest) -> tuple[Plan, list[TaskResult]]:
        """The plan and the activation's first task results (what the journal creates)."""
        plan = self.plan(request)  # raises InputError with every violation
        redact = plan.redact
        tasks = [
            TaskResult(id=p.spec.id, device=p.spec.device, service=p.spec.service, action=p.spec.action,
                       state=TaskState.ACKNOWLEDGED, depends_on=p.spec.depends_on, platform=p.platform,
                       driver=p.profile.driver, rendered=redact(p.change.content), parameters=p.parameters)
            for p in sorted(plan.tasks, key=lambda p: p.index)
        ]
        return plan, tasks

    def driver_for(self, profile: Any) -> type[Driver]:
        """The driver class a profile names (its module imported on first use)."""
        return self.registry.get(profile.driver)

    def capabilities_for(self, profile: Any) -> Any:
        """The capabilities the engine plans with: the profile's, narrowed by its driver."""
        return self.driver_for(profile).capabilities_for(profile)

    async def submit(self, request: ActivationRequest, *, caller: Caller = ANONYMOUS) -> SubmitResult:
        """Plan, journal (``caller`` is the submitter: the idempotency key is its request id) and
        start the activation in the background.

        A caller has at most ``max_activations_per_caller`` activations running here; one more
        is :class:`ResourceExhaustedError` before any planning, except the retry of a request id
        the caller already submitted (it is no new activation)."""
        slots = self.activation_slots
        reserved = not slots.full(caller)
        if reserved:
            slots.take(caller)
        elif await self.journal.find_by_request_id(request.request_id, submitted_by=caller.identity) is None:
            raise slots.exhausted(caller)
        try:
            prepared = await allocation.prepare(request, self.journal)  # resource pools: docs/pools.md
            plan, tasks = await self._off_loop(self._plan_with_results, request if prepared is None else prepared.probe)
            pools = allocation.Submission(prepared, plan, self._plan_with_results)
            # the journal enforces idempotency: same request_id and content → the existing activation,
            # different content → ConflictError
            activation_id, created = await self.journal.create_activation(  # serialized by the journal's writer
                activation_id=str(uuid.uuid4()), request_id=request.request_id, fingerprint=pools.fingerprint,
                order_ref=request.order_ref, atomic=request.atomic, dry_run=False, tasks=tasks, created_at=utcnow(),
                submitted_by=caller.identity, retry=request.retry.given() if request.retry else None,
                **pools.journal_kwargs(),
            )
            plan = pools.plan  # with the values allocated in that transaction
        except BaseException:
            if reserved:
                slots.give_back(caller)
            raise
        if created and not reserved:  # found above, then gone (pruned): it counts all the same
            slots.take(caller, force=True)
        elif reserved and not created:
            slots.give_back(caller)
        if created:
            self._slot_of[activation_id] = caller
            if plan.redact:  # every text journaled for it masks them (gateway.render.masking)
                self.ctx.redactors[activation_id] = plan.redact
            run = ActivationRun(self.ctx, activation_id=activation_id, plan=plan)
            self._runs[activation_id] = run
            self._spawn(self._run(run), name=f"activation-{activation_id}", activation_id=activation_id)
        return SubmitResult(activation_id=activation_id, created=created)

    async def _run(self, run: ActivationRun) -> None:
        logs.bind(activation=run.id)
        try:
            with tracing.span("activation", activation_id=run.id, tasks=len(run.tasks),
                              atomic=run.atomic) as current:
                current.set_attribute("agw.outcome", (await run.run()).value)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the activation
            log.error("activation %s crashed inside the engine (incident %s)", run.id, incident(exc))
            try:
                await self.ctx.record(Transition(activation_id=run.id, phase="end", state=ActivationState.FALLOUT.value,
                                                 message=f"the engine stopped on an error: {public_text(exc)}",
                                                 activation_state=ActivationState.FALLOUT))
            except AgwError:
                log.exception("could not record the failure of %s", run.id)
        finally:
            self._runs.pop(run.id, None)
            self.ctx.redactors.pop(run.id, None)
            slot = self._slot_of.pop(run.id, None)
            if slot is not None:
                self.activation_slots.give_back(slot)

    async def dry_run(self, request: ActivationRequest, *, caller: Caller = ANONYMOUS,
                      deadline_s: float | None = None) -> ActivationResult:
        """Render and diff against the live devices; nothing is changed and nothing journaled
        (:mod:`gateway.engine.dryrun`). The answer comes within ``dry_run_timeout_s``, or a little
        before ``deadline_s`` (the caller's remaining gRPC deadline) if that is sooner; at most
        ``max_dry_runs_per_caller`` of a caller's DryRuns run at once (one more:
        :class:`ResourceExhaustedError`)."""
        s = self.settings
        timeout_s = s.dry_run_timeout_s
        if deadline_s is not None:
            timeout_s = max(0.0, min(timeout_s, deadline_s - min(DRY_RUN_ANSWER_S, deadline_s / 10)))
        deadline = asyncio.get_running_loop().time() + timeout_s
        self.dry_run_slots.take(caller)
        try:
            plan = await self._off_loop(self.plan, await allocation.dry_run_request(request, self.journal))
            return await DryRun(self.ctx, plan, deadline=deadline, timeout_s=timeout_s,
                                lock_wait_s=s.dry_run_lock_wait_s, spawn=self._spawn).run()
        finally:
            self.dry_run_slots.give_back(caller)

    async def watch(self, activation_id: str) -> AsyncIterator[Event]:
        if activation_id not in self._runs:
            await self.journal.get(activation_id)  # NotFoundError before the stream starts

        async def past() -> list[Event]:
            return await self.journal.events(activation_id)

        async def is_over() -> bool:
            if activation_id in self._runs:  # running here: not over, no need to read the journal
                return False
            state = (await self.journal.get(activation_id)).state
            return state.final or state == ActivationState.FALLOUT

        async for event in self.ctx.bus.stream(activation_id, past=past, is_over=is_over):
            yield event

    def subscribe(self, *, after: str = "", from_start: bool = False, outcomes: Sequence[str] = (),
                  services: Sequence[str] = (), caller: Caller = ANONYMOUS,
                  keep: Callable[[ResultEvent], bool] | None = None) -> AsyncIterator[ResultEvent]:
        """Every activation's result events from a cursor on, live (:mod:`gateway.engine.feed`)."""
        return self.results.stream(after=after, from_start=from_start, outcomes=outcomes, services=services,
                                   caller=caller, keep=keep)

    async def get(self, activation_id: str, *, wait_s: float = 0.0) -> ActivationResult:
        """The activation as journaled. With ``wait_s`` > 0, first wait up to that long for it to
        end (final, or fallout): on its run here, else by re-reading the journal every
        ``GET_POLL_S`` (another gateway sharing the journal may be running it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        task = self._running.get(activation_id) if wait_s > 0 else None
        if task is not None:  # running here: it exists; wait for its end, then read it once
            await asyncio.wait({task}, timeout=wait_s)  # asyncio.wait never cancels the run
            result = await self.journal.get(activation_id)
        else:
            result = await self.journal.get(activation_id)  # NotFoundError at once, even when waiting
            if wait_s <= 0:
                return result
        while not _ended(result) and (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(GET_POLL_S, left))
            result = await self.journal.get(activation_id)
        return result

    async def list(self, *, states: Sequence[ActivationState] = (), device: str = "", since: datetime | None = None,
                   until: datetime | None = None, limit: int = 100) -> list[ActivationResult]:
        return await self.journal.list(states=states, device=device, since=since, until=until, limit=limit)

    async def list_page(self, *, states: Sequence[ActivationState] = (), device: str = "",
                        since: datetime | None = None, until: datetime | None = None, page_size: int = 50,
                        page_token: str = "") -> Page[ActivationResult]:
        return await self.journal.list_page(states=states, device=device, since=since, until=until,
                                            page_size=page_size, page_token=page_token)

    async def cancel(self, activation_id: str, *, caller: Caller = ANONYMOUS) -> ActivationResult:
        result = await self.journal.get(activation_id)
        run = self._runs.get(activation_id)
        if (run is None and activation_id not in self._runs and self.replicas is not None
                and result.state in (ActivationState.ACKNOWLEDGED, ActivationState.IN_PROGRESS)):
            # run by another replica: it cancels (and journals who asked)
            await self.replicas.cluster.send_control({"op": "cancel", "id": activation_id, "actor": caller.identity})
            return result
        if result.state.final or run is None:
            raise StateError(f"activation {activation_id} is {result.state.value}; only a running activation can be cancelled")
        run.cancel_event.set()
        await self.ctx.record(Transition(activation_id=activation_id, phase="cancel", state=result.state.value,
                                         message="cancel requested", actor=caller.identity))
        return await self.journal.get(activation_id)

    async def rollback(self, activation_id: str, *, caller: Caller = ANONYMOUS) -> ActivationResult:
        """Undo a completed (or partial) activation. The rollback runs as an engine task (a
        caller's deadline does not cut it short): the activation is returned at once, in
        progress; follow it with ``watch`` or ``get``."""
        result = await self.journal.get(activation_id)
        if result.state not in (ActivationState.COMPLETED, ActivationState.PARTIAL):
            raise StateError(f"activation {activation_id} is {result.state.value}; only a completed (or partial) "
                             "activation can be rolled back")
        return await self._start_repair(result, Mode.UNDO, action="rollback", caller=caller)

    def busy(self, activation_id: str) -> bool:
        """Whether the activation runs here (its run, a rollback or a repair)."""
        return activation_id in self._runs

    def _busy(self, activation_id: str) -> None:
        if activation_id in self._runs:
            raise StateError(f"activation {activation_id} is running (or being rolled back or repaired); "
                             "wait for it to end (Watch or Get)")

    async def _start_repair(self, result: ActivationResult, mode: Mode, *, action: str, caller: Caller,
                            task_id: str = "") -> ActivationResult:
        """Record who asked for ``action``, start the repair in the background, return the
        activation as it is now (its state moves to inProgress as the repair starts)."""
        self._busy(result.id)
        if result.state in (ActivationState.ACKNOWLEDGED, ActivationState.IN_PROGRESS):
            raise StateError(f"activation {result.id} is {result.state.value} (running on another gateway replica); "
                             "wait for it to end (Watch or Get)")
        self._runs[result.id] = None  # busy: no second action meanwhile
        try:
            # the activation is in progress from here on (a Watch opened now follows the repair to
            # its end; a restart meanwhile recovers it like any unfinished activation). The record
            # is a compare-and-set on the state read above: of two gateway replicas asked at once,
            # one starts; and this replica owns the activation from here on.
            await self.ctx.record(Transition(activation_id=result.id, task_id=task_id, phase=action,
                                             state=ActivationState.IN_PROGRESS.value, message=f"{action} requested",
                                             actor=caller.identity, activation_state=ActivationState.IN_PROGRESS,
                                             expect=(result.state,)))
        except BaseException:
            self._runs.pop(result.id, None)
            raise
        self._spawn(self._repair(result, mode, task_id), name=f"{action}-{result.id}", activation_id=result.id)
        await asyncio.sleep(0)  # the repair records its start before the answer is read
        return await self.journal.get(result.id)

    async def _repair(self, result: ActivationResult, mode: Mode, task_id: str = "") -> None:
        logs.bind(activation=result.id, task=task_id)
        try:
            with tracing.span("repair", activation_id=result.id, action=mode.value):
                await self.repairer.repair(result, mode=mode, task_id=task_id)
            await self._count_repair(result.id, mode)
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the activation looking busy
            log.error("%s of activation %s stopped on an error (incident %s)", mode.value, result.id, incident(exc))
            try:
                await self.ctx.record(Transition(
                    activation_id=result.id, phase=mode.value, state=ActivationState.FALLOUT.value,
                    message=f"{mode.value} stopped on an error: {public_text(exc)}",
                    activation_state=ActivationState.FALLOUT))
            except AgwError:
                log.exception("could not record the failure of %s of %s", mode.value, result.id)
        finally:
            self._runs.pop(result.id, None)

    # -- fallout -----------------------------------------------------------------------------------------
    async def fallout(self) -> builtins.list[tuple[str, TaskResult]]:
        return await self.journal.fallout()

    async def fallout_page(self, *, page_size: int = 50, page_token: str = "") -> Page[tuple[str, TaskResult]]:
        return await self.journal.fallout_page(page_size=page_size, page_token=page_token)

    async def _fallout_action(self, activation_id: str, task_id: str, mode: Mode, caller: Caller) -> ActivationResult:
        """Retry or force the rollback of an activation's fallout tasks (``task_id``: one of them),
        as an engine task: returned at once, followed with ``watch`` or ``get``."""
        result = await self.journal.get(activation_id)
        self._busy(activation_id)
        if not any(t.state == TaskState.FALLOUT and (not task_id or t.id == task_id) for t in result.tasks):
            raise StateError(f"activation {activation_id} has no task in fallout" + (f" named {task_id!r}" if task_id else ""))
        return await self._start_repair(result, mode, action=AUDIT_ACTIONS[mode], caller=caller, task_id=task_id)

    async def retry(self, activation_id: str, task_id: str = "", *, caller: Caller = ANONYMOUS) -> ActivationResult:
        return await self._fallout_action(activation_id, task_id, Mode.RETRY, caller)

    async def force_rollback(self, activation_id: str, task_id: str = "", *,
                             caller: Caller = ANONYMOUS) -> ActivationResult:
        return await self._fallout_action(activation_id, task_id, Mode.FORCE, caller)

    async def resolve(self, activation_id: str, task_id: str, note: str, *,
                      caller: Caller = ANONYMOUS) -> ActivationResult:
        if not note.strip():
            from gateway.errors import FieldViolation, InputError

            raise InputError([FieldViolation("note", "a resolution note is required")])
        result = await self.journal.get(activation_id)
        self._busy(activation_id)
        await self.repairer.resolve(result, task_id=task_id, note=note, actor=caller.identity)
        return await self.journal.get(activation_id)


def _ended(result: ActivationResult) -> bool:
    return result.state.final or result.state == ActivationState.FALLOUT


__all__ = ["Engine"]
