"""Structural validation at the gRPC edge: every violation at once, before the engine is called.

Only what can be checked on the message alone lives here (required fields, duplicates, references
between tasks, sizes). Semantic checks — unknown device or service, parameters against the
service schema, dependency cycles — are the engine's; it raises InputError the same way. Field
names follow the message: ``request_id``, ``tasks[3].depends_on[0]``, ``tasks[1].parameters.mtu``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from google.protobuf import struct_pb2, timestamp_pb2

from drivers.profiles import retry_problem
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.errors import FieldViolation, InputError

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, kw_only=True)
class EdgeLimits:
    """Size limits checked by the edge. The gRPC receive limit is set above ``max_request_bytes``
    so that an oversized request is answered by the edge (naming the field), not the transport."""

    max_tasks: int = 1000
    max_task_parameters_bytes: int = 64 * KIB
    max_request_bytes: int = 4 * MIB
    max_id_length: int = 256
    max_note_length: int = 4096
    max_parameter_depth: int = 16
    """Nesting levels of a task's parameters (``parameters.a`` is level 1, ``parameters.a.b[0]`` level 3)."""
    max_list_limit: int = 1000
    max_wait_ms: int = 300_000
    default_page_size: int = 50
    max_page_size: int = 1000
    max_page_token_length: int = 1024
    max_response_bytes: int = 3 * MIB + 512 * KIB
    """What a response may weigh: under a stock gRPC client's 4 MB receive limit (see gateway.api.paging)."""
    max_subscribe_filters: int = 64
    """Outcomes or services one Subscribe may name."""
    subscribe_buffer: int = 64
    """Events a Subscribe stream holds for a caller that reads slower than they come."""
    subscribe_stall_s: float = 30.0
    """A Subscribe stream whose buffer stays full this long is ended with RESOURCE_EXHAUSTED."""


DEFAULT_LIMITS = EdgeLimits()
_SERVICE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\Z")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""C0 and C1 controls, DEL and the Unicode line/paragraph separators: refused in every text a
caller names (ids, references, parameter names), since they end up in logs and on terminals."""
_NOTE_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
"""The same for a free-text note, which may hold a tab."""
_KEY_CHARS = 64
_TS_MIN_S = -62135596800  # 0001-01-01T00:00:00Z
_TS_MAX_S = 253402300799  # 9999-12-31T23:59:59Z


def _short(text: str, n: int = 64) -> str:
    return repr(text if len(text) <= n else text[:n] + "…")


def _name(field: str, value: str, limits: EdgeLimits, *, required: bool = True) -> Iterator[FieldViolation]:
    if not value.strip():
        if required:
            yield FieldViolation(field, "required")
        elif value:
            yield FieldViolation(field, "blank")
        return
    if len(value) > limits.max_id_length:
        yield FieldViolation(field, f"longer than {limits.max_id_length} characters")
    if _CONTROL.search(value):
        yield FieldViolation(field, "contains a control character")


def _key(key: str) -> str:
    """A parameter name as shown in a field path: clipped, control characters escaped."""
    shown = key if len(key) <= _KEY_CHARS else key[:_KEY_CHARS] + "…"
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], shown)


def _fields(field: str, struct: struct_pb2.Struct, depth: int, limits: EdgeLimits) -> Iterator[FieldViolation]:
    for key, v in struct.fields.items():
        f = f"{field}.{_key(key)}"
        if len(key) > limits.max_id_length:
            yield FieldViolation(f, f"parameter name longer than {limits.max_id_length} characters")
        elif _CONTROL.search(key):
            yield FieldViolation(f, "parameter name contains a control character")
        yield from _parameter(f, v, depth + 1, limits)


def _parameter(field: str, value: struct_pb2.Value, depth: int, limits: EdgeLimits) -> Iterator[FieldViolation]:
    """Finite numbers, bounded nesting, sane names; ``depth`` is the level of ``value``."""
    if depth > limits.max_parameter_depth:
        yield FieldViolation(field, f"nested deeper than {limits.max_parameter_depth} levels")
        return
    kind = value.WhichOneof("kind")
    if kind == "number_value" and not math.isfinite(value.number_value):
        yield FieldViolation(field, "not a finite number")
    elif kind == "struct_value":
        yield from _fields(field, value.struct_value, depth, limits)
    elif kind == "list_value":
        for i, v in enumerate(value.list_value.values):
            yield from _parameter(f"{field}[{i}]", v, depth + 1, limits)


def _task(i: int, task: pb.Task, ids: dict[str, int], limits: EdgeLimits) -> Iterator[FieldViolation]:
    f = f"tasks[{i}]"
    yield from _name(f"{f}.id", task.id, limits)
    yield from _name(f"{f}.device", task.device, limits)
    yield from _name(f"{f}.service", task.service, limits)
    if task.service.strip() and not _SERVICE_NAME.match(task.service):
        yield FieldViolation(f"{f}.service", "must be letters, digits, '_' or '-'")
    if task.action == pb.ACTION_UNSPECIFIED:
        yield FieldViolation(f"{f}.action", "required (create, modify or delete)")
    elif task.action not in pb.Action.values():
        yield FieldViolation(f"{f}.action", f"unknown value {task.action}")
    size = task.parameters.ByteSize()
    if size > limits.max_task_parameters_bytes:
        yield FieldViolation(
            f"{f}.parameters", f"{size} bytes, more than the limit of {limits.max_task_parameters_bytes}"
        )
    yield from _fields(f"{f}.parameters", task.parameters, 0, limits)
    seen: set[str] = set()
    for k, dep in enumerate(task.depends_on):
        fd = f"{f}.depends_on[{k}]"
        if not dep:
            yield FieldViolation(fd, "empty task id")
        elif dep == task.id:
            yield FieldViolation(fd, "a task cannot depend on itself")
        elif dep not in ids:
            yield FieldViolation(fd, f"unknown task id {_short(dep)}")
        elif dep in seen:
            yield FieldViolation(fd, f"duplicate dependency {_short(dep)}")
        seen.add(dep)


def submit_violations(msg: pb.SubmitRequest, limits: EdgeLimits = DEFAULT_LIMITS) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    size = msg.ByteSize()
    if size > limits.max_request_bytes:
        out.append(FieldViolation("request", f"{size} bytes, more than the limit of {limits.max_request_bytes}"))
    out.extend(_name("request_id", msg.request_id, limits))
    out.extend(_name("order_ref", msg.order_ref, limits, required=False))
    if not msg.tasks:
        out.append(FieldViolation("tasks", "at least one task is required"))
    elif len(msg.tasks) > limits.max_tasks:
        out.append(FieldViolation("tasks", f"{len(msg.tasks)} tasks, more than the limit of {limits.max_tasks}"))
    ids: dict[str, int] = {}
    for i, task in enumerate(msg.tasks):
        if task.id in ids:
            out.append(FieldViolation(f"tasks[{i}].id", f"duplicate of tasks[{ids[task.id]}].id {_short(task.id)}"))
        elif task.id:
            ids[task.id] = i
    for i, task in enumerate(msg.tasks):
        out.extend(_task(i, task, ids, limits))
    if msg.HasField("retry"):
        out.extend(retry_violations(msg.retry))
    return out


RETRY_FIELDS = ("attempts", "initial_delay_s", "max_delay_s", "deadline_s")


def retry_violations(retry: pb.RetryPolicy) -> Iterator[FieldViolation]:
    """Each field given within the hard caps a device profile's retry has too (``retry.attempts``...)."""
    for name in RETRY_FIELDS:
        if retry.HasField(name):
            problem = retry_problem(name, getattr(retry, name))
            if problem is not None:
                yield FieldViolation(f"retry.{name}", problem)


def _timestamp(field: str, ts: timestamp_pb2.Timestamp) -> Iterator[FieldViolation]:
    if not (_TS_MIN_S <= ts.seconds <= _TS_MAX_S and 0 <= ts.nanos < 1_000_000_000):
        yield FieldViolation(field, "timestamp out of range")


def list_violations(msg: pb.ListRequest, limits: EdgeLimits = DEFAULT_LIMITS) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    for k, state in enumerate(msg.states):
        if state == pb.ACTIVATION_STATE_UNSPECIFIED or state not in pb.ActivationState.values():
            out.append(FieldViolation(f"states[{k}]", f"unknown activation state {state}"))
    out.extend(_name("device", msg.device, limits, required=False))
    if not 0 <= msg.limit <= limits.max_list_limit:
        out.append(FieldViolation("limit", f"must be between 0 and {limits.max_list_limit}"))
    out.extend(_paging(msg.page_size, msg.page_token, limits))
    for name in ("since", "until"):
        if msg.HasField(name):
            out.extend(_timestamp(name, getattr(msg, name)))
    if msg.HasField("since") and msg.HasField("until") and not out:
        if msg.until.ToNanoseconds() < msg.since.ToNanoseconds():
            out.append(FieldViolation("until", "earlier than since"))
    return out


def _paging(page_size: int, page_token: str, limits: EdgeLimits) -> Iterator[FieldViolation]:
    if not 0 <= page_size <= limits.max_page_size:
        yield FieldViolation("page_size", f"must be between 0 and {limits.max_page_size}")
    if len(page_token) > limits.max_page_token_length:
        yield FieldViolation("page_token", f"longer than {limits.max_page_token_length} characters: not a page token "
                                           "of this gateway")


def page_size(size: int, limits: EdgeLimits = DEFAULT_LIMITS, *, limit: int = 0) -> int:
    """The page size asked for: ``size``, else the deprecated ``limit``, else the default."""
    return size or limit or limits.default_page_size


def fallout_list_violations(msg: pb.ListFalloutRequest, limits: EdgeLimits = DEFAULT_LIMITS) -> list[FieldViolation]:
    return list(_paging(msg.page_size, msg.page_token, limits))


def activation_id_violations(activation_id: str, limits: EdgeLimits = DEFAULT_LIMITS) -> list[FieldViolation]:
    return list(_name("activation_id", activation_id, limits))


def get_violations(msg: pb.GetRequest, limits: EdgeLimits = DEFAULT_LIMITS) -> list[FieldViolation]:
    out = activation_id_violations(msg.activation_id, limits)
    if msg.wait_ms > limits.max_wait_ms:
        out.append(FieldViolation("wait_ms", f"{msg.wait_ms} is more than the {limits.max_wait_ms} ms a Get may wait; "
                                             "call Get again (or follow Watch) to wait longer"))
    return out


def fallout_violations(
    msg: pb.FalloutActionRequest, *, resolve: bool, limits: EdgeLimits = DEFAULT_LIMITS
) -> list[FieldViolation]:
    out = activation_id_violations(msg.activation_id, limits)
    out.extend(_name("task_id", msg.task_id, limits, required=resolve))
    if resolve and not msg.note.strip():
        out.append(FieldViolation("note", "required: say what was done"))
    if len(msg.note) > limits.max_note_length:
        out.append(FieldViolation("note", f"longer than {limits.max_note_length} characters"))
    if _NOTE_CONTROL.search(msg.note):
        out.append(FieldViolation("note", "contains a control character (only a tab is allowed)"))
    return out


END_STATES = frozenset({pb.ACTIVATION_STATE_COMPLETED, pb.ACTIVATION_STATE_PARTIAL, pb.ACTIVATION_STATE_FAILED,
                        pb.ACTIVATION_STATE_CANCELLED, pb.ACTIVATION_STATE_ROLLED_BACK, pb.ACTIVATION_STATE_FALLOUT})
"""The outcomes a result event can have."""


def subscribe_violations(msg: pb.SubscribeRequest, limits: EdgeLimits = DEFAULT_LIMITS) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if len(msg.after) > limits.max_page_token_length or _CONTROL.search(msg.after):
        out.append(FieldViolation("after", "not a cursor this gateway gave out"))
    if msg.after and msg.from_start:
        out.append(FieldViolation("from_start", "give either after (a cursor) or from_start, not both"))
    for name in ("outcomes", "services"):
        if len(getattr(msg, name)) > limits.max_subscribe_filters:
            out.append(FieldViolation(name, f"more than {limits.max_subscribe_filters}"))
    for k, state in enumerate(msg.outcomes[:limits.max_subscribe_filters]):
        if state not in END_STATES:
            out.append(FieldViolation(f"outcomes[{k}]", f"{state} is not an end state (completed, partial, failed, "
                                                        "rolledBack, cancelled, fallout)"))
    for k, service in enumerate(msg.services[:limits.max_subscribe_filters]):
        out.extend(_name(f"services[{k}]", service, limits))
    return out


def raise_if_any(violations: Iterable[FieldViolation]) -> None:
    found = list(violations)
    if found:
        raise InputError(found)


__all__ = [
    "DEFAULT_LIMITS",
    "END_STATES",
    "EdgeLimits",
    "activation_id_violations",
    "fallout_list_violations",
    "fallout_violations",
    "get_violations",
    "list_violations",
    "page_size",
    "raise_if_any",
    "retry_violations",
    "submit_violations",
    "subscribe_violations",
]
