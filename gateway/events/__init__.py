"""Result events for the world outside: each end state an activation reaches is written to the
journal's outbox in the transaction that records it (:mod:`gateway.journal.outbox`), then
delivered to the configured subscribers as CloudEvents 1.0 — HMAC-signed webhooks, or messages
in a NATS JetStream stream — with retries, exponential backoff and dead letters. See docs/events.md.

* :mod:`~gateway.events.subscribers` — the subscribers file (``agw serve --subscribers``);
* :mod:`~gateway.events.cloudevents` — the envelope and the signature (pure);
* :mod:`~gateway.events.sink` — what a delivery channel implements; :mod:`~gateway.events.webhooks` and
  :mod:`~gateway.events.jetstream` (imported only when a ``kind: nats`` subscriber is configured);
* :mod:`~gateway.events.dispatcher` — the loop: fan-out, claims, attempts, outcomes.
"""

from gateway.events.dispatcher import Dispatcher
from gateway.events.sink import Outcome, Sink, Verdict
from gateway.events.subscribers import (
    EventsConfig,
    Filter,
    NatsTarget,
    RetryPolicy,
    Subscriber,
    Timeouts,
    load_subscribers,
)

__all__ = ["Dispatcher", "EventsConfig", "Filter", "NatsTarget", "Outcome", "RetryPolicy", "Sink", "Subscriber",
           "Timeouts", "Verdict", "load_subscribers"]
