"""Live event fan-out for ``Watch``: the journal is the record, this only wakes watchers (and
the listeners of every event: the Subscribe feed, :mod:`gateway.engine.feed`).

A watcher subscribes *before* it reads past events from the journal, then drops live events it
has already seen (by ``seq``), so it never misses nor repeats one. :meth:`EventBus.close` (the
gateway shutting down) ends every stream with :class:`~gateway.errors.ShuttingDownError`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import AsyncIterator, Awaitable, Callable

from gateway.errors import ShuttingDownError
from gateway.results import ActivationState, Event

_END_STATES = {s.value for s in ActivationState if s.final} | {ActivationState.FALLOUT.value}


def is_terminal(event: Event) -> bool:
    """An activation-level event announcing a state where the stream ends."""
    return not event.task_id and event.state in _END_STATES


class EventBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[Event | None]]] = defaultdict(set)
        self._last: dict[str, int] = {}  # activation id -> last seq published to its watchers
        self._listeners: list[Callable[[Event], None]] = []
        self._closed = False

    def close(self) -> None:
        """End every stream now and refuse new ones (the gateway is shutting down)."""
        self._closed = True
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put_nowait(None)

    def listen(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` with every event published from now on (on the loop: keep it quick)."""
        self._listeners.append(listener)

    def publish(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)
        subscribers = self._subscribers.get(event.activation_id)
        if not subscribers:
            return
        self._last[event.activation_id] = max(event.seq, self._last.get(event.activation_id, 0))
        for queue in subscribers:
            queue.put_nowait(event)

    def watched(self) -> list[str]:
        """Activations with watchers here."""
        return [aid for aid, subs in self._subscribers.items() if subs]

    def last_seq(self, activation_id: str) -> int:
        """The last seq published to the activation's watchers (0: none yet)."""
        return self._last.get(activation_id, 0)

    async def stream(
        self,
        activation_id: str,
        *,
        past: Callable[[], Awaitable[list[Event]]],
        is_over: Callable[[], Awaitable[bool]],
    ) -> AsyncIterator[Event]:
        if self._closed:
            raise _closing()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._subscribers[activation_id].add(queue)
        try:
            last = 0
            history = await past()
            for event in history:
                last = event.seq
                yield event
            if (history and is_terminal(history[-1])) or await is_over():
                for event in await past():  # anything written between the two reads
                    if event.seq > last:
                        yield event
                return
            while True:
                live = await queue.get()
                if live is None:
                    raise _closing()
                if live.seq <= last:
                    continue
                last = live.seq
                yield live
                if is_terminal(live):
                    return
        finally:
            subs = self._subscribers.get(activation_id)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    self._subscribers.pop(activation_id, None)
                    self._last.pop(activation_id, None)


def _closing() -> ShuttingDownError:
    return ShuttingDownError("the gateway is shutting down: watch again (on another replica, or once it is back); "
                             "the events seen so far come again first")


__all__ = ["EventBus", "is_terminal"]
