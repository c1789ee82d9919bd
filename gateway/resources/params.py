"""Allocation and release requests inside task parameters. Pure.

A parameter value may ask for an allocation instead of giving a value::

    ipv4: {address: {allocate: {pool: lab-v4}}, prefix_length: 24}     # one address
    prefix: {allocate: {pool: customer-v4, prefix_length: 29}}          # a /29 out of the pool
    vlan: {allocate: {pool: access-vlans}}                              # one VLAN id

and a ``delete`` task may give back what an earlier task got, naming the pool and the value::

    vlan: {release: {pool: access-vlans, value: 120}}

A mapping whose ONLY key is ``allocate`` (or ``release``) is such a request, at any depth of the
parameters. :func:`find` collects them (every problem as a violation naming the task and the
parameter); :func:`substitute` puts the values in their place (the release's value for a
release), so the service's schema checks and the template renders the real value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from gateway.errors import FieldViolation
from gateway.model import Action, ActivationRequest, TaskSpec
from gateway.resources.pools import NAME_RE

Path = tuple[str | int, ...]

MAX_REQUESTS = 1000
"""Most allocations and releases one activation may ask for."""
MAX_DEPTH = 32
_ALLOCATE_KEYS = frozenset({"pool", "prefix_length"})
_RELEASE_KEYS = frozenset({"pool", "value"})


@dataclass(frozen=True, kw_only=True)
class AllocationRequest:
    """One ``{allocate: ...}`` of a task."""

    task_id: str
    path: Path
    """Where in the task's parameters (keys and list indexes)."""
    field: str
    """The same as shown in errors: ``tasks[0].parameters.ipv4.address``."""
    pool: str
    prefix_length: int | None = None

    @property
    def param(self) -> str:
        """The parameter path alone (``ipv4.address``), as journaled with the allocation."""
        return path_text(self.path)


@dataclass(frozen=True, kw_only=True)
class ReleaseRequest:
    """One ``{release: ...}`` of a delete task: the allocation it gives back once it completes."""

    task_id: str
    path: Path
    field: str
    pool: str
    value: Any


def path_text(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _field(index: int, path: Path) -> str:
    text = path_text(path)
    return f"tasks[{index}].parameters" + (("" if text.startswith("[") else ".") + text if text else "")


def _walk(value: Any, path: Path, depth: int) -> Any:
    """(path, kind, body) of every request below ``value``."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, Mapping):
        if len(value) == 1:
            (k, body), = value.items()
            if k in ("allocate", "release"):
                yield path, k, body
                return
        for k, v in value.items():
            yield from _walk(v, (*path, str(k)), depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk(v, (*path, i), depth + 1)


def _allocation(index: int, task: TaskSpec, path: Path, body: Any) -> AllocationRequest | FieldViolation:
    field = _field(index, path)
    if task.action == Action.DELETE:
        return FieldViolation(field, "a delete task cannot allocate (give back an allocation with "
                                     "{release: {pool, value}})")
    if not isinstance(body, Mapping):
        return FieldViolation(f"{field}.allocate", "must be a mapping: {pool: NAME} (and prefix_length for a prefix)")
    unknown = sorted(str(k) for k in body if k not in _ALLOCATE_KEYS)
    if unknown:
        return FieldViolation(f"{field}.allocate", f"unknown field(s) {', '.join(unknown)} (allowed: pool, prefix_length)")
    pool = body.get("pool")
    if not isinstance(pool, str) or not NAME_RE.match(pool):
        return FieldViolation(f"{field}.allocate.pool", f"required: a pool name, not {pool!r}")
    length = body.get("prefix_length")
    if length is not None:
        if isinstance(length, float) and length.is_integer():
            length = int(length)  # a Struct carries numbers as doubles
        if isinstance(length, bool) or not isinstance(length, int) or not 0 <= length <= 128:
            return FieldViolation(f"{field}.allocate.prefix_length", f"an integer 0-128, not {length!r}")
    return AllocationRequest(task_id=task.id, path=path, field=field, pool=pool, prefix_length=length)


def _release(index: int, task: TaskSpec, path: Path, body: Any) -> ReleaseRequest | FieldViolation:
    field = _field(index, path)
    if task.action != Action.DELETE:
        return FieldViolation(field, f"only a delete task can release an allocation (this one is {task.action.value})")
    if not isinstance(body, Mapping) or set(body) != _RELEASE_KEYS:
        return FieldViolation(f"{field}.release", "must be a mapping of exactly pool and value")
    pool = body["pool"]
    if not isinstance(pool, str) or not NAME_RE.match(pool):
        return FieldViolation(f"{field}.release.pool", f"a pool name, not {pool!r}")
    value = body["value"]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and len(value) > 64):
        return FieldViolation(f"{field}.release.value", "the allocated value (an address, a prefix or an integer)")
    return ReleaseRequest(task_id=task.id, path=path, field=field, pool=pool, value=value)


def find(request: ActivationRequest) -> tuple[list[AllocationRequest], list[ReleaseRequest], list[FieldViolation]]:
    """The allocations and releases ``request`` asks for, and what is wrong with them."""
    allocations: list[AllocationRequest] = []
    releases: list[ReleaseRequest] = []
    violations: list[FieldViolation] = []
    for index, task in enumerate(request.tasks):
        for path, kind, body in _walk(task.parameters, (), 0):
            found = (_allocation if kind == "allocate" else _release)(index, task, path, body)
            if isinstance(found, FieldViolation):
                violations.append(found)
            elif isinstance(found, AllocationRequest):
                allocations.append(found)
            else:
                releases.append(found)
    if len(allocations) + len(releases) > MAX_REQUESTS:
        violations.append(FieldViolation("tasks", f"{len(allocations) + len(releases)} allocations and releases, "
                                                  f"more than the limit of {MAX_REQUESTS}"))
    seen: dict[tuple[str, str], str] = {}
    for r in releases:
        k = (r.pool, str(r.value))
        if k in seen:
            violations.append(FieldViolation(r.field, f"releases {r.value!r} of pool {r.pool} again "
                                                      f"(also {seen[k]})"))
        seen[k] = r.field
    return allocations, releases, violations


def _put(value: Any, path: Path, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, Mapping):
        out = dict(value)
        out[head] = _put(value[head], rest, new)
        return out
    items = list(value)
    items[head] = _put(items[head], rest, new)  # type: ignore[index]
    return items


def substitute(request: ActivationRequest, values: Mapping[tuple[str, Path], Any]) -> ActivationRequest:
    """``request`` with each ``(task id, path)`` of ``values`` replaced by its value (the other
    tasks are the same objects)."""
    by_task: dict[str, list[tuple[Path, Any]]] = {}
    for (task_id, path), value in values.items():
        by_task.setdefault(task_id, []).append((path, value))
    if not by_task:
        return request
    tasks = []
    for t in request.tasks:
        changes = by_task.get(t.id)
        if changes:
            params: Any = t.parameters
            for path, value in changes:
                params = _put(params, path, value)
            t = dataclasses.replace(t, parameters=params)
        tasks.append(t)
    return dataclasses.replace(request, tasks=tuple(tasks))


def release_values(releases: Sequence[ReleaseRequest]) -> dict[tuple[str, Path], Any]:
    """What each release puts in its place: the released value itself."""
    return {(r.task_id, r.path): r.value for r in releases}


__all__ = ["AllocationRequest", "MAX_REQUESTS", "Path", "ReleaseRequest", "find", "path_text", "release_values",
           "substitute"]
