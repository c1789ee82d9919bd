"""A real gateway for integration tests: engine + gRPC server on port 0 + a gRPC client, built
from the running lab's inventory. Also a gateway in a subprocess (``agw serve``) for crash tests,
and an independent NETCONF reader (ncclient) to check devices without going through the gateway.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

from gateway.api import convert
from gateway.api.generated.activation.v1 import activation_pb2 as pb
from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
from gateway.app import REPO_ROOT, GatewayConfig, build_engine
from gateway.results import ActivationResult, ActivationState

ACTIONS = {"create": pb.ACTION_CREATE, "modify": pb.ACTION_MODIFY, "delete": pb.ACTION_DELETE}


def make_profiles(dest: Path, overrides: dict[str, dict[str, Any]]) -> Path:
    """A copy of device_profiles/ with some fields overridden (e.g. a short confirm timer)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in (REPO_ROOT / "device_profiles").glob("*.yaml"):
        data = yaml.safe_load(f.read_text())
        for key, value in overrides.get(data["platform"], {}).items():
            if isinstance(value, dict):
                data.setdefault(key, {}).update(value)
            else:
                data[key] = value
        (dest / f.name).write_text(yaml.safe_dump(data))
    return dest


def submit_request(tasks: list[dict[str, Any]], *, request_id: str, atomic: bool = True, order_ref: str = "") -> pb.SubmitRequest:
    msg = pb.SubmitRequest(request_id=request_id, order_ref=order_ref, atomic=atomic)
    for t in tasks:
        task = msg.tasks.add(id=t["id"], device=t["device"], service=t["service"], action=ACTIONS[t.get("action", "create")])
        task.parameters.update(t.get("parameters", {}))
        task.depends_on.extend(t.get("depends_on", []))
    return msg


@dataclass
class Client:
    stub: pb_grpc.ActivationServiceStub

    async def submit(self, tasks: list[dict[str, Any]], *, request_id: str, atomic: bool = True) -> str:
        reply = await self.stub.Submit(submit_request(tasks, request_id=request_id, atomic=atomic))
        return reply.activation_id

    async def get(self, activation_id: str, *, wait_ms: int = 0) -> ActivationResult:
        reply = await self.stub.Get(pb.GetRequest(activation_id=activation_id, wait_ms=wait_ms))
        return convert.activation_from_proto(reply)

    async def wait(self, activation_id: str, *, timeout_s: float = 60.0, states: tuple[ActivationState, ...] = ()) -> ActivationResult:
        """Follow Watch to its end, then return the result."""
        async def follow() -> None:
            async for _ in self.stub.Watch(pb.WatchRequest(activation_id=activation_id)):
                pass

        await asyncio.wait_for(follow(), timeout=timeout_s)
        return await self.get(activation_id)

    async def outcome(self, activation_id: str, *, timeout_s: float = 60.0) -> ActivationResult:
        """Long-poll Get until the activation ended (final or fallout) or ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            result = await self.get(activation_id, wait_ms=max(1, min(left_ms, 300_000)))
            if result.state.final or result.state == ActivationState.FALLOUT or left_ms <= 0:
                return result

    async def events(self, activation_id: str) -> list[pb.Event]:
        out: list[pb.Event] = []
        async for ev in self.stub.Watch(pb.WatchRequest(activation_id=activation_id)):
            out.append(ev)
        return out


class InProcessGateway:
    """``agw serve``'s engine and gRPC server in the test's process. Self-healing is off unless
    asked for (``self_healing_interval_s``): most tests drive the fallout actions themselves."""

    def __init__(self, *, data_dir: Path, inventory: Path, profiles: Path, journal_url: str = "",
                 self_healing_interval_s: float = 0.0) -> None:
        self.config = GatewayConfig(listen="127.0.0.1:0", data_dir=data_dir, inventory_path=inventory,
                                    profiles_dir=profiles, journal_url=journal_url,
                                    self_healing_interval_s=self_healing_interval_s)
        self.engine = build_engine(self.config)
        self.server: Any = None
        self.port = 0
        self.channel: grpc.aio.Channel | None = None

    async def start(self) -> Client:
        from gateway.api.server import start_server

        await self.engine.start()
        self.server, port = await start_server(self.engine, listen="127.0.0.1:0")
        self.port = port
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        return Client(pb_grpc.ActivationServiceStub(self.channel))

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.server is not None:
            await self.server.stop(1)
        await self.engine.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SubprocessGateway:
    """``agw serve`` in its own process, so a test can SIGKILL (or SIGSTOP) it. ``subscribers``:
    its subscribers file (``--subscribers``: result events to webhooks, NATS); ``env``: variables
    added to the process's environment (a subscriber's secret, say)."""

    def __init__(self, *, data_dir: Path, inventory: Path, profiles: Path, journal_url: str = "",
                 journal_lease_s: float | None = None, subscribers: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir, self.inventory, self.profiles = data_dir, inventory, profiles
        self.journal_url, self.journal_lease_s = journal_url, journal_lease_s
        self.subscribers, self.env = subscribers, dict(env or {})
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> None:
        """Start it; with ``wait``, until it listens (a standby does not listen until it is active)."""
        agw = shutil.which("agw", path=str(Path(sys.executable).parent)) or "agw"
        log = open(self.data_dir / "serve.log", "ab")
        args = [agw, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir),
                "--inventory", str(self.inventory), "--profiles", str(self.profiles)]
        if self.journal_url:
            args += ["--journal", self.journal_url]
        if self.journal_lease_s is not None:
            args += ["--journal-lease-s", str(self.journal_lease_s)]
        if self.subscribers is not None:
            args += ["--subscribers", str(self.subscribers)]
        args += ["--self-healing-interval-s", "0"]  # the tests drive fallout actions themselves
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        if wait:
            self.wait_listening(30)

    def wait_listening(self, timeout_s: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"agw serve exited: see {self.data_dir / 'serve.log'}")
                time.sleep(0.1)
        raise RuntimeError(f"agw serve did not start listening within {timeout_s:g} s")

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def log_text(self) -> str:
        return (self.data_dir / "serve.log").read_text(errors="replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self) -> tuple[grpc.aio.Channel, Client]:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        return channel, Client(pb_grpc.ActivationServiceStub(channel))


# --- an independent NETCONF reader: ncclient, not the gateway's driver -------------------------

IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
SYS_NS = "urn:ietf:params:xml:ns:yang:ietf-system"


def ncclient_get(node: Any, subtree: str) -> str:
    from ncclient import manager

    creds = node.credentials["netconf"]
    with manager.connect(host=node.address, port=node.ports["netconf"], username=creds["username"],
                         password=creds["password"], hostkey_verify=False, allow_agent=False,
                         look_for_keys=False, timeout=20) as m:
        return m.get_config(source="running", filter=("subtree", subtree)).data_xml


def interface_xml(node: Any, name: str) -> str:
    return ncclient_get(node, f'<interfaces xmlns="{IF_NS}"><interface><name>{name}</name></interface></interfaces>')


def system_xml(node: Any) -> str:
    return ncclient_get(node, f'<system xmlns="{SYS_NS}"/>')


def ncclient_edit(node: Any, config: str) -> None:
    from ncclient import manager

    creds = node.credentials["netconf"]
    with manager.connect(host=node.address, port=node.ports["netconf"], username=creds["username"],
                         password=creds["password"], hostkey_verify=False, allow_agent=False,
                         look_for_keys=False, timeout=20) as m:
        with m.locked("candidate"):
            m.edit_config(target="candidate", config=config)
            m.commit()
