"""The real engine over the scripted device network (:mod:`drivers.testing.scripted`), with a
SQLite journal file in a temporary directory: no root, no lab, no network.

Devices: ``r1`` and ``r2`` are NETCONF-like (lock, candidate, validate, confirmed commit with
persist-id), ``n1`` the same without persist-id (its pending commit belongs to its session, and
reverts when that session ends), ``c1`` and ``c2`` CLI-like (nothing: a push is live at once). Each starts with
:data:`INITIAL`. Services: ``kv`` sets or deletes one key (``key = value`` / ``no key``) and ``kvu``
does the same with an explicit undo template. Timeouts are a tenth of a second and the engine's
overrun grace is cut to :data:`GRACE_S`, so a hung device costs a test ~0.15 s.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from drivers.base import Capabilities, DeviceProfile, Driver, Timeouts
from drivers.registry import Registry
from drivers.testing.scripted import ScriptedNetwork
from gateway.engine import Engine
from gateway.engine import transaction
from gateway.inventory import CredentialResolver, Inventory, ProfileStore, select_endpoint
from gateway.journal import open_journal
from gateway.model import Action, ActivationRequest, TaskSpec, TaskState
from gateway.render import TemplateStore
from gateway.results import ActivationResult, ActivationState, TaskResult

NC, NC1, CLI = "scripted-nc", "scripted-nc-session", "scripted-cli"
PLATFORM = {"r1": NC, "r2": NC, "n1": NC1, "c1": CLI, "c2": CLI}
INITIAL = {"if.ge1": "down", "if.ge2": "down", "sys.name": "box"}
SCOPE = "if"
"""The scope every ``if.*`` change touches (``sys.*`` is outside it)."""
GRACE_S = 0.05
TIMEOUTS = Timeouts(connect_s=0.5, operation_s=0.1, commit_s=0.1)

PROFILES = {
    NC: DeviceProfile(platform=NC, driver="scripted", timeouts=TIMEOUTS, confirm_timeout_s=60, source="<test>",
                      capabilities=Capabilities(lock=True, candidate=True, validate=True, confirmed_commit=True,
                                                persist_id=True)),
    NC1: DeviceProfile(platform=NC1, driver="scripted", timeouts=TIMEOUTS, confirm_timeout_s=60, source="<test>",
                       capabilities=Capabilities(lock=True, candidate=True, confirmed_commit=True)),
    CLI: DeviceProfile(platform=CLI, driver="scripted", timeouts=TIMEOUTS, source="<test>",
                       capabilities=Capabilities()),
}

SERVICE = """\
description: one key of a scripted device
keys: [key]
examples:
  - parameters: {key: if.ge1, value: up}
parameters:
  type: object
  additionalProperties: false
  required: [key]
  properties:
    key: {type: string, pattern: "^[a-z]+[.][a-z0-9]+$"}
    value: {type: string, pattern: "^[A-Za-z0-9 _-]*$"}
"""
TEMPLATE = """\
{% if action == "delete" %}
no {{ key }}
{% else %}
{{ key }} = {{ value }}
{% endif %}
"""
UNDO = """\
# undo of {{ key }}
no {{ key }}
"""


@pytest.fixture(scope="session")
def templates_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("templates")
    for service, undo in (("kv", False), ("kvu", True)):
        (root / service).mkdir()
        (root / service / "service.yaml").write_text(SERVICE)
        for platform in (NC, NC1, CLI):
            (root / service / f"{platform}.j2").write_text(TEMPLATE)
            if undo:
                (root / service / f"{platform}.undo.j2").write_text(UNDO)
    return root


def kv(tid: str, device: str, key: str = "if.ge1", value: str = "up", *, service: str = "kv",
       action: Action = Action.CREATE, deps: tuple[str, ...] = ()) -> TaskSpec:
    params: dict[str, Any] = {"key": key} if action == Action.DELETE else {"key": key, "value": value}
    return TaskSpec(id=tid, device=device, service=service, action=action, parameters=params, depends_on=deps)


def request(*tasks: TaskSpec, atomic: bool = True, request_id: str = "req") -> ActivationRequest:
    return ActivationRequest(request_id=request_id, atomic=atomic, tasks=tasks)


def initial_text(scope: str = SCOPE) -> str:
    return "\n".join(f"{k} = {v}" for k, v in sorted(INITIAL.items()) if k.split(".")[0] in scope.split(","))


def task(result: ActivationResult, tid: str) -> TaskResult:
    return next(t for t in result.tasks if t.id == tid)


def states(result: ActivationResult) -> dict[str, TaskState]:
    return {t.id: t.state for t in result.tasks}


@dataclass
class Gateway:
    """A scripted network and the engines run over it, all on one journal file."""

    net: ScriptedNetwork
    journal_path: Path
    templates_root: Path
    engines: list[Engine] = field(default_factory=list)
    stopped: set[int] = field(default_factory=set)

    def build(self) -> Engine:
        registry: Registry[Driver] = Registry("agw.test-scripted-drivers", Driver)
        registry.register("scripted", self.net.driver_class())
        inventory = Inventory.from_mapping({"devices": {
            name: {"address": "192.0.2.1", "host_key_check": False,
                   "endpoints": [{"platform": platform, "port": 830, "credentials": "env:SCRIPTED"}]}
            for name, platform in PLATFORM.items()}})
        engine = Engine(journal=open_journal(str(self.journal_path)), inventory=inventory,
                        profiles=ProfileStore(dict(PROFILES)), templates=TemplateStore(root=self.templates_root),
                        credentials=CredentialResolver(environ={"SCRIPTED_USERNAME": "u", "SCRIPTED_PASSWORD": "p"}),
                        registry=registry, select_endpoint=select_endpoint)
        self.engines.append(engine)
        return engine

    async def engine(self) -> Engine:
        """A new engine on the journal, started (it recovers what the journal says is in flight)."""
        engine = self.build()
        await engine.start()
        return engine

    async def stop(self, engine: Engine) -> None:
        if id(engine) not in self.stopped:
            self.stopped.add(id(engine))
            await engine.stop(grace_s=1)

    async def crash(self, engine: Engine) -> None:
        """The gateway's process dies: its device sessions drop (locks released, staged edits
        discarded, confirmed commits without persist-id revert), its work stops where it is."""
        self.net.kill_sessions()
        self.stopped.add(id(engine))
        await engine.stop(grace_s=0)

    async def run(self, engine: Engine, *tasks: TaskSpec, atomic: bool = True,
                  request_id: str = "req") -> ActivationResult:
        """Submit, wait for the background work, and read the activation as journaled."""
        submitted = await engine.submit(request(*tasks, atomic=atomic, request_id=request_id))
        await asyncio.wait_for(engine.wait_idle(), timeout=10)
        return await engine.get(submitted.activation_id)

    async def settle(self, engine: Engine, activation_id: str) -> ActivationResult:
        """After a fallout action or Rollback RPC (which may run in the background)."""
        await asyncio.wait_for(engine.wait_idle(), timeout=10)
        return await engine.get(activation_id, wait_s=5)


@pytest.fixture
async def gw(tmp_path: Path, templates_root: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setattr(transaction, "OVERRUN_GRACE_S", GRACE_S)
    net = ScriptedNetwork({name: INITIAL for name in PLATFORM})
    g = Gateway(net=net, journal_path=tmp_path / "journal.db", templates_root=templates_root)
    try:
        yield g
    finally:
        net.clear()
        for engine in g.engines:
            await g.stop(engine)


@pytest.fixture
async def engine(gw: Gateway) -> Engine:
    return await gw.engine()


__all__ = ["CLI", "GRACE_S", "Gateway", "INITIAL", "NC", "NC1", "PLATFORM", "PROFILES", "SCOPE", "initial_text", "kv", "request",
           "states", "task"]
