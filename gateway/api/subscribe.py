"""The Subscribe stream at the edge: the engine's feed of result events (:mod:`gateway.engine.feed`),
through a bounded buffer, to one caller.

A task of its own reads the feed into a buffer of ``EdgeLimits.subscribe_buffer`` events; the
call sends from the buffer as fast as the caller reads (gRPC flow control). A caller that stops
reading fills the transport's windows, then the buffer; once the buffer has stayed full for
``EdgeLimits.subscribe_stall_s``, the stream is cut: the buffer is dropped, the feed closed (its
per-caller slot free again) and the call's status set to ``RESOURCE_EXHAUSTED`` at once. The caller
gets the events already on their way, then that status, and resumes with the cursor of the last
event it got. The feed reads the journal only as fast as the buffer empties: nothing piles up.

Who gets what: the method needs the ``events:subscribe`` permission (the interceptor,
:mod:`gateway.api.auth`); a caller whose grants are scoped gets the events of the activations it may
read (every task's device and service covered, as for List).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncGenerator, AsyncIterator, Callable, Protocol, Sequence

import grpc.aio

from gateway.api import convert, status, validate
from gateway.api.auth import Authorizer, current_access, current_caller
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.validate import EdgeLimits
from gateway.errors import ResourceExhaustedError
from gateway.model import ANONYMOUS, Caller
from gateway.results import ResultEvent

log = logging.getLogger(__name__)

Ctx = grpc.aio.ServicerContext[Any, Any]


class ResultSource(Protocol):
    """What the edge needs from the engine for Subscribe (:meth:`gateway.engine.Engine.subscribe`)."""

    def subscribe(self, *, after: str = "", from_start: bool = False, outcomes: Sequence[str] = (),
                  services: Sequence[str] = (), caller: Caller = ANONYMOUS,
                  keep: Callable[[ResultEvent], bool] | None = None) -> AsyncIterator[ResultEvent]: ...


_END = object()


class _Stream:
    """One call: the feed read into a bounded buffer by a task of its own."""

    def __init__(self, events: AsyncIterator[ResultEvent], limits: EdgeLimits, context: Ctx) -> None:
        self.events, self.limits, self.context = events, limits, context
        self.buffer: asyncio.Queue[Any] = asyncio.Queue(maxsize=limits.subscribe_buffer)
        self.error: BaseException | None = None
        self.cut = False

    async def produce(self) -> None:
        try:
            try:
                async for event in self.events:
                    await self._put(convert.result_event_to_proto(event))
            except _Stalled:
                raise
            except Exception as exc:  # noqa: BLE001 - ends the call with its status (status.py)
                self.error = exc
            await self._put(_END)
        except _Stalled:
            self.cut = True
            log.info("Subscribe of %s: the caller read nothing for %g s with %d events waiting; stream cut",
                     current_caller().shown, self.limits.subscribe_stall_s, self.buffer.qsize())
            await _aclose(self.events)  # the feed's slot back at once
            while not self.buffer.empty():
                self.buffer.get_nowait()
            self.buffer.put_nowait(_END)  # the call ends once its send in progress is through
            try:  # the status now: it follows the events already on their way (the call may be stuck in one)
                await status.abort(self.context, self.exhausted())
            except grpc.aio.AbortError:
                pass
            except Exception as exc:  # noqa: BLE001 - the call ended meanwhile (the caller left)
                log.debug("Subscribe: no status sent after the cut: %s: %s", type(exc).__name__, exc)

    async def _put(self, item: Any) -> None:
        try:
            await asyncio.wait_for(self.buffer.put(item), timeout=self.limits.subscribe_stall_s)
        except asyncio.TimeoutError:
            raise _Stalled from None

    def exhausted(self) -> ResourceExhaustedError:
        return ResourceExhaustedError(
            f"the caller read too slowly: {self.limits.subscribe_buffer} events waited for more than "
            f"{self.limits.subscribe_stall_s:g} s; Subscribe again with after = the cursor of the last event received",
            retry_after_s=1.0)


class _Stalled(Exception):
    pass


async def _aclose(events: AsyncIterator[ResultEvent]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


async def subscribe(source: ResultSource, request: pb.SubscribeRequest, context: Ctx, *, limits: EdgeLimits,
                    authorizer: Authorizer) -> AsyncGenerator[pb.ResultEvent, None]:
    """The Subscribe call: validated, the caller's scope applied, sent through the buffer."""
    events: AsyncIterator[ResultEvent] | None = None
    producer: asyncio.Task[None] | None = None
    try:
        validate.raise_if_any(validate.subscribe_violations(request, limits))
        access = current_access()
        keep = None if access.unrestricted else (lambda e: authorizer.sees(access, e))
        events = source.subscribe(
            after=request.after, from_start=request.from_start, services=list(request.services),
            outcomes=[convert.ACTIVATION_STATE_FROM_PB[s].value for s in request.outcomes],
            caller=current_caller(), keep=keep)
        stream = _Stream(events, limits, context)
        producer = asyncio.create_task(stream.produce(), name="subscribe-buffer")
        while True:
            item = await stream.buffer.get()
            if stream.cut:
                return  # its status is sent (RESOURCE_EXHAUSTED)
            if item is _END:
                if stream.error is not None:
                    raise stream.error
                return
            yield item
    except grpc.aio.AbortError:
        raise
    except Exception as exc:  # noqa: BLE001 - every error becomes a status, in status.py
        await status.abort(context, exc)
    finally:  # the caller left, or the stream ended: the feed's slot back now
        if producer is not None:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
        if events is not None:
            await _aclose(events)


__all__ = ["ResultSource", "subscribe"]
