"""Work on an activation from its journaled state: crash recovery, the Rollback RPC, and the
three fallout actions (retry, force-rollback, resolve).

Everything here starts from what the journal recorded for a task — the pre-change snapshot,
the state read back after the change (``after``), the persist-id of a pending confirmed commit
— and ends with the device re-read and compared with the snapshot.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from gateway.engine.context import EngineContext, error_view
from gateway.engine.runner import final_activation_state
from gateway.errors import AgwError, Phase, StateError
from gateway.incidents import public_text
from gateway.model import TaskState
from gateway.results import ActivationResult, ActivationState, RollbackView, TaskResult
from gateway.transitions import Pending, RecoveryChanges, TaskChanges, Transition

log = logging.getLogger(__name__)


class Mode(str, enum.Enum):
    RECOVER = "recover"  # gateway restart: in-flight work is rolled back
    UNDO = "undo"  # Rollback RPC on a completed task
    RETRY = "retry"  # fallout: try the rollback again, safely
    FORCE = "force"  # fallout: put the snapshot back whatever the device holds now


class Repairer:
    def __init__(self, ctx: EngineContext, *, inventory: Any, profiles: Any) -> None:
        self.ctx = ctx
        self.inventory = inventory
        self.profiles = profiles

    async def _driver(self, task: TaskResult):  # noqa: ANN202 - Driver
        device = self.inventory.device(task.device)
        for ep in device.endpoints:
            if ep.platform == task.platform:
                profile = self.profiles.get(ep.platform)
                return await self.ctx.pool.get(
                    device=task.device, platform=ep.platform, address=device.address, port=ep.port,
                    credentials_ref=ep.credentials, profile=profile,
                    known_hosts=device.known_hosts, host_key_check=device.host_key_check,
                )
        raise StateError(f"device {task.device!r} has no {task.platform!r} endpoint in the inventory any more",
                         device=task.device)

    async def repair_task(self, activation_id: str, task: TaskResult, *, mode: Mode) -> TaskState:
        """Bring one task's scope back to its snapshot (verified). Returns the task's new state."""
        rec = await self.ctx.journal.recovery(activation_id, task.id)
        rid = activation_id

        async def record(phase: Phase, state: TaskState | None = None, message: str = "", **fields: Any) -> None:
            task_fields = dict(fields)
            if state is not None:
                task_fields["state"] = state
            await self.ctx.record(Transition(
                activation_id=rid, task_id=task.id, phase=phase, state=(state or task.state).value, message=message,
                task=TaskChanges(**task_fields),
                recovery=RecoveryChanges(pending=Pending.NONE) if state == TaskState.ROLLED_BACK else None))

        if rec.snapshot is None:
            # nothing was ever sent to the device for this task
            new = TaskState.CANCELLED if mode == Mode.RECOVER else task.state
            if new != task.state:
                await record(Phase.RECOVER, new, "gateway restarted before the task touched the device",
                             note="not started before a gateway restart")
            return new
        await record(Phase.ROLLBACK if mode != Mode.RECOVER else Phase.RECOVER,
                     message=f"{mode.value}: bringing {task.device} back to its pre-change snapshot")
        method = "none"
        drv = None
        try:
            drv = await self._driver(task)
            if rec.pending == Pending.CONFIRMED_COMMIT and rec.persist_id and drv.capabilities.confirmed_commit:
                reverted = await drv.cancel_commit(persist_id=rec.persist_id)
                method = "cancel-commit" if reverted else "device-timer"
            now = await drv.read(rec.snapshot.scope)
            if now.content != rec.snapshot.content:
                untouched_since = rec.after is not None and now.content == rec.after.content
                if mode == Mode.FORCE or untouched_since or (mode == Mode.RECOVER and rec.after is None):
                    await drv.restore(rec.snapshot)
                    method = "restore"
                    now = await drv.read(rec.snapshot.scope)
                else:
                    view = RollbackView(
                        method=method, ok=False,
                        reason="the device changed since the activation (it matches neither the snapshot nor "
                               "what the gateway pushed); force-rollback overwrites it with the snapshot",
                        diff=drv.diff(rec.snapshot, now),
                    )
                    await record(Phase.ROLLBACK_VERIFY, TaskState.FALLOUT, f"fallout: {view.reason}", rollback=view)
                    return TaskState.FALLOUT
            if now.content == rec.snapshot.content:
                view = RollbackView(method=method, ok=True)
                await record(Phase.ROLLBACK_VERIFY, TaskState.ROLLED_BACK, "rolled back, device equals its snapshot",
                             rollback=view)
                return TaskState.ROLLED_BACK
            view = RollbackView(method=method, ok=False, reason="device differs from the pre-change snapshot",
                                diff=drv.diff(rec.snapshot, now))
        except AgwError as exc:
            if drv is not None:
                await self.ctx.pool.discard(drv)
            view = RollbackView(method=method, ok=False, reason=f"{mode.value} failed: {public_text(exc)}")
            await record(Phase.ROLLBACK_VERIFY, TaskState.FALLOUT, f"fallout: {view.reason}", rollback=view,
                         error=error_view(exc, phase=Phase.ROLLBACK))
            return TaskState.FALLOUT
        await record(Phase.ROLLBACK_VERIFY, TaskState.FALLOUT, f"fallout: {view.reason}", rollback=view)
        return TaskState.FALLOUT

    async def repair(self, result: ActivationResult, *, mode: Mode, task_id: str = "") -> ActivationState:
        """Repair the tasks of an activation selected by ``mode`` (all devices locked), then
        record the activation's new state."""
        if mode == Mode.UNDO:
            chosen = [t for t in result.tasks if t.state == TaskState.COMPLETED]
        elif mode == Mode.RECOVER:
            touched_states = {TaskState.IN_PROGRESS, TaskState.PENDING, TaskState.ACKNOWLEDGED}
            if result.atomic:
                touched_states |= {TaskState.COMPLETED}
            chosen = [t for t in result.tasks if t.state in touched_states]
        else:
            chosen = [t for t in result.tasks if t.state == TaskState.FALLOUT and (not task_id or t.id == task_id)]
            if task_id and not chosen:
                raise StateError(f"task {task_id!r} of activation {result.id} is not in fallout")
        if not chosen:
            raise StateError(f"activation {result.id} has no task to {mode.value}")
        await self.ctx.record(Transition(activation_id=result.id, phase=mode.value,
                                         state=ActivationState.IN_PROGRESS.value,
                                         message=f"{mode.value}: {len(chosen)} task(s)",
                                         activation_state=ActivationState.IN_PROGRESS))
        new_states = {t.id: t.state for t in result.tasks}
        # no wait limit: a rollback or recovery must not be dropped because a device is busy
        devices = [t.device for t in chosen]
        async with self.ctx.locks.hold(devices, owner=f"{mode.value} of {result.id}", wait_s=None):
            for task in reversed(chosen):  # undo in reverse order of the activation
                new_states[task.id] = await self.repair_task(result.id, task, mode=mode)
        final = final_activation_state(list(new_states.values()), cancelled=False)
        await self.ctx.record(Transition(activation_id=result.id, phase=mode.value, state=final.value,
                                         message=f"activation {final.value}", activation_state=final))
        return final

    async def resolve(self, result: ActivationResult, *, task_id: str, note: str, actor: str = "") -> ActivationState:
        task = next((t for t in result.tasks if t.id == task_id), None)
        if task is None or task.state != TaskState.FALLOUT:
            raise StateError(f"task {task_id!r} of activation {result.id} is not in fallout")
        await self.ctx.record(Transition(activation_id=result.id, task_id=task_id, phase="resolve",
                                         state=TaskState.FAILED.value, message=f"resolved by an operator: {note}",
                                         actor=actor,
                                         task=TaskChanges(state=TaskState.FAILED, note=f"resolved: {note}"),
                                         recovery=RecoveryChanges(pending=Pending.NONE)))
        states = [TaskState.FAILED if t.id == task_id else t.state for t in result.tasks]
        final = final_activation_state(states, cancelled=False)
        await self.ctx.record(Transition(activation_id=result.id, phase="resolve", state=final.value,
                                         message=f"activation {final.value}", activation_state=final))
        return final


__all__ = ["Mode", "Repairer"]
