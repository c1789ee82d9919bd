"""A real nats-server (Debian's ``nats-server``, JetStream on) for the tests of the NATS sink, started
by the test itself as a subprocess: ``nats-server -js -a 127.0.0.1 -p <free port> -sd <store>``. It
can be stopped (or killed) and started again on the same port and store directory, the way a
server restart looks to its clients.

Not installed: the tests that need it are skipped with the reason, or FAIL when
``AGW_REQUIRE_NATS=1`` (``make test``). :func:`read_stream` reads a stream back with a JetStream
consumer of its own (an ephemeral pull consumer from the first message).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

CANDIDATES = ("/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server")


def nats_binary() -> str:
    """The nats-server executable, or skip (fail under AGW_REQUIRE_NATS=1) with the reason."""
    found = shutil.which("nats-server") or next((c for c in CANDIDATES if os.access(c, os.X_OK)), "")
    if not found:
        reason = "nats-server is not installed (apt-get install nats-server, or make setup)"
        if os.environ.get("AGW_REQUIRE_NATS") == "1":
            pytest.fail(f"AGW_REQUIRE_NATS=1 but {reason}")
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NatsServer:
    store: Path
    """The JetStream store directory (kept across restarts)."""
    port: int = 0
    binary: str = field(default_factory=nats_binary)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.store.parent / f"{self.store.name}.log"

    def start(self, *, timeout_s: float = 30.0, config: str = "") -> "NatsServer":
        """Start (again: same port, same store) and wait until it takes connections; ``config``:
        the text of a configuration file given with ``-c`` (e.g. ``max_payload: 4096``)."""
        self.store.mkdir(parents=True, exist_ok=True)
        self.port = self.port or _free_port()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        extra: list[str] = []
        if config:
            conf = self.store.parent / f"{self.store.name}.conf"
            conf.write_text(config)
            extra = ["-c", str(conf)]
        self.proc = subprocess.Popen([self.binary, *extra, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                                      "-sd", str(self.store)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited ({self.proc.returncode}): see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    if conn.recv(7) == b"INFO {\"":  # it greets every client: ready
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"nats-server did not take connections within {timeout_s:g} s: see {self.log_path}")

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL) and wait; the port is free afterwards."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a paused one too
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered (a PubAck never comes)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats-store").start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Stored:
    """One message of a stream, as a consumer reads it."""

    subject: str
    headers: dict[str, str]
    data: bytes
    seq: int

    @property
    def msg_id(self) -> str:
        return self.headers.get("Nats-Msg-Id", "")

    def json(self) -> Any:
        return json.loads(self.data)


async def read_stream(url: str, stream: str, subjects: str = ">", *, timeout_s: float = 10.0,
                      **connect: Any) -> list[Stored]:
    """Every message of ``stream`` (on ``subjects``), in stream order, through a new ephemeral pull
    consumer delivering from the first message (``connect``: more options of ``nats.connect``, e.g.
    ``user`` and ``password`` or ``tls``)."""
    import nats
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(servers=[url], connect_timeout=5, allow_reconnect=False, **connect)
    try:
        js = nc.jetstream(timeout=timeout_s)
        last = (await js.stream_info(stream)).state.last_seq
        if not last:
            return []
        sub = await js.pull_subscribe(subjects, stream=stream, config=ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=30.0))
        found: list[Stored] = []
        deadline = time.monotonic() + timeout_s
        while (found[-1].seq if found else 0) < last and time.monotonic() < deadline:
            try:
                msgs = await sub.fetch(batch=100, timeout=1.0)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            found += [Stored(subject=m.subject, headers=dict(m.headers or {}), data=m.data, seq=m.metadata.sequence.stream)
                      for m in msgs]
        await sub.unsubscribe()
        return found
    finally:
        await nc.close()


__all__ = ["NatsServer", "Stored", "nats_binary", "nats_server", "read_stream"]
