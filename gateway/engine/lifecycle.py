"""The device lifecycle's rules, as data and pure functions (no device, no journal access).

* :func:`steps_for`: the steps of one task on a device with given capabilities;
* :func:`retry_delay_s`: the backoff before an automatic retry of the steps before the push;
* :func:`emulations`: what the gateway does in place of a missing capability (shown in the result);
* :class:`TxnState` and :data:`MOVES`: the states of a device transaction and the allowed moves;
* :class:`Mode` and :func:`may_restore`: why a rollback runs, and when it may overwrite the device;
* :class:`Leg`: one task's part of a device transaction (what the rollback needs to know of it).

:mod:`gateway.engine.transaction` applies them to a device.
"""

from __future__ import annotations

import dataclasses
import enum
import random
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from drivers.base import Capabilities, ChangeSet, DeviceProfile, Driver, RetryPolicy, Snapshot
from gateway.engine.context import PhaseClock
from gateway.errors import Phase
from gateway.model import TaskState
from gateway.transitions import RecoveryChanges, TaskChanges, Transition


class Mode(str, enum.Enum):
    """Why a rollback runs; :func:`may_restore` gives each its rule."""

    FAILURE = "rollback"  # a task of the running activation failed, or it was cancelled
    RECOVER = "recover"  # gateway restart: in-flight work is rolled back
    UNDO = "undo"  # Rollback RPC on completed tasks
    RETRY = "retry"  # fallout: try the rollback again, safely
    FORCE = "force"  # fallout: put the snapshot back whatever the device holds now


def may_restore(mode: Mode, *, now: Snapshot, after: Snapshot | None) -> bool:
    """Whether a rollback in ``mode`` may overwrite what the device holds ``now`` with the
    snapshot. ``after``: what the device held once the change was verified (None: never verified).

    * FAILURE, FORCE: always (the gateway's own unverified change; a person asked for it);
    * RECOVER, RETRY: when nobody changed the device since: it still equals ``after``, or the
      change was never verified (then it is the gateway's own, half-applied);
    * UNDO: only when it still equals ``after`` (a completed change someone may have built on).
    """
    if mode in (Mode.FAILURE, Mode.FORCE):
        return True
    if after is None:
        return mode != Mode.UNDO
    return now.content == after.content


BEFORE_PUSH = frozenset({Phase.CONNECT, Phase.LOCK, Phase.SNAPSHOT})
"""Steps that send no change: a retryable failure there may be retried (:func:`retry_delay_s`)."""


jitter: Callable[[], float] = random.Random().random
"""The engine's own source of backoff jitter, never the global ``random`` (a library or a test that
seeds or draws from that must not change the engine's backoff, nor the engine theirs)."""


def retry_delay_s(policy: RetryPolicy, attempt: int, *, elapsed_s: float, draw: float) -> float | None:
    """How long to wait before attempt ``attempt + 1`` after attempt ``attempt`` failed ``elapsed_s``
    after the first began; None when the policy allows no more. Exponential backoff with "equal
    jitter": half the step for sure, the other half drawn (``draw`` in [0, 1)), so that tasks
    that failed together do not come back together, and none comes back at once."""
    if attempt >= policy.attempts:
        return None
    step = min(policy.max_delay_s, policy.initial_delay_s * 2 ** (attempt - 1))
    delay = step / 2 + step / 2 * draw
    return delay if elapsed_s + delay < policy.deadline_s else None


def steps_for(caps: Capabilities) -> tuple[Phase, ...]:
    """The steps of one task on a device with ``caps``, in order."""
    steps = [Phase.CONNECT]
    if caps.lock:
        steps.append(Phase.LOCK)
    steps += [Phase.SNAPSHOT, Phase.PUSH]
    if caps.validate:
        steps.append(Phase.VALIDATE)
    if caps.candidate:
        steps.append(Phase.COMMIT)
    steps.append(Phase.VERIFY)
    return tuple(steps)


def emulations(caps: Capabilities) -> tuple[str, ...]:
    """What the gateway does in place of a capability ``caps`` lacks, as shown in a task's result."""
    notes = []
    if not caps.lock:
        notes.append("no datastore lock: the gateway serializes its own changes to the device only")
    if not caps.candidate:
        notes.append("no candidate: the change is live as it is pushed; a failure is undone by restore")
    if not caps.confirmed_commit:
        notes.append("no confirmed commit: nothing on the device reverts the change if the gateway stops; "
                     "a restart rolls it back from the journaled snapshot")
    elif not caps.persist_id:
        notes.append("no persist-id: a pending commit can be cancelled only on its own session; "
                     "after a restart the snapshot is restored instead")
    if not caps.native_rollback and not caps.confirmed_commit:
        notes.append("snapshot-and-restore instead of native rollback")
    if not caps.diff:
        notes.append("gateway-computed diff (from the snapshot and the read-back)")
    if not caps.atomic_push and not caps.candidate:
        notes.append("no atomic push: a push that fails midway is restored from the snapshot")
    return tuple(notes)


class TxnState(str, enum.Enum):
    OPEN = "open"
    PREPARING = "preparing"
    PREPARED = "prepared"  # every task verified, waiting for confirm
    CONFIRMED = "confirmed"
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"
    FALLOUT = "fallout"


MOVES: dict[TxnState, frozenset[TxnState]] = {
    TxnState.OPEN: frozenset({TxnState.PREPARING, TxnState.ROLLING_BACK}),
    TxnState.PREPARING: frozenset({TxnState.PREPARING, TxnState.PREPARED, TxnState.ROLLING_BACK}),
    TxnState.PREPARED: frozenset({TxnState.PREPARING, TxnState.CONFIRMED, TxnState.ROLLING_BACK}),
    TxnState.CONFIRMED: frozenset({TxnState.ROLLING_BACK}),  # atomic: another device failed to confirm
    TxnState.ROLLING_BACK: frozenset({TxnState.ROLLED_BACK, TxnState.FALLOUT}),
    TxnState.ROLLED_BACK: frozenset(),
    TxnState.FALLOUT: frozenset({TxnState.ROLLING_BACK}),  # a fallout action tries again
}


class CancelRequested(Exception):
    """Raised at a step boundary when the activation was cancelled."""


@dataclass(eq=False)
class Leg:
    """One task's part of a device transaction: what the rollback needs to know of it."""

    id: str
    state: TaskState = TaskState.ACKNOWLEDGED
    clock: PhaseClock = field(default_factory=PhaseClock)
    snapshot: Snapshot | None = None
    after: Snapshot | None = None  # read back once verified
    undo: str | None = None  # the change's explicitly rendered undo
    touched: bool = False  # something may have been sent that changes the device
    staged: bool = False  # loaded into a candidate, not yet committed
    prepared_ok: bool = False


@dataclass(frozen=True, kw_only=True)
class Work:
    """What a task pushes: its change, on the profile it was planned with."""

    change: ChangeSet
    profile: DeviceProfile


Connect = Callable[[], Awaitable[Driver]]


def task_transition(activation_id: str, leg: Leg, phase: Phase | str, *, state: TaskState | None = None,
                    message: str = "", task: TaskChanges | None = None,
                    recovery: RecoveryChanges | None = None) -> Transition:
    """A transition of one task; a new ``state`` is applied to ``leg`` too."""
    if state is not None:
        leg.state = state
        task = TaskChanges(state=state) if task is None else dataclasses.replace(task, state=state)
    return Transition(activation_id=activation_id, task_id=leg.id,
                      phase=phase.value if isinstance(phase, Phase) else phase,
                      state=(state or leg.state).value, message=message, task=task, recovery=recovery)


__all__ = ["BEFORE_PUSH", "CancelRequested", "Connect", "Leg", "MOVES", "Mode", "TxnState", "Work", "emulations",
           "may_restore", "retry_delay_s", "steps_for", "task_transition"]
