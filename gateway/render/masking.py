"""Secret parameters: which parameters of a service are secrets, and their values masked.

A service marks a parameter secret with JSON Schema's own keyword ``writeOnly: true`` (a value that
is sent, never read back)::

    parameters:
      type: object
      properties:
        name: {type: string}
        auth:
          type: object
          properties:
            key: {type: string, writeOnly: true}     # parameters.auth.key is a secret

Pure functions. The planner masks a task's parameters with :func:`masked` before anything is
journaled (the journal, ``Get`` and the result events keep the masked copy) and hands the secret
values to the engine, which replaces them by the mask in every text it journals for the activation
(the rendered intent, diffs, verification and error texts: :class:`Redactor`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping

from gateway.results import ActivationState, ErrorView, RollbackView, VerificationView
from gateway.secrets import MASK
from gateway.transitions import TaskChanges, Transition

Path = tuple[str, ...]

MIN_REDACTED_CHARS = 4
"""A secret value shorter than this is masked in the parameters but not searched for in texts
(masking every "1" of a rendered configuration would hide the configuration, not the secret)."""


def secret_paths(schema: Mapping[str, Any]) -> tuple[Path, ...]:
    """The paths of the properties marked ``writeOnly: true`` in an object schema, nested objects
    included (a whole object or array may be marked too)."""
    found: list[Path] = []

    def walk(node: Any, path: Path) -> None:
        if not isinstance(node, Mapping):
            return
        props = node.get("properties")
        if not isinstance(props, Mapping):
            return
        for name, sub in props.items():
            if not isinstance(sub, Mapping):
                continue
            here = (*path, str(name))
            if sub.get("writeOnly") is True:
                found.append(here)
            else:
                walk(sub, here)

    walk(schema, ())
    return tuple(found)


def _scalars(value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _scalars(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _scalars(v)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def masked(parameters: Mapping[str, Any], paths: Iterable[Path]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``parameters`` with the value at each of ``paths`` replaced by the mask (a path that is not
    there is skipped), and the secret values found (their scalar texts)."""
    out: dict[str, Any] = dict(parameters)
    values: list[str] = []
    for path in paths:
        node: Any = out
        parents: list[dict[str, Any]] = []
        for key in path[:-1]:
            child = node.get(key) if isinstance(node, dict) else None
            if not isinstance(child, Mapping):
                node = None
                break
            copy = dict(child)
            node[key] = copy
            parents.append(copy)
            node = copy
        if not isinstance(node, dict) or path[-1] not in node or node[path[-1]] is None:
            continue
        values.extend(_scalars(node[path[-1]]))
        node[path[-1]] = MASK
    return out, tuple(dict.fromkeys(values))


class Redactor:
    """Replaces known secret values by the mask in texts (longest first). Empty: a no-op."""

    __slots__ = ("_pattern", "values")

    def __init__(self, values: Iterable[str]) -> None:
        self.values = frozenset(v for v in values if len(v) >= MIN_REDACTED_CHARS)
        kept = sorted(self.values, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in kept)) if kept else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None and text else text


def _view(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, VerificationView):
        return dataclasses.replace(value, mismatches=tuple(redact(m) for m in value.mismatches),
                                   detail=redact(value.detail))
    if isinstance(value, RollbackView):
        return dataclasses.replace(value, reason=redact(value.reason), diff=redact(value.diff))
    if isinstance(value, ErrorView):
        device_error = value.device_error
        if device_error is not None:
            device_error = dataclasses.replace(device_error, message=redact(device_error.message),
                                               line=redact(device_error.line))
        return dataclasses.replace(value, message=redact(value.message), device_error=device_error)
    return value


def redact_transition(transition: Transition, redact: Redactor) -> Transition:
    """``transition`` with every text a caller can see (its message; the task's rendered intent,
    diff, verification, rollback, error and note) passed through ``redact``. The recovery record is
    left as it is: a rollback must restore what the device really held."""
    if not redact:
        return transition
    task = transition.task
    if task is not None:
        task = TaskChanges(**{k: _view(v, redact) for k, v in task.changed().items()})
    return Transition(activation_id=transition.activation_id, task_id=transition.task_id, phase=transition.phase,
                      state=transition.state, message=redact(transition.message), task=task,
                      activation_state=transition.activation_state, recovery=transition.recovery,
                      actor=transition.actor,
                      expect=[ActivationState(e) for e in transition.expect])


__all__ = ["MIN_REDACTED_CHARS", "Redactor", "masked", "redact_transition", "secret_paths"]
