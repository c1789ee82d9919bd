"""Translation between the protobuf contract and the domain (gateway.model, gateway.results).

Pure functions, both directions: the server turns requests into domain values and results into
messages; the ``agw`` client turns results back into views (for ``--json`` and display).
Struct parameters: protobuf numbers are doubles, so integral values come back as ``int``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from datetime import datetime, timezone
from typing import Any, Mapping

from google.protobuf import struct_pb2, timestamp_pb2

from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.errors import DeviceErrorInfo
from gateway.model import Action, ActivationRequest, RetryOverride, TaskSpec, TaskState
from gateway.results import (
    ActivationResult,
    ActivationState,
    AuditEntry,
    ErrorView,
    Event,
    PhaseTiming,
    ResultEvent,
    RollbackView,
    SubmitResult,
    TaskResult,
    VerificationView,
)

# -- enums ------------------------------------------------------------------------------------
ACTION_TO_PB: dict[Action, pb.Action] = {
    Action.CREATE: pb.ACTION_CREATE,
    Action.MODIFY: pb.ACTION_MODIFY,
    Action.DELETE: pb.ACTION_DELETE,
}
ACTION_FROM_PB: dict[int, Action] = {v: k for k, v in ACTION_TO_PB.items()}

TASK_STATE_TO_PB: dict[TaskState, pb.TaskState] = {
    TaskState.ACKNOWLEDGED: pb.TASK_STATE_ACKNOWLEDGED,
    TaskState.PENDING: pb.TASK_STATE_PENDING,
    TaskState.IN_PROGRESS: pb.TASK_STATE_IN_PROGRESS,
    TaskState.COMPLETED: pb.TASK_STATE_COMPLETED,
    TaskState.FAILED: pb.TASK_STATE_FAILED,
    TaskState.CANCELLED: pb.TASK_STATE_CANCELLED,
    TaskState.ROLLED_BACK: pb.TASK_STATE_ROLLED_BACK,
    TaskState.FALLOUT: pb.TASK_STATE_FALLOUT,
}
TASK_STATE_FROM_PB: dict[int, TaskState] = {v: k for k, v in TASK_STATE_TO_PB.items()}

ACTIVATION_STATE_TO_PB: dict[ActivationState, pb.ActivationState] = {
    ActivationState.ACKNOWLEDGED: pb.ACTIVATION_STATE_ACKNOWLEDGED,
    ActivationState.IN_PROGRESS: pb.ACTIVATION_STATE_IN_PROGRESS,
    ActivationState.COMPLETED: pb.ACTIVATION_STATE_COMPLETED,
    ActivationState.PARTIAL: pb.ACTIVATION_STATE_PARTIAL,
    ActivationState.FAILED: pb.ACTIVATION_STATE_FAILED,
    ActivationState.CANCELLED: pb.ACTIVATION_STATE_CANCELLED,
    ActivationState.ROLLED_BACK: pb.ACTIVATION_STATE_ROLLED_BACK,
    ActivationState.FALLOUT: pb.ACTIVATION_STATE_FALLOUT,
}
ACTIVATION_STATE_FROM_PB: dict[int, ActivationState] = {v: k for k, v in ACTIVATION_STATE_TO_PB.items()}

MAX_SAFE_INTEGER = 2**53
"""Integers beyond this do not survive a protobuf Struct (a double) exactly."""


# -- Struct ---------------------------------------------------------------------------------
def value_to_python(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        n = value.number_value
        if math.isfinite(n) and n.is_integer() and abs(n) <= MAX_SAFE_INTEGER:
            return int(n)
        return n
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [value_to_python(v) for v in value.list_value.values]
    return None  # null_value, or unset


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return {key: value_to_python(v) for key, v in struct.fields.items()}


def dict_to_struct(data: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(dict(data))
    return s


# -- time -----------------------------------------------------------------------------------
def ts_from_datetime(dt: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    ts.FromDatetime(dt)
    return ts


def datetime_from_ts(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=timezone.utc)


# -- requests -------------------------------------------------------------------------------
def request_from_proto(msg: pb.SubmitRequest) -> ActivationRequest:
    """A structurally valid SubmitRequest (see gateway.api.validate) as a domain request."""
    return ActivationRequest(
        request_id=msg.request_id,
        order_ref=msg.order_ref,
        atomic=msg.atomic if msg.HasField("atomic") else True,
        tasks=tuple(
            TaskSpec(
                id=t.id,
                device=t.device,
                service=t.service,
                action=ACTION_FROM_PB[t.action],
                parameters=struct_to_dict(t.parameters),
                depends_on=tuple(t.depends_on),
            )
            for t in msg.tasks
        ),
        retry=retry_from_proto(msg.retry) if msg.HasField("retry") else None,
    )


def retry_from_proto(msg: pb.RetryPolicy) -> RetryOverride | None:
    """The fields given (None when none is)."""
    given = {name: getattr(msg, name) for name in ("attempts", "initial_delay_s", "max_delay_s", "deadline_s")
             if msg.HasField(name)}
    return RetryOverride(**given) if given else None


def retry_to_proto(retry: RetryOverride | None) -> pb.RetryPolicy | None:
    return None if retry is None else pb.RetryPolicy(**retry.given())  # type: ignore[arg-type]


def request_to_proto(req: ActivationRequest) -> pb.SubmitRequest:
    return pb.SubmitRequest(
        request_id=req.request_id,
        order_ref=req.order_ref,
        atomic=req.atomic,
        retry=retry_to_proto(req.retry),
        tasks=[
            pb.Task(
                id=t.id,
                device=t.device,
                service=t.service,
                action=ACTION_TO_PB[t.action],
                parameters=dict_to_struct(t.parameters),
                depends_on=list(t.depends_on),
            )
            for t in req.tasks
        ],
    )


# -- results: domain -> proto ----------------------------------------------------------------
def submit_to_proto(result: SubmitResult) -> pb.SubmitResponse:
    return pb.SubmitResponse(activation_id=result.activation_id, created=result.created)


def event_to_proto(ev: Event) -> pb.Event:
    return pb.Event(
        activation_id=ev.activation_id,
        seq=ev.seq,
        task_id=ev.task_id,
        phase=ev.phase,
        state=_enum_text(ev.state),
        time=ts_from_datetime(ev.time),
        message=ev.message,
        actor=ev.actor,
    )


def result_event_to_proto(ev: ResultEvent) -> pb.ResultEvent:
    return pb.ResultEvent(id=ev.id, type=ev.type, subject=ev.activation_id, time=ts_from_datetime(ev.time),
                          outcome=ACTIVATION_STATE_TO_PB[ActivationState(ev.outcome)], data=ev.data,
                          cursor=ev.cursor)


def audit_to_proto(entry: AuditEntry) -> pb.AuditEntry:
    return pb.AuditEntry(time=ts_from_datetime(entry.time), actor=entry.actor, action=entry.action,
                         task_id=entry.task_id, note=entry.note)


def _enum_text(value: Any) -> str:
    return value.value if isinstance(value, enum.Enum) else str(value or "")


def task_to_proto(t: TaskResult) -> pb.TaskResult:
    msg = pb.TaskResult(
        id=t.id,
        device=t.device,
        service=t.service,
        action=ACTION_TO_PB[Action(t.action)],
        state=TASK_STATE_TO_PB[TaskState(t.state)],
        depends_on=list(t.depends_on),
        platform=t.platform,
        driver=t.driver,
        rendered=t.rendered,
        diff=t.diff,
        timings=[
            pb.PhaseTiming(phase=x.phase, started_at=ts_from_datetime(x.started_at), duration_ms=x.duration_ms)
            for x in t.timings
        ],
        note=t.note,
        emulated=list(t.emulated),
        parameters=dict_to_struct(t.parameters),
    )
    if t.verification is not None:
        v = t.verification
        msg.verification.CopyFrom(
            pb.Verification(ok=v.ok, checked=v.checked, mismatches=list(v.mismatches), detail=v.detail)
        )
    if t.rollback is not None:
        r = t.rollback
        msg.rollback.CopyFrom(pb.RollbackResult(method=r.method, ok=r.ok, reason=r.reason, diff=r.diff,
                                                retryable=r.retryable))
    if t.error is not None:
        e = t.error
        err = pb.TaskError(kind=e.kind, message=e.message, phase=e.phase, retryable=e.retryable)
        if e.device_error is not None:
            d = e.device_error
            err.device_error.CopyFrom(
                pb.DeviceError(
                    message=d.message, tag=d.tag, path=d.path, severity=d.severity, line=d.line, extra=dict(d.extra)
                )
            )
        msg.error.CopyFrom(err)
    return msg


def activation_to_proto(a: ActivationResult) -> pb.Activation:
    return pb.Activation(
        id=a.id,
        request_id=a.request_id,
        order_ref=a.order_ref,
        atomic=a.atomic,
        state=ACTIVATION_STATE_TO_PB[ActivationState(a.state)],
        created_at=ts_from_datetime(a.created_at),
        updated_at=ts_from_datetime(a.updated_at),
        dry_run=a.dry_run,
        tasks=[task_to_proto(t) for t in a.tasks],
        submitted_by=a.submitted_by,
        audit=[audit_to_proto(e) for e in a.audit],
        retry=pb.RetryPolicy(**a.retry) if a.retry else None,  # type: ignore[arg-type]
    )


# -- results: proto -> domain (client side) --------------------------------------------------
def event_from_proto(msg: pb.Event) -> Event:
    return Event(
        activation_id=msg.activation_id,
        seq=msg.seq,
        time=datetime_from_ts(msg.time),
        task_id=msg.task_id,
        phase=msg.phase,
        state=msg.state,
        message=msg.message,
        actor=msg.actor,
    )


def task_from_proto(msg: pb.TaskResult) -> TaskResult:
    device_error = None
    error = None
    if msg.HasField("error"):
        e = msg.error
        if e.HasField("device_error"):
            d = e.device_error
            device_error = DeviceErrorInfo(
                message=d.message,
                tag=d.tag,
                path=d.path,
                severity=d.severity,
                line=d.line,
                extra=tuple(sorted(d.extra.items())),
            )
        error = ErrorView(kind=e.kind, message=e.message, phase=e.phase, retryable=e.retryable, device_error=device_error)
    return TaskResult(
        id=msg.id,
        device=msg.device,
        service=msg.service,
        action=ACTION_FROM_PB.get(msg.action, Action.CREATE),
        state=TASK_STATE_FROM_PB.get(msg.state, TaskState.ACKNOWLEDGED),
        depends_on=tuple(msg.depends_on),
        platform=msg.platform,
        driver=msg.driver,
        rendered=msg.rendered,
        diff=msg.diff,
        verification=(
            VerificationView(
                ok=msg.verification.ok,
                checked=msg.verification.checked,
                mismatches=tuple(msg.verification.mismatches),
                detail=msg.verification.detail,
            )
            if msg.HasField("verification")
            else None
        ),
        rollback=(
            RollbackView(
                method=msg.rollback.method, ok=msg.rollback.ok, reason=msg.rollback.reason, diff=msg.rollback.diff,
                retryable=msg.rollback.retryable
            )
            if msg.HasField("rollback")
            else None
        ),
        error=error,
        timings=tuple(
            PhaseTiming(phase=x.phase, started_at=datetime_from_ts(x.started_at), duration_ms=x.duration_ms)
            for x in msg.timings
        ),
        note=msg.note,
        emulated=tuple(msg.emulated),
        parameters=struct_to_dict(msg.parameters),
    )


def activation_from_proto(msg: pb.Activation) -> ActivationResult:
    return ActivationResult(
        id=msg.id,
        request_id=msg.request_id,
        order_ref=msg.order_ref,
        atomic=msg.atomic,
        state=ACTIVATION_STATE_FROM_PB.get(msg.state, ActivationState.ACKNOWLEDGED),
        created_at=datetime_from_ts(msg.created_at),
        updated_at=datetime_from_ts(msg.updated_at),
        dry_run=msg.dry_run,
        tasks=tuple(task_from_proto(t) for t in msg.tasks),
        submitted_by=msg.submitted_by,
        audit=tuple(AuditEntry(time=datetime_from_ts(e.time), actor=e.actor, action=e.action, task_id=e.task_id,
                               note=e.note) for e in msg.audit),
        retry=(retry_from_proto(msg.retry) or RetryOverride()).given() if msg.HasField("retry") else {},
    )


# -- plain data (for --json) -----------------------------------------------------------------
def to_plain(value: Any) -> Any:
    """A view (dataclass) as JSON-ready data: enums by value, datetimes in ISO 8601."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, DeviceErrorInfo):
        d = {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "extra"}
        d["extra"] = dict(value.extra)
        return d
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


__all__ = [
    "ACTION_FROM_PB",
    "ACTION_TO_PB",
    "ACTIVATION_STATE_FROM_PB",
    "ACTIVATION_STATE_TO_PB",
    "MAX_SAFE_INTEGER",
    "TASK_STATE_FROM_PB",
    "TASK_STATE_TO_PB",
    "activation_from_proto",
    "activation_to_proto",
    "datetime_from_ts",
    "dict_to_struct",
    "event_from_proto",
    "event_to_proto",
    "request_from_proto",
    "request_to_proto",
    "retry_from_proto",
    "retry_to_proto",
    "result_event_to_proto",
    "struct_to_dict",
    "submit_to_proto",
    "task_from_proto",
    "task_to_proto",
    "to_plain",
    "ts_from_datetime",
]
