"""A Submit's resource allocations (docs/pools.md): from the request's ``{allocate: ...}`` and
``{release: ...}`` parameters to the values its tasks render with.

Before anything is journaled: the requests are found and checked (:mod:`gateway.resources.params`),
their pools read (an unknown pool is a :class:`StateError` naming it), and the whole request is
planned with each allocation replaced by a *probe* (the pool's first value of the right shape), so
every violation the service's schema, the template or the driver finds is reported at once. Then,
in the ONE transaction that creates the activation, the journal takes the values and calls
:meth:`Submission.complete`, which plans the tasks that allocate again with the real values: the
journaled tasks, ``Get`` and the result events show them, and the run pushes them. The fingerprint
(the idempotency check) is the request's as submitted: a retried Submit finds the activation, and
its values, without allocating again.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable

from gateway.engine.context import utcnow
from gateway.engine.plan import Plan, fingerprint
from gateway.errors import FieldViolation, InputError, StateError
from gateway.model import ActivationRequest
from gateway.resources import params
from gateway.resources.params import AllocationRequest, Path, ReleaseRequest
from gateway.results import TaskResult

PlanFn = Callable[[ActivationRequest], tuple[Plan, list[TaskResult]]]
_TASK_FIELD = re.compile(r"tasks\[(\d+)\]")


@dataclass(frozen=True, kw_only=True)
class Prepared:
    request: ActivationRequest
    """As submitted (its fingerprint is the idempotency check's)."""
    probe: ActivationRequest
    """Each allocation replaced by its pool's probe value, each release by its value."""
    allocations: tuple[AllocationRequest, ...]
    releases: tuple[ReleaseRequest, ...]


async def prepare(request: ActivationRequest, journal: Any) -> Prepared | None:
    """The request's allocations checked against their pools (None: it asks for none)."""
    allocations, releases, violations = params.find(request)
    if violations:
        raise InputError(violations)
    if not allocations and not releases:
        return None
    defs = await journal.pools.definitions(sorted({a.pool for a in allocations} | {r.pool for r in releases}))
    problems: list[FieldViolation] = []
    probes: dict[tuple[str, Path], Any] = params.release_values(releases)
    for a in allocations:
        pool = defs.get(a.pool)
        if pool is None:
            raise StateError(f"pool {a.pool} does not exist ({a.field}); define it in the pools file or with "
                             "agw pools create")
        why = pool.check_prefix_length(a.prefix_length)
        if why:
            problems.append(FieldViolation(f"{a.field}.allocate.prefix_length", why))
            continue
        probes[(a.task_id, a.path)] = pool.probe(a.prefix_length)
    for r in releases:
        if r.pool not in defs:
            raise StateError(f"pool {r.pool} does not exist ({r.field})")
    if problems:
        raise InputError(problems)
    return Prepared(request=request, probe=params.substitute(request, probes), allocations=tuple(allocations),
                    releases=tuple(releases))


class Submission:
    """One Submit's plan, replaced by :meth:`complete` once its values are taken."""

    def __init__(self, prepared: Prepared | None, plan: Plan, plan_fn: PlanFn) -> None:
        self.prepared = prepared
        self.plan = plan
        self._plan_fn = plan_fn
        self.values: dict[tuple[str, Path], Any] = {}

    @property
    def fingerprint(self) -> str:
        return self.plan.fingerprint if self.prepared is None else fingerprint(self.prepared.request)

    def journal_kwargs(self) -> dict[str, Any]:
        if self.prepared is None:
            return {}
        return {"allocations": self.prepared.allocations, "releases": self.prepared.releases,
                "complete": self.complete}

    def complete(self, values: dict[tuple[str, Path], Any]) -> dict[int, TaskResult]:
        """In the journal's transaction: the tasks that allocate, planned with ``values``; their
        results by position. Raises InputError (naming the fields) if a real value is refused."""
        assert self.prepared is not None
        plan, results = replan(self.plan, self.prepared.probe, values, self._plan_fn)
        self.plan, self.values = plan, dict(values)
        return results


def replan(plan: Plan, probe: ActivationRequest, values: dict[tuple[str, Path], Any],
           plan_fn: PlanFn) -> tuple[Plan, dict[int, TaskResult]]:
    """``plan`` (of ``probe``) with the tasks named in ``values`` planned again with those values."""
    if not values:
        return plan, {}
    real = params.substitute(probe, values)
    index = {t.id: i for i, t in enumerate(real.tasks)}
    wanted = {tid for tid, _ in values}
    sub_tasks = tuple(dataclasses.replace(t, depends_on=()) for t in real.tasks if t.id in wanted)
    try:
        sub_plan, sub_results = plan_fn(dataclasses.replace(real, tasks=sub_tasks))
    except InputError as exc:  # fields of the sub-request renamed to the request's
        raise InputError([FieldViolation(_TASK_FIELD.sub(lambda m: f"tasks[{index[sub_tasks[int(m.group(1))].id]}]",
                                                         v.field, count=1), v.reason)
                          for v in exc.violations]) from None
    planned = {p.spec.id: dataclasses.replace(p, spec=real.tasks[index[p.spec.id]], index=index[p.spec.id])
               for p in sub_plan.tasks}
    new_plan = dataclasses.replace(plan, request=real, tasks=tuple(planned.get(p.spec.id, p) for p in plan.tasks))
    results = {index[r.id]: dataclasses.replace(r, depends_on=real.tasks[index[r.id]].depends_on)
               for r in sub_results}
    return new_plan, results


async def dry_run_request(request: ActivationRequest, journal: Any) -> ActivationRequest:
    """The request a DryRun renders: each allocation replaced by the value a Submit would get now
    (taken in a transaction that is rolled back), each release by its value."""
    prepared = await prepare(request, journal)
    if prepared is None:
        return request
    values = await journal.pools.peek(prepared.allocations, prepared.releases, now=utcnow())
    return params.substitute(prepared.probe, values)


__all__ = ["Prepared", "Submission", "dry_run_request", "prepare", "replan"]
