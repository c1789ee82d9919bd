"""Pure conversions between the result views and journal rows (JSON text for nested values).

Nothing here touches a database. Encoding masks every :class:`~gateway.secrets.Secret` (its
``str`` is the mask), so a credential passed by mistake never reaches the journal in clear.
Decoding rebuilds the exact dataclasses, so ``decode(encode(x)) == x``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from datetime import datetime, timezone
from typing import Any, Mapping

from drivers.base import Snapshot
from gateway.engine.views import (
    ErrorView,
    PhaseTiming,
    RollbackView,
    TaskResult,
    VerificationView,
)
from gateway.errors import DeviceErrorInfo, JournalError, Phase
from gateway.journal.base import RECOVERY_FIELDS, TASK_FIELDS, TaskRecovery
from gateway.model import Action, TaskState
from gateway.secrets import Secret


def usage_error(message: str) -> JournalError:
    """A caller passed something the journal cannot store: a bug, not worth retrying."""
    return JournalError(message, phase=Phase.JOURNAL, retryable=False)


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


def text(value: Any, what: str) -> str:
    """A text field: ``str`` as is, a Secret masked, anything else refused."""
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, enum.Enum) and isinstance(value.value, str):
        return value.value
    if isinstance(value, str):
        return value
    raise usage_error(f"{what} must be a str, got {type(value).__name__}")


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
    return RollbackView(method=d["method"], ok=bool(d["ok"]), reason=d.get("reason", ""), diff=d.get("diff", ""))


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

_TEXT_FIELDS = ("platform", "driver", "rendered", "diff", "note")


def task_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for a :meth:`Journal.record` ``task`` mapping (TaskResult field names)."""
    unknown = sorted(set(changes) - TASK_FIELDS)
    if unknown:
        raise usage_error(f"task fields {unknown} cannot be recorded; allowed: {sorted(TASK_FIELDS)}")
    cols: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "state":
            try:
                cols["state"] = TaskState(value).value
            except ValueError:
                raise usage_error(f"task state {value!r} is not a TaskState") from None
        elif name in _TEXT_FIELDS:
            cols[name] = text(value, f"task field {name}")
        elif name == "verification":
            cols[name] = encode_verification(value)
        elif name == "rollback":
            cols[name] = encode_rollback(value)
        elif name == "error":
            cols[name] = encode_error(value)
        elif name == "timings":
            cols[name] = encode_timings(value)
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
    }
    row.update(task_changes({name: getattr(task, name) for name in TASK_FIELDS}))
    return row


def decode_task(row: Mapping[Any, Any]) -> TaskResult:
    return TaskResult(
        id=row["task_id"],
        device=row["device"],
        service=row["service"],
        action=Action(row["action"]),
        state=TaskState(row["state"]),
        depends_on=tuple(json.loads(row["depends_on"] or "[]")),
        platform=row["platform"],
        driver=row["driver"],
        rendered=row["rendered"],
        diff=row["diff"],
        verification=decode_verification(row["verification"]),
        rollback=decode_rollback(row["rollback"]),
        error=decode_error(row["error"]),
        timings=decode_timings(row["timings"]),
        note=row["note"],
    )


# -- recovery records -----------------------------------------------------------------------------


def recovery_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validated, JSON-ready values of a ``recovery`` mapping (to merge into the stored record)."""
    unknown = sorted(set(changes) - RECOVERY_FIELDS)
    if unknown:
        raise usage_error(f"recovery keys {unknown} are unknown; allowed: {sorted(RECOVERY_FIELDS)}")
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name in ("snapshot", "after"):
            if value is not None and not isinstance(value, Snapshot):
                raise usage_error(f"recovery {name} must be a Snapshot or None, got {type(value).__name__}")
            out[name] = to_plain(value)
        elif name == "attempt":
            if not isinstance(value, int) or isinstance(value, bool):
                raise usage_error(f"recovery attempt must be an int, got {type(value).__name__}")
            out[name] = value
        else:
            out[name] = text(value, f"recovery {name}")
    return out


def _snapshot(d: Mapping[str, Any] | None) -> Snapshot | None:
    return Snapshot(content=d["content"], scope=d["scope"]) if d else None


def decode_recovery(raw: str | None) -> TaskRecovery:
    d = json.loads(raw or "{}")
    return TaskRecovery(
        snapshot=_snapshot(d.get("snapshot")),
        after=_snapshot(d.get("after")),
        persist_id=d.get("persist_id", ""),
        pending=d.get("pending", ""),
        phase=d.get("phase", ""),
        attempt=int(d.get("attempt", 0)),
    )


__all__ = [
    "decode_error",
    "decode_recovery",
    "decode_rollback",
    "decode_task",
    "decode_timings",
    "decode_verification",
    "dumps",
    "encode_error",
    "encode_rollback",
    "encode_timings",
    "encode_verification",
    "recovery_changes",
    "task_changes",
    "task_row",
    "text",
    "to_plain",
    "usage_error",
    "utc",
]
