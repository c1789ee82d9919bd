"""The NATS JetStream sink: each attempt publishes the event to a stream and waits for its PubAck.

=====================================================  =========================================
what happens                                           verdict
=====================================================  =========================================
PubAck from the stream (also one that says duplicate)  delivered
no PubAck within ``timeouts.total_s`` (the server
down or reconnecting, JetStream busy), no stream
captures the subject, a JetStream API error, the
connection refused or closed                           retry
the event is larger than the server's max_payload      dead at once (the same bytes never fit)
=====================================================  =========================================

The message is the webhook's body (the structured CloudEvent, :func:`gateway.events.cloudevents.body`)
on the subject ``<subject_prefix>.<outcome>`` (``agw.activation.completed``, …), with the headers
``Nats-Msg-Id: <event id>`` (JetStream drops a second message with the same id within the stream's
duplicate window: a retry whose first attempt did land is not stored twice), ``Content-Type`` and
``X-Agw-Delivery-Attempt``; ``Nats-Expected-Stream`` makes the server refuse it if another stream
captured the subject. A consumer still sees an event twice when a retry comes after the window:
with the same id, as for webhooks.

One connection per subscriber, opened at the first attempt (bounded by ``timeouts.connect_s``) and
kept: the client reconnects by itself (at most :data:`RECONNECT_ATTEMPTS`, one a second), then gives
up and the next attempt opens a new one. While it reconnects, an attempt waits for its PubAck no
longer than ``timeouts.total_s``. The stream is made on first use when it does not exist (file
storage, subjects ``<subject_prefix>.>``, the subscriber's ``duplicate_window_s``), and looked up
again after every reconnection (a server restarted on another store). An existing stream is never
changed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StorageType

from gateway.events import cloudevents
from gateway.events.sink import Outcome, Verdict
from gateway.events.subscribers import NatsTarget, Subscriber
from gateway.journal.deliveries import OutboxEvent
from gateway.journal.outbox import TYPE_PREFIX

log = logging.getLogger(__name__)

RECONNECT_ATTEMPTS = 60
"""How often the client tries to reconnect (one second apart) before it gives the connection up."""
MSG_ID_HEADER = "Nats-Msg-Id"
MAX_DETAIL_CHARS = 200


class _Unready(Exception):
    """The stream could not be found nor made (the reason is the message)."""


class JetStreamSink:
    """Deliveries of one ``kind: nats`` subscriber, over one NATS connection."""

    def __init__(self, subscriber: Subscriber, *, source: str) -> None:
        if subscriber.nats is None:
            raise ValueError(f"subscriber {subscriber.name} is not a NATS subscriber")
        self.subscriber, self.source = subscriber, source
        self.target: NatsTarget = subscriber.nats
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._stream_ready = False
        self._lock = asyncio.Lock()
        self._closed = False

    async def deliver(self, event: OutboxEvent, *, attempt: int) -> Outcome:
        s, target = self.subscriber, self.target
        subject = target.subject(event.type.removeprefix(TYPE_PREFIX))
        payload = cloudevents.body(event, source=self.source)
        headers = {MSG_ID_HEADER: event.id, "Content-Type": cloudevents.CONTENT_TYPE,
                   cloudevents.ATTEMPT_HEADER: str(attempt)}
        deadline = time.monotonic() + s.timeouts.total_s
        try:
            async with asyncio.timeout(s.timeouts.total_s):
                js = await self._ready()
                ack = await js.publish(subject, payload, timeout=max(0.05, deadline - time.monotonic()),
                                       stream=target.stream, headers=headers)
        except nats.errors.MaxPayloadError:
            return Outcome(verdict=Verdict.DEAD, detail=f"the event ({len(payload)} bytes) is larger than the NATS "
                                                        "server's max_payload")
        except TimeoutError:  # also nats' own TimeoutError: no PubAck in time
            return Outcome(verdict=Verdict.RETRY, detail=f"no PubAck within {s.timeouts.total_s:g} s")
        except _Unready as exc:
            return Outcome(verdict=Verdict.RETRY, detail=_detail(str(exc)))
        except nats.js.errors.NoStreamResponseError:
            self._stream_ready = False  # looked up (or made) again at the next attempt
            return Outcome(verdict=Verdict.RETRY, detail=f"no JetStream stream answered on {subject}")
        except nats.js.errors.APIError as exc:
            self._stream_ready = False
            return Outcome(verdict=Verdict.RETRY, detail=_detail(f"JetStream: {exc.description} ({exc.err_code})"))
        except (nats.errors.Error, OSError) as exc:  # closed, refused, draining, outbound buffer full
            if isinstance(exc, (nats.errors.ConnectionClosedError, nats.errors.NoServersError)):
                await self._drop()
            return Outcome(verdict=Verdict.RETRY, detail=_detail(f"{type(exc).__name__}: {exc}"))
        log.debug("event %s to %s: stream %s seq %d%s", event.id, s.name, ack.stream, ack.seq,
                  " (a duplicate: already stored)" if ack.duplicate else "")
        return Outcome(verdict=Verdict.DELIVERED)

    async def aclose(self) -> None:
        self._closed = True
        await self._drop()

    # -- the connection -------------------------------------------------------------------------
    async def _ready(self) -> JetStreamContext:
        """The JetStream context, connected and with the stream ensured (one caller at a time)."""
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                await self._connect()
            assert self._js is not None
            if not self._stream_ready:
                await self._ensure_stream(self._js)
                self._stream_ready = True
            return self._js

    async def _connect(self) -> None:
        if self._closed:
            raise nats.errors.ConnectionClosedError
        s = self.subscriber
        t = self.target
        token = t.token.reveal() if t.token is not None else None
        auth: dict[str, Any] = {"user": t.user, "password": t.password.reveal()} if t.password is not None else {}
        tls = ssl.create_default_context(cafile=str(s.ca) if s.ca else None) if s.url.startswith("tls:") else None
        if tls is not None and t.client_cert is not None and t.client_key is not None:
            tls.load_cert_chain(str(t.client_cert), str(t.client_key))
        nc = NatsClient()
        try:
            await asyncio.wait_for(nc.connect(
                servers=[s.url], name=f"agw {self.source} {s.name}", token=token, tls=tls, **auth,
                connect_timeout=max(1, math.ceil(s.timeouts.connect_s)), allow_reconnect=True,
                reconnect_time_wait=1, max_reconnect_attempts=RECONNECT_ATTEMPTS,
                error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected, closed_cb=self._on_closed), timeout=s.timeouts.connect_s)
        except TimeoutError:
            why = nc.last_error
            await _close_quietly(nc)
            raise _Unready(f"cannot connect to {s.url} within {s.timeouts.connect_s:g} s"
                           + (f" ({type(why).__name__}: {why})" if why is not None else "")) from None
        except BaseException:
            await _close_quietly(nc)
            raise
        self._nc, self._js, self._stream_ready = nc, nc.jetstream(timeout=s.timeouts.connect_s), False
        log.info("subscriber %s: connected to NATS at %s", s.name, s.url)

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        target = self.target
        try:
            await js.stream_info(target.stream)
            return
        except nats.js.errors.NotFoundError:
            pass
        except nats.js.errors.APIError as exc:
            raise _Unready(f"JetStream: {exc.description} ({exc.err_code}) looking up stream {target.stream}") from exc
        try:
            await js.add_stream(name=target.stream, subjects=[target.subjects], storage=StorageType.FILE,
                                duplicate_window=target.duplicate_window_s)
        except nats.js.errors.APIError as exc:
            try:  # another gateway made it meanwhile?
                await js.stream_info(target.stream)
            except nats.js.errors.APIError:
                raise _Unready(f"JetStream: cannot make stream {target.stream} for {target.subjects}: "
                               f"{exc.description} ({exc.err_code})") from exc
            return
        log.info("subscriber %s: made the JetStream stream %s (subjects %s, duplicate window %g s)",
                 self.subscriber.name, target.stream, target.subjects, target.duplicate_window_s)

    async def _drop(self) -> None:
        nc, self._nc, self._js, self._stream_ready = self._nc, None, None, False
        if nc is not None:
            await _close_quietly(nc)

    async def _on_error(self, exc: Exception) -> None:
        log.debug("subscriber %s: NATS: %s: %s", self.subscriber.name, type(exc).__name__, exc)

    async def _on_disconnected(self) -> None:
        if not self._closed:
            log.info("subscriber %s: disconnected from NATS; reconnecting", self.subscriber.name)

    async def _on_reconnected(self) -> None:
        self._stream_ready = False  # the server may have restarted on another store: look again
        log.info("subscriber %s: reconnected to NATS", self.subscriber.name)

    async def _on_closed(self) -> None:
        if not self._closed:
            log.info("subscriber %s: the NATS connection is closed; the next attempt opens a new one",
                     self.subscriber.name)


async def _close_quietly(nc: NatsClient) -> None:
    """Close a client (flushing what it can for a second); never raises."""
    try:
        await asyncio.wait_for(nc.close(), timeout=2.0)
    except Exception as exc:  # noqa: BLE001 - closing is best effort
        log.debug("closing a NATS connection: %s: %s", type(exc).__name__, exc)


def _detail(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return "".join(c if c.isprintable() else "?" for c in first)[:MAX_DETAIL_CHARS]


__all__ = ["JetStreamSink", "MSG_ID_HEADER", "RECONNECT_ATTEMPTS"]
