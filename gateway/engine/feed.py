"""The feed behind the ``Subscribe`` RPC: every activation's result events, in the order they were
committed, from a cursor on, then live.

The events are the outbox's (:mod:`gateway.journal.outbox`: one per end state an activation reaches,
written with it), read by position (:meth:`Outbox.after <gateway.journal.deliveries.Outbox.after>`):
positions follow the commit order, on PostgreSQL across replicas too, so a stream that has seen
position *n* has seen every event before it. Each stream reads what follows its position every
``poll_interval_s``, and at once when this process ends an activation (the engine's event bus calls
:meth:`ResultFeed.heard`). Reading the journal is what lets a stream on any replica sharing a
PostgreSQL journal see every replica's events.

A cursor is opaque to callers: base64url of ``agw1:<position>``, handed out with every event.
``after`` = a cursor resumes with the next event (those pruned by retention meanwhile are gone);
no cursor starts after the last event committed (only new ones), or, with ``from_start``, at the
oldest one kept. A cursor that does not decode, or names a position this journal never gave, is an
:class:`~gateway.errors.InputError` on ``after``.

Bounds: at most ``max_per_caller`` streams per caller identity at once (one more is
``RESOURCE_EXHAUSTED``); a stream reads at most :data:`BATCH` events at a time and only as fast as
it is consumed (the edge's buffer and its cut of a slow consumer: :mod:`gateway.api.subscribe`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from typing import Any, AsyncIterator, Callable, Collection

from gateway.engine.limits import CallerSlots
from gateway.errors import FieldViolation, InputError, ShuttingDownError
from gateway.journal.deliveries import OutboxEvent
from gateway.journal.outbox import END_STATES, TYPE_PREFIX
from gateway.model import ANONYMOUS, Caller
from gateway.results import Event, ResultEvent

log = logging.getLogger(__name__)

BATCH = 100
"""Events read from the journal at a time."""
_CURSOR = re.compile(r"agw1:(0|[1-9][0-9]{0,18})")
MAX_CURSOR_CHARS = 64


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"agw1:{position}".encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, *, field: str = "after") -> int:
    """The position of a cursor; :class:`InputError` on ``field`` when it is not one of ours."""
    def refused() -> InputError:
        return InputError([FieldViolation(field, "not a cursor this gateway gave out (use the cursor of an event "
                                                 "received, or leave it empty)")])

    if len(cursor) > MAX_CURSOR_CHARS or not re.fullmatch(r"[A-Za-z0-9_-]+", cursor):
        raise refused()
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise refused() from None
    found = _CURSOR.fullmatch(text)
    if found is None:
        raise refused()
    return int(found.group(1))


def to_result_event(event: OutboxEvent, *, with_tasks: bool = True) -> ResultEvent:
    """The feed's view of an outbox event; ``with_tasks``: its tasks' (device, service) read from
    its payload (a filter or a scope needs them; else the payload is passed on unread)."""
    tasks: tuple[tuple[str, str], ...] = ()
    if with_tasks:
        data = json.loads(event.payload)
        tasks = tuple((str(t.get("device", "")), str(t.get("service", ""))) for t in data.get("tasks", ())
                      if isinstance(t, dict))
    return ResultEvent(id=event.id, type=event.type, activation_id=event.activation_id,
                       outcome=event.type.removeprefix(TYPE_PREFIX), time=event.time, data=event.payload,
                       cursor=encode_cursor(event.position), tasks=tasks)


class ResultFeed:
    """Streams of the result events of ``journal`` (its outbox), limited per caller."""

    def __init__(self, journal: Any, *, poll_interval_s: float = 0.5, max_per_caller: int = 8,
                 retry_after_s: float = 5.0) -> None:
        self.journal = journal
        self.poll_interval_s = poll_interval_s
        self.slots = CallerSlots(what="Subscribe streams", limit=max_per_caller, retry_after_s=retry_after_s)
        self.streams = 0
        """Streams open and positioned (an event committed from now on reaches each of them)."""
        self._wake = asyncio.Event()
        self._closed = False

    def heard(self, event: Event) -> None:
        """An event published here: an activation-level end state means a new outbox row (committed
        with it): wake the streams now instead of at their next poll."""
        if not event.task_id and event.state in END_STATES:
            self._wake.set()
            self._wake = asyncio.Event()

    def close(self) -> None:
        """End every stream now and refuse new ones (the gateway is shutting down): each raises
        :class:`~gateway.errors.ShuttingDownError`; its subscriber resumes from its last cursor."""
        self._closed = True
        self._wake.set()

    async def stream(self, *, after: str = "", from_start: bool = False, outcomes: Collection[str] = (),
                     services: Collection[str] = (), caller: Caller = ANONYMOUS,
                     keep: Callable[[ResultEvent], bool] | None = None) -> AsyncIterator[ResultEvent]:
        """The events after the cursor ``after`` (see the module), for ever: those of ``outcomes``
        (empty: all) with a task of one of ``services`` (empty: any) that ``keep`` keeps (the
        caller's scope). Raises before the first event: :class:`InputError` for a bad cursor,
        :class:`~gateway.errors.ResourceExhaustedError` when the caller has its streams already."""
        position = decode_cursor(after) if after else None
        self.slots.take(caller)
        counted = False
        try:
            outbox = self.journal.outbox
            head = await outbox.head()
            if position is None:
                position = 0 if from_start else head
            elif position > head:
                raise InputError([FieldViolation("after", "a cursor ahead of this gateway's journal (from another "
                                                          "journal?)")])
            wanted_outcomes, wanted_services = frozenset(outcomes), frozenset(services)
            self.streams, counted = self.streams + 1, True
            log.debug("feed for %s from position %d", caller.shown, position)
            while True:
                if self._closed:
                    raise ShuttingDownError("the gateway is shutting down: subscribe again with the cursor of "
                                            "the last event received (on another replica, or once it is back)")
                wake = self._wake  # before the read: an end committed after it wakes the wait below
                events = await outbox.after(position, limit=BATCH)
                for event in events:
                    position = event.position
                    try:
                        found = to_result_event(event, with_tasks=bool(wanted_services) or keep is not None)
                    except (ValueError, TypeError, AttributeError):
                        log.warning("outbox event %s has no readable payload; not streamed", event.id)
                        continue
                    if wanted_outcomes and found.outcome not in wanted_outcomes:
                        continue
                    if wanted_services and not any(s in wanted_services for _, s in found.tasks):
                        continue
                    if keep is not None and not keep(found):
                        continue
                    yield found
                if len(events) < BATCH:
                    try:
                        await asyncio.wait_for(wake.wait(), timeout=self.poll_interval_s)
                    except asyncio.TimeoutError:
                        pass
        finally:
            self.streams -= 1 if counted else 0
            self.slots.give_back(caller)


__all__ = ["BATCH", "ResultFeed", "decode_cursor", "encode_cursor", "to_result_event"]
