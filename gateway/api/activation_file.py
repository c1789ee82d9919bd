"""Activation files (YAML), as read by ``agw activate``.

::

    request_id: lab-if-1          # required: the idempotency key (--request-id overrides)
    order_ref: ORD-1001           # optional
    atomic: true                  # optional, default true
    retry:                        # optional: this activation's automatic retries, each field over
      attempts: 5                 #   the device profile's (1 = none, at most 20)
      max_delay_s: 4              #   also initial_delay_s, deadline_s: seconds in (0, 3600]
    tasks:
      - id: if1
        device: nc1
        service: interface
        action: create            # create | modify | delete
        parameters: {name: eth1, description: uplink}
        depends_on: []            # optional

Only the shape and types are checked here (every problem at once, as InputError naming
``tasks[i].field``); the server checks the rest.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Iterator

import yaml

from drivers.profiles import retry_problem
from gateway.api.convert import MAX_SAFE_INTEGER
from gateway.errors import FieldViolation, InputError
from gateway.model import Action, ActivationRequest, RetryOverride, TaskSpec

TOP_KEYS = frozenset({"request_id", "order_ref", "atomic", "retry", "tasks"})
RETRY_KEYS = ("attempts", "initial_delay_s", "max_delay_s", "deadline_s")
TASK_KEYS = frozenset({"id", "device", "service", "action", "parameters", "depends_on"})


def _json_values(field: str, value: Any) -> Iterator[FieldViolation]:
    """Struct parameters carry JSON values only; integers beyond 2^53 would silently change."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            yield FieldViolation(field, "integer too large to travel exactly (max 2^53); quote it")
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                yield FieldViolation(f"{field}.{k}", "keys must be strings; quote it")
            else:
                yield from _json_values(f"{field}.{k}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _json_values(f"{field}[{i}]", v)
    elif isinstance(value, (_dt.date, _dt.datetime)):
        yield FieldViolation(field, "YAML read a date here; quote it to send text")
    else:
        yield FieldViolation(field, f"unsupported value of type {type(value).__name__}")


def _text(field: str, value: Any, out: list[FieldViolation], *, required: bool = True) -> str:
    if value is None:
        if required:
            out.append(FieldViolation(field, "required"))
        return ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        out.append(FieldViolation(field, f"must be text, not {type(value).__name__}"))
        return ""
    return str(value)


def _task(i: int, raw: Any, out: list[FieldViolation]) -> TaskSpec | None:
    f = f"tasks[{i}]"
    if not isinstance(raw, dict):
        out.append(FieldViolation(f, "must be a mapping"))
        return None
    for key in sorted(set(map(str, raw)) - TASK_KEYS):
        out.append(FieldViolation(f"{f}.{key}", "unknown field"))
    tid = _text(f"{f}.id", raw.get("id"), out)
    device = _text(f"{f}.device", raw.get("device"), out)
    service = _text(f"{f}.service", raw.get("service"), out)
    action_text = _text(f"{f}.action", raw.get("action"), out).lower()
    action = None
    if action_text:
        try:
            action = Action(action_text)
        except ValueError:
            out.append(FieldViolation(f"{f}.action", f"must be create, modify or delete, not {action_text!r}"))
    params = raw.get("parameters") or {}
    if not isinstance(params, dict):
        out.append(FieldViolation(f"{f}.parameters", "must be a mapping"))
        params = {}
    out.extend(_json_values(f"{f}.parameters", params))
    deps = raw.get("depends_on") or []
    if isinstance(deps, str):
        deps = [deps]
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        out.append(FieldViolation(f"{f}.depends_on", "must be a list of task ids"))
        deps = []
    if action is None:
        return None
    return TaskSpec(id=tid, device=device, service=service, action=action, parameters=params, depends_on=tuple(deps))


def _retry(raw: Any, out: list[FieldViolation]) -> RetryOverride | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        out.append(FieldViolation("retry", "must be a mapping (attempts, initial_delay_s, max_delay_s, deadline_s)"))
        return None
    given: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in RETRY_KEYS:
            out.append(FieldViolation(f"retry.{key}", f"unknown field (known: {', '.join(RETRY_KEYS)})"))
        elif (problem := retry_problem(key, value)) is not None:
            out.append(FieldViolation(f"retry.{key}", problem))
        else:
            given[key] = value
    return RetryOverride(**given) if given else None


def parse_activation(data: Any, *, request_id: str = "") -> ActivationRequest:
    out: list[FieldViolation] = []
    if not isinstance(data, dict):
        raise InputError([FieldViolation("(file)", "must be a mapping with request_id and tasks")])
    for key in sorted(set(map(str, data)) - TOP_KEYS):
        out.append(FieldViolation(key, "unknown field"))
    rid = request_id or _text("request_id", data.get("request_id"), out)
    order_ref = _text("order_ref", data.get("order_ref"), out, required=False)
    atomic = data.get("atomic", True)
    if not isinstance(atomic, bool):
        out.append(FieldViolation("atomic", "must be true or false"))
        atomic = True
    retry = _retry(data.get("retry"), out)
    raw_tasks = data.get("tasks")
    tasks: list[TaskSpec] = []
    if not isinstance(raw_tasks, list) or not raw_tasks:
        out.append(FieldViolation("tasks", "a non-empty list of tasks is required"))
    else:
        for i, raw in enumerate(raw_tasks):
            t = _task(i, raw, out)
            if t is not None:
                tasks.append(t)
    if out:
        raise InputError(out)
    return ActivationRequest(request_id=rid, order_ref=order_ref, atomic=atomic, tasks=tuple(tasks), retry=retry)


def load_activation(path: Path, *, request_id: str = "") -> ActivationRequest:
    """Read and check an activation file. Raises InputError (field violations prefixed by nothing;
    the caller names the file) for YAML errors and bad shapes."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError([FieldViolation("(file)", f"cannot read: {exc.strerror or exc}")]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError([FieldViolation(where, f"YAML error: {problem}")]) from exc
    return parse_activation(data, request_id=request_id)


__all__ = ["load_activation", "parse_activation"]
