"""Service definitions (``templates/<service>/service.yaml``) and parameter validation.

A service file holds ``description``, ``parameters`` (a JSON Schema, Draft 2020-12, for
create/modify), ``keys`` (the parameters that identify the object), ``examples`` (parameter sets
the gateway renders at start to prove each template produces its driver's payload format; tests
use them too) and optional ``checks``.
For ``delete`` only the keys are required; the other parameters stay allowed, optional, and
may be ``null``. Validation reports *every* problem as a :class:`FieldViolation` whose field is
a dotted path (``parameters.ipv4.prefix_length``, ``parameters.vlans[2]``).
"""

from __future__ import annotations

import copy
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema
from jsonschema import Draft202012Validator

from drivers.base import PayloadFormat
from gateway.errors import ConfigurationError, FieldViolation
from gateway.inventory._yaml import load_yaml_file, type_name
from gateway.model import Action
from gateway.render.masking import secret_paths
from gateway.render.payload import value_problem

log = logging.getLogger(__name__)

RESERVED_NAMES = ("action", "device", "parameters")
"""Template variables the renderer sets itself. A service may still declare a parameter with one
of these names (a prefix-list entry has an ``action: permit``): the top-level name is then the
renderer's, and the parameter is reached as ``parameters.<name>``."""
_SERVICE_KEYS = ("description", "parameters", "keys", "examples", "checks")
_MAX_REASON = 200


@dataclass(frozen=True, kw_only=True)
class Example:
    """One example of a service: an action and its parameters (``examples`` in service.yaml)."""

    action: Action
    parameters: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    name: str
    description: str
    parameters: Mapping[str, Any]
    keys: tuple[str, ...]
    checks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Check templates per platform; ``"*"`` applies to every platform."""
    examples: tuple[Example, ...] = ()
    source: str = ""
    secrets: tuple[tuple[str, ...], ...] = ()
    """Paths of the secret parameters (``writeOnly: true``): :mod:`gateway.render.masking`."""

    def checks_for(self, platform: str) -> tuple[str, ...]:
        return tuple(self.checks.get("*", ())) + tuple(self.checks.get(platform, ()))


def load_service(path: Path, *, name: str) -> ServiceSpec:
    """Read and check one ``service.yaml``; a bad file is a :class:`ConfigurationError`."""
    data = load_yaml_file(path)
    src = str(path)
    if not isinstance(data, dict):
        raise ConfigurationError(f"{src}: a service definition must be a mapping, not {type_name(data)}")
    problems: list[str] = []
    unknown = sorted(str(k) for k in data if k not in _SERVICE_KEYS)
    if unknown:
        problems.append(f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(_SERVICE_KEYS)})")
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.append(f"description: must be a string, not {type_name(description)}")
    params = data.get("parameters")
    props: dict[str, Any] = {}
    if not isinstance(params, dict):
        problems.append(f"parameters: must be a JSON Schema object, not {type_name(params)}")
    else:
        try:
            Draft202012Validator.check_schema(params)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            problems.append(f"parameters: not a valid JSON Schema at {where}: {exc.message[:_MAX_REASON]}")
        if params.get("type") != "object":
            problems.append("parameters.type: must be 'object'")
        props = params.get("properties") or {}
        if not isinstance(props, dict):
            problems.append("parameters.properties: must be a mapping")
            props = {}
    keys = data.get("keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        problems.append("keys: must be a list of parameter names")
        keys = []
    for k in keys:
        if k not in props:
            problems.append(f"keys: {k!r} is not a parameter of the service")
    checks = _parse_checks(data.get("checks"), problems)
    examples = _parse_examples(data.get("examples"), problems)
    if problems:
        raise ConfigurationError(f"{src}: " + "; ".join(problems))
    assert isinstance(params, dict)  # checked above
    return ServiceSpec(
        name=name, description=description, parameters=params, keys=tuple(keys), checks=checks,
        examples=examples, source=src, secrets=secret_paths(params),
    )


def _parse_examples(raw: Any, problems: list[str]) -> tuple[Example, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(f"examples: must be a list of {{action, parameters}}, not {type_name(raw)}")
        return ()
    out: list[Example] = []
    for i, item in enumerate(raw):
        where = f"examples[{i}]"
        if not isinstance(item, dict) or set(item) - {"action", "parameters"} or "parameters" not in item:
            problems.append(f"{where}: must be a mapping with action (default create) and parameters")
            continue
        try:
            act = action_of(str(item.get("action", "create")))
        except ValueError:
            problems.append(f"{where}.action: must be create, modify or delete, not {item.get('action')!r}")
            continue
        if not isinstance(item["parameters"], dict):
            problems.append(f"{where}.parameters: must be a mapping, not {type_name(item['parameters'])}")
            continue
        out.append(Example(action=act, parameters=item["parameters"]))
    return tuple(out)


def _parse_checks(raw: Any, problems: list[str]) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if isinstance(raw, list):
        raw = {"*": raw}
    if not isinstance(raw, dict):
        problems.append("checks: must be a list of check templates, or a mapping of platform to such a list")
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for platform, items in raw.items():
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            problems.append(f"checks.{platform}: must be a list of strings")
            continue
        out[str(platform)] = tuple(items)
    return out


def delete_schema(spec: ServiceSpec) -> dict[str, Any]:
    """The schema used for ``delete``: only the keys are required; the rest may be null."""
    schema = copy.deepcopy(dict(spec.parameters))
    schema["required"] = list(spec.keys)
    if spec.keys:
        schema.pop("minProperties", None)  # the keys identify the object; nothing else is needed
    props = schema.get("properties") or {}
    for name, sub in list(props.items()):
        if name not in spec.keys:
            props[name] = {"anyOf": [{"type": "null"}, sub]}
    return schema


def make_validator(schema: Mapping[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def path_of(parts: Iterable[Any], *, root: str = "parameters") -> str:
    out = root
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def schema_violations(validator: Draft202012Validator, params: Mapping[str, Any]) -> list[FieldViolation]:
    """Every JSON Schema problem of ``params``, one violation per field."""
    out: list[FieldViolation] = []
    seen: set[tuple[str, str]] = set()

    def add(fld: str, reason: str) -> None:
        if (fld, reason) not in seen:
            seen.add((fld, reason))
            out.append(FieldViolation(fld, reason))

    for err in sorted(validator.iter_errors(params), key=lambda e: [str(p) for p in e.absolute_path]):
        base = list(err.absolute_path)
        if err.validator == "required" and isinstance(err.instance, dict):
            for name in err.validator_value:
                if name not in err.instance:
                    add(path_of(base + [name]), "required parameter is missing")
        elif err.validator == "additionalProperties" and isinstance(err.instance, dict) and err.validator_value is False:
            known = err.schema.get("properties", {}) or {}
            patterns = list((err.schema.get("patternProperties") or {}).keys())
            allowed = ", ".join(sorted(known)) or "none"
            for name in err.instance:
                if name not in known and not any(re.search(p, name) for p in patterns):
                    add(path_of(base + [name]), f"unknown parameter (allowed: {allowed})")
        else:
            add(path_of(base), _short(err.message))
    return out


def _short(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def character_violations(params: Any, *, payload_format: PayloadFormat, parts: list[Any] | None = None) -> list[FieldViolation]:
    """Values (at any depth) the payload format cannot carry as one value
    (:func:`gateway.render.payload.value_problem`), and parameter names holding a control
    character."""
    parts = [] if parts is None else parts
    out: list[FieldViolation] = []
    if isinstance(params, str):
        problem = value_problem(params, payload_format)
        if problem is not None:
            out.append(FieldViolation(path_of(parts), problem))
    elif isinstance(params, Mapping):
        for k, v in params.items():
            if isinstance(k, str) and any(unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs", "Co") for ch in k):
                out.append(FieldViolation(path_of(parts), "a parameter name contains a control character"))
                continue
            out.extend(character_violations(v, payload_format=payload_format, parts=parts + [k]))
    elif isinstance(params, (list, tuple)):
        for i, v in enumerate(params):
            out.extend(character_violations(v, payload_format=payload_format, parts=parts + [i]))
    return out


def prepare(schema: Mapping[str, Any], value: Any, *, defaults: bool) -> Any:
    """A plain copy of ``value`` for rendering: integral floats become ints where the schema
    says ``integer`` (protobuf Struct carries every number as a float) and, with ``defaults``,
    schema defaults fill missing object properties."""
    if isinstance(value, Mapping):
        props = schema.get("properties") or {}
        out = {k: prepare(props.get(k) or {}, v, defaults=defaults) for k, v in value.items()}
        if defaults:
            for name, sub in props.items():
                if name not in out and isinstance(sub, Mapping) and "default" in sub:
                    out[name] = copy.deepcopy(sub["default"])
        return out
    if isinstance(value, (list, tuple)):
        items = schema.get("items") or {}
        return [prepare(items if isinstance(items, Mapping) else {}, v, defaults=defaults) for v in value]
    if isinstance(value, float) and value.is_integer() and _says_integer(schema):
        return int(value)
    return value


def _says_integer(schema: Mapping[str, Any]) -> bool:
    t = schema.get("type")
    if t == "integer" or (isinstance(t, list) and "integer" in t):
        return True
    return any(isinstance(s, Mapping) and _says_integer(s) for s in schema.get("anyOf", []) or [])


def action_of(action: Action | str) -> Action:
    return action if isinstance(action, Action) else Action(action)


__all__ = [
    "RESERVED_NAMES",
    "Example",
    "ServiceSpec",
    "action_of",
    "character_violations",
    "delete_schema",
    "load_service",
    "make_validator",
    "prepare",
    "schema_violations",
]
