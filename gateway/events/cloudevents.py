"""CloudEvents 1.0 in structured JSON mode, and the signature of each HTTP attempt. Pure.

The body (``Content-Type: application/cloudevents+json``) is the same bytes at every attempt of
an event::

    {"specversion": "1.0", "id": <the outbox event id>, "source": "agw://<host>",
     "type": "net.agw.activation.<outcome>", "subject": <activation id>, "time": <RFC 3339, UTC>,
     "datacontenttype": "application/json", "data": {...}}

The signature headers change per attempt::

    X-Agw-Timestamp: <unix seconds of this attempt>
    X-Agw-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

A receiver recomputes the HMAC over the timestamp header, a dot and the exact body bytes, compares
in constant time (:func:`verify`), refuses a timestamp too far from its clock (a replayed old
request), and drops an ``id`` it has already handled (the gateway delivers at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Mapping

from gateway.journal.deliveries import OutboxEvent

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
SIGNATURE_HEADER = "X-Agw-Signature"
TIMESTAMP_HEADER = "X-Agw-Timestamp"
EVENT_ID_HEADER = "X-Agw-Event-Id"
ATTEMPT_HEADER = "X-Agw-Delivery-Attempt"
TOLERANCE_S = 300
"""How far a receiver should accept a timestamp from its own clock (:func:`verify`)."""

_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def envelope(event: OutboxEvent, *, source: str) -> dict[str, Any]:
    """The CloudEvent of an outbox event (its data parsed from the stored payload)."""
    return {
        "specversion": SPEC_VERSION,
        "id": event.id,
        "source": source,
        "type": event.type,
        "subject": event.activation_id,
        "time": event.time.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": event.data(),
    }


def body(event: OutboxEvent, *, source: str) -> bytes:
    """The exact bytes sent (and signed)."""
    return str(_DUMPS(envelope(event, source=source))).encode("utf-8")


def signature(secret: str | bytes, timestamp: int, payload: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` over ``b"<timestamp>." + payload``."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    mac = hmac.new(key, str(int(timestamp)).encode("ascii") + b"." + payload, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def headers(*, event_id: str, attempt: int, secret: str, timestamp: int, payload: bytes) -> dict[str, str]:
    """The headers of one attempt."""
    return {
        "Content-Type": CONTENT_TYPE,
        EVENT_ID_HEADER: event_id,
        ATTEMPT_HEADER: str(attempt),
        TIMESTAMP_HEADER: str(int(timestamp)),
        SIGNATURE_HEADER: signature(secret, timestamp, payload),
    }


def verify(secret: str | bytes, received: Mapping[str, str], payload: bytes, *, now: float,
           tolerance_s: float = TOLERANCE_S) -> bool:
    """What a receiver does: the signature over the timestamp and ``payload`` is right, and the
    timestamp within ``tolerance_s`` of ``now``. ``received``: the headers (names as sent or
    lower-cased)."""
    lowered = {k.lower(): v for k, v in received.items()}
    stamp, sent = lowered.get(TIMESTAMP_HEADER.lower(), ""), lowered.get(SIGNATURE_HEADER.lower(), "")
    if not stamp.isdigit() or abs(now - int(stamp)) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, int(stamp), payload), sent)


__all__ = ["ATTEMPT_HEADER", "CONTENT_TYPE", "EVENT_ID_HEADER", "SIGNATURE_HEADER", "SPEC_VERSION", "TIMESTAMP_HEADER",
           "TOLERANCE_S", "body", "envelope", "headers", "signature", "verify"]
