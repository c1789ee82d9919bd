"""What a delivery channel implements: a :class:`Sink` takes one event (one attempt) for one
subscriber and says how it went, as an :class:`Outcome`. The dispatcher
(:mod:`gateway.events.dispatcher`) owns everything else: the outbox, claims, retries and their
schedule, dead letters, metrics. Webhooks are one sink (:mod:`gateway.events.webhooks`), NATS
JetStream another (:mod:`gateway.events.jetstream`); a further channel is one more class with these
two methods (and a ``kind`` in the subscribers file).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from gateway.journal.deliveries import OutboxEvent


class Verdict(str, enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    """Not delivered this time; try again by the subscriber's retry policy."""
    DEAD = "dead"
    """Not delivered, and trying again cannot help: a dead letter at once (``agw events replay``)."""


@dataclass(frozen=True, kw_only=True)
class Outcome:
    verdict: Verdict
    status: int | None = None
    """The receiver's answer (an HTTP status), None when there was none."""
    detail: str = ""
    """Why it was not delivered (no secret, no event content)."""
    retry_after_s: float | None = None
    """The receiver asked to wait this long (honoured up to the policy's max delay)."""


class Sink(Protocol):
    async def deliver(self, event: OutboxEvent, *, attempt: int) -> Outcome:
        """One attempt (1, 2, …). Never raises for a failure of the receiver or the network: that
        is an Outcome; cancelled when the gateway stops (the attempt is then released)."""
        ...

    async def aclose(self) -> None:
        """Let go of connections."""
        ...


__all__ = ["Outcome", "Sink", "Verdict"]
