"""A real HTTP receiver of webhooks for the tests of gateway/events: the standard library's
threading HTTP server on 127.0.0.1 (port 0: a free one), in a thread of its own.

It records every request (headers, exact body bytes, when) as it arrives, and answers as told:
``ok`` (204), ``fail`` (500), ``status`` (any code), ``slow`` (waits ``delay_s`` before answering
200), ``huge`` (the status told, then a body that never ends until the client hangs up). It can be
taken down (the port closed: connection refused) and brought up again on the same port. It
counts requests in flight per event id, so a test can prove two were never sent at once.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from gateway.events.cloudevents import ATTEMPT_HEADER, EVENT_ID_HEADER


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event_id(self) -> str:
        return self.headers.get(EVENT_ID_HEADER.lower(), "")

    @property
    def attempt(self) -> int:
        return int(self.headers.get(ATTEMPT_HEADER.lower(), "0"))

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    mode: str = "ok"
    status: int = 204
    delay_s: float = 0.0
    port: int = 0
    answer_headers: dict[str, str] = field(default_factory=dict)
    """Sent with every answer (e.g. Retry-After)."""
    requests: list[Received] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    """Event ids received while another request of the same id was still being answered."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _inflight: dict[str, int] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _released: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                receiver._handle(self)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        self._server = server
        self._released.clear()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        """Close the port (connection refused from now on); slow answers still held are let go."""
        self._released.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def release(self) -> None:
        """Let the slow answers held now go (new ones are slow again)."""
        self._released.set()
        self._released = threading.Event()

    def ids(self) -> list[str]:
        with self._lock:
            return [r.event_id for r in self.requests]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length", "0"))
        body = h.rfile.read(length)
        got = Received(path=h.path, headers={k.lower(): v for k, v in h.headers.items()}, body=body, at=time.time())
        with self._lock:
            self.requests.append(got)
            if self._inflight.get(got.event_id, 0):
                self.overlaps.append(got.event_id)
            self._inflight[got.event_id] = self._inflight.get(got.event_id, 0) + 1
            mode, status, delay_s = self.mode, self.status, self.delay_s
        try:
            if mode == "slow":
                self._released.wait(delay_s)
                self._answer(h, 200)
            elif mode == "fail":
                self._answer(h, 500, b"receiver failing on purpose\n")
            elif mode == "status":
                self._answer(h, status)
            elif mode == "huge":
                self._endless(h, status)
            else:
                self._answer(h, 204)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self._lock:
                self._inflight[got.event_id] -= 1

    def _answer(self, h: BaseHTTPRequestHandler, status: int, body: bytes = b"") -> None:
        h.send_response(status)
        for name, value in self.answer_headers.items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if body:
            h.wfile.write(body)

    def _endless(self, h: BaseHTTPRequestHandler, status: int) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "text/plain")
        h.end_headers()  # no length: the body runs until the connection closes
        chunk = b"x" * 65536 + b"\n"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self._released.is_set():
            h.wfile.write(chunk)
            h.wfile.flush()


__all__ = ["Received", "Receiver"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver that is up, brought down after the test."""
    r = Receiver().up()
    try:
        yield r
    finally:
        r.down()
