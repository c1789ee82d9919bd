"""The webhook sink: one signed HTTP POST per attempt (httpx), its answer read as an Outcome.

=====================================================  =========================================
the receiver's answer                                  verdict
=====================================================  =========================================
2xx                                                    delivered (the body is not read)
408, 425, 429, 5xx                                     retry (a ``Retry-After`` is honoured)
timeout (connect or the attempt's total), refused or
reset connection, TLS or protocol error                retry
3xx (redirects are not followed), any other 4xx        dead at once: the receiver refuses this
                                                       request and the same bytes get the same
                                                       answer (fix, then ``agw events replay``);
                                                       ``retry_client_errors: true`` retries them
=====================================================  =========================================

Bounds: ``timeouts.connect_s`` for the connection, ``timeouts.total_s`` for the whole attempt
(an answer that trickles in is cut there); at most ``max_response_bytes`` of an error answer's
body is read (its first line goes into ``last_error``), the rest dropped with the connection.
Proxies from the environment are not used; TLS is verified (``ca`` names another CA).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from email.utils import parsedate_to_datetime
from importlib import metadata
from typing import Callable

import httpx

from gateway.errors import ConfigurationError
from gateway.events import cloudevents
from gateway.events.sink import Outcome, Verdict
from gateway.events.subscribers import Subscriber
from gateway.journal.deliveries import OutboxEvent

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429})
MAX_DETAIL_CHARS = 200


def _user_agent() -> str:
    try:
        return f"agw/{metadata.version('activation-gateway')}"
    except metadata.PackageNotFoundError:
        return "agw"


def retry_after_s(value: str | None, *, now: float) -> float | None:
    """A ``Retry-After`` header (seconds, or an HTTP date) as seconds from ``now``."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def verdict_of(status: int, *, retry_client_errors: bool = False) -> Verdict:
    """What an HTTP status means for the delivery (the table above)."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status >= 500 or status in RETRY_STATUSES or retry_client_errors:
        return Verdict.RETRY
    return Verdict.DEAD


class WebhookSink:
    """Deliveries to one subscriber's URL, over one connection pool."""

    def __init__(self, subscriber: Subscriber, *, source: str, clock: Callable[[], float] = time.time,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if subscriber.secret is None:
            raise ConfigurationError(f"subscriber {subscriber.name}: a webhook needs a secret")
        self.subscriber, self.source, self._clock = subscriber, source, clock
        self._secret = subscriber.secret
        t = subscriber.timeouts
        verify: ssl.SSLContext | bool = True
        if subscriber.ca is not None:
            verify = ssl.create_default_context(cafile=str(subscriber.ca))
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(t.total_s, connect=t.connect_s), verify=verify, follow_redirects=False,
            trust_env=False, headers={"User-Agent": _user_agent()}, transport=transport,
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=4))

    async def deliver(self, event: OutboxEvent, *, attempt: int) -> Outcome:
        s = self.subscriber
        payload = cloudevents.body(event, source=self.source)
        headers = cloudevents.headers(event_id=event.id, attempt=attempt, secret=self._secret.reveal(),
                                      timestamp=int(self._clock()), payload=payload)
        try:
            async with asyncio.timeout(s.timeouts.total_s):
                async with self._client.stream("POST", s.url, content=payload, headers=headers) as response:
                    status = response.status_code
                    verdict = verdict_of(status, retry_client_errors=s.retry_client_errors)
                    if verdict == Verdict.DELIVERED:
                        return Outcome(verdict=verdict, status=status)
                    text = await _read_bounded(response, s.max_response_bytes)
                    wait = retry_after_s(response.headers.get("retry-after"), now=self._clock())
        except TimeoutError:
            return Outcome(verdict=Verdict.RETRY, detail=f"no answer within {s.timeouts.total_s:g} s")
        except httpx.TimeoutException as exc:
            return Outcome(verdict=Verdict.RETRY, detail=f"{type(exc).__name__}: timed out")
        except httpx.HTTPError as exc:  # refused, reset, TLS, protocol: the network or the receiver's server
            return Outcome(verdict=Verdict.RETRY, detail=_detail(f"{type(exc).__name__}: {exc}"))
        line = _detail(text)
        return Outcome(verdict=verdict, status=status, retry_after_s=wait,
                       detail=f"HTTP {status}" + (f": {line}" if line else ""))

    async def aclose(self) -> None:
        await self._client.aclose()


async def _read_bounded(response: httpx.Response, limit: int) -> str:
    """At most ``limit`` bytes of the body, as text (the rest is left unread)."""
    got = bytearray()
    async for chunk in response.aiter_raw():
        got += chunk[: limit - len(got)]
        if len(got) >= limit:
            break
    return got.decode("utf-8", "replace")


def _detail(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    printable = "".join(c if c.isprintable() else "?" for c in first)
    return printable[:MAX_DETAIL_CHARS]


__all__ = ["RETRY_STATUSES", "WebhookSink", "retry_after_s", "verdict_of"]
