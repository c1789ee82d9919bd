"""What the engine writes to the journal: one typed :class:`Transition` per step.

A transition appends one event to an activation and, in the same transaction, may change fields
of one of its tasks (:class:`TaskChanges`), the activation's state, and the task's private
recovery record (:class:`RecoveryChanges`; :class:`Pending` names what is outstanding on the
device). :class:`TaskRecovery` is that record as the journal reads it back.

Every value is checked when the transition is made: a bad one (an unknown state or pending value,
a field of the wrong type, task changes without a task) raises a non-retryable
:class:`~gateway.errors.JournalError` before anything is queued or written. A text field given a
:class:`~gateway.secrets.Secret` keeps only its mask. In :class:`TaskChanges` and
:class:`RecoveryChanges` a field left at :data:`UNCHANGED` is not written, and ``None`` clears an
optional view or snapshot.

The three are frozen dataclasses whose constructors are written out rather than generated: one is
made for every step of every task, so making one costs no more than the dicts it replaced (a test
pins each constructor to its fields).

This module sits beside :mod:`gateway.results` so that the engine builds transitions without
importing the journal package (or its database libraries), and the journal never imports the
engine.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, Callable, Final, Iterable

from drivers.base import Snapshot
from gateway.errors import JournalError, Phase
from gateway.model import RetryOverride, TaskState
from gateway.results import ActivationState, ErrorView, PhaseTiming, RollbackView, VerificationView
from gateway.secrets import Secret


class Unchanged(enum.Enum):
    """The type of :data:`UNCHANGED`."""

    UNCHANGED = "unchanged"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged.UNCHANGED
"""A field of :class:`TaskChanges` / :class:`RecoveryChanges` that the transition leaves as it is."""


class Pending(str, enum.Enum):
    """What is outstanding on the device for a task. The values are what the journal stores
    (journals written before this type existed read back the same)."""

    NONE = ""
    """Nothing: the change was confirmed, rolled back, or never sent."""
    STAGED = "staged"
    """Loaded into a candidate datastore, not committed."""
    APPLIED = "applied"
    """Live on the device without a device-side revert timer."""
    CONFIRMED_COMMIT = "confirmed-commit"
    """A commit with a revert timer (the task's persist-id) awaits confirm."""


def refused(message: str) -> JournalError:
    """A value the journal cannot store: a bug in the caller, not worth retrying."""
    return JournalError(message, phase=Phase.JOURNAL, retryable=False)


def as_text(value: Any, what: str) -> str:
    """A text field: ``str`` as is, a str-valued enum as its value, a Secret masked; else refused."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, enum.Enum) and isinstance(value.value, str):
        return value.value
    raise refused(f"{what} must be a str, got {type(value).__name__}")


_Check = Callable[[Any, str], Any]


def _member(cls: type[enum.Enum], kind: str) -> _Check:
    def check(value: Any, what: str) -> Any:
        if type(value) is cls:
            return value
        try:
            return cls(value)
        except ValueError:
            raise refused(f"{what} {value!r} is not {kind}") from None

    return check


def _optional(value: Any, cls: type, what: str) -> Any:
    if value is None or isinstance(value, cls):
        return value
    raise refused(f"{what} must be a {cls.__name__} or None, got {type(value).__name__}")


def _timings(value: Any, what: str) -> tuple[PhaseTiming, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(t, PhaseTiming) for t in value):
        raise refused(f"{what} must be a tuple of PhaseTiming")
    return tuple(value)


def _texts(value: Any, what: str) -> tuple[str, ...]:
    """A tuple (or list) of text fields, each through :func:`as_text`; stored as a tuple."""
    if not isinstance(value, (tuple, list)):
        raise refused(f"{what} must be a tuple of str, got {type(value).__name__}")
    return tuple(as_text(v, f"{what} item") for v in value)


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise refused(f"{what} must be an int, got {type(value).__name__}")
    return value


_task_state = _member(TaskState, "a TaskState")
_pending = _member(Pending, "a Pending value")
_activation_state = _member(ActivationState, "an ActivationState")


@dataclass(frozen=True, init=False, repr=False)
class TaskChanges:
    """New values of a task's mutable fields (the identity fields are fixed at creation)."""

    state: TaskState | Unchanged = UNCHANGED
    platform: str | Unchanged = UNCHANGED
    driver: str | Unchanged = UNCHANGED
    rendered: str | Unchanged = UNCHANGED
    diff: str | Unchanged = UNCHANGED
    verification: VerificationView | None | Unchanged = UNCHANGED
    rollback: RollbackView | None | Unchanged = UNCHANGED
    error: ErrorView | None | Unchanged = UNCHANGED
    timings: tuple[PhaseTiming, ...] | Unchanged = UNCHANGED
    note: str | Unchanged = UNCHANGED
    emulated: tuple[str, ...] | Unchanged = UNCHANGED

    def __init__(
        self,
        *,
        state: TaskState | Unchanged = UNCHANGED,
        platform: str | Unchanged = UNCHANGED,
        driver: str | Unchanged = UNCHANGED,
        rendered: str | Unchanged = UNCHANGED,
        diff: str | Unchanged = UNCHANGED,
        verification: VerificationView | None | Unchanged = UNCHANGED,
        rollback: RollbackView | None | Unchanged = UNCHANGED,
        error: ErrorView | None | Unchanged = UNCHANGED,
        timings: tuple[PhaseTiming, ...] | Unchanged = UNCHANGED,
        note: str | Unchanged = UNCHANGED,
        emulated: tuple[str, ...] | Unchanged = UNCHANGED,
    ) -> None:
        # Only the fields given go into the instance (written once, here, under the frozen
        # dataclass); a field left out reads as its class default, UNCHANGED. So ``__dict__`` is
        # exactly what this changes, in field order.
        given = self.__dict__
        if state is not UNCHANGED:
            given["state"] = _task_state(state, "task state")
        if platform is not UNCHANGED:
            given["platform"] = as_text(platform, "task field platform")
        if driver is not UNCHANGED:
            given["driver"] = as_text(driver, "task field driver")
        if rendered is not UNCHANGED:
            given["rendered"] = as_text(rendered, "task field rendered")
        if diff is not UNCHANGED:
            given["diff"] = as_text(diff, "task field diff")
        if verification is not UNCHANGED:
            given["verification"] = _optional(verification, VerificationView, "verification")
        if rollback is not UNCHANGED:
            given["rollback"] = _optional(rollback, RollbackView, "rollback")
        if error is not UNCHANGED:
            given["error"] = _optional(error, ErrorView, "error")
        if timings is not UNCHANGED:
            given["timings"] = _timings(timings, "timings")
        if note is not UNCHANGED:
            given["note"] = as_text(note, "task field note")
        if emulated is not UNCHANGED:
            given["emulated"] = _texts(emulated, "task field emulated")

    def changed(self) -> dict[str, Any]:
        """The fields this changes, by name (TaskResult field names), in field order."""
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"TaskChanges({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


@dataclass(frozen=True, init=False, repr=False)
class RecoveryChanges:
    """New values of keys of a task's recovery record (merged into the stored one)."""

    snapshot: Snapshot | None | Unchanged = UNCHANGED
    """The device state before the change."""
    after: Snapshot | None | Unchanged = UNCHANGED
    """The state read back after the change (a repair can tell whether someone changed it since)."""
    undo: str | None | Unchanged = UNCHANGED
    """The change's explicitly rendered undo (the service's ``<platform>.undo.j2``), if it has one."""
    persist_id: str | Unchanged = UNCHANGED
    pending: Pending | Unchanged = UNCHANGED
    phase: str | Unchanged = UNCHANGED
    attempt: int | Unchanged = UNCHANGED
    retry: RetryOverride | None | Unchanged = UNCHANGED
    """The activation's own retry policy (a repair after a restart runs with it too)."""

    def __init__(
        self,
        *,
        snapshot: Snapshot | None | Unchanged = UNCHANGED,
        after: Snapshot | None | Unchanged = UNCHANGED,
        undo: str | None | Unchanged = UNCHANGED,
        persist_id: str | Unchanged = UNCHANGED,
        pending: Pending | Unchanged = UNCHANGED,
        phase: str | Unchanged = UNCHANGED,
        attempt: int | Unchanged = UNCHANGED,
        retry: RetryOverride | None | Unchanged = UNCHANGED,
    ) -> None:
        given = self.__dict__  # as in TaskChanges: only what is given, in field order
        if snapshot is not UNCHANGED:
            given["snapshot"] = _optional(snapshot, Snapshot, "recovery snapshot")
        if after is not UNCHANGED:
            given["after"] = _optional(after, Snapshot, "recovery after")
        if undo is not UNCHANGED:
            given["undo"] = None if undo is None else as_text(undo, "recovery undo")
        if persist_id is not UNCHANGED:
            given["persist_id"] = as_text(persist_id, "recovery persist_id")
        if pending is not UNCHANGED:
            given["pending"] = _pending(pending, "recovery pending")
        if phase is not UNCHANGED:
            given["phase"] = as_text(phase, "recovery phase")
        if attempt is not UNCHANGED:
            given["attempt"] = _count(attempt, "recovery attempt")
        if retry is not UNCHANGED:
            given["retry"] = _optional(retry, RetryOverride, "recovery retry")

    def changed(self) -> dict[str, Any]:
        """The keys this changes, by name, in field order."""
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"RecoveryChanges({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


@dataclass(frozen=True, kw_only=True)
class TaskRecovery:
    """What a restarted gateway needs to undo or finish one task; never shown to API callers.

    ``pending`` names what is outstanding on the device; ``snapshot`` is the device state before
    the change, ``after`` the state read back after it, ``undo`` the change's explicit undo (a
    rollback rebuilt from the journal passes it to the driver's restore, as a running one does).
    """

    snapshot: Snapshot | None = None
    after: Snapshot | None = None
    undo: str | None = None
    persist_id: str = ""
    pending: Pending = Pending.NONE
    phase: str = ""
    attempt: int = 0
    retry: RetryOverride | None = None


_EVENT_STATES: frozenset[str] = frozenset({""} | {s.value for s in TaskState} | {s.value for s in ActivationState})


@dataclass(frozen=True, init=False)
class Transition:
    """One step of an activation, as journaled: an event (``phase``, ``state``, ``message``,
    ``actor``) and what changes with it, in one transaction.

    ``task_id`` is "" for an activation-level step (then ``task`` and ``recovery`` must be
    None). ``state`` is the event's state: a :class:`~gateway.model.TaskState` or
    :class:`~gateway.results.ActivationState` value (or ""); it is kept as its text, like
    ``phase``. ``actor``: the caller identity behind a mutating call (the audit trail), "" for the
    engine's own steps. Empty ``task`` / ``recovery`` changes become None. ``expect``: the
    activation states it may be in when this is written (a compare-and-set: replicas that both
    start a rollback of one activation cannot both succeed); another state makes the record a
    :class:`~gateway.errors.StateError` and writes nothing. Empty: no condition.
    """

    activation_id: str
    task_id: str = ""
    phase: Phase | str = ""
    state: TaskState | ActivationState | str = ""
    message: str = ""
    task: TaskChanges | None = None
    activation_state: ActivationState | None = None
    recovery: RecoveryChanges | None = None
    actor: str = ""
    expect: frozenset[str] = frozenset()

    def __init__(
        self,
        *,
        activation_id: str,
        task_id: str = "",
        phase: Phase | str = "",
        state: TaskState | ActivationState | str = "",
        message: str = "",
        task: TaskChanges | None = None,
        activation_state: ActivationState | None = None,
        recovery: RecoveryChanges | None = None,
        actor: str = "",
        expect: Iterable[ActivationState] = frozenset(),
    ) -> None:
        # a plain str passes as it is; an enum becomes its value, a Secret its mask; else refused
        if type(activation_id) is not str:
            activation_id = as_text(activation_id, "activation_id")
        if type(task_id) is not str:
            task_id = as_text(task_id, "task_id")
        if type(phase) is not str:
            phase = as_text(phase, "phase")
        if type(state) is not str:
            state = as_text(state, "state")
        if type(message) is not str:
            message = as_text(message, "message")
        if type(actor) is not str:
            actor = as_text(actor, "actor")
        if state not in _EVENT_STATES:
            raise refused(f"event state {state!r} is neither a TaskState nor an ActivationState")
        if activation_state is not None and type(activation_state) is not ActivationState:
            activation_state = _activation_state(activation_state, "activation state")
        if task is not None:
            if not isinstance(task, TaskChanges):
                raise refused(f"task must be a TaskChanges or None, got {type(task).__name__}")
            task = task if task.__dict__ else None
        if recovery is not None:
            if not isinstance(recovery, RecoveryChanges):
                raise refused(f"recovery must be a RecoveryChanges or None, got {type(recovery).__name__}")
            recovery = recovery if recovery.__dict__ else None
        if (task is not None or recovery is not None) and not task_id:
            raise refused("task or recovery changes need a task_id")
        self.__dict__.update(  # frozen: written once, here
            activation_id=activation_id, task_id=task_id, phase=phase, state=state, message=message, task=task,
            activation_state=activation_state, recovery=recovery, actor=actor,
            expect=frozenset(_activation_state(e, "expected state").value for e in expect),
        )


TASK_FIELDS_ORDER: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TaskChanges))
TASK_FIELDS: frozenset[str] = frozenset(TASK_FIELDS_ORDER)
"""The :class:`~gateway.results.TaskResult` fields a transition may change."""

RECOVERY_FIELDS_ORDER: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RecoveryChanges))
RECOVERY_FIELDS: frozenset[str] = frozenset(RECOVERY_FIELDS_ORDER)
"""Keys of a task's recovery record (see :class:`TaskRecovery`)."""


__all__ = [
    "RECOVERY_FIELDS",
    "TASK_FIELDS",
    "UNCHANGED",
    "Pending",
    "RecoveryChanges",
    "TaskChanges",
    "TaskRecovery",
    "Transition",
    "Unchanged",
    "as_text",
    "refused",
]
