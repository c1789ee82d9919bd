"""The dispatcher: result events from the journal's outbox to the subscribers, at least once.

Every round (each ``poll_interval_s``, and at once after an attempt ends):

1. **fan-out** — events not fanned out yet get one delivery row per subscriber whose filter
   matches (:meth:`Outbox.fan_out <gateway.journal.deliveries.Outbox.fan_out>`); an event already
   older than a subscriber's retry window (``max_age_s``: written while no dispatcher ran) is a dead
   letter for it at once, there to be replayed;
2. **claim** — due deliveries, as many as there is room for (``concurrency``), each leased for its
   subscriber's attempt time (exclusive across replicas: ``FOR UPDATE SKIP LOCKED``);
3. **attempt** — each claim in a task of its own: the subscriber's sink (:mod:`gateway.events.sink`;
   webhooks: :mod:`gateway.events.webhooks`, NATS JetStream: :mod:`gateway.events.jetstream`) sends it; the outcome is written back: delivered,
   pending again at the next time of the retry policy (exponential backoff with jitter), or dead
   (no attempts or time left, or a verdict of dead).

A gateway that stops lets its attempts run for a grace period, then cuts them and makes their
deliveries due again at once; one that dies leaves them to be sent again when their leases end.
Either way nothing is lost, and a receiver may see an event twice: with the same ``id``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from gateway import metrics
from gateway.errors import AgwError
from gateway.events.sink import Outcome, Sink, Verdict
from gateway.events.subscribers import EventsConfig, Subscriber
from gateway.events.webhooks import WebhookSink
from gateway.journal.deliveries import DEAD, DELIVERED, PENDING, Claim, Outbox, OutboxEvent, Route

log = logging.getLogger(__name__)

FAN_OUT_BATCH = 200
"""Events fanned out per transaction (a round goes on while there are more)."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _no_groups(_device: str) -> frozenset[str]:
    return frozenset()


def make_sink(subscriber: Subscriber, *, source: str) -> Sink:
    """The sink of a subscriber's kind (the NATS client is imported only when one is configured)."""
    if subscriber.kind == "nats":
        from gateway.events.jetstream import JetStreamSink

        return JetStreamSink(subscriber, source=source)
    return WebhookSink(subscriber, source=source)


class Dispatcher:
    """Delivers the outbox of ``journal`` (open before :meth:`start`) to ``config``'s subscribers.

    ``groups_of``: a device's inventory groups (filters by group); ``sinks``: subscriber name →
    sink, in place of the sinks made from the config (:func:`make_sink`: webhooks, NATS; tests)."""

    def __init__(self, journal: Any, config: EventsConfig, *,
                 groups_of: Callable[[str], frozenset[str]] = _no_groups, sinks: Mapping[str, Sink] | None = None,
                 refresh_s: float = 15.0, rand: Callable[[], float] = random.Random().random) -> None:
        self.journal, self.config, self.groups_of = journal, config, groups_of
        self.refresh_s, self._rand = refresh_s, rand
        self._given_sinks = dict(sinks or {})
        self._sinks: dict[str, Sink] = {}
        self._subscribers: dict[str, Subscriber] = {s.name: s for s in config.subscribers}
        self._leases = {s.name: s.lease_s for s in config.subscribers}
        self._outbox: Outbox | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._inflight: dict[asyncio.Task[None], Claim] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._refreshed = 0.0
        self.rounds = 0
        """Rounds done (for tests)."""

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._outbox = self.journal.outbox
        self._sinks = {name: self._given_sinks.get(name) or make_sink(sub, source=self.config.source)
                       for name, sub in self._subscribers.items()}
        self._wake, self._stopping = asyncio.Event(), False
        self._loop_task = asyncio.create_task(self._run(), name="event-dispatcher")
        log.info("event dispatcher started: %d subscriber(s) from %s", len(self._subscribers), self.config.origin)

    async def stop(self, *, grace_s: float = 5.0) -> None:
        """No new attempt; those in flight get ``grace_s`` to end, then are cut and released."""
        if self._loop_task is None:
            return
        loop_task, self._loop_task = self._loop_task, None
        self._stopping = True  # the loop ends after its round (no claim is left half made)
        self._wake.set()
        deadline = time.monotonic() + grace_s
        try:
            await asyncio.wait_for(asyncio.shield(loop_task), timeout=grace_s)
        except asyncio.TimeoutError:
            loop_task.cancel()  # stuck on the database: a claim it made meanwhile waits for its lease
        await asyncio.gather(loop_task, return_exceptions=True)
        if self._inflight and deadline > time.monotonic():
            await asyncio.wait(list(self._inflight), timeout=deadline - time.monotonic())
        cut = dict(self._inflight)
        for task in cut:
            task.cancel()
        await asyncio.gather(*cut, return_exceptions=True)
        if cut and self._outbox is not None:
            try:
                released = await self._outbox.release(list(cut.values()), now=utcnow())
                log.info("event dispatcher stopped: %d attempt(s) cut short, due again", released)
            except AgwError as exc:
                log.warning("could not release %d attempt(s) (%s); they are sent again when their leases end",
                            len(cut), exc)
        for sink in self._sinks.values():
            await sink.aclose()
        self._sinks = {}

    def wake(self) -> None:
        """Look for work now (e.g. an activation just ended)."""
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.round()
            except AgwError as exc:
                log.warning("event dispatcher: %s; trying again in %.1f s", exc, self.config.poll_interval_s)
            except Exception:  # noqa: BLE001 - a bug must not stop deliveries for good
                log.exception("event dispatcher round failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.config.poll_interval_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def round(self) -> None:
        """Fan out what is new, claim what is due (as far as there is room), start the attempts."""
        assert self._outbox is not None
        self.rounds += 1
        while await self._outbox.fan_out(self._route, now=utcnow(), limit=FAN_OUT_BATCH) == FAN_OUT_BATCH:
            pass
        room = self.config.concurrency - len(self._inflight)
        if room > 0 and not self._stopping:
            for claim in await self._outbox.claim(self._leases, now=utcnow(), limit=room):
                task = asyncio.create_task(self._attempt(claim), name=f"event-{claim.event.id}-{claim.subscriber}")
                self._inflight[task] = claim
                task.add_done_callback(self._done)
        if time.monotonic() - self._refreshed >= self.refresh_s:
            await self.refresh_gauges()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        if not self._stopping:
            self._wake.set()  # room for the next one

    async def refresh_gauges(self) -> None:
        assert self._outbox is not None
        counts = await self._outbox.counts()
        metrics.EVENTS_PENDING.set(counts[PENDING])
        metrics.EVENTS_DEAD.set(counts[DEAD])
        self._refreshed = time.monotonic()

    def _route(self, event: OutboxEvent) -> list[Route]:
        """The subscribers an event goes to (runs on a journal thread: pure)."""
        try:
            data = event.data()
        except ValueError:
            return [Route(subscriber=s, dead="the stored payload is not JSON") for s in self._subscribers]
        age_s = (utcnow() - event.time).total_seconds()
        return [Route(subscriber=s.name, dead="" if age_s <= s.retry.max_age_s else
                      f"older than the retry window ({s.retry.max_age_s:g} s) when a dispatcher first saw it")
                for s in self._subscribers.values() if s.filter.matches(data, self.groups_of)]

    async def _attempt(self, claim: Claim) -> None:
        sub = self._subscribers[claim.subscriber]
        try:
            outcome = await self._sinks[sub.name].deliver(claim.event, attempt=claim.attempt)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a sink's bug is a failed attempt, not a lost event
            log.exception("event %s to %s: the sink failed", claim.event.id, sub.name)
            outcome = Outcome(verdict=Verdict.RETRY, detail=f"{type(exc).__name__} in the gateway's sink")
        await self._finish(claim, sub, outcome)

    async def _finish(self, claim: Claim, sub: Subscriber, outcome: Outcome) -> None:
        assert self._outbox is not None
        now = utcnow()
        next_at = None
        if outcome.verdict == Verdict.DELIVERED:
            state = DELIVERED
        elif outcome.verdict == Verdict.DEAD:
            state = DEAD
        else:
            next_at = sub.retry.next_attempt(failed=claim.attempt, started_at=claim.started_at, now=now,
                                             rand=self._rand(), retry_after_s=outcome.retry_after_s)
            state = PENDING if next_at is not None else DEAD
        try:
            written = await self._outbox.finish(claim, state=state, now=now, next_attempt_at=next_at,
                                                error=outcome.detail, status=outcome.status)
        except AgwError as exc:
            log.warning("event %s to %s: outcome %s not written (%s); it is sent again when its lease ends",
                        claim.event.id, sub.name, state, exc)
            return
        if not written:
            log.info("event %s to %s: attempt %d ended after its lease (or a replay); outcome dropped",
                     claim.event.id, sub.name, claim.attempt)
            return
        label = state if state != PENDING else "retry"
        metrics.EVENT_DELIVERIES.labels(sub.name, label).inc()
        if state == DELIVERED:
            metrics.EVENT_DELIVERY_LAG.labels(sub.name).observe(max(0.0, (now - claim.event.time).total_seconds()))
            log.debug("event %s delivered to %s (attempt %d)", claim.event.id, sub.name, claim.attempt)
        elif state == DEAD:
            log.warning("event %s to %s is a dead letter after %d attempt(s): %s (agw events replay %s)",
                        claim.event.id, sub.name, claim.attempt, outcome.detail, claim.event.id)
        else:
            assert next_at is not None
            log.info("event %s to %s: attempt %d failed (%s); next in %.1f s", claim.event.id, sub.name,
                     claim.attempt, outcome.detail, (next_at - now).total_seconds())


__all__ = ["Dispatcher", "FAN_OUT_BATCH", "make_sink"]
