"""Result events into the outbox, in the very transaction that records the state change.

When a record of a write batch (:mod:`gateway.journal.batch`) sets an activation to an end state
(:data:`END_STATES`: completed, partial, rolledBack, failed, cancelled, fallout; the end of a run,
and again the end of every later Rollback, fallout retry, force-rollback or resolve), the same
transaction inserts one ``agw_outbox`` row: a new event id (uuid4: the CloudEvents ``id``, the
receivers' deduplication key), the activation id, the seq of the record's event, the type
(``net.agw.activation.<state>``), the record's time, the payload, built right there from the
activation's and its tasks' rows as this transaction leaves them, and the event's position (the
next values of the ``outbox`` counter in ``agw_sequences``, taken last: the counter's row stays
locked until the commit, so positions follow the commit order, across replicas too). An activation that ends is never
without its event, and no event tells of a state that was rolled back. The dispatcher
(:mod:`gateway.events`) delivers it later, at least once.

The payload (the CloudEvent's ``data``, version :data:`PAYLOAD_VERSION`)::

    activation_id, outcome, seq, request_id, order_ref, submitted_by, atomic, retry,
    created_at, ended_at, duration_ms, texts_omitted,
    tasks: [{id, device, service, action, state, platform, driver, depends_on, parameters,
             rendered, diff, verification, timings, duration_ms, error, rollback,
             note, emulated, truncated}]

Secrets: ``parameters``, ``rendered``, ``diff`` and every other text come from the journal's rows,
where a :class:`~gateway.secrets.Secret` was already reduced to its mask when its transition was
made, and a service's secret parameters (``writeOnly: true``) were masked by the planner and, in the
texts of the run, by the engine (:mod:`gateway.render.masking`).
Sizes: a text longer than :data:`MAX_TEXT_CHARS` is cut (its name listed in the task's
``truncated``); a payload still over :data:`MAX_PAYLOAD_CHARS` drops every ``rendered`` and
``diff`` (``texts_omitted``: true; ``agw get`` shows them).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Sequence

from gateway.journal import codec
from gateway.journal.reads import activation_sql
from gateway.journal.schema import OUTBOX_SEQUENCE, outbox, sequences
from gateway.results import ActivationResult, ActivationState, TaskResult

END_STATES: frozenset[str] = frozenset(s.value for s in (
    ActivationState.COMPLETED, ActivationState.PARTIAL, ActivationState.ROLLED_BACK, ActivationState.FAILED,
    ActivationState.CANCELLED, ActivationState.FALLOUT))
"""The activation states that make an event."""

TYPE_PREFIX = "net.agw.activation."
PAYLOAD_VERSION = 1
MAX_TEXT_CHARS = 32_768
"""A longer rendered intent, diff or rollback diff is cut to this many characters."""
MAX_PAYLOAD_CHARS = 1_048_576
"""A payload larger than this (JSON characters) leaves out every rendered intent and diff."""

_N_ACT = len(codec.ACTIVATION_COLUMNS)
_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def event_type(state: str) -> str:
    """The CloudEvents ``type`` of an end state: ``net.agw.activation.completed``, …"""
    return TYPE_PREFIX + state


@dataclass(frozen=True, slots=True)
class End:
    """A record of the batch that ends an activation (gathered by the batch, written here)."""

    activation_id: str
    seq: int
    state: str
    time: datetime


def _clip(text: str, name: str, truncated: list[str], omit: bool) -> str:
    if omit:
        return ""
    if len(text) > MAX_TEXT_CHARS:
        truncated.append(name)
        return text[:MAX_TEXT_CHARS]
    return text


def _task(t: TaskResult, omit: bool) -> dict[str, Any]:
    truncated: list[str] = []
    rollback: Any = None
    if t.rollback is not None:
        r = t.rollback
        rollback = {"method": r.method, "ok": r.ok, "reason": r.reason, "retryable": r.retryable,
                    "diff": _clip(r.diff, "rollback.diff", truncated, False)}
    return {
        "id": t.id,
        "device": t.device,
        "service": t.service,
        "action": t.action.value,
        "state": t.state.value,
        "platform": t.platform,
        "driver": t.driver,
        "depends_on": list(t.depends_on),
        "parameters": codec.to_plain(t.parameters),
        "rendered": _clip(t.rendered, "rendered", truncated, omit),
        "diff": _clip(t.diff, "diff", truncated, omit),
        "verification": codec.to_plain(t.verification),
        "timings": codec.to_plain(list(t.timings)),
        "duration_ms": round(sum(p.duration_ms for p in t.timings), 3),
        "error": codec.to_plain(t.error),
        "rollback": rollback,
        "note": t.note,
        "emulated": list(t.emulated),
        "truncated": truncated,
    }


def build_payload(activation: ActivationResult, *, outcome: str, seq: int, time: datetime,
                  omit_texts: bool = False) -> dict[str, Any]:
    """The event's data (pure): the activation as its rows say, ``outcome`` the state recorded."""
    ended = codec.utc(time, "time")
    return {
        "version": PAYLOAD_VERSION,
        "activation_id": activation.id,
        "outcome": outcome,
        "seq": seq,
        "request_id": activation.request_id,
        "order_ref": activation.order_ref,
        "submitted_by": activation.submitted_by,
        "atomic": activation.atomic,
        "retry": dict(activation.retry),
        "created_at": codec.to_plain(activation.created_at),
        "ended_at": ended.isoformat(),
        "duration_ms": round(max(0.0, (ended - activation.created_at).total_seconds() * 1000), 3),
        "texts_omitted": omit_texts,
        "tasks": [_task(t, omit_texts) for t in activation.tasks],
    }


def encode_payload(activation: ActivationResult, *, outcome: str, seq: int, time: datetime) -> str:
    """The payload as stored (JSON text), within :data:`MAX_PAYLOAD_CHARS` where texts can make it so."""
    text: str = _DUMPS(build_payload(activation, outcome=outcome, seq=seq, time=time))
    if len(text) > MAX_PAYLOAD_CHARS:
        text = _DUMPS(build_payload(activation, outcome=outcome, seq=seq, time=time, omit_texts=True))
    return text


_INSERT: dict[str, str] = {}


def _insert_sql(mark: str) -> str:
    found = _INSERT.get(mark)
    if found is None:
        cols = ("id", "activation_id", "seq", "type", "time", "payload", "fanned", "position")
        found = _INSERT[mark] = f"INSERT INTO {outbox.name} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
    return found


def _load(cur: Any, mark: str, activation_id: str) -> ActivationResult:
    cur.execute(activation_sql("qmark" if mark == "?" else "pyformat"), (activation_id,))
    rows = cur.fetchall()
    found = [codec.decode_task(row[_N_ACT:]) for row in rows if row[_N_ACT] is not None]
    return codec.decode_activation(rows[0][:_N_ACT], found, ())


def _take_positions(cur: Any, mark: str, n: int) -> int:
    """Raise the outbox counter by ``n``; its new value (the last of the ``n`` positions). The row
    stays locked until this transaction ends: another writer's events wait, then follow."""
    name, value = sequences.name, sequences.c.value.name
    cur.execute(f"UPDATE {name} SET {value} = {value} + {mark} WHERE name = {mark}", (n, OUTBOX_SEQUENCE))
    cur.execute(f"SELECT {value} FROM {name} WHERE name = {mark}", (OUTBOX_SEQUENCE,))
    found = cur.fetchone()
    if found is None:  # setup.ensure_sequences makes the row when the journal opens
        raise RuntimeError(f"the {OUTBOX_SEQUENCE!r} row of {name} is missing")
    return int(found[0])


def write(cur: Any, mark: str, bind_time: Callable[[datetime], Any], ends: Sequence[End]) -> None:
    """Insert the events of ``ends`` on the batch's DB-API cursor (``mark``: its placeholder),
    after the batch's activation and task updates (the payload reads them back)."""
    if not ends:
        return
    rows: list[tuple[Any, ...]] = []
    for end in ends:
        activation = _load(cur, mark, end.activation_id)
        payload = encode_payload(activation, outcome=end.state, seq=end.seq, time=end.time)
        rows.append((str(uuid.uuid4()), end.activation_id, end.seq, event_type(end.state), bind_time(end.time),
                     payload, False))
    last = _take_positions(cur, mark, len(rows))
    rows = [(*row, last - len(rows) + 1 + i) for i, row in enumerate(rows)]
    if len(rows) == 1:
        cur.execute(_insert_sql(mark), rows[0])
    else:
        cur.executemany(_insert_sql(mark), rows)


__all__ = ["END_STATES", "End", "MAX_PAYLOAD_CHARS", "MAX_TEXT_CHARS", "PAYLOAD_VERSION", "TYPE_PREFIX",
           "build_payload", "encode_payload", "event_type", "write"]
