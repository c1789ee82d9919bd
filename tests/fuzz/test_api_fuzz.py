"""The gRPC API under hostile requests: every RPC of ActivationService and of health checking,
driven with generated requests (tests/fuzz/strategies.py) and raw malformed bytes, against a real
gateway in this process — the real Engine (gateway.app.build_engine) with a SQLite journal in a
temporary directory and an inventory whose devices are 127.0.0.1 ports nobody listens on (tasks
fail at connect; nothing leaves loopback; one device names a credentials file and a known_hosts
file that do not exist) — served by the real grpc.aio server in a thread of its
own, called with stock synchronous clients (default options: 8 KiB metadata limit).

Every answer must be clean:

- no status is INTERNAL or UNKNOWN, and no RESOURCE_EXHAUSTED (what a stock client reports for
  trailers over its metadata limit) except gRPC's own for a request over the 8 MiB transport limit;
- no status message carries a control character, and nothing a caller receives (status, trailers,
  response messages) names the temporary directory (journal, credentials file, known_hosts) or
  carries a traceback or a parser's text;
- no task result reads ``InternalError``, and the log holds no unexpected exception (grpc's own
  "Unexpected error raised by servicer", an incident for a non-gateway error, an asyncio "never
  retrieved");
- the server stays healthy: a health Check answers SERVING after every example;
- memory stays bounded: RSS grows by less than ``RSS_BOUND_MB`` over the run (after a warm-up).

Deterministic (``derandomize=True``, no example database). ``make test`` runs ``AGW_FUZZ_EXAMPLES``
(default 600) examples in about 40 s with an RSS bound of 256 MB (``AGW_FUZZ_RSS_BOUND_MB``);
``make fuzz`` runs 5000 with a bound of 512 MB (docs/fuzzing.md). RSS, not Python objects: large
requests leave glibc arenas fragmented in the gRPC threads; ``AGW_FUZZ_TRACEMALLOC=1`` shows where
Python memory itself grew (a few MB over 600 examples when this was written).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import socket
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import pytest
import yaml
from google.protobuf import message as pb_message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.api import status
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.server import DEFAULT_MAX_MESSAGE_BYTES, SERVICE_NAME, start_server, stop_server
from gateway.app import GatewayConfig, build_engine
from gateway.errors import AgwError
from tests.fuzz import strategies as hs
from tests.integration.gateway_harness import make_profiles

EXAMPLES = int(os.environ.get("AGW_FUZZ_EXAMPLES", "600"))
RSS_BOUND_MB = float(os.environ.get("AGW_FUZZ_RSS_BOUND_MB", "256"))
TRACEMALLOC = os.environ.get("AGW_FUZZ_TRACEMALLOC", "") == "1"
CALL_TIMEOUT_S = 3.0
STREAM_TIMEOUT_S = 0.5
BAD_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.RESOURCE_EXHAUSTED}
RECEIVE_LIMIT_BYTES = DEFAULT_MAX_MESSAGE_BYTES
"""A request over the server's transport limit is refused by gRPC itself: RESOURCE_EXHAUSTED."""
LEAK_MARKERS = ("Traceback", "upb_", "Error parsing message", "sqlite3.", "sqlalchemy", "psycopg")
PRINTABLE_ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
"""What a gRPC client may put in a text metadata value."""
UNPRINTABLE = set(chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]) | {"\u2028", "\u2029"}

ACTIVATION = pb.DESCRIPTOR.services_by_name["ActivationService"]


@dataclass(frozen=True)
class Rpc:
    path: str
    request: Any  # the request's Descriptor
    streaming: bool


RPCS = [Rpc(f"/{SERVICE_NAME}/{m.name}", m.input_type, m.server_streaming) for m in ACTIVATION.methods] + [
    Rpc("/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest.DESCRIPTOR, False),
    Rpc("/grpc.health.v1.Health/Watch", health_pb2.HealthCheckRequest.DESCRIPTOR, True),
]
WEIGHTED = RPCS + [RPCS[0]] * 5 + [RPCS[3]]
"""Submit six times as often as any other RPC (and DryRun twice): activations to Get, Watch, Cancel..."""
assert RPCS[0].path.endswith("/Submit") and RPCS[3].path.endswith("/DryRun")


def closed_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb() -> float:
    """Resident memory, after glibc returned its free pages (else freed buffers of large requests
    would count as growth)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class ThreadedGateway:
    """build_engine + start_server on an event loop in a thread of its own (the test calls it with
    synchronous stock clients, as another process would)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-gateway", daemon=True)
        self.port = 0

    def run(self, coro: Any, timeout_s: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def start(self) -> None:
        # a TCP port bound but not listening refuses every connect, and no one else can take it
        self.held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.held.bind(("127.0.0.1", 0))
        tcp, udp = int(self.held.getsockname()[1]), closed_port(socket.SOCK_DGRAM)
        private = self.root / "private"  # named in the inventory, never created: a misconfigured device
        inventory = {"devices": {
            "nc1": {"address": "127.0.0.1", "platform": "netconfd", "port": tcp, "credentials": "env:AGW_FUZZ_NC",
                    "host_key_check": False},
            "cli1": {"address": "127.0.0.1", "platform": "frr", "port": tcp, "credentials": "env:AGW_FUZZ_CLI",
                     "host_key_check": False},
            "snmp1": {"address": "127.0.0.1", "platform": "net-snmp", "port": udp, "credentials": "env:AGW_FUZZ_SNMP"},
            "nc2": {"address": "127.0.0.1", "platform": "netconfd", "port": tcp,
                    "credentials": f"file:{private}/credentials.yaml#nc2", "known_hosts": str(private / "known_hosts")},
        }}
        (self.root / "inventory.yaml").write_text(yaml.safe_dump(inventory))
        fast = {"timeouts": {"connect_s": 1, "operation_s": 1, "commit_s": 1}}
        profiles = make_profiles(self.root / "profiles", {p: fast for p in ("netconfd", "frr", "net-snmp")})
        self.config = GatewayConfig(listen="127.0.0.1:0", data_dir=self.root / "data",
                                    inventory_path=self.root / "inventory.yaml", profiles_dir=profiles)
        self.thread.start()

        async def up() -> None:
            self.engine = build_engine(self.config)
            await self.engine.start()
            self.server, self.port = await start_server(self.engine, listen="127.0.0.1:0")

        self.run(up())

    def stop(self) -> None:
        async def down() -> None:
            await stop_server(self.server, grace_s=1.0)
            await self.engine.stop(grace_s=5.0)

        try:
            self.run(down())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.held.close()


class Trouble(logging.Handler):
    """Collects what must never be logged: grpc's own errors, incidents of non-gateway errors, asyncio's."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name.startswith("grpc") and record.levelno >= logging.ERROR:
            self.records.append(f"{record.name}: {record.getMessage()}")
        elif record.name == "asyncio" and record.levelno >= logging.ERROR:
            self.records.append(f"asyncio: {record.getMessage()} {exc!r}")
        elif exc is not None and not isinstance(exc, AgwError) and record.levelno >= logging.ERROR:
            self.records.append(f"{record.name}: {record.getMessage()} ({type(exc).__name__}: {exc})")


@dataclass
class Fuzz:
    gateway: ThreadedGateway
    channel: grpc.Channel
    secret: str  # the temporary directory: nothing a caller gets may name it
    known_ids: list[str] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    calls: int = 0

    def health(self) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

    def check_text(self, what: str, text: str) -> None:
        assert self.secret not in text, f"{what} names the gateway's files: {text[:300]!r}"
        for marker in LEAK_MARKERS:
            assert marker not in text, f"{what} carries {marker!r}: {text[:300]!r}"

    def check_error(self, rpc: str, err: grpc.RpcError, sent_bytes: int) -> None:
        code, details = err.code(), err.details() or ""  # type: ignore[attr-defined]
        self.codes[code.name] = self.codes.get(code.name, 0) + 1
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and sent_bytes > RECEIVE_LIMIT_BYTES:
            return  # the transport's answer to an oversized message, before the gateway sees it
        assert code not in BAD_CODES, f"{rpc}: {code.name} {details[:300]!r} (request of {sent_bytes} bytes)"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return
        assert not (set(details) & UNPRINTABLE), f"{rpc}: control character in {details[:200]!r}"
        assert status.wire_bytes(details) <= status.MAX_MESSAGE_WIRE_BYTES, rpc
        self.check_text(f"{rpc} status", details)
        for key, value in err.trailing_metadata() or ():  # type: ignore[attr-defined]
            self.check_text(f"{rpc} trailer {key}", value.decode("utf-8", "replace") if isinstance(value, bytes) else value)

    def check_answer(self, rpc: str, answer: bytes) -> None:
        self.codes["OK"] = self.codes.get("OK", 0) + 1
        text = answer.decode("utf-8", "replace")
        self.check_text(f"{rpc} answer", text)
        assert "InternalError" not in text, f"{rpc}: a task result shows an internal error: {text[:300]!r}"
        if rpc.endswith("/Submit"):
            aid = pb.SubmitResponse.FromString(answer).activation_id
            if aid and aid not in self.known_ids:
                self.known_ids.append(aid)

    def call(self, rpc: Rpc, body: bytes, *, request_id: str = "") -> grpc.StatusCode:
        """One call with raw bytes (identity serializers); every answer checked. ``request_id``:
        the x-request-id metadata (the correlation id the gateway logs)."""
        self.calls += 1
        metadata = (("x-request-id", request_id),) if request_id else None
        try:
            if rpc.streaming:
                stream = self.channel.unary_stream(rpc.path)(body, timeout=STREAM_TIMEOUT_S, metadata=metadata)
                for answer in stream:
                    self.check_answer(rpc.path, answer)
                return grpc.StatusCode.OK
            answer = self.channel.unary_unary(rpc.path)(body, timeout=CALL_TIMEOUT_S, metadata=metadata)
            self.check_answer(rpc.path, answer)
            return grpc.StatusCode.OK
        except grpc.RpcError as err:
            self.check_error(rpc.path, err, len(body))
            return err.code()  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    root = tmp_path_factory.mktemp("fuzz")
    env = {"AGW_FUZZ_NC_USERNAME": "fuzz", "AGW_FUZZ_NC_PASSWORD": "fuzz-password-1", "AGW_FUZZ_CLI_USERNAME": "fuzz",
           "AGW_FUZZ_CLI_PASSWORD": "fuzz-password-2", "AGW_FUZZ_SNMP_COMMUNITY": "fuzz-community"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    trouble = Trouble()
    logging.getLogger().addHandler(trouble)
    scrapli = logging.getLogger("scrapli")  # logs every refused connect at CRITICAL: noise here
    scrapli_level = scrapli.level
    scrapli.setLevel(logging.CRITICAL + 1)
    gateway = ThreadedGateway(root)
    gateway.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")  # a stock client: default options
    try:
        yield Fuzz(gateway=gateway, channel=channel, secret=str(root))
    finally:
        channel.close()
        gateway.stop()
        logging.getLogger().removeHandler(trouble)
        scrapli.setLevel(scrapli_level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert not trouble.records, "\n".join(trouble.records[:20])


def _with_known_id(fuzz: Fuzz, request: Any, draw: Callable[..., Any]) -> None:
    """Point the request at an activation that exists, sometimes."""
    if "activation_id" in request.DESCRIPTOR.fields_by_name and fuzz.known_ids and draw(st.booleans()):
        request.activation_id = fuzz.known_ids[draw(st.integers(min_value=0, max_value=10_000)) % len(fuzz.known_ids)]


def _serialize(request: Any) -> bytes | None:
    try:
        return request.SerializeToString()  # type: ignore[no-any-return]
    except (pb_message.EncodeError, ValueError):  # the client's own library refuses it: nothing sent
        return None


@pytest.mark.slow
def test_hostile_requests_are_answered_cleanly(fuzz: Fuzz) -> None:
    # warm-up: the paths every later call takes (imports, templates, journal, a run to its end)
    valid = pb.SubmitRequest(request_id="warm-up", tasks=[pb.Task(id="t1", device="nc1", service="interface",
                                                                  action=pb.ACTION_CREATE)])
    valid.tasks[0].parameters.update({"name": "eth1"})
    for rpc in RPCS[:-1]:
        fuzz.call(rpc, valid.SerializeToString() if rpc.request is pb.SubmitRequest.DESCRIPTOR else b"")
    fuzz.health()
    if TRACEMALLOC:
        tracemalloc.start(12)
        traced = tracemalloc.take_snapshot()
    rss_start, started = rss_mb(), time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        rpc = data.draw(st.sampled_from(WEIGHTED), label="rpc")
        if data.draw(st.integers(min_value=0, max_value=4), label="raw?") == 0:  # raw bytes, 1 in 5
            body = data.draw(st.one_of(st.sampled_from(sorted(hs.MALFORMED.values())),
                                       hs.mutations(valid.SerializeToString())), label="bytes")
        else:
            generated = hs.messages(rpc.request)
            if rpc.request is pb.SubmitRequest.DESCRIPTOR:  # half of them get past the edge
                generated = st.one_of(generated, hs.plausible_submits())
            request = data.draw(generated, label="request")
            _with_known_id(fuzz, request, data.draw)
            body = _serialize(request)
            if body is None:
                return
        request_id = data.draw(st.one_of(st.just(""), st.text(alphabet=PRINTABLE_ASCII, max_size=300)), label="x-request-id")
        fuzz.call(rpc, body, request_id=request_id)
        fuzz.health()

    one()
    # every method against every malformed body of the corpus: INVALID_ARGUMENT, always
    for rpc in RPCS:
        for name, body in {**hs.MALFORMED, **hs.invalid_utf8(rpc.request)}.items():
            code = fuzz.call(rpc, body)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{rpc.path} {name}: {code.name}"
        for name, body in hs.VALID_ODDITIES.items():
            fuzz.call(rpc, body)  # served: any clean answer
        fuzz.health()
    elapsed_s, grown_mb = time.monotonic() - started, rss_mb() - rss_start
    if TRACEMALLOC:  # where Python memory grew, by allocation site (AGW_FUZZ_TRACEMALLOC=1)
        growth = tracemalloc.take_snapshot().compare_to(traced, "traceback")[:8]
        tracemalloc.stop()
        for stat in growth:
            print(f"\nfuzz: {stat}\n" + "\n".join(stat.traceback.format()[-12:]))
    print(f"\nfuzz: {EXAMPLES} examples, {fuzz.calls} calls in {elapsed_s:.1f} s, RSS {grown_mb:+.1f} MB (bound "
          f"{RSS_BOUND_MB:.0f} MB), {len(fuzz.known_ids)} activations, codes {dict(sorted(fuzz.codes.items()))}")
    assert grown_mb < RSS_BOUND_MB, f"RSS grew by {grown_mb:.1f} MB over {fuzz.calls} calls"
