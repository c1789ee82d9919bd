"""Cross-cutting concerns of every call: a correlation id, one log line, Prometheus metrics.

The log line names the method, the status code, the duration, the correlation id (the caller's
``x-request-id`` metadata, or a fresh one) and the request's own key (``request_id`` or
``activation_id``) — never the parameters, which may carry customer data.

A request that does not deserialize (garbage bytes, invalid UTF-8 in a string field, nesting beyond
protobuf's limit, a truncated field) never reaches a servicer: each handler's deserializer is
wrapped (:func:`_safe_deserializer`) so that such bytes become a :class:`Malformed` marker instead of
an exception grpc.aio would answer with UNKNOWN and its own text. The wrapped behaviour answers the
marker with INVALID_ARGUMENT ("the request is not a valid agw.activation.v1.SubmitRequest: ..."),
counts it in ``agw_grpc_malformed_requests_total{method}`` and logs the call like any other.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import grpc
import grpc.aio
from prometheus_client import Counter, Histogram

from gateway.api import status
from gateway.logs import correlation_id
from gateway.tracing import CallSpan

log = logging.getLogger(__name__)

_Context = grpc.aio.ServicerContext[Any, Any]
"""The server side of a call, whatever its messages."""

# the correlation id of the call being served (for log records further down): gateway.logs

CALLS = Counter(
    "agw_grpc_server_handled_total",
    "gRPC calls completed by the gateway, by method and status code.",
    ["method", "code"],
)
LATENCY = Histogram(
    "agw_grpc_server_handling_seconds",
    "Time to complete a gRPC call (streams: until the stream ends), by method.",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
MALFORMED = Counter(
    "agw_grpc_malformed_requests_total",
    "Requests that did not deserialize (answered INVALID_ARGUMENT before any servicer ran), by method.",
    ["method"],
)


@dataclass(frozen=True)
class Malformed:
    """What :func:`_safe_deserializer` returns for bytes that are not a valid request."""

    type_name: str  # e.g. agw.activation.v1.SubmitRequest
    reason: str  # short and ours: never the parser's text


_DECODE_REASONS = (
    ("utf-8", "a string field is not valid UTF-8"),
    ("maxdepth", "messages nested deeper than protobuf allows (100 levels)"),
    ("wire format", "the bytes are not protobuf wire format (garbage, or a truncated field)"),
)


def _reason(exc: BaseException) -> str:
    text = str(exc).lower()
    for marker, reason in _DECODE_REASONS:
        if marker in text:
            return reason
    if isinstance(exc, RecursionError):
        return _DECODE_REASONS[1][1]
    return f"it cannot be parsed ({type(exc).__name__})"


def _safe_deserializer(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer``, returning :class:`Malformed` instead of raising."""
    if deserializer is None:
        return None
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    type_name = str(getattr(descriptor, "full_name", "") or "request message")

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's malformed request
            return Malformed(type_name, _reason(exc))

    return deserialize


async def _refuse(call: "_Call", request: Malformed, context: _Context) -> None:
    MALFORMED.labels(call.method).inc()
    call.key = f"malformed {request.type_name}"
    await status.abort_malformed(context, request.type_name, request.reason)


_QUIET = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
"""Codes that answer the caller's mistake: logged at INFO (server trouble is WARNING/ERROR)."""


def _key(request: Any) -> str:
    for name in ("request_id", "activation_id"):
        value = getattr(request, name, "")
        if isinstance(value, str) and value:
            return f"{name}={value[:64]!r}"
    return ""


def _code(context: _Context, exc: BaseException | None) -> grpc.StatusCode:
    code: object = context.code()  # not always a grpc.StatusCode at run time, whatever the stubs say
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)) or context.cancelled():
        return grpc.StatusCode.CANCELLED
    if exc is None:
        return grpc.StatusCode.OK
    return grpc.StatusCode.UNKNOWN


class _Call:
    __slots__ = ("method", "cid", "key", "start", "token", "span")

    def __init__(self, method: str, context: _Context, request: Any) -> None:
        self.method = method
        md = dict(context.invocation_metadata() or ())
        self.cid = str(md.get("x-request-id", ""))[:64] or uuid.uuid4().hex[:12]
        self.key = _key(request)
        self.start = time.perf_counter()
        self.token = correlation_id.set(self.cid)
        self.span = CallSpan(method, md)  # continues the caller's trace (traceparent), current from here

    def done(self, context: _Context, exc: BaseException | None) -> None:
        elapsed_s = time.perf_counter() - self.start
        code = _code(context, exc)
        CALLS.labels(self.method, code.name).inc()
        LATENCY.labels(self.method).observe(elapsed_s)
        if code in _QUIET:
            level = logging.INFO
        elif code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            level = logging.ERROR
        else:
            level = logging.WARNING
        log.log(
            level,
            "rpc %s %s %.1fms cid=%s %s",
            self.method,
            code.name,
            elapsed_s * 1000,
            self.cid,
            self.key,
        )
        self.span.end(code.name, code.value[0])
        try:
            correlation_id.reset(self.token)
        except ValueError:  # finished in another context (stream cancelled): nothing to reset
            pass


def _wrap_unary(method: str, inner: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def behaviour(request: Any, context: _Context) -> Any:
        call = _Call(method, context, request)
        exc: BaseException | None = None
        try:
            if isinstance(request, Malformed):
                await _refuse(call, request, context)
            return await inner(request, context)
        except BaseException as e:
            exc = e
            raise
        finally:
            call.done(context, exc)

    return behaviour


def _wrap_stream_gen(method: str, inner: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def behaviour(request: Any, context: _Context) -> AsyncIterator[Any]:
        call = _Call(method, context, request)
        exc: BaseException | None = None
        try:
            if isinstance(request, Malformed):
                await _refuse(call, request, context)
            async for item in inner(request, context):
                yield item
        except BaseException as e:
            exc = e
            raise
        finally:
            call.done(context, exc)

    return behaviour


def _checked_stream(method: str, requests: AsyncIterator[Any], context: _Context) -> AsyncIterator[Any]:
    async def checked() -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, Malformed):
                MALFORMED.labels(method).inc()
                log.info("rpc %s INVALID_ARGUMENT: malformed %s in the request stream", method, request.type_name)
                await status.abort_malformed(context, request.type_name, request.reason)
            yield request

    return checked()


def _wrap_request_stream(method: str, inner: Callable[..., Any]) -> Callable[..., Any]:
    """A request-streaming behaviour whose malformed requests are refused (not logged per call)."""
    if inspect.isasyncgenfunction(inner):
        async def gen_behaviour(requests: AsyncIterator[Any], context: _Context) -> AsyncIterator[Any]:
            async for item in inner(_checked_stream(method, requests, context), context):
                yield item

        return gen_behaviour

    async def behaviour(requests: AsyncIterator[Any], context: _Context) -> Any:
        return await inner(_checked_stream(method, requests, context), context)

    return behaviour


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Logs and measures every unary-request call (ours, health, ...), and answers a request that
    does not deserialize with INVALID_ARGUMENT. Calls with a request stream (server reflection)
    are not logged per call; only their malformed requests are refused and counted."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        deserializer = _safe_deserializer(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            # an async generator, or a coroutine that writes through the context (grpc.aio; the
            # stubs type the behaviours after the synchronous server's)
            inner: Callable[..., Any] = handler.unary_stream
            wrapped = (
                _wrap_stream_gen(method, inner) if inspect.isasyncgenfunction(inner) else _wrap_unary(method, inner)
            )
            return grpc.unary_stream_rpc_method_handler(
                wrapped,
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_request_stream(method, handler.stream_stream),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_request_stream(method, handler.stream_unary),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


__all__ = ["CALLS", "LATENCY", "MALFORMED", "Malformed", "ObservabilityInterceptor", "correlation_id"]
