"""Parsing a rendered check (:mod:`drivers.checks`): YAML text → :class:`~.model.Check`, or a
:class:`~.model.CheckError` naming the field. Pure."""

from __future__ import annotations

import re
from typing import Any, Mapping

import yaml

from drivers.base import DeviceProfile
from drivers.checks.model import (
    CLI,
    DEFAULT_INTERVAL_S,
    DEFAULT_SETTLE_S,
    KINDS,
    MAX_FIELDS,
    MAX_QUERY,
    MAX_TEXT,
    MAX_TIMEOUT_S,
    MIN_INTERVAL_S,
    NETCONF,
    SNMP,
    Check,
    CheckError,
    CliQuery,
    Condition,
    NetconfQuery,
    Query,
    SnmpQuery,
    Wait,
    text_of,
)

_KEYS = {"name", "kind", "command", "ttp", "json", "get", "walk", "expect", "absent", "wait"}
_OID = re.compile(r"^\.?[0-2](\.\d{1,10}){1,127}$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def default_wait(profile: DeviceProfile) -> Wait:
    """The wait of a check without its own: the profile's ``settings.check_settle_s``."""
    raw = profile.settings.get("check_settle_s", DEFAULT_SETTLE_S)
    settle = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else DEFAULT_SETTLE_S
    settle = min(max(settle, 0.0), MAX_TIMEOUT_S)
    return Wait(timeout_s=settle, interval_s=DEFAULT_INTERVAL_S)


def parse(text: str, *, index: int = 0, default: Wait) -> Check | None:
    """One rendered check; None when it rendered to nothing. Raises :class:`CheckError`."""
    if not text.strip():
        return None
    if len(text) > 2 * MAX_QUERY:
        raise CheckError(f"the rendered check is {len(text)} characters long (at most {2 * MAX_QUERY})")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CheckError(f"not YAML: {str(exc)[:200]}") from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise CheckError(f"must be a mapping, not {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in _KEYS)
    if unknown:
        raise CheckError(f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
    kind, query = _query(data)
    name = data.get("name")
    if name is None:
        name = _default_name(query)
    name = _short_text("name", name, limit=120)
    condition = _condition(data.get("expect"), data.get("absent", False))
    wait = _wait(data.get("wait"), default)
    return Check(name=name, kind=kind, query=query, condition=condition, wait=wait, index=index)


def _query(data: Mapping[str, Any]) -> tuple[str, Query]:
    declared = data.get("kind")
    if declared is not None and declared not in KINDS:
        raise CheckError(f"kind: must be one of {', '.join(KINDS)}, not {declared!r}")
    if "command" in data:
        kind = CLI
    elif "walk" in data or isinstance(data.get("get"), (list, dict)):
        kind = SNMP
    elif isinstance(data.get("get"), str):
        kind = NETCONF
    else:
        raise CheckError("no query: give command (CLI), get: <subtree filter> (NETCONF), "
                         "or get: [oids] / walk: oid (SNMP)")
    if declared is not None and declared != kind:
        raise CheckError(f"kind: {declared} does not match its query (a {kind} query)")
    if kind == CLI:
        for k in ("get", "walk"):
            if k in data:
                raise CheckError(f"{k}: not a field of a CLI check (command with ttp or json)")
        command = _short_text("command", data["command"])
        if not command.strip():
            raise CheckError("command: must not be empty")
        as_json = data.get("json", False)
        if not isinstance(as_json, bool):
            raise CheckError("json: must be true or false")
        ttp = data.get("ttp")
        if as_json == (ttp is not None):
            raise CheckError("a CLI check needs exactly one of ttp (a TTP template) or json: true")
        if ttp is not None and (not isinstance(ttp, str) or not ttp.strip() or len(ttp) > MAX_QUERY):
            raise CheckError(f"ttp: must be a non-empty TTP template of at most {MAX_QUERY} characters")
        return kind, CliQuery(command=command, ttp=ttp or "", json=as_json)
    for k in ("ttp", "json"):
        if k in data:
            raise CheckError(f"{k}: only a CLI check (command) has it")
    if kind == NETCONF:
        if "walk" in data:
            raise CheckError("walk: not a field of a NETCONF check")
        get = data["get"]
        if not get.strip().startswith("<") or len(get) > MAX_QUERY:
            raise CheckError(f"get: must be a subtree filter (XML elements) of at most {MAX_QUERY} characters")
        return kind, NetconfQuery(get=get.strip())
    get, walk = data.get("get"), data.get("walk")
    if (get is None) == (walk is None):
        raise CheckError("an SNMP check needs exactly one of get (OIDs) or walk (a column OID or several)")
    if get is not None:
        pairs, per_oid = _oids("get", get)
        return kind, SnmpQuery(get=pairs, per_oid=per_oid)
    pairs, per_oid = _oids("walk", walk)
    if per_oid and len(pairs) != 1:
        raise CheckError("walk: a list is not allowed: give one OID, or a mapping of field to column OID")
    return kind, SnmpQuery(walk=(("value", pairs[0][1]),) if per_oid else pairs)


def _oids(key: str, raw: Any) -> tuple[tuple[tuple[str, str], ...], bool]:
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, list):
        items = [(str(o), o) for o in raw]
        per_oid = True
    elif isinstance(raw, dict):
        items = [(str(k), v) for k, v in raw.items()]
        per_oid = False
    else:
        raise CheckError(f"{key}: must be an OID, a list of OIDs or a mapping of field to OID")
    if not items or len(items) > MAX_FIELDS:
        raise CheckError(f"{key}: between 1 and {MAX_FIELDS} OIDs")
    out = []
    for fld, oid in items:
        if not isinstance(oid, str) or not _OID.match(oid.strip()):
            raise CheckError(f"{key}: {str(oid)[:60]!r} is not a numeric OID (dotted numbers, e.g. 1.3.6.1.2.1.2.2.1.8)")
        if not per_oid and fld in ("index", "oid"):
            raise CheckError(f"{key}: field name {fld!r} is reserved")
        out.append((fld, oid.strip().lstrip(".")))
    return tuple(out), per_oid


def _condition(raw: Any, absent: Any) -> Condition:
    if not isinstance(absent, bool):
        raise CheckError("absent: must be true or false")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise CheckError("expect: must be a mapping of field to value (or {one_of: [values]})")
    if len(raw) > MAX_FIELDS:
        raise CheckError(f"expect: at most {MAX_FIELDS} fields")
    out = []
    for key, want in raw.items():
        fld = _short_text("expect field", key, limit=120)
        if isinstance(want, dict):
            if set(want) != {"one_of"} or not isinstance(want["one_of"], list) or not want["one_of"]:
                raise CheckError(f"expect.{fld}: a mapping must be {{one_of: [values]}} with at least one value")
            values = want["one_of"]
            if len(values) > MAX_FIELDS:
                raise CheckError(f"expect.{fld}.one_of: at most {MAX_FIELDS} values")
        else:
            values = [want]
        texts = []
        for v in values:
            if isinstance(v, (dict, list)):
                raise CheckError(f"expect.{fld}: values must be scalars (text, numbers, true/false)")
            texts.append(_short_text(f"expect.{fld}", text_of(v)))
        out.append((fld, tuple(texts)))
    return Condition(expect=tuple(out), absent=absent)


def _wait(raw: Any, default: Wait) -> Wait:
    if raw is None:
        return default
    if not isinstance(raw, dict) or set(raw) - {"timeout_s", "interval_s"}:
        raise CheckError("wait: must be a mapping with timeout_s and/or interval_s")
    timeout_s = _seconds("wait.timeout_s", raw.get("timeout_s", default.timeout_s))
    interval_s = _seconds("wait.interval_s", raw.get("interval_s", default.interval_s))
    if timeout_s > MAX_TIMEOUT_S:
        raise CheckError(f"wait.timeout_s: {timeout_s:g} s is over the limit of {MAX_TIMEOUT_S:g} s")
    if interval_s < MIN_INTERVAL_S:
        raise CheckError(f"wait.interval_s: {interval_s:g} s is under the minimum of {MIN_INTERVAL_S:g} s")
    return Wait(timeout_s=timeout_s, interval_s=interval_s)


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise CheckError(f"{name}: must be a number of seconds, 0 or more, not {value!r}")
    return float(value)


def _short_text(name: str, value: Any, *, limit: int = MAX_TEXT) -> str:
    if isinstance(value, (dict, list)) or value is None:
        raise CheckError(f"{name}: must be text")
    text = text_of(value)
    if len(text) > limit:
        raise CheckError(f"{name}: longer than {limit} characters")
    if _CONTROL.search(text):
        raise CheckError(f"{name}: holds a control character")
    return text


def _default_name(query: Query) -> str:
    if isinstance(query, CliQuery):
        return query.command[:120]
    if isinstance(query, NetconfQuery):
        return "get " + re.sub(r"\s+", " ", query.get)[:100]
    first = (query.get or query.walk)[0][1]
    return f"{'get' if query.get else 'walk'} {first}"


__all__ = ["default_wait", "parse"]
