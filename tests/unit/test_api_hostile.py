"""Hostile requests at the gRPC edge, each answered cleanly (in process, real grpc.aio server and
client, the real engine over the scripted device network): requests that do not deserialize,
parameters nested too deep, violations too many and too long for a trailer, control characters in
caller texts, and errors whose text must stay in the gateway log. The fuzzer (tests/fuzz) drives
the same edge with generated requests."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2
from prometheus_client import REGISTRY

from gateway.api import status
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.server import SERVICE_NAME
from gateway.api.validate import DEFAULT_LIMITS, fallout_violations, submit_violations
from gateway.engine.context import error_view
from gateway.errors import (
    ConfigurationError,
    FieldViolation,
    HostKeyError,
    InputError,
    JournalError,
)
from gateway.incidents import INTERNAL_KIND, public_message, public_text
from tests.unit.test_api_server import Edge, edge, rpc_error, submit, task  # noqa: F401 - fixture

Code = grpc.StatusCode
ACTIVATION = pb.DESCRIPTOR.services_by_name["ActivationService"]
INCIDENT = re.compile(r"\(incident ([0-9a-f]{12}); see the gateway log\)")
STOCK_METADATA_LIMIT = 8 * 1024
"""grpc.max_metadata_size of a client with default options."""


def identity(data: bytes) -> bytes:
    return data


def first_string_field(descriptor: Any) -> int | None:
    for f in descriptor.fields:
        if f.type == f.TYPE_STRING and not f.is_repeated:
            return int(f.number)
    return None


def nested_value(levels: int) -> struct_pb2.Value:
    """A Value whose innermost string is ``levels`` Structs deep (``a.a.a...``)."""
    v = struct_pb2.Value(string_value="x")
    for _ in range(levels):
        outer = struct_pb2.Value()
        outer.struct_value.fields["a"].CopyFrom(v)
        v = outer
    return v


def with_parameter(value: struct_pb2.Value, name: str = "a") -> pb.SubmitRequest:
    """A Submit whose one task (of the service that takes any parameters) has ``name``: ``value``."""
    req = submit(task(service="opaque", params={}))
    req.tasks[0].parameters.fields[name].CopyFrom(value)
    return req


def malformed_count(method: str) -> float:
    return REGISTRY.get_sample_value("agw_grpc_malformed_requests_total", {"method": method}) or 0.0


# every method with a unary request: ours, and health's
METHODS = [(f"/{SERVICE_NAME}/{m.name}", m.input_type, m.server_streaming) for m in ACTIVATION.methods]
METHODS += [(f"/grpc.health.v1.Health/{name}", health_pb2.HealthCheckRequest.DESCRIPTOR, name == "Watch")
            for name in ("Check", "Watch")]


def malformed_bodies(descriptor: Any) -> dict[str, bytes]:
    bodies = {
        "garbage": b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        "truncated length": b"\x0a\x40abc",  # field 1 says 64 bytes follow, 3 do
        "overlong varint": b"\x08" + b"\x80" * 11 + b"\x01",
        "end group without start": b"\x0c",
        "nested groups beyond the limit": b"\x7b" * 200 + b"\x7c" * 200,  # unknown field 15, groups
    }
    number = first_string_field(descriptor)
    if number is not None:
        bodies["invalid UTF-8"] = bytes([number << 3 | 2, 2]) + b"\xc3\x28"
    return bodies


@pytest.mark.parametrize(("method", "descriptor", "streaming"), METHODS, ids=[m[0].rsplit("/", 1)[1] + ("" if "Health" not in m[0] else "-health") for m in METHODS])
async def test_a_request_that_does_not_deserialize_is_invalid_argument_logged_and_counted(
    edge: Edge, caplog: pytest.LogCaptureFixture, method: str, descriptor: Any, streaming: bool  # noqa: F811
) -> None:
    bodies = malformed_bodies(descriptor)
    before = malformed_count(method)
    with caplog.at_level(logging.INFO, logger="gateway.api.interceptors"):
        for name, body in bodies.items():
            if streaming:
                call = edge.channel.unary_stream(method, request_serializer=identity, response_deserializer=identity)
                err = await rpc_error(_drain(call(body, timeout=5)))
            else:
                call = edge.channel.unary_unary(method, request_serializer=identity, response_deserializer=identity)
                err = await rpc_error(call(body, timeout=5))
            assert err.code() == Code.INVALID_ARGUMENT, (name, err)
            assert err.details().startswith(f"the request is not a valid {descriptor.full_name}: "), (name, err.details())
            assert "upb" not in err.details() and "Error parsing" not in err.details()
            reason = err.details().split(": ", 1)[1]
            assert status.bad_request_details(err.trailing_metadata()) == [FieldViolation("request", reason)]

        def logged() -> int:
            lines = [r.getMessage() for r in caplog.records if r.name == "gateway.api.interceptors"]
            return sum(f"rpc {method} INVALID_ARGUMENT" in line and "malformed" in line for line in lines)

        for _ in range(100):  # the status reaches the client before the server's interceptor logs the call
            if logged() >= len(bodies):
                break
            await asyncio.sleep(0.01)
    assert malformed_count(method) == before + len(bodies)
    assert logged() == len(bodies)
    assert not [r for r in caplog.records if r.name.startswith("grpc")]  # grpc's own "Unexpected ..." error


async def _drain(call: Any) -> list[Any]:
    return [m async for m in call]


async def test_the_reasons_are_ours_and_short(edge: Edge) -> None:  # noqa: F811
    call = edge.channel.unary_unary(f"/{SERVICE_NAME}/Submit", request_serializer=identity,
                                    response_deserializer=identity)
    expected = {
        b"\xff\xff\xff": "the bytes are not protobuf wire format (garbage, or a truncated field)",
        b"\x0a\x02\xc3\x28": "a string field is not valid UTF-8",
        with_parameter(nested_value(40)).SerializeToString(): "messages nested deeper than protobuf allows (100 levels)",
    }
    for body, reason in expected.items():
        err = await rpc_error(call(body))
        assert err.details() == f"the request is not a valid agw.activation.v1.SubmitRequest: {reason}"
    assert edge.calls.names() == []
    # unknown fields are not malformed: the request is served
    ok = pb.SubmitResponse.FromString(await call(submit().SerializeToString() + b"\xf8\x3f\x01"))  # field 1023
    assert ok.created and (await edge.stub.Get(pb.GetRequest(activation_id=ok.activation_id))).request_id == "req-1"


async def test_a_malformed_message_in_a_request_stream_is_refused(edge: Edge) -> None:  # noqa: F811
    method = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    before = malformed_count(method)
    call = edge.channel.stream_stream(method, request_serializer=identity, response_deserializer=identity)

    async def requests() -> Any:
        yield b"\x3a\x00"  # list_services: ""
        yield b"\xff\xff\xff"

    answers: list[bytes] = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for answer in call(requests(), timeout=5):
            answers.append(answer)
    assert info.value.code() == Code.INVALID_ARGUMENT and len(answers) == 1
    assert "not a valid grpc.reflection.v1alpha.ServerReflectionRequest" in info.value.details()
    assert malformed_count(method) == before + 1


# -- bounded depth and size -------------------------------------------------------------------
def test_parameters_nested_deeper_than_the_limit_name_the_field_path() -> None:
    assert DEFAULT_LIMITS.max_parameter_depth == 16
    assert submit_violations(with_parameter(nested_value(15))) == []  # parameters.a ... 16 levels
    deep = submit_violations(with_parameter(nested_value(16)))
    assert deep == [FieldViolation("tasks[0].parameters" + ".a" * 17, "nested deeper than 16 levels")]
    in_lists = struct_pb2.Value()
    in_lists.list_value.values.add().list_value.values.add().struct_value.fields["b"].CopyFrom(nested_value(14))
    assert [v.field for v in submit_violations(with_parameter(in_lists))] == [
        "tasks[0].parameters.a[0][0].b" + ".a" * 13
    ]


async def test_deep_parameters_are_refused_by_the_edge(edge: Edge) -> None:  # noqa: F811
    err = await rpc_error(edge.stub.Submit(with_parameter(nested_value(20))))
    assert err.code() == Code.INVALID_ARGUMENT
    assert "tasks[0].parameters.a.a" in err.details() and "nested deeper than 16 levels" in err.details()
    assert edge.calls.names() == []
    at_limit = await edge.stub.Submit(with_parameter(nested_value(15)))  # at the limit: the engine's business
    assert at_limit.created and edge.calls.names() == ["submit"]


def test_parameter_names_are_checked_and_clipped_in_field_paths() -> None:
    long_name, escape = "n" * 60_000, "x\x1b[2Jy"
    req = submit(task(params={}))
    req.tasks[0].parameters.fields[long_name].string_value = "v"
    req.tasks[0].parameters.fields[escape].number_value = float("inf")
    assert {(v.field, v.reason) for v in submit_violations(req)} == {
        ("tasks[0].parameters." + "n" * 64 + "…", "parameter name longer than 256 characters"),
        ("tasks[0].parameters.x\\x1b[2Jy", "parameter name contains a control character"),
        ("tasks[0].parameters.x\\x1b[2Jy", "not a finite number"),
    }


async def _stock_error(port: int, request: pb.SubmitRequest) -> grpc.aio.AioRpcError:
    """Submit with a client of default options (8 KiB metadata limit)."""
    from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        return await rpc_error(pb_grpc.ActivationServiceStub(channel).Submit(request, timeout=30))


def trailer_bytes(err: grpc.aio.AioRpcError) -> int:
    """The trailers as sent: message percent-encoded, binary values base64-encoded, + HPACK's 32 per entry."""
    size = len("grpc-message") + status.wire_bytes(err.details()) + 32
    for key, value in err.trailing_metadata() or ():
        size += len(key) + 32 + (len(value) * 4 + 2) // 3 if isinstance(value, bytes) else len(key) + len(value) + 32
    return size


async def test_huge_parameter_names_in_many_tasks_stay_invalid_argument_for_a_stock_client(edge: Edge) -> None:  # noqa: F811
    tasks = []
    for i in range(20):
        t = task(f"t{i}", params={})
        t.parameters.fields["p" * 60_000 + str(i)].string_value = "v"
        tasks.append(t)
    err = await _stock_error(edge.port, submit(*tasks))
    assert err.code() == Code.INVALID_ARGUMENT, err.details()
    details = status.bad_request_details(err.trailing_metadata())
    assert details and all(len(v.field) <= status.MAX_FIELD_CHARS for v in details)
    assert trailer_bytes(err) < STOCK_METADATA_LIMIT


@pytest.mark.parametrize("alphabet", ["x", "\U0001f600", "\x1b\x9b\u2028%"])
async def test_a_thousand_huge_violations_fit_a_stock_clients_metadata_limit(edge: Edge, alphabet: str) -> None:  # noqa: F811
    edge.calls.fail_next = InputError([FieldViolation(f"tasks[{i}].parameters." + alphabet * 60_000, alphabet * 60_000)
                                       for i in range(1000)])
    err = await _stock_error(edge.port, submit())
    assert err.code() == Code.INVALID_ARGUMENT
    assert status.wire_bytes(err.details()) <= status.MAX_MESSAGE_WIRE_BYTES
    assert trailer_bytes(err) < STOCK_METADATA_LIMIT - 1024  # room for the headers beside them
    shown = status.bad_request_details(err.trailing_metadata())
    assert 1 <= len(shown) <= status.MAX_VIOLATIONS_SHOWN
    assert err.details().endswith(f"; ... and {1000 - len(shown)} more")
    for text in [err.details()] + [v.field + v.reason for v in shown]:
        assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", text)  # escaped, not sent raw
    # what a stock client reads back with grpcio-status matches the message exactly
    from grpc_status import rpc_status

    class Call:
        def code(self) -> grpc.StatusCode:
            return err.code()

        def details(self) -> str:
            return err.details()

        def trailing_metadata(self) -> Any:
            return err.trailing_metadata()

    assert rpc_status.from_call(Call()).message == err.details()  # type: ignore[arg-type]


def test_clip_message_keeps_the_wire_budget() -> None:
    for text in ("a" * 10_000, "\U0001f600" * 10_000, "%" * 10_000, "\x1b[31m" * 2000):
        clipped = status.clip_message(text)
        assert status.wire_bytes(clipped) <= status.MAX_MESSAGE_WIRE_BYTES and clipped.endswith("…")
        assert "\x1b" not in clipped
    assert status.clip_message("short") == "short"


# -- caller texts refuse control characters -----------------------------------------------------
CONTROLS = ["\x00", "\x07", "\n", "\r", "\x1b[2J", "\x7f", "\x85", "\x9b31m", "\u2028", "\u2029"]


@pytest.mark.parametrize("bad", CONTROLS, ids=[repr(c) for c in CONTROLS])
async def test_control_characters_in_caller_texts_are_refused_naming_the_field(edge: Edge, bad: str) -> None:  # noqa: F811
    cases: list[tuple[Any, Any, str]] = [
        (edge.stub.ResolveFallout, pb.FalloutActionRequest(activation_id="a", task_id="t", note=f"fixed{bad}"), "note"),
        (edge.stub.ResolveFallout, pb.FalloutActionRequest(activation_id="a", task_id=f"t{bad}", note="n"), "task_id"),
        (edge.stub.RetryFallout, pb.FalloutActionRequest(activation_id=f"a{bad}"), "activation_id"),
        (edge.stub.Get, pb.GetRequest(activation_id=f"a{bad}"), "activation_id"),
        (edge.stub.List, pb.ListRequest(device=f"nc1{bad}"), "device"),
        (edge.stub.Submit, submit(order_ref=f"ORD{bad}"), "order_ref"),
        (edge.stub.Submit, submit(request_id=f"r{bad}"), "request_id"),
        (edge.stub.Submit, submit(task(f"t{bad}")), "tasks[0].id"),
        (edge.stub.DryRun, submit(task(device=f"nc1{bad}")), "tasks[0].device"),
    ]
    for rpc, request, field in cases:
        err = await rpc_error(rpc(request))
        assert err.code() == Code.INVALID_ARGUMENT
        assert f"{field}: contains a control character" in err.details(), (field, err.details())
    assert edge.calls.names() == []


def test_a_note_may_hold_a_tab() -> None:
    ok = pb.FalloutActionRequest(activation_id="a", task_id="t", note="replaced the SFP\tticket 42")
    assert fallout_violations(ok, resolve=True) == []


# -- nothing internal leaks --------------------------------------------------------------------
SECRET_PATH = "/etc/agw/internal-7c1e/credentials.yaml"  # no word a lab secret could be (the log redaction masks those)


def _logged(caplog: pytest.LogCaptureFixture, incident_id: str) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if incident_id in r.getMessage())


@pytest.mark.parametrize(
    ("exc", "code", "stable"),
    [
        (ConfigurationError(f"credentials 'file:{SECRET_PATH}#nc1': file {SECRET_PATH} does not exist",
                            device="nc1"), Code.FAILED_PRECONDITION, "[device nc1] gateway configuration error"),
        (JournalError(f"journal read failed: OperationalError: unable to open database file {SECRET_PATH}"),
         Code.UNAVAILABLE, "the journal is unavailable"),
        (JournalError("journal write failed: IntegrityError: UNIQUE constraint failed: events.seq", retryable=False),
         Code.UNAVAILABLE, "journal error"),
        (RuntimeError(f"bug reading {SECRET_PATH}"), Code.INTERNAL, "internal error"),
    ],
)
async def test_internal_error_text_stays_in_the_log_the_client_gets_an_incident(
    edge: Edge, caplog: pytest.LogCaptureFixture, exc: Exception, code: Code, stable: str  # noqa: F811
) -> None:
    edge.calls.fail_next = exc  # as the engine raises it
    with caplog.at_level(logging.WARNING):
        err = await rpc_error(edge.stub.Get(pb.GetRequest(activation_id="x")))
    assert err.code() == code
    assert err.details().startswith(stable)
    assert SECRET_PATH not in err.details() and "UNIQUE" not in err.details()
    found = INCIDENT.search(err.details())
    assert found is not None
    assert str(exc) in _logged(caplog, found.group(1))  # the operator finds the text by the id


def test_host_key_errors_keep_what_the_caller_needs_without_the_known_hosts_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = HostKeyError.refused(device="nc1", host="192.0.2.1", port=830, changed=True,
                               fingerprint="ssh-ed25519 SHA256:abc", known_hosts="/etc/agw/known_hosts")
    with caplog.at_level(logging.WARNING, logger="gateway.incidents"):
        text = public_text(exc)
        view = error_view(exc)
    assert "/etc/agw/known_hosts" not in text and "/etc/agw/known_hosts" not in view.message
    assert "host key changed" in text and "ssh-ed25519 SHA256:abc" in text and "the gateway's known_hosts file" in text
    assert view.kind == "HostKeyError" and view.message == public_message(exc)
    incident_id = INCIDENT.search(text).group(1)  # type: ignore[union-attr]
    assert "/etc/agw/known_hosts" in _logged(caplog, incident_id)


def test_one_error_is_one_incident_in_every_view(caplog: pytest.LogCaptureFixture) -> None:
    exc = ConfigurationError(f"credentials 'file:{SECRET_PATH}#x': file {SECRET_PATH} does not exist", device="nc1")
    with caplog.at_level(logging.ERROR, logger="gateway.incidents"):
        view, text, mapped = error_view(exc), public_text(exc), status.map_error(exc)
    ids = {INCIDENT.search(t).group(1) for t in (view.message, text, mapped.message)}  # type: ignore[union-attr]
    assert len(ids) == 1 and len([r for r in caplog.records if r.name == "gateway.incidents"]) == 1
    assert view.kind == "ConfigurationError" and SECRET_PATH not in view.message


def test_an_unexpected_exception_in_a_task_is_an_internal_error_view() -> None:
    view = error_view(KeyError(SECRET_PATH))
    assert view.kind == INTERNAL_KIND and SECRET_PATH not in view.message and INCIDENT.search(view.message)
    # device errors useful to the caller stay as they are
    from gateway.errors import DeviceErrorInfo, DeviceRejectedError, DeviceTimeoutError

    rejected = DeviceRejectedError("invalid-value: /if:interfaces", device="nc1",
                                   info=DeviceErrorInfo(message="bad mtu", tag="invalid-value"))
    assert error_view(rejected).message == "invalid-value: /if:interfaces"
    assert public_text(DeviceTimeoutError("no answer within 10 s", device="nc1")) == "[device nc1] no answer within 10 s"
