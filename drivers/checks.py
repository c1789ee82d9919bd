"""Service checks: operational state a service waits for after commit and before confirm. Pure.

A service declares checks in its ``service.yaml`` (``checks: {<platform>: [...]}``); each is a
Jinja template (same variables as the service template) that renders to a YAML mapping, or to
nothing (the check does not apply to this action). One model serves every driver; only the
*query* differs, and it names the check's kind::

    name: uplink oper-status            # optional; shown in the result
    # kind cli:      command + ttp (a TTP template) or json: true (the command prints JSON)
    command: "show interface {{ name }} json"
    json: true
    # kind netconf:  get: a subtree filter of operational state (<get>), records = leaf values
    get: '<interfaces-state xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces">...'
    # kind snmp:     get: [oids] | {field: oid}, or walk: oid | {field: column-oid}
    walk: {descr: 1.3.6.1.2.1.2.2.1.2, oper: 1.3.6.1.2.1.2.2.1.8}
    # the condition, on the records the query read:
    expect: {name: "{{ name }}", oper-status: {one_of: [up, testing]}}
    absent: false                       # true: no record may match
    wait: {timeout_s: 20, interval_s: 1}   # poll until the condition holds, at most this long

The query reads *records* (flat mappings of field → text); a record matches when every field of
``expect`` equals (as text) the wanted value, or one of ``one_of``. The check passes when a record
matches (``absent``: when none does). Nothing is evaluated: no expressions, no regular expressions.

``wait`` defaults to the profile's ``settings.check_settle_s`` (2 s) polled every 0.5 s; the
interval is at least :data:`MIN_INTERVAL_S`, the timeout at most :data:`MAX_TIMEOUT_S`. The
planner (:func:`plan_checks`) refuses, before anything is journaled, a check whose driver does not
declare its kind (:attr:`drivers.base.Driver.check_kinds`), and checks whose waits do not fit in
the verify phase (:data:`MAX_TOTAL_WAIT_S`) or, on a device with a confirmed commit, inside its
revert window. The engine gives the verify phase :func:`verify_allowance_s` more time.

Drivers run a check with :func:`run`: their probe reads records, this module polls and judges.
A failed check is a :class:`~drivers.base.Mismatch` (``check <name>``) carrying the condition and
a short view of what was observed (:func:`mismatch`).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

import yaml

from drivers.base import ChangeSet, DeviceProfile, Mismatch
from drivers.errors import FieldViolation, InputError

CLI = "cli"
NETCONF = "netconf"
SNMP = "snmp"
KINDS = (CLI, NETCONF, SNMP)
"""The kinds of query a check can make; a driver declares the ones it runs (``check_kinds``)."""

MIN_INTERVAL_S = 0.2
MAX_TIMEOUT_S = 300.0
MAX_TOTAL_WAIT_S = 600.0
"""The checks of one change wait at most this long together (the verify phase's own bound)."""
DEFAULT_SETTLE_S = 2.0
DEFAULT_INTERVAL_S = 0.5
MAX_CHECKS = 16
"""Checks per change."""
MAX_RECORDS = 1000
"""Records one poll may read; more fails the check (narrow the query)."""
MAX_OUTPUT_CHARS = 1024 * 1024
"""Characters of command output (CLI) a check parses; more fails the check."""
MAX_TEXT = 4096
"""Longest check text field kept (a command, a value); a TTP template or filter may be 64 KiB."""
MAX_QUERY = 64 * 1024
MAX_FIELDS = 32
MAX_SHOWN = 240
"""Characters of observed records shown in a mismatch."""

_KEYS = {"name", "kind", "command", "ttp", "json", "get", "walk", "expect", "absent", "wait"}
_OID = re.compile(r"^\.?[0-2](\.\d{1,10}){1,127}$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

Record = Mapping[str, str]


class CheckError(ValueError):
    """A rendered check that is not a valid check (the reason names the field)."""


@dataclass(frozen=True, kw_only=True)
class Wait:
    timeout_s: float
    interval_s: float


@dataclass(frozen=True, kw_only=True)
class CliQuery:
    command: str
    ttp: str = ""
    json: bool = False


@dataclass(frozen=True, kw_only=True)
class NetconfQuery:
    get: str
    """A subtree filter (its top-level elements), read with ``<get>`` (state and configuration)."""


@dataclass(frozen=True, kw_only=True)
class SnmpQuery:
    get: tuple[tuple[str, str], ...] = ()
    """(field, oid) read with one GET: one record; a list of OIDs gives one record per OID
    (fields ``oid`` and ``value``)."""
    walk: tuple[tuple[str, str], ...] = ()
    """(field, column oid) walked together: one record per row index (field ``index`` too)."""
    per_oid: bool = False
    """``get`` was a list: one record {oid, value} per OID."""


Query = CliQuery | NetconfQuery | SnmpQuery


@dataclass(frozen=True, kw_only=True)
class Condition:
    expect: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(field, wanted values): a record matches when each field equals one of its values."""
    absent: bool = False

    def matches(self, record: Record) -> bool:
        return all(field_ in record and record[field_] in wanted for field_, wanted in self.expect)

    def closeness(self, record: Record) -> tuple[bool, ...]:
        """Which expected fields ``record`` has equal, in ``expect``'s order: sorting by it puts
        first the records that match the first fields (name the key first: ``{name: eth1, ...}``)."""
        return tuple(field_ in record and record[field_] in wanted for field_, wanted in self.expect)

    def describe(self) -> str:
        parts = [f"{k}={v[0]}" if len(v) == 1 else f"{k} in {list(v)}" for k, v in self.expect]
        what = ", ".join(parts) if parts else "any record"
        return f"no record with {what}" if self.absent else f"a record with {what}"


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    kind: str
    query: Query
    condition: Condition
    wait: Wait
    index: int = 0
    """Its position in the service's checks for this platform (``checks[i]``)."""


@dataclass(frozen=True, kw_only=True)
class Outcome:
    ok: bool
    observed: str
    """A short view of what the last poll read."""
    polls: int = 1
    elapsed_s: float = 0.0


# -- parsing ---------------------------------------------------------------------------------------
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


def text_of(value: Any) -> str:
    """How a value compares: booleans as ``true``/``false``, None as empty, the rest as ``str``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


# -- planning ----------------------------------------------------------------------------------
def plan_checks(change: ChangeSet, *, profile: DeviceProfile, kinds: Iterable[str], driver: str,
                confirmed_commit: bool) -> tuple[Check, ...]:
    """Parse a change's rendered checks and refuse, with :class:`InputError`, what could not run:
    a bad check, a kind the driver does not run, waits over the verify phase's bound, or (on a
    device with a confirmed commit) waits that do not fit inside the revert window. Every field
    names the service and the check."""
    supported = frozenset(kinds)
    default = default_wait(profile)
    problems: list[FieldViolation] = []
    checks: list[Check] = []
    if len(change.checks) > MAX_CHECKS:
        raise InputError([FieldViolation(f"service {change.service!r} checks",
                                         f"{len(change.checks)} checks; at most {MAX_CHECKS} per change")])
    for i, text in enumerate(change.checks):
        where = f"service {change.service!r} checks[{i}]"
        try:
            check = parse(text, index=i, default=default)
        except CheckError as exc:
            problems.append(FieldViolation(where, f"invalid check: {exc}"))
            continue
        if check is None:
            continue
        where = f"{where} ({check.name})"
        if check.kind not in supported:
            have = ", ".join(sorted(supported)) or "none"
            problems.append(FieldViolation(where, f"a {check.kind} check, but driver {driver!r} of platform "
                                                  f"{profile.platform!r} runs {have}"))
            continue
        checks.append(check)
    if problems:
        raise InputError(problems)
    total = sum(c.wait.timeout_s for c in checks)
    if total > MAX_TOTAL_WAIT_S:
        raise InputError([FieldViolation(f"service {change.service!r} checks",
                                         f"the checks wait up to {total:g} s together; at most {MAX_TOTAL_WAIT_S:g} s")])
    if checks and confirmed_commit:
        need = verify_allowance_s(checks, profile.timeouts.operation_s) + profile.timeouts.operation_s \
            + profile.timeouts.commit_s
        if need > profile.confirm_timeout_s:
            longest = max(checks, key=lambda c: c.wait.timeout_s)
            raise InputError([FieldViolation(
                f"service {change.service!r} checks[{longest.index}] ({longest.name})",
                f"wait.timeout_s {longest.wait.timeout_s:g} s does not fit inside the confirmed-commit window of "
                f"platform {profile.platform!r}: the read-back, {len(checks)} check(s) waiting up to {total:g} s "
                f"and the confirm may take {need:g} s, the device reverts after {profile.confirm_timeout_s} s")])
    return tuple(checks)


def verify_allowance_s(checks: Sequence[Check], operation_s: float) -> float:
    """The time the checks may add to the verify phase: each waits up to its timeout, and its
    last poll may take one operation timeout."""
    return sum(c.wait.timeout_s + operation_s for c in checks)


def allowance_for(change: ChangeSet, profile: DeviceProfile) -> float:
    """:func:`verify_allowance_s` of a change's checks (0 when it has none, or a bad one: the
    planner refused those)."""
    if not change.checks:
        return 0.0
    default = default_wait(profile)
    try:
        checks = [c for i, t in enumerate(change.checks) if (c := parse(t, index=i, default=default)) is not None]
    except CheckError:
        return 0.0
    return verify_allowance_s(checks, profile.timeouts.operation_s)


def parse_all(change: ChangeSet, profile: DeviceProfile, kind: str) -> list[Check]:
    """The change's checks for a driver's ``verify`` (planned already: a bad one raises InputError)."""
    default = default_wait(profile)
    out = []
    for i, text in enumerate(change.checks):
        try:
            check = parse(text, index=i, default=default)
        except CheckError as exc:
            raise InputError([FieldViolation(f"service {change.service!r} checks[{i}]", str(exc))]) from None
        if check is None:
            continue
        if check.kind != kind:
            raise InputError([FieldViolation(f"service {change.service!r} checks[{i}] ({check.name})",
                                             f"a {check.kind} check cannot run on a {kind} device")])
        out.append(check)
    return out


# -- records and evaluation --------------------------------------------------------------------------
def records(result: Any) -> list[dict[str, str]]:
    """Every innermost mapping of scalar values in a nested result (TTP, JSON), lists and groups
    flattened; values as text (:func:`text_of`)."""
    found: list[dict[str, str]] = []
    stack: list[Any] = [result]
    while stack:  # iterative: a deep JSON document cannot exhaust the recursion limit
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, dict):
            scalars = {str(k): text_of(v) for k, v in node.items() if not isinstance(v, (dict, list))}
            if scalars:
                found.append(scalars)
                if len(found) > MAX_RECORDS:
                    raise TooMuch(f"more than {MAX_RECORDS} records read")
            stack.extend(reversed([v for v in node.values() if isinstance(v, (dict, list))]))
    return found


class TooMuch(ValueError):
    """A query read more than a check may look at (records, output)."""


def evaluate(check: Check, observed: Sequence[Record]) -> Outcome:
    matching = [r for r in observed if check.condition.matches(r)]
    ok = not matching if check.condition.absent else bool(matching)
    if check.condition.absent and matching:
        shown = matching
    else:  # the records nearest to matching first (the first expected fields equal)
        shown = sorted(observed, key=check.condition.closeness, reverse=True)
    return Outcome(ok=ok, observed=show(shown, total=len(shown)))


def show(observed: Sequence[Record], *, total: int) -> str:
    """At most :data:`MAX_SHOWN` characters of records."""
    if not observed:
        return "nothing read"
    parts: list[str] = []
    used = 0
    for rec in observed:
        text = "{" + ", ".join(f"{k}: {v}" for k, v in rec.items()) + "}"
        if used + len(text) > MAX_SHOWN:
            text = text[: max(0, MAX_SHOWN - used)] + "..."
            parts.append(text)
            break
        parts.append(text)
        used += len(text)
        if used >= MAX_SHOWN:
            break
    more = total - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


Probe = Callable[[], Awaitable[Sequence[Record]]]


async def run(check: Check, probe: Probe, *, clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> Outcome:
    """Poll ``probe`` until the condition holds or ``check.wait.timeout_s`` has passed (the last
    poll is at the timeout). A probe raising :class:`TooMuch` fails the check at once."""
    start = clock()
    deadline = start + check.wait.timeout_s
    polls = 0
    while True:
        polls += 1
        try:
            outcome = evaluate(check, await probe())
        except TooMuch as exc:
            return Outcome(ok=False, observed=f"{exc}: narrow the query", polls=polls, elapsed_s=clock() - start)
        now = clock()
        if outcome.ok or now >= deadline:
            return Outcome(ok=outcome.ok, observed=outcome.observed, polls=polls, elapsed_s=now - start)
        await sleep(min(check.wait.interval_s, deadline - now))


def mismatch(check: Check, outcome: Outcome) -> Mismatch:
    """A failed check as a verification mismatch: the condition, and what the last poll read."""
    waited = f"after {outcome.polls} poll(s) in {outcome.elapsed_s:.1f} s"
    return Mismatch(path=f"check {check.name}", expected=check.condition.describe(),
                    actual=f"{outcome.observed} ({waited})")


def detail(check: Check, outcome: Outcome) -> str:
    state = "ok" if outcome.ok else "failed"
    return f"check {check.name}: {state} after {outcome.polls} poll(s) in {outcome.elapsed_s:.1f} s"


__all__ = [
    "CLI", "KINDS", "NETCONF", "SNMP", "Check", "CheckError", "CliQuery", "Condition", "NetconfQuery", "Outcome",
    "SnmpQuery", "TooMuch", "Wait", "allowance_for", "default_wait", "detail", "evaluate", "mismatch", "parse",
    "parse_all", "plan_checks", "records", "run", "show", "text_of", "verify_allowance_s",
]
