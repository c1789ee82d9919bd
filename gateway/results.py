"""Immutable results at the boundary: what the engine hands to the API edge and the CLI, and what
the journal stores and reads back. No truthiness tricks: state is explicit, ``ok`` fields are
real booleans.

The engine and the journal both use these types; neither imports the other for them (the journal
never imports :mod:`gateway.engine`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Mapping, TypeVar

from gateway.errors import DeviceErrorInfo
from gateway.model import Action, TaskState


class ActivationState(str, enum.Enum):
    """Order-level state (TMF652 order states plus rolledBack / fallout)."""

    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "inProgress"
    COMPLETED = "completed"
    PARTIAL = "partial"  # non-atomic: some tasks completed, some did not
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolledBack"
    FALLOUT = "fallout"

    @property
    def final(self) -> bool:
        return self not in (ActivationState.ACKNOWLEDGED, ActivationState.IN_PROGRESS, ActivationState.FALLOUT)


@dataclass(frozen=True, kw_only=True)
class Event:
    activation_id: str
    seq: int
    time: datetime
    task_id: str = ""  # empty for activation-level events
    phase: str = ""
    state: str = ""  # TaskState or ActivationState value
    message: str = ""
    actor: str = ""  # the identity behind a mutating call (submit, cancel, ...); "" for the engine's own steps


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """One mutating call on an activation, with the identity that made it (from its event)."""

    time: datetime
    actor: str
    action: str  # submit, cancel, rollback, retry, force-rollback, resolve
    task_id: str = ""
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class PhaseTiming:
    phase: str
    started_at: datetime
    duration_ms: float


@dataclass(frozen=True, kw_only=True)
class VerificationView:
    ok: bool
    checked: int
    mismatches: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class RollbackView:
    method: str  # cancel-commit | discard | restore | device-timer | none
    ok: bool  # device state re-read and equal to the snapshot
    reason: str = ""
    diff: str = ""  # snapshot vs re-read, when not ok
    retryable: bool = False
    """Not ok for a reason that may pass (the device unreachable, its lock denied): the gateway's
    self-healing tries again (:mod:`gateway.engine.healing`). A device that differs is never that."""


@dataclass(frozen=True, kw_only=True)
class ErrorView:
    kind: str  # the AgwError class name, e.g. DeviceRejectedError
    message: str
    phase: str = ""
    retryable: bool = False
    device_error: DeviceErrorInfo | None = None


@dataclass(frozen=True, kw_only=True)
class TaskResult:
    id: str
    device: str
    service: str
    action: Action
    state: TaskState
    depends_on: tuple[str, ...] = ()
    platform: str = ""
    driver: str = ""
    rendered: str = ""
    diff: str = ""
    verification: VerificationView | None = None
    rollback: RollbackView | None = None
    error: ErrorView | None = None
    timings: tuple[PhaseTiming, ...] = ()
    note: str = ""  # fallout resolution note, cancellation reason...
    emulated: tuple[str, ...] = ()
    """What the gateway did in place of a capability the device lacks, one short note each
    (e.g. "snapshot-and-restore instead of native rollback"); empty when all was native."""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """The task's parameters as submitted (JSON values), every secret parameter of its service
    (``writeOnly: true`` in the parameter schema) replaced by the mask. Fixed at creation."""


@dataclass(frozen=True, kw_only=True)
class ActivationResult:
    id: str
    request_id: str
    order_ref: str
    atomic: bool
    state: ActivationState
    created_at: datetime
    updated_at: datetime
    dry_run: bool = False
    tasks: tuple[TaskResult, ...] = field(default_factory=tuple)
    submitted_by: str = ""
    """The identity that submitted it ("" without client identities)."""
    audit: tuple[AuditEntry, ...] = ()
    """Every mutating call on it, oldest first."""
    retry: Mapping[str, float] = field(default_factory=dict)
    """Its own retry policy as submitted: the fields given (``attempts``, ``initial_delay_s``,
    ``max_delay_s``, ``deadline_s``), each over its devices' profiles'; empty: the profiles' alone."""


T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Page(Generic[T]):
    """One page of a listing, in the listing's order.

    ``resume[i]`` is the opaque token that continues the listing after ``items[i]``; ``more`` says
    whether anything may follow the last item. An edge that sends only the first ``k`` items (to
    keep a response under its byte cap) takes :meth:`first`: its token continues after item ``k``.
    """

    items: tuple[T, ...] = ()
    resume: tuple[str, ...] = ()
    more: bool = False

    @property
    def next_page_token(self) -> str:
        """The token of the next page; "" when this is the last one."""
        return self.resume[-1] if self.more and self.resume else ""

    def first(self, n: int) -> Page[T]:
        """The first ``n`` items; more follow if any were left out."""
        return Page(items=self.items[:n], resume=self.resume[:n], more=self.more or n < len(self.items))


@dataclass(frozen=True, kw_only=True)
class ResultEvent:
    """A result event as the Subscribe feed hands it out: the CloudEvent of an activation's end
    state (docs/events.md) and the cursor to resume after it."""

    id: str
    """The event id: the same one the webhooks and NATS carry (the deduplication key)."""
    type: str
    activation_id: str
    outcome: str
    time: datetime
    data: str
    """The CloudEvent's data, JSON text."""
    cursor: str
    """Opaque: give it back as ``after`` to resume with the event after this one."""
    tasks: tuple[tuple[str, str], ...] = ()
    """(device, service) of each task, when a filter or a scope needed them (else empty)."""


@dataclass(frozen=True, kw_only=True)
class SubmitResult:
    activation_id: str
    created: bool  # False: the same request_id was already submitted with the same content


__all__ = [
    "ActivationResult",
    "ActivationState",
    "AuditEntry",
    "ErrorView",
    "Event",
    "Page",
    "PhaseTiming",
    "ResultEvent",
    "RollbackView",
    "SubmitResult",
    "TaskResult",
    "VerificationView",
]
