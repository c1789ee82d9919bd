"""Live event fan-out for ``Watch``: the journal is the record, this only wakes watchers (and
the listeners of every event: the Subscribe feed, :mod:`gateway.engine.feed`).

A watcher subscribes *before* it reads past events from the journal, then drops live events it
has already seen (by ``seq``), so it never misses nor repeats one.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import AsyncIterator, Awaitable, Callable

from gateway.results import ActivationState, Event

_END_STATES = {s.value for s in ActivationState if s.final} | {ActivationState.FALLOUT.value}


def is_terminal(event: Event) -> bool:
    """An activation-level event announcing a state where the stream ends."""
    return not event.task_id and event.state in _END_STATES


class EventBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[Event]]] = defaultdict(set)
        self._last: dict[str, int] = {}  # activation id -> last seq published to its watchers
        self._listeners: list[Callable[[Event], None]] = []

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
        queue: asyncio.Queue[Event] = asyncio.Queue()
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
                event = await queue.get()
                if event.seq <= last:
                    continue
                last = event.seq
                yield event
                if is_terminal(event):
                    return
        finally:
            subs = self._subscribers.get(activation_id)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    self._subscribers.pop(activation_id, None)
                    self._last.pop(activation_id, None)


__all__ = ["EventBus", "is_terminal"]
