"""Work on an activation from its journaled state: crash recovery, the Rollback RPC, and the
three fallout actions (retry, force-rollback, resolve).

Everything here starts from what the journal recorded for a task — the pre-change snapshot, the
state read back after the change (``after``), the persist-id of a pending confirmed commit, what
is pending on the device — rebuilds the device transactions from it, and hands them to the one
verified rollback (:meth:`gateway.engine.transaction.DeviceTransaction.rollback`), whose
:class:`~gateway.engine.transaction.Mode` decides when the snapshot may overwrite the device.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from drivers.base import Capabilities, DeviceProfile, Driver
from gateway.engine.context import EngineContext
from gateway.engine.runner import final_activation_state
from gateway.engine.lifecycle import Leg, Mode, task_transition
from gateway.engine.transaction import DeviceTransaction
from gateway.errors import Phase, StateError
from gateway.model import TaskState
from gateway.results import ActivationResult, ActivationState, TaskResult
from gateway.transitions import Pending, RecoveryChanges, TaskChanges, TaskRecovery, Transition

log = logging.getLogger(__name__)

_PENDING_RANK = {Pending.NONE: 0, Pending.APPLIED: 1, Pending.STAGED: 2, Pending.CONFIRMED_COMMIT: 3}


class Repairer:
    def __init__(self, ctx: EngineContext, *, inventory: Any, profiles: Any,
                 capabilities_for: Callable[[DeviceProfile], Capabilities]) -> None:
        self.ctx = ctx
        self.inventory = inventory
        self.profiles = profiles
        self.capabilities_for = capabilities_for

    def _transaction(self, activation_id: str, task: TaskResult, rec: TaskRecovery) -> DeviceTransaction:
        """A device transaction for ``task``'s endpoint, rebuilt from the journal and the inventory."""
        device = self.inventory.device(task.device)
        endpoint = next((ep for ep in device.endpoints if ep.platform == task.platform), None)
        if endpoint is None:
            raise StateError(f"device {task.device!r} has no {task.platform!r} endpoint in the inventory any more",
                             device=task.device)
        profile = self.profiles.get(endpoint.platform)

        async def connect() -> Driver:
            return await self.ctx.pool.get(
                device=task.device, platform=endpoint.platform, address=device.address, port=endpoint.port,
                credentials_ref=endpoint.credentials, profile=profile,
                known_hosts=device.known_hosts, host_key_check=device.host_key_check)

        return DeviceTransaction(self.ctx, activation_id=activation_id, device=task.device,
                                 caps=self.capabilities_for(profile), profile=profile, connect=connect,
                                 persist_id=rec.persist_id, attempt=rec.attempt, retry=rec.retry)

    def _choose(self, result: ActivationResult, mode: Mode, task_id: str) -> list[TaskResult]:
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
        return chosen

    async def repair(self, result: ActivationResult, *, mode: Mode, task_id: str = "") -> ActivationState:
        """Roll back the tasks of an activation selected by ``mode`` (their devices locked, each
        device endpoint one transaction), then record the activation's new state."""
        chosen = self._choose(result, mode, task_id)
        await self.ctx.record(Transition(activation_id=result.id, phase=mode.value,
                                         state=ActivationState.IN_PROGRESS.value,
                                         message=f"{mode.value}: {len(chosen)} task(s)",
                                         activation_state=ActivationState.IN_PROGRESS))
        new_states = {t.id: t.state for t in result.tasks}
        # no wait limit: a rollback or recovery must not be dropped because a device is busy
        async with self.ctx.locks.hold([t.device for t in chosen], owner=f"{mode.value} of {result.id}", wait_s=None,
                                       recovery=mode == Mode.RECOVER):
            groups: dict[tuple[str, str], list[tuple[TaskResult, TaskRecovery]]] = {}
            for task in chosen:  # in activation order: the earliest snapshot of a scope comes first
                rec = await self.ctx.journal.recovery(result.id, task.id)
                groups.setdefault((task.device, task.platform), []).append((task, rec))
            for members in reversed(list(groups.values())):  # undo in reverse order of the activation
                for task_id_, state in (await self._repair_device(result.id, members, mode)).items():
                    new_states[task_id_] = state
        final = final_activation_state(list(new_states.values()), cancelled=False)
        await self.ctx.record(Transition(activation_id=result.id, phase=mode.value, state=final.value,
                                         message=f"activation {final.value}", activation_state=final))
        return final

    async def _repair_device(self, activation_id: str, members: list[tuple[TaskResult, TaskRecovery]],
                             mode: Mode) -> dict[str, TaskState]:
        states: dict[str, TaskState] = {}
        legs: list[Leg] = []
        for task, rec in members:
            leg = Leg(id=task.id, state=task.state, snapshot=rec.snapshot, after=rec.after, undo=rec.undo,
                      touched=rec.snapshot is not None, staged=rec.pending == Pending.STAGED)
            if rec.snapshot is None:  # nothing was ever sent to the device for this task
                if mode == Mode.RECOVER:
                    await self.ctx.record(task_transition(
                        activation_id, leg, Phase.RECOVER, state=TaskState.CANCELLED,
                        message="gateway restarted before the task touched the device",
                        task=TaskChanges(note="not started before a gateway restart"),
                        recovery=RecoveryChanges(pending=Pending.NONE)))
                states[task.id] = leg.state
                continue
            legs.append(leg)
        if not legs:
            return states
        task, rec = next((t, r) for t, r in members if r.snapshot is not None)
        pending = max((r.pending for _, r in members), key=_PENDING_RANK.__getitem__)
        try:
            txn = self._transaction(activation_id, task, rec)
        except StateError as exc:
            return states | await self._unreachable(activation_id, legs, mode, exc)
        try:
            await txn.rollback(mode, legs=legs, pending=pending)
        finally:
            await txn.release()
        return states | {leg.id: leg.state for leg in legs}

    async def _unreachable(self, activation_id: str, legs: list[Leg], mode: Mode, exc: StateError) -> dict[str, TaskState]:
        """The device is gone from the inventory: its tasks fall out, with the reason."""
        from gateway.engine.context import error_view
        from gateway.incidents import public_text
        from gateway.results import RollbackView

        view = RollbackView(method="none", ok=False, reason=f"{mode.value} (none) failed: {public_text(exc)}")
        for leg in legs:
            await self.ctx.record(task_transition(
                activation_id, leg, Phase.ROLLBACK_VERIFY, state=TaskState.FALLOUT, message=f"fallout: {view.reason}",
                task=TaskChanges(rollback=view, error=error_view(exc, phase=Phase.ROLLBACK))))
        return {leg.id: leg.state for leg in legs}

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


__all__ = ["Repairer"]
