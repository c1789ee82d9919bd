"""Pure conversions between the typed values and journal rows (JSON text for nested values).

Nothing here touches a database. Encoding masks every :class:`~gateway.secrets.Secret` (its
``str`` is the mask), so a credential passed by mistake never reaches the journal in clear.
Decoding rebuilds the exact dataclasses, so ``decode(encode(x)) == x``.

Rows are decoded here and nowhere else: :func:`decode_activation`, :func:`decode_task`,
:func:`decode_audit` and :func:`decode_event` take a row as a sequence of the columns named in
:data:`ACTIVATION_COLUMNS`, :data:`TASK_COLUMNS`, :data:`AUDIT_COLUMNS` and :data:`EVENT_COLUMNS`,
in that order, whichever read path fetched it (plain DB-API or SQLAlchemy Core).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

from drivers.base import Snapshot
from gateway.errors import DeviceErrorInfo, JournalError
from gateway.model import Action, RetryOverride, TaskState
from gateway.results import (
    ActivationResult,
    ActivationState,
    AuditEntry,
    ErrorView,
    Event,
    PhaseTiming,
    RollbackView,
    TaskResult,
    VerificationView,
)
from gateway.secrets import Secret
from gateway.transitions import (
    TASK_FIELDS_ORDER,
    Pending,
    RecoveryChanges,
    TaskChanges,
    TaskRecovery,
    as_text,
    refused,
)

ACTIVATION_COLUMNS = (
    "id", "request_id", "order_ref", "atomic", "state", "created_at", "updated_at", "dry_run", "submitted_by", "retry",
)
TASK_COLUMNS = (
    "task_id", "device", "service", "action", "state", "depends_on", "platform", "driver", "rendered", "diff",
    "verification", "rollback", "error", "timings", "note", "emulated", "parameters",
)
AUDIT_COLUMNS = ("time", "actor", "phase", "task_id", "message")
EVENT_COLUMNS = ("activation_id", "seq", "time", "task_id", "phase", "state", "message", "actor")


usage_error: Callable[[str], JournalError] = refused
"""A caller passed something the journal cannot store: a bug, not worth retrying."""

text: Callable[[Any, str], str] = as_text
"""A text field: ``str`` as is, a Secret masked, anything else refused."""


def utc(value: datetime, what: str) -> datetime:
    """``value`` in UTC; naive datetimes are refused (the journal never guesses a zone)."""
    if not isinstance(value, datetime):
        raise usage_error(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise usage_error(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(timezone.utc)


def to_plain(value: Any) -> Any:
    """A JSON-ready copy of ``value``; Secrets become the mask, datetimes ISO-8601 UTC text."""
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, datetime):
        return utc(value, "timestamp").isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(to_plain(value), separators=(",", ":"), ensure_ascii=False)


def _datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


# -- nested views: encode (typed check + JSON) / decode -----------------------------------------


def _encode_optional(value: Any, cls: type, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, cls):
        raise usage_error(f"{what} must be a {cls.__name__} or None, got {type(value).__name__}")
    return dumps(value)


def encode_verification(value: VerificationView | None) -> str | None:
    return _encode_optional(value, VerificationView, "verification")


def encode_rollback(value: RollbackView | None) -> str | None:
    return _encode_optional(value, RollbackView, "rollback")


def encode_error(value: ErrorView | None) -> str | None:
    return _encode_optional(value, ErrorView, "error")


def encode_timings(value: Any) -> str:
    if not isinstance(value, (tuple, list)) or not all(isinstance(t, PhaseTiming) for t in value):
        raise usage_error("timings must be a tuple of PhaseTiming")
    return dumps(list(value))


def encode_texts(value: tuple[str, ...]) -> str:
    """A tuple of text (checked by :class:`~gateway.transitions.TaskChanges`) as a JSON list."""
    return dumps(list(value))


def decode_texts(raw: str | None) -> tuple[str, ...]:
    """A JSON list of text back as a tuple; NULL or "" (never written) reads as ()."""
    return tuple(json.loads(raw or "[]"))


def decode_verification(raw: str | None) -> VerificationView | None:
    if raw is None:
        return None
    d = json.loads(raw)
    return VerificationView(
        ok=bool(d["ok"]),
        checked=int(d["checked"]),
        mismatches=tuple(d.get("mismatches", ())),
        detail=d.get("detail", ""),
    )


def decode_rollback(raw: str | None) -> RollbackView | None:
    if raw is None:
        return None
    d = json.loads(raw)
    return RollbackView(method=d["method"], ok=bool(d["ok"]), reason=d.get("reason", ""), diff=d.get("diff", ""),
                        retryable=bool(d.get("retryable", False)))


def _device_error(d: Mapping[str, Any] | None) -> DeviceErrorInfo | None:
    if d is None:
        return None
    return DeviceErrorInfo(
        message=d["message"],
        tag=d.get("tag", ""),
        path=d.get("path", ""),
        severity=d.get("severity", "error"),
        line=d.get("line", ""),
        extra=tuple((str(k), str(v)) for k, v in d.get("extra", ())),
    )


def decode_error(raw: str | None) -> ErrorView | None:
    if raw is None:
        return None
    d = json.loads(raw)
    return ErrorView(
        kind=d["kind"],
        message=d["message"],
        phase=d.get("phase", ""),
        retryable=bool(d.get("retryable", False)),
        device_error=_device_error(d.get("device_error")),
    )


def decode_timings(raw: str | None) -> tuple[PhaseTiming, ...]:
    if not raw:
        return ()
    return tuple(
        PhaseTiming(phase=d["phase"], started_at=_datetime(d["started_at"]), duration_ms=float(d["duration_ms"]))
        for d in json.loads(raw)
    )


# -- tasks ----------------------------------------------------------------------------------------

_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "state": lambda v: v.value,
    "verification": encode_verification,
    "rollback": encode_rollback,
    "error": encode_error,
    "timings": encode_timings,
    "emulated": encode_texts,
}


def task_columns(changes: TaskChanges) -> dict[str, Any]:
    """Column values of the task fields ``changes`` sets (checked when it was made)."""
    cols = changes.changed()
    for name, value in cols.items():
        encode = _ENCODERS.get(name)
        if encode is not None:
            cols[name] = encode(value)
    return cols


def task_row(activation_id: str, position: int, task: TaskResult) -> dict[str, Any]:
    """The full row of a task given at creation."""
    if not isinstance(task, TaskResult):
        raise usage_error(f"tasks must be TaskResult, got {type(task).__name__}")
    row: dict[str, Any] = {
        "activation_id": activation_id,
        "task_id": text(task.id, "task id"),
        "position": position,
        "device": text(task.device, "task device"),
        "service": text(task.service, "task service"),
        "action": Action(task.action).value,
        "depends_on": dumps(list(task.depends_on)),
        "recovery": "{}",
        "parameters": dumps(task.parameters),  # already masked by the planner; a Secret masks itself
    }
    row.update(task_columns(TaskChanges(**{name: getattr(task, name) for name in TASK_FIELDS_ORDER})))
    return row


# -- decoding rows: the one path of every read -----------------------------------------------------


def utc_time(value: Any) -> datetime:
    """A stored time as an aware UTC datetime (SQLite keeps naive UTC text, PostgreSQL timestamptz)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a stored time: {value!r}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def decode_task(row: Sequence[Any]) -> TaskResult:
    """A task from its :data:`TASK_COLUMNS`."""
    (task_id, device, service, action, state, depends_on, platform, driver, rendered, diff, verification, rollback,
     error, timings, note, emulated, parameters) = row
    return TaskResult(
        id=task_id,
        device=device,
        service=service,
        action=Action(action),
        state=TaskState(state),
        depends_on=tuple(json.loads(depends_on or "[]")),
        platform=platform,
        driver=driver,
        rendered=rendered,
        diff=diff,
        verification=decode_verification(verification),
        rollback=decode_rollback(rollback),
        error=decode_error(error),
        timings=decode_timings(timings),
        note=note,
        emulated=decode_texts(emulated),
        parameters=json.loads(parameters or "{}"),
    )


def decode_audit(row: Sequence[Any]) -> AuditEntry:
    """An audit entry from the :data:`AUDIT_COLUMNS` of an event a caller's call made (actor set):
    the activation's first event is the submit."""
    time, actor, phase, task_id, message = row
    return AuditEntry(time=utc_time(time), actor=actor, action=phase or "submit", task_id=task_id, note=message)


def decode_activation(row: Sequence[Any], tasks: Sequence[TaskResult], audit: Sequence[AuditEntry]) -> ActivationResult:
    """An activation from its :data:`ACTIVATION_COLUMNS`, with its tasks and audit trail decoded."""
    aid, request_id, order_ref, atomic, state, created_at, updated_at, dry_run, submitted_by, retry = row
    return ActivationResult(
        id=aid,
        request_id=request_id,
        order_ref=order_ref,
        atomic=bool(atomic),
        state=ActivationState(state),
        created_at=utc_time(created_at),
        updated_at=utc_time(updated_at),
        dry_run=bool(dry_run),
        tasks=tuple(tasks),
        submitted_by=submitted_by,
        audit=tuple(audit),
        retry=json.loads(retry or "{}"),
    )


def decode_event(row: Sequence[Any]) -> Event:
    """An event from its :data:`EVENT_COLUMNS`."""
    activation_id, seq, time, task_id, phase, state, message, actor = row
    return Event(activation_id=activation_id, seq=seq, time=utc_time(time), task_id=task_id, phase=phase, state=state,
                 message=message, actor=actor)


# -- recovery records -----------------------------------------------------------------------------


def recovery_values(changes: RecoveryChanges) -> dict[str, Any]:
    """JSON-ready values of the recovery keys ``changes`` sets (to merge into the stored record)."""
    out = changes.changed()
    for name, value in out.items():
        if name in ("snapshot", "after"):
            out[name] = to_plain(value)
        elif name == "pending":
            out[name] = value.value
        elif name == "retry":
            out[name] = None if value is None else value.given()
    return out


def _snapshot(d: Mapping[str, Any] | None) -> Snapshot | None:
    return Snapshot(content=d["content"], scope=d["scope"]) if d else None


def decode_recovery(raw: str | None) -> TaskRecovery:
    d = json.loads(raw or "{}")
    return TaskRecovery(
        snapshot=_snapshot(d.get("snapshot")),
        after=_snapshot(d.get("after")),
        undo=d.get("undo"),
        persist_id=d.get("persist_id", ""),
        pending=Pending(d.get("pending", "")),
        phase=d.get("phase", ""),
        attempt=int(d.get("attempt", 0)),
        retry=RetryOverride(**d["retry"]) if d.get("retry") else None,
    )


__all__ = [
    "ACTIVATION_COLUMNS",
    "AUDIT_COLUMNS",
    "EVENT_COLUMNS",
    "TASK_COLUMNS",
    "decode_activation",
    "decode_audit",
    "decode_error",
    "decode_event",
    "decode_recovery",
    "decode_rollback",
    "decode_task",
    "decode_texts",
    "decode_timings",
    "decode_verification",
    "dumps",
    "encode_error",
    "encode_rollback",
    "encode_texts",
    "encode_timings",
    "encode_verification",
    "recovery_values",
    "task_columns",
    "task_row",
    "text",
    "to_plain",
    "usage_error",
    "utc",
    "utc_time",
]
