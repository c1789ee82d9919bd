"""Traces: a Submit carrying a W3C traceparent gives one trace - the call's span a child of the
caller's, the activation under the call, each task under the activation, each phase under its
task - recorded by the OpenTelemetry SDK (its in-memory exporter here); and `agw serve
--otlp-endpoint` sends spans with OTLP over HTTP to a real receiver (the OTLP protobuf decoded)."""

from __future__ import annotations

import http.server
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
from tests.unit.test_api_server import Edge, edge, submit, task  # noqa: F401 - fixture

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
PARAMETER = "circuit-4711-secret-ish"

class _WhileArmed(InMemorySpanExporter):
    """The SDK's in-memory exporter, keeping spans only while a test of this module runs (the
    provider stays for the process: later tests' spans are dropped, not hoarded)."""

    armed = False

    def export(self, spans: Any) -> Any:
        return super().export(spans) if self.armed else SpanExportResult.SUCCESS


_EXPORTER = _WhileArmed()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # once per process: the API allows one provider
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    _EXPORTER.armed = True
    try:
        yield _EXPORTER
    finally:
        _EXPORTER.armed = False
        _EXPORTER.clear()


async def test_one_trace_from_the_callers_span_down_to_each_phase(edge: Edge, spans: InMemorySpanExporter) -> None:  # noqa: F811
    metadata = (("traceparent", f"00-{TRACE_ID}-{CALLER_SPAN}-01"),)
    reply = await edge.stub.Submit(submit(task("a", device="r1", service="kv",
                                               params={"key": "if.ge1", "value": PARAMETER})), metadata=metadata)
    assert (await edge.outcome(reply.activation_id)).state == pb.ACTIVATION_STATE_COMPLETED
    await edge.engine.wait_idle()
    finished = spans.get_finished_spans()
    by_name: dict[str, list] = {}
    for s in finished:
        by_name.setdefault(s.name, []).append(s)
    (call,) = [s for s in by_name["rpc /agw.activation.v1.ActivationService/Submit"]]
    assert f"{call.context.trace_id:032x}" == TRACE_ID and f"{call.parent.span_id:016x}" == CALLER_SPAN
    (activation,) = by_name["activation"]
    assert activation.parent.span_id == call.context.span_id and activation.context.trace_id == call.context.trace_id
    assert activation.attributes["agw.activation_id"] == reply.activation_id
    assert activation.attributes["agw.outcome"] == "completed"
    (one,) = by_name["task"]
    assert one.parent.span_id == activation.context.span_id
    assert one.attributes["agw.device"] == "r1" and one.attributes["agw.verified"] is True  # atomic: then confirmed
    phases = [s for s in finished if s.parent is not None and s.parent.span_id == one.context.span_id]
    assert [s.name for s in sorted(phases, key=lambda s: s.start_time)] == [
        "connect", "lock", "snapshot", "push", "validate", "commit", "verify"]
    assert [s.name for s in finished if s.name == "confirm"] == ["confirm"]
    for s in finished:  # no parameter value in any attribute
        assert PARAMETER not in repr(dict(s.attributes or {}))


async def test_a_failed_phase_is_an_error_span_with_the_callers_text(edge: Edge, spans: InMemorySpanExporter) -> None:  # noqa: F811
    from drivers.errors import DeviceRejectedError

    edge.net.fail("r1", "load", DeviceRejectedError("bad value for if.ge1"))
    reply = await edge.stub.Submit(submit(task("a", device="r1", service="kv", params={"key": "if.ge1", "value": "x"})))
    await edge.outcome(reply.activation_id)
    await edge.engine.wait_idle()
    (push,) = [s for s in spans.get_finished_spans() if s.name == "push"]
    assert push.status.status_code == trace.StatusCode.ERROR and "bad value for if.ge1" in push.status.description
    assert [s.name for s in spans.get_finished_spans() if s.name == "rollback"] == ["rollback"]


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/traces":
            _Receiver.got.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_agw_serve_exports_spans_with_otlp(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    agw = shutil.which("agw", path=str(Path(sys.executable).parent)) or "agw"
    port = _free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([agw, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "data"),
                             "--otlp-endpoint", f"http://127.0.0.1:{receiver.server_port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            pb_grpc.ActivationServiceStub(channel).List(
                pb.ListRequest(), metadata=(("traceparent", f"00-{TRACE_ID}-{CALLER_SPAN}-01"),), timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        receiver.shutdown()
    assert code == 0, (tmp_path / "serve.log").read_text()
    names = {}
    for body in _Receiver.got:
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}.get("service.name")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    names[s.name] = (s.trace_id.hex(), s.parent_span_id.hex(), service)
    assert names.get("rpc /agw.activation.v1.ActivationService/List") == (TRACE_ID, CALLER_SPAN, "agw"), names
