"""Judging and polling a check (:mod:`drivers.checks`): records from a nested result, the
condition on them, the wait-until poll loop, and a failed check as a :class:`~drivers.base.Mismatch`."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Sequence

from drivers.base import Mismatch
from drivers.checks.model import MAX_RECORDS, MAX_SHOWN, Check, Outcome, Record, TooMuch, text_of


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


async def run_all(checks: Sequence[Check], run_one: Callable[[Check], Awaitable[Outcome]],
                  *, mismatches: list[Mismatch], details: list[str]) -> int:
    """Run a driver's checks one after the other (``run_one``: the driver's poll loop of one),
    adding each failure to ``mismatches`` and each line to ``details``; how many ran."""
    for check in checks:
        outcome = await run_one(check)
        details.append(detail(check, outcome))
        if not outcome.ok:
            mismatches.append(mismatch(check, outcome))
    return len(checks)


__all__ = ["Probe", "detail", "evaluate", "mismatch", "records", "run", "run_all", "show"]
