"""The outbox's deliveries: what the event dispatcher (:mod:`gateway.events`) and ``agw events``
read and write. :class:`Outbox` is reached as :attr:`SqlJournal.outbox <gateway.journal.sql.SqlJournal.outbox>`.

One ``agw_deliveries`` row per event and subscriber, made by :meth:`Outbox.fan_out` from the
events not fanned out yet. Its life::

    pending ──claim──► (attempt n in flight; due again after its lease) ──finish──► delivered
       ▲                                  │                                     └─► dead
       └───────── finish: retry at next_attempt_at ◄──┘     replay: dead/delivered ──► pending

Claims are exclusive on a journal shared by replicas: the due rows are selected ``FOR UPDATE
SKIP LOCKED`` (PostgreSQL; SQLite has one process, which takes the write lock up front) and, in
the same transaction, their attempt count raised and their next attempt pushed past the attempt's
time limit (the lease). Another replica neither waits for those rows nor sees them due until the
lease is over; a gateway that dies mid-attempt leaves the row to be sent again then (at least
once). :meth:`Outbox.finish` writes an outcome only while the row is still at that attempt, so a
late answer of an attempt whose lease ran out changes nothing.

The events can also be read in the order they were committed, by position (:meth:`Outbox.after`,
:meth:`Outbox.head`): the feed of the ``Subscribe`` RPC (:mod:`gateway.engine.feed`).
"""

from __future__ import annotations

import builtins
import contextlib
import json
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.errors import NotFoundError, Phase
from gateway.journal.dbcall import call
from gateway.journal.schema import OUTBOX_SEQUENCE, deliveries, outbox, sequences

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
STATES = (PENDING, DELIVERED, DEAD)
MAX_ERROR_CHARS = 1000
"""The stored ``last_error`` is cut to this."""


@dataclass(frozen=True, kw_only=True)
class OutboxEvent:
    """One result event as stored (:mod:`gateway.journal.outbox`)."""

    id: str
    activation_id: str
    seq: int
    type: str
    time: datetime
    payload: str
    """The event's data, JSON text."""
    position: int = 0
    """Its place in the commit order of all events (1, 2, …; gaps where events were pruned)."""

    def data(self) -> Any:
        return json.loads(self.payload)


@dataclass(frozen=True, kw_only=True)
class Route:
    """One subscriber an event goes to (the dispatcher's choice); ``dead``: made a dead letter at
    once, with this reason (the event is older than the subscriber's retry window)."""

    subscriber: str
    dead: str = ""


@dataclass(frozen=True, kw_only=True)
class Claim:
    """One attempt this process owns until its lease is over."""

    event: OutboxEvent
    subscriber: str
    attempt: int
    """This attempt's number (1 for the first)."""
    started_at: datetime
    """When the retry window began (fan-out or last replay)."""


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """A delivery as listed (``agw events list``); ``state`` "new": an event not fanned out yet."""

    event_id: str
    activation_id: str
    seq: int
    type: str
    time: datetime
    subscriber: str
    state: str
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str = ""
    last_status: int | None = None
    delivered_at: datetime | None = None


_o, _d = outbox.c, deliveries.c
_EVENT_COLS = (_o.id, _o.activation_id, _o.seq, _o.type, _o.time, _o.payload, _o.position)


def _event(row: Sequence[Any]) -> OutboxEvent:
    eid, aid, seq, type_, time, payload, position = row[:7]
    return OutboxEvent(id=eid, activation_id=aid, seq=int(seq), type=type_, time=time, payload=payload,
                       position=int(position))


@contextlib.contextmanager
def _write(engine: Engine) -> Iterator[Connection]:
    """One write transaction (SQLite: BEGIN IMMEDIATE, see :mod:`gateway.journal.setup`)."""
    with engine.connect() as conn:
        conn.execution_options(agw_write=True)
        with conn.begin():
            yield conn


# -- the work, on a journal thread ------------------------------------------------------------------------


def fan_out(engine: Engine, route: Callable[[OutboxEvent], Sequence[Route]], now: datetime, limit: int) -> int:
    """Make the delivery rows of up to ``limit`` events not fanned out yet (oldest first); how many
    events were fanned out."""
    with _write(engine) as conn:
        q = (sa.select(*_EVENT_COLS).where(_o.fanned == sa.false()).order_by(_o.time, _o.id).limit(limit)
             .with_for_update(skip_locked=True))
        events = [_event(r) for r in conn.execute(q)]
        if not events:
            return 0
        rows = [{"event_id": e.id, "subscriber": r.subscriber, "state": DEAD if r.dead else PENDING, "attempts": 0,
                 "next_attempt_at": now, "started_at": now, "last_error": r.dead[:MAX_ERROR_CHARS],
                 "last_status": None, "delivered_at": None}
                for e in events for r in route(e)]
        if rows:
            conn.execute(sa.insert(deliveries), rows)
        conn.execute(sa.update(outbox).where(_o.id.in_([e.id for e in events])).values(fanned=True))
        return len(events)


def claim(engine: Engine, leases: Mapping[str, float], now: datetime, limit: int) -> list[Claim]:
    """Up to ``limit`` due pending deliveries to the subscribers of ``leases`` (name → seconds the
    attempt may take), oldest due first, each now at its next attempt and leased."""
    if not leases or limit <= 0:
        return []
    with _write(engine) as conn:
        q = (sa.select(*_EVENT_COLS, _d.subscriber, _d.attempts, _d.started_at)
             .select_from(deliveries.join(outbox, _o.id == _d.event_id))
             .where(_d.state == PENDING, _d.next_attempt_at <= now, _d.subscriber.in_(sorted(leases)))
             .order_by(_d.next_attempt_at, _o.time).limit(limit)
             .with_for_update(of=deliveries, skip_locked=True))
        claims = [Claim(event=_event(r), subscriber=r.subscriber, attempt=int(r.attempts) + 1, started_at=r.started_at)
                  for r in conn.execute(q)]
        if claims:
            conn.execute(
                sa.update(deliveries)
                .where(_d.event_id == sa.bindparam("b_event"), _d.subscriber == sa.bindparam("b_subscriber"))
                .values(attempts=sa.bindparam("b_attempts"), next_attempt_at=sa.bindparam("b_next")),
                [{"b_event": c.event.id, "b_subscriber": c.subscriber, "b_attempts": c.attempt,
                  "b_next": now + timedelta(seconds=leases[c.subscriber])} for c in claims])
        return claims


def _at_attempt(c: Claim) -> sa.ColumnElement[bool]:
    return sa.and_(_d.event_id == c.event.id, _d.subscriber == c.subscriber, _d.state == PENDING,
                   _d.attempts == c.attempt)


def finish(engine: Engine, c: Claim, state: str, now: datetime, next_attempt_at: datetime | None, error: str,
           status: int | None) -> bool:
    """The outcome of attempt ``c``; False (nothing written) when the row moved on meanwhile."""
    if state not in STATES:
        raise ValueError(f"unknown delivery state {state!r}")
    with _write(engine) as conn:
        done = conn.execute(sa.update(deliveries).where(_at_attempt(c)).values(
            state=state, next_attempt_at=next_attempt_at or now, last_error=error[:MAX_ERROR_CHARS],
            last_status=status, delivered_at=now if state == DELIVERED else None))
        return bool(done.rowcount == 1)


def release(engine: Engine, claims: Sequence[Claim], now: datetime) -> int:
    """Attempts cut short (the gateway stopping): due again at once (the attempt still counts)."""
    if not claims:
        return 0
    with _write(engine) as conn:
        return sum(int(conn.execute(sa.update(deliveries).where(_at_attempt(c)).values(next_attempt_at=now)).rowcount)
                   for c in claims)


def replay(engine: Engine, event_id: str, dead: bool, subscriber: str, now: datetime) -> int:
    """Deliveries back to pending, due now, attempts and window from zero: those of ``event_id``
    (any state), or every dead one (``dead``); ``subscriber`` narrows either. An event with no
    delivery to a named ``subscriber`` gets one. How many are pending again."""
    where: list[sa.ColumnElement[bool]] = []
    if event_id:
        where.append(_d.event_id == event_id)
    if dead:
        where.append(_d.state == DEAD)
    if subscriber:
        where.append(_d.subscriber == subscriber)
    if not event_id and not dead:
        raise ValueError("replay needs an event id or dead=True")
    with _write(engine) as conn:
        if event_id and conn.execute(sa.select(_o.id).where(_o.id == event_id)).first() is None:
            raise NotFoundError(f"event {event_id} not found", phase=Phase.JOURNAL)
        n = int(conn.execute(sa.update(deliveries).where(*where).values(
            state=PENDING, attempts=0, next_attempt_at=now, started_at=now, last_error="", last_status=None,
            delivered_at=None)).rowcount)
        if n == 0 and event_id and subscriber:
            conn.execute(sa.insert(deliveries).values(
                event_id=event_id, subscriber=subscriber, state=PENDING, attempts=0, next_attempt_at=now,
                started_at=now, last_error="", last_status=None, delivered_at=None))
            n = 1
        return n


def listing(engine: Engine, state: str, subscriber: str, activation_id: str, limit: int) -> list[Delivery]:
    """Deliveries, newest event first; ``state`` "new" lists the events not fanned out yet."""
    with engine.connect() as conn:
        if state == "new":
            q = sa.select(*_EVENT_COLS).where(_o.fanned == sa.false())
            if activation_id:
                q = q.where(_o.activation_id == activation_id)
            rows = conn.execute(q.order_by(_o.time.desc(), _o.id).limit(limit))
            return [Delivery(event_id=e.id, activation_id=e.activation_id, seq=e.seq, type=e.type, time=e.time,
                             subscriber="", state="new") for e in (_event(r) for r in rows)]
        q2 = (sa.select(_o.id, _o.activation_id, _o.seq, _o.type, _o.time, _d.subscriber, _d.state, _d.attempts,
                        _d.next_attempt_at, _d.last_error, _d.last_status, _d.delivered_at)
              .select_from(deliveries.join(outbox, _o.id == _d.event_id)))
        if state:
            q2 = q2.where(_d.state == state)
        if subscriber:
            q2 = q2.where(_d.subscriber == subscriber)
        if activation_id:
            q2 = q2.where(_o.activation_id == activation_id)
        rows2 = conn.execute(q2.order_by(_o.time.desc(), _o.id, _d.subscriber).limit(limit))
        return [Delivery(event_id=r[0], activation_id=r[1], seq=int(r[2]), type=r[3], time=r[4], subscriber=r[5],
                         state=r[6], attempts=int(r[7]), next_attempt_at=r[8], last_error=r[9], last_status=r[10],
                         delivered_at=r[11]) for r in rows2]


def events_of(engine: Engine, activation_id: str) -> list[OutboxEvent]:
    with engine.connect() as conn:
        q = sa.select(*_EVENT_COLS).where(_o.activation_id == activation_id).order_by(_o.seq)
        return [_event(r) for r in conn.execute(q)]


def after(engine: Engine, position: int, limit: int) -> list[OutboxEvent]:
    """Up to ``limit`` events after ``position``, in position order."""
    with engine.connect() as conn:
        q = sa.select(*_EVENT_COLS).where(_o.position > position).order_by(_o.position).limit(limit)
        return [_event(r) for r in conn.execute(q)]


def head(engine: Engine) -> int:
    """The last position given so far (0: none yet)."""
    with engine.connect() as conn:
        found = conn.execute(sa.select(sequences.c.value).where(sequences.c.name == OUTBOX_SEQUENCE)).scalar()
        return int(found or 0)


def counts(engine: Engine) -> dict[str, int]:
    """Deliveries by state (every state present, 0 when none)."""
    with engine.connect() as conn:
        found: dict[str, int] = {str(state): int(n) for state, n in
                                 conn.execute(sa.select(_d.state, sa.func.count()).group_by(_d.state)).all()}
    return {s: int(found.get(s, 0)) for s in STATES}


# -- the async face ---------------------------------------------------------------------------------------


class Outbox:
    """The outbox of one open journal: each call runs on ``executor`` (a journal thread), its
    database errors translated to :class:`~gateway.errors.JournalError`."""

    def __init__(self, engine: Engine, executor: Executor) -> None:
        self._engine, self._executor = engine, executor

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        return await call(self._executor, f"outbox {what}", fn, self._engine, *args, dialect=self._engine.dialect)

    async def fan_out(self, route: Callable[[OutboxEvent], Sequence[Route]], *, now: datetime, limit: int = 100) -> int:
        """``route`` runs on the journal thread: keep it pure and quick."""
        return int(await self._call("fan-out", fan_out, route, now, limit))

    async def claim(self, leases: Mapping[str, float], *, now: datetime, limit: int) -> builtins.list[Claim]:
        found: builtins.list[Claim] = await self._call("claim", claim, dict(leases), now, limit)
        return found

    async def finish(self, c: Claim, *, state: str, now: datetime, next_attempt_at: datetime | None = None,
                     error: str = "", status: int | None = None) -> bool:
        return bool(await self._call("finish", finish, c, state, now, next_attempt_at, error, status))

    async def release(self, claims: Sequence[Claim], *, now: datetime) -> int:
        return int(await self._call("release", release, builtins.list(claims), now))

    async def replay(self, *, now: datetime, event_id: str = "", dead: bool = False, subscriber: str = "") -> int:
        return int(await self._call("replay", replay, event_id, dead, subscriber, now))

    async def list(self, *, state: str = "", subscriber: str = "", activation_id: str = "",
                   limit: int = 100) -> builtins.list[Delivery]:
        found: builtins.list[Delivery] = await self._call("list", listing, state, subscriber, activation_id, limit)
        return found

    async def events(self, activation_id: str) -> builtins.list[OutboxEvent]:
        """The events of one activation, in order."""
        found: builtins.list[OutboxEvent] = await self._call("read", events_of, activation_id)
        return found

    async def counts(self) -> dict[str, int]:
        found: dict[str, int] = await self._call("count", counts)
        return found

    async def after(self, position: int, *, limit: int = 100) -> builtins.list[OutboxEvent]:
        """The events committed after ``position``, oldest first (at most ``limit``)."""
        found: builtins.list[OutboxEvent] = await self._call("read", after, position, limit)
        return found

    async def head(self) -> int:
        """The position of the last event committed (0: none yet)."""
        return int(await self._call("read", head))


__all__ = ["Claim", "DEAD", "DELIVERED", "Delivery", "Outbox", "OutboxEvent", "PENDING", "Route", "STATES"]
