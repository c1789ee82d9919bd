"""OpenTelemetry traces: a span per gRPC call, activation, task, phase, confirm, rollback and
repair, continuing the caller's trace (W3C ``traceparent`` in the call's metadata).

Off unless configured: without :func:`configure` the OpenTelemetry API's no-op provider makes every
span free. ``agw serve --otlp-endpoint http://collector:4318`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``)
exports them with OTLP over HTTP, batched.

The current span lives in the OpenTelemetry context, a context variable: asyncio copies it into
the tasks it starts, so an activation started by a Submit is a child of that call's span, its
tasks children of the activation, the phases children of their task. Attributes carry ids, names
and outcomes only (never a parameter or device output); an error's status text is the one callers
see (:func:`gateway.incidents.public_text`), never internal text.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any, Awaitable, Callable, Iterator, Mapping, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

TRACER = trace.get_tracer("agw")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
_PROPAGATOR = TraceContextTextMapPropagator()


def configure(*, otlp_endpoint: str, service_name: str = "agw") -> Any:
    """Export spans to ``otlp_endpoint`` (OTLP/HTTP; ``/v1/traces`` is added); the provider, to
    shut down (flush) at the end. Nothing is done for an empty endpoint."""
    if not otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    url = otlp_endpoint.rstrip("/")
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
        endpoint=url if url.endswith("/v1/traces") else url + "/v1/traces", timeout=10)))
    trace.set_tracer_provider(provider)
    log.info("traces exported with OTLP to %s", url)
    return provider


class CallSpan:
    """The span of one gRPC call, current (with the caller's trace as parent) until :meth:`end`."""

    __slots__ = ("span", "token")

    def __init__(self, method: str, metadata: Mapping[str, Any]) -> None:
        carrier = {k: v for k, v in metadata.items() if k in ("traceparent", "tracestate") and isinstance(v, str)}
        parent = _PROPAGATOR.extract(carrier=carrier)
        self.span = TRACER.start_span(f"rpc {method}", context=parent, kind=SpanKind.SERVER,
                                      attributes={"rpc.system": "grpc", "rpc.method": method})
        self.token = otel_context.attach(trace.set_span_in_context(self.span, parent))

    def end(self, code_name: str, code_value: int) -> None:
        self.span.set_attribute("rpc.grpc.status_code", code_value)
        if code_name not in ("OK", "CANCELLED", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                             "INVALID_ARGUMENT", "FAILED_PRECONDITION", "PERMISSION_DENIED", "UNAUTHENTICATED",
                             "RESOURCE_EXHAUSTED"):
            self.span.set_status(Status(StatusCode.ERROR, code_name))
        self.span.end()
        try:
            otel_context.detach(self.token)
        except Exception:  # noqa: BLE001 - ended in another context (a cancelled stream)
            pass


@contextlib.contextmanager
def span(name: str, **attributes: str | int | bool) -> Iterator[Span]:
    """A child span of the current one, current inside the block. An exception marks it as an
    error with the text callers see, and goes on."""
    with TRACER.start_as_current_span(name, attributes={f"agw.{k}": v for k, v in attributes.items()},
                                      record_exception=False, set_status_on_exception=False) as current:
        try:
            yield current
        except BaseException as exc:
            from gateway.errors import AgwError
            from gateway.incidents import public_text

            text = public_text(exc)[:500] if isinstance(exc, AgwError) else type(exc).__name__
            current.set_status(Status(StatusCode.ERROR, text))
            raise


def traced(name: str) -> Callable[[F], F]:
    """An async method of an object with a ``device`` attribute, in a span of its own."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            with span(name, device=str(getattr(self, "device", ""))):
                return await method(self, *args, **kwargs)

        return cast(F, run)

    return wrap


__all__ = ["CallSpan", "TRACER", "configure", "span", "traced"]
