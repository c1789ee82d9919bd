"""Plan-time checks of a change's service checks (:mod:`drivers.checks`): kinds the driver runs,
waits that fit the verify phase and the revert window, and the time they add to it. Pure."""

from __future__ import annotations

from typing import Iterable, Sequence

from drivers.base import ChangeSet, DeviceProfile
from drivers.checks.model import MAX_CHECKS, MAX_TOTAL_WAIT_S, Check, CheckError
from drivers.checks.parse import default_wait, parse
from drivers.errors import FieldViolation, InputError


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


__all__ = ["allowance_for", "parse_all", "plan_checks", "verify_allowance_s"]
