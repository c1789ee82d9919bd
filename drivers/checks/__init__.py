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

# The model (kinds, limits, dataclasses) in .model, parsing in .parse, plan-time checks in
# .planning, records/evaluation/the poll loop in .polling; every public name is importable from here.
from drivers.checks.model import (
    CLI,
    DEFAULT_INTERVAL_S,
    DEFAULT_SETTLE_S,
    KINDS,
    MAX_CHECKS,
    MAX_FIELDS,
    MAX_OUTPUT_CHARS,
    MAX_QUERY,
    MAX_RECORDS,
    MAX_SHOWN,
    MAX_TEXT,
    MAX_TIMEOUT_S,
    MAX_TOTAL_WAIT_S,
    MIN_INTERVAL_S,
    NETCONF,
    SNMP,
    Check,
    CheckError,
    CliQuery,
    Condition,
    NetconfQuery,
    Outcome,
    Query,
    Record,
    SnmpQuery,
    TooMuch,
    Wait,
    text_of,
)
from drivers.checks.parse import default_wait, parse
from drivers.checks.planning import allowance_for, parse_all, plan_checks, verify_allowance_s
from drivers.checks.polling import Probe, detail, evaluate, mismatch, records, run, run_all, show

__all__ = [
    "CLI", "DEFAULT_INTERVAL_S", "DEFAULT_SETTLE_S", "KINDS", "MAX_CHECKS", "MAX_FIELDS", "MAX_OUTPUT_CHARS",
    "MAX_QUERY", "MAX_RECORDS", "MAX_SHOWN", "MAX_TEXT", "MAX_TIMEOUT_S", "MAX_TOTAL_WAIT_S", "MIN_INTERVAL_S",
    "NETCONF", "SNMP", "Check", "CheckError", "CliQuery", "Condition", "NetconfQuery", "Outcome", "Probe", "Query",
    "Record", "SnmpQuery", "TooMuch", "Wait", "allowance_for", "default_wait", "detail", "evaluate", "mismatch",
    "parse", "parse_all", "plan_checks", "records", "run", "run_all", "show", "text_of", "verify_allowance_s",
]
