"""Planning: check a request against the inventory and the service catalogue, order its tasks.

Pure logic (no I/O beyond the in-memory inventory/template store), so every rule here is unit
tested. All violations are collected, never only the first.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

from drivers.base import Capabilities, ChangeSet, DeviceProfile, Driver, PayloadFormat
from drivers.checks import plan_checks
from gateway.errors import AgwError, FieldViolation, InputError
from gateway.incidents import public_message
from gateway.model import Action, ActivationRequest, TaskSpec
from gateway.render.masking import Redactor


class _Templates(Protocol):
    def services(self) -> list[str]: ...
    def platforms(self, service: str) -> list[str]: ...
    def has(self, service: str, platform: str) -> bool: ...
    def validate(
        self, *, service: str, action: Action, parameters: Mapping[str, Any], payload_format: PayloadFormat
    ) -> list[FieldViolation]: ...
    def render(
        self,
        *,
        service: str,
        platform: str,
        action: Action,
        parameters: Mapping[str, Any],
        device: str,
        payload_format: PayloadFormat,
        validated: bool = False,
    ) -> ChangeSet: ...
    def masked(self, *, service: str, parameters: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]: ...


@dataclass(frozen=True, kw_only=True)
class PlannedTask:
    spec: TaskSpec
    index: int
    platform: str
    port: int
    credentials_ref: str
    address: str
    known_hosts: str = ""
    """The device's known_hosts file, from the inventory (SSH drivers check its host key)."""
    host_key_check: bool = True
    """False only when the inventory turns the device's host-key check off."""
    profile: DeviceProfile
    capabilities: Capabilities
    """What the engine may use: the profile's claims narrowed by the driver (read before planning)."""
    change: ChangeSet
    parameters: Mapping[str, Any]
    """The task's parameters as journaled and shown: every secret parameter masked."""
    secrets: tuple[str, ...] = ()
    """The values of the task's secret parameters (never journaled: the engine masks them)."""


@dataclass(frozen=True, kw_only=True)
class Plan:
    request: ActivationRequest
    tasks: tuple[PlannedTask, ...]  # in a dependency-respecting order
    fingerprint: str

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(sorted({t.spec.device for t in self.tasks}))

    @functools.cached_property
    def redact(self) -> Redactor:
        """Masks the secret parameter values of every task (in every text journaled for it)."""
        return Redactor(v for t in self.tasks for v in t.secrets)

    def task(self, task_id: str) -> PlannedTask:
        for t in self.tasks:
            if t.spec.id == task_id:
                return t
        raise KeyError(task_id)


def fingerprint(request: ActivationRequest) -> str:
    """A stable digest of a request's content (what the idempotency check compares: the same
    request id with another retry policy is another request, as with another ``atomic``)."""
    body: dict[str, Any] = {
        "order_ref": request.order_ref,
        "atomic": request.atomic,
        "tasks": [
            {
                "id": t.id,
                "device": t.device,
                "service": t.service,
                "action": t.action.value,
                "parameters": t.parameters,
                "depends_on": list(t.depends_on),
            }
            for t in request.tasks
        ],
    }
    if request.retry is not None and request.retry.given():
        body["retry"] = request.retry.given()  # only when given: older activations keep their fingerprint
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def structural_violations(request: ActivationRequest) -> list[FieldViolation]:
    """Checks that need no inventory: ids, duplicates, dependencies, cycles."""
    out: list[FieldViolation] = []
    if not request.request_id.strip():
        out.append(FieldViolation("request_id", "must not be empty (it is the idempotency key)"))
    if not request.tasks:
        out.append(FieldViolation("tasks", "at least one task is required"))
    seen: dict[str, int] = {}
    for i, t in enumerate(request.tasks):
        if not t.id.strip():
            out.append(FieldViolation(f"tasks[{i}].id", "must not be empty"))
        elif t.id in seen:
            out.append(FieldViolation(f"tasks[{i}].id", f"duplicate task id {t.id!r} (also tasks[{seen[t.id]}])"))
        else:
            seen[t.id] = i
    for i, t in enumerate(request.tasks):
        for j, dep in enumerate(t.depends_on):
            if dep == t.id:
                out.append(FieldViolation(f"tasks[{i}].depends_on[{j}]", "a task cannot depend on itself"))
            elif dep not in seen:
                out.append(FieldViolation(f"tasks[{i}].depends_on[{j}]", f"unknown task id {dep!r}"))
    if not out:
        cycle = find_cycle(request.tasks)
        if cycle:
            i = seen[cycle[0]]
            out.append(FieldViolation(f"tasks[{i}].depends_on", cycle_text(cycle)))
    return out


MAX_CYCLE_IDS_SHOWN = 10
"""A cycle's message names at most this many task ids (a violation travels in a status message)."""


def cycle_text(cycle: Sequence[str]) -> str:
    """``dependency cycle: a -> b -> c -> a``, clipped to :data:`MAX_CYCLE_IDS_SHOWN` ids
    (``a -> b -> ... 990 more -> a``) for a long one."""
    ids = list(cycle[:-1]) if len(cycle) > 1 and cycle[0] == cycle[-1] else list(cycle)
    if len(ids) <= MAX_CYCLE_IDS_SHOWN:
        return "dependency cycle: " + " -> ".join([*ids, ids[0]])
    shown = ids[: MAX_CYCLE_IDS_SHOWN - 1]
    return (f"dependency cycle of {len(ids)} tasks: " + " -> ".join(shown)
            + f" -> ... {len(ids) - len(shown)} more -> {ids[0]}")


def find_cycle(tasks: Sequence[TaskSpec]) -> list[str]:
    """One dependency cycle as a list of task ids (first id repeated at the end), or [].

    An iterative depth-first search (no recursion: a chain of any length is fine), O(tasks +
    edges); dependencies on unknown ids are ignored (:func:`structural_violations` names them)."""
    deps = {t.id: t.depends_on for t in tasks}
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(deps, white)
    for root in deps:
        if color[root] != white:
            continue
        color[root] = grey
        path = [root]  # the grey tasks, in the order they were entered
        at = {root: 0}  # task id -> its position in path
        nexts = [0]  # per path entry: the index of the next dependency to look at
        while path:
            tid = path[-1]
            tdeps = deps[tid]
            k = nexts[-1]
            while k < len(tdeps) and color.get(tdeps[k], black) == black:
                k += 1  # unknown ids count as black: nothing to follow
            if k == len(tdeps):
                color[tid] = black
                path.pop()
                nexts.pop()
                del at[tid]
                continue
            nexts[-1] = k + 1
            d = tdeps[k]
            if color[d] == grey:
                return path[at[d]:] + [d]
            color[d] = grey
            at[d] = len(path)
            path.append(d)
            nexts.append(0)
    return []


def topological_order(tasks: Sequence[TaskSpec]) -> list[TaskSpec]:
    """Tasks ordered so that every task comes after its dependencies: Kahn's algorithm, O(tasks +
    edges), no recursion. Tasks ready from the start keep request order; a task that becomes
    ready later follows in the order it did. Raises ValueError on a cycle
    (:func:`structural_violations` reports it first)."""
    by_id = {t.id: t for t in tasks}
    waiting = {t.id: 0 for t in tasks}  # unmet dependencies per task
    dependents: dict[str, list[TaskSpec]] = {}
    for t in tasks:
        for d in t.depends_on:
            if d in by_id:
                waiting[t.id] += 1
                dependents.setdefault(d, []).append(t)
    out = [t for t in tasks if waiting[t.id] == 0]
    n = 0
    while n < len(out):  # ``out`` is the queue too
        for dep in dependents.get(out[n].id, ()):
            waiting[dep.id] -= 1
            if waiting[dep.id] == 0:
                out.append(dep)
        n += 1
    if len(out) != len(by_id):
        raise ValueError("dependency cycle")
    return out


def _rendering_violations(where: str, exc: InputError) -> list[FieldViolation]:
    """A refused rendering as violations of the task: a parameter the store named keeps its
    path; what the driver found in the rendered change is shown under ``parameters``."""
    out = []
    for v in exc.violations:
        if v.field == "parameters" or v.field.startswith(("parameters.", "parameters[")):
            out.append(FieldViolation(f"{where}.{v.field}", v.reason))
        else:
            out.append(FieldViolation(f"{where}.parameters", f"the rendered change ({v.field}): {v.reason}"))
    return out


def make_plan(
    request: ActivationRequest,
    *,
    inventory: Any,
    profiles: Any,
    templates: _Templates,
    select_endpoint: Any,
    driver_for: Callable[[DeviceProfile], type[Driver]],
) -> Plan:
    """Validate everything and render every task. Raises InputError listing all violations.

    The platform's driver (``driver_for(profile)``, read before anything else) decides the
    capabilities the engine may use and the payload format the template renders in; the driver
    then checks the rendered change (:meth:`Driver.check_change`) and the service's checks
    (:func:`drivers.checks.plan_checks`: kinds it runs, waits that fit the verify phase and the
    confirmed-commit window), so nothing a driver could not send or check is ever journaled."""
    violations = structural_violations(request)
    planned: list[PlannedTask] = []
    for i, t in enumerate(request.tasks):
        where = f"tasks[{i}]"
        try:
            device = inventory.device(t.device)
        except AgwError:
            violations.append(FieldViolation(f"{where}.device", f"unknown device {t.device!r}"))
            continue
        try:
            endpoint = select_endpoint(device, t.service, templates)
        except AgwError as exc:
            if not templates.platforms(t.service):  # listing the catalogue only on this error path
                known = ", ".join(templates.services())
                violations.append(FieldViolation(f"{where}.service", f"unknown service {t.service!r}; known: {known}"))
            else:
                violations.append(FieldViolation(f"{where}.service", public_message(exc)))
            continue
        try:
            profile = profiles.get(endpoint.platform)
        except AgwError as exc:
            violations.append(FieldViolation(f"{where}.device", f"platform {endpoint.platform!r}: {public_message(exc)}"))
            continue
        try:
            driver = driver_for(profile)
            capabilities = driver.capabilities_for(profile)
        except AgwError as exc:
            violations.append(FieldViolation(f"{where}.device", f"platform {endpoint.platform!r}: {public_message(exc)}"))
            continue
        fmt = driver.payload_format
        problems = templates.validate(service=t.service, action=t.action, parameters=t.parameters, payload_format=fmt)
        if problems:
            violations.extend(FieldViolation(f"{where}.{p.field}", p.reason) for p in problems)
            continue
        try:
            change = templates.render(
                service=t.service,
                platform=endpoint.platform,
                action=t.action,
                parameters=t.parameters,
                device=t.device,
                payload_format=fmt,
                validated=True,  # just above
            )
            driver.check_change(change, profile)
        except InputError as exc:
            violations.extend(_rendering_violations(where, exc))
            continue
        except AgwError as exc:
            violations.append(FieldViolation(f"{where}.parameters", public_message(exc)))
            continue
        try:  # the service's checks: a kind the driver runs, waits that fit (drivers.checks)
            plan_checks(change, profile=profile, kinds=driver.check_kinds, driver=driver.name,
                        confirmed_commit=capabilities.confirmed_commit)
        except InputError as exc:
            violations.extend(FieldViolation(f"{where}.{v.field}", v.reason) for v in exc.violations)
            continue
        shown, secrets = templates.masked(service=t.service, parameters=t.parameters)
        planned.append(
            PlannedTask(
                spec=t,
                index=i,
                platform=endpoint.platform,
                port=endpoint.port,
                credentials_ref=endpoint.credentials,
                address=device.address,
                known_hosts=device.known_hosts,
                host_key_check=device.host_key_check,
                profile=profile,
                capabilities=capabilities,
                change=change,
                parameters=shown,
                secrets=secrets,
            )
        )
    if violations:
        raise InputError(violations)
    order = {t.id: n for n, t in enumerate(topological_order(request.tasks))}
    planned.sort(key=lambda p: order[p.spec.id])
    return Plan(request=request, tasks=tuple(planned), fingerprint=fingerprint(request))


__all__ = ["Plan", "PlannedTask", "cycle_text", "find_cycle", "fingerprint", "make_plan", "structural_violations", "topological_order"]
