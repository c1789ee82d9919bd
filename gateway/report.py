"""Fulfilment KPIs from the journal (`agw report`): over a window of activations (by creation
time), overall and by service, platform, device group and order reference.

* **count** — activations (in a group: those with at least one task of it);
* **completion time** — from submit to the activation's first end (``end`` event), mean, p50,
  p90, p99, over the activations that ended;
* **fallout rate** — activations with a task that fell out at any time;
* **rollback rate** — activations whose state is ``rolledBack``;
* **first-time-right** — ``completed`` without fallout, retry, force-rollback, resolve, Rollback,
  cancel or recovery;
* **time in fallout** — from a task's fallout to its leaving it (rolled back by a retry or
  force-rollback, or resolved by a person): mean and p50 of the episodes that ended;
* **top fallout reasons** — the reason each task fell out, ids and numbers folded (``#``).

Pure computation over :class:`gateway.journal.kpi.KpiRows`; rendering is :mod:`gateway.report_html`
(HTML) and :func:`text_table` / :func:`as_json` here.
"""

from __future__ import annotations

import collections
import math
import re
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping

from gateway.journal.kpi import ACTION_PHASES, KpiActivation, KpiEvent, KpiRows, KpiTask

DIMENSIONS = ("service", "platform", "group", "order_ref")
_ENDED = frozenset({"completed", "partial", "failed", "cancelled", "rolledBack", "fallout"})
_LEFT_FALLOUT = frozenset({"rolledBack", "failed", "completed", "cancelled"})


@dataclass(frozen=True)
class Spread:
    n: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        v = sorted(values)
        if not v:
            return cls(0, None, None, None, None)
        return cls(len(v), statistics.fmean(v), _pct(v, 50), _pct(v, 90), _pct(v, 99))


def _pct(sorted_values: list[float], p: int) -> float:
    """Nearest-rank percentile."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Figures:
    key: str
    count: int
    completion_s: Spread
    fallout_rate: float
    rollback_rate: float
    first_time_right_rate: float
    fallout_s: Spread
    open_fallout: int


@dataclass(frozen=True)
class Report:
    since: datetime
    until: datetime
    overall: Figures
    by: Mapping[str, tuple[Figures, ...]]
    top_reasons: tuple[tuple[str, int], ...]
    completion_times_s: tuple[float, ...]
    over_time: tuple[tuple[datetime, int, int], ...]  # bucket start, activations, of which fell out
    bucket: timedelta = field(default=timedelta(hours=1))


@dataclass
class _Facts:
    """What the events say of one activation."""

    ended_at: datetime | None = None
    fell_out: bool = False
    acted_on: bool = False
    episodes: list[float] = field(default_factory=list)  # seconds in fallout, per ended episode
    open_fallout: int = 0
    reasons: list[str] = field(default_factory=list)


def _facts(activation: KpiActivation, events: list[KpiEvent]) -> _Facts:
    f = _Facts()
    since: dict[str, datetime] = {}  # task id -> when it fell out (an open episode)
    for e in events:
        if e.task_id == "" and e.phase == "end" and f.ended_at is None:
            f.ended_at = e.time
        if e.phase in ACTION_PHASES:
            f.acted_on = True
        if e.task_id and e.state == "fallout":
            f.fell_out = True
            if e.task_id not in since:
                since[e.task_id] = e.time
                f.reasons.append(fold(e.message.removeprefix("fallout: ")))
        elif e.task_id in since and e.state in _LEFT_FALLOUT:
            f.episodes.append((e.time - since.pop(e.task_id)).total_seconds())
    if f.ended_at is None and activation.state in _ENDED:
        f.ended_at = activation.updated_at
    f.open_fallout = len(since)
    return f


def fold(reason: str) -> str:
    """A reason with its device, ids, addresses and numbers folded, so that one cause counts once."""
    text = re.sub(r"\[device [^,\]]+", "[device *", reason)  # one cause on many devices counts once
    text = re.sub(r"\b[0-9a-f]{8}-[0-9a-f-]{27}\b", "#", text)  # uuids
    text = re.sub(r"\b[0-9a-f]{12,}\b", "#", text)  # incident ids, hashes
    text = re.sub(r"\b\d+(\.\d+)*\b", "#", text)  # numbers, addresses (not the digits of a name: nc2)
    return text[:160]


def _figures(key: str, acts: list[KpiActivation], facts: Mapping[str, _Facts]) -> Figures:
    n = len(acts)
    times = [(ended - a.created_at).total_seconds() for a in acts if (ended := facts[a.id].ended_at) is not None]

    def rate(pred: Callable[[KpiActivation], bool]) -> float:
        return sum(1 for a in acts if pred(a)) / n if n else 0.0

    return Figures(
        key=key, count=n, completion_s=Spread.of(times),
        fallout_rate=rate(lambda a: facts[a.id].fell_out),
        rollback_rate=rate(lambda a: a.state == "rolledBack"),
        first_time_right_rate=rate(lambda a: a.state == "completed" and not facts[a.id].fell_out
                                   and not facts[a.id].acted_on),
        fallout_s=Spread.of(s for a in acts for s in facts[a.id].episodes),
        open_fallout=sum(facts[a.id].open_fallout for a in acts),
    )


def compute(rows: KpiRows, *, since: datetime, until: datetime,
            groups_of: Callable[[str], Iterable[str]] = lambda device: ()) -> Report:
    by_activation: dict[str, list[KpiEvent]] = collections.defaultdict(list)
    for e in rows.events:
        by_activation[e.activation_id].append(e)
    facts = {a.id: _facts(a, by_activation[a.id]) for a in rows.activations}
    acts = {a.id: a for a in rows.activations}
    tasks_of: dict[str, list[KpiTask]] = collections.defaultdict(list)
    for kt in rows.tasks:
        tasks_of[kt.activation_id].append(kt)

    def keys(a: KpiActivation, dimension: str) -> set[str]:
        if dimension == "order_ref":
            return {a.order_ref or "(none)"}
        if dimension == "group":
            return {g for t in tasks_of[a.id] for g in (sorted(groups_of(t.device)) or ["(no group)"])}
        return {getattr(t, dimension) for t in tasks_of[a.id]}

    by: dict[str, tuple[Figures, ...]] = {}
    for dimension in DIMENSIONS:
        members: dict[str, list[KpiActivation]] = collections.defaultdict(list)
        for a in rows.activations:
            for k in keys(a, dimension):
                members[k].append(a)
        by[dimension] = tuple(sorted((_figures(k, m, facts) for k, m in members.items()),
                                     key=lambda f: (-f.count, f.key)))
    reasons = collections.Counter(r for f in facts.values() for r in f.reasons)
    bucket = timedelta(hours=1) if until - since <= timedelta(days=2) else timedelta(days=1)
    buckets: dict[datetime, list[int]] = {}
    at = since
    while at < until and len(buckets) < 400:
        buckets[at] = [0, 0]
        at += bucket
    for a in rows.activations:
        start = since + bucket * int((a.created_at - since) / bucket)
        if start in buckets:
            buckets[start][0] += 1
            buckets[start][1] += facts[a.id].fell_out
    overall = _figures("all", list(acts.values()), facts)
    times = tuple(sorted((ended - acts[i].created_at).total_seconds()
                         for i, f in facts.items() if (ended := f.ended_at) is not None))
    return Report(since=since, until=until, overall=overall, by=by, top_reasons=tuple(reasons.most_common(10)),
                  completion_times_s=times, over_time=tuple((k, v[0], v[1]) for k, v in buckets.items()),
                  bucket=bucket)


# -- text and JSON ---------------------------------------------------------------------------------
def _s(value: float | None) -> str:
    return "-" if value is None else (f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}")


def _pc(value: float) -> str:
    return f"{100 * value:.1f}%"


HEADERS = ("", "COUNT", "MEAN s", "P50 s", "P90 s", "P99 s", "FALLOUT", "ROLLBACK", "FIRST-TIME-RIGHT",
           "IN FALLOUT s", "OPEN")


def row(f: Figures) -> list[str]:
    c = f.completion_s
    return [f.key, str(f.count), _s(c.mean), _s(c.p50), _s(c.p90), _s(c.p99), _pc(f.fallout_rate),
            _pc(f.rollback_rate), _pc(f.first_time_right_rate), _s(f.fallout_s.mean), str(f.open_fallout)]


def text_table(report: Report, *, shown: Callable[[str], str] = str) -> str:
    def table(title: str, figures: Iterable[Figures]) -> list[str]:
        rows = [[title.upper(), *HEADERS[1:]]] + [[shown(c) for c in row(f)] for f in figures]
        widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
        return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                for r in rows]

    out = [f"activations created {report.since.isoformat(timespec='seconds')} .. "
           f"{report.until.isoformat(timespec='seconds')}", ""]
    out += table("overall", [report.overall])
    for dimension in DIMENSIONS:
        out += ["", *table(f"by {dimension.replace('_', ' ')}", report.by[dimension])]
    out += ["", "TOP FALLOUT REASONS"]
    out += [f"{n:6d}  {shown(reason)}" for reason, n in report.top_reasons] or ["     -  (no fallout)"]
    return "\n".join(out)


def as_json(report: Report) -> dict[str, Any]:
    def fig(f: Figures) -> dict[str, Any]:
        return asdict(f)

    return {
        "since": report.since.isoformat(), "until": report.until.isoformat(),
        "overall": fig(report.overall),
        "by": {d: [fig(f) for f in report.by[d]] for d in DIMENSIONS},
        "top_fallout_reasons": [{"reason": r, "count": n} for r, n in report.top_reasons],
        "over_time": [{"from": t.isoformat(), "activations": n, "fell_out": k} for t, n, k in report.over_time],
    }


__all__ = ["DIMENSIONS", "Figures", "Report", "Spread", "as_json", "compute", "fold", "text_table"]
