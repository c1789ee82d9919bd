"""The real engine over the scripted device network (:mod:`drivers.testing.scripted`), with a
SQLite journal file in a temporary directory: no root, no lab, no network. One builder for the
engine tests (tests/engine) and for the tests of the gRPC edge and the CLI (tests/unit).

Devices (:data:`PLATFORM`): ``r1`` and ``r2`` are NETCONF-like (lock, candidate, validate,
confirmed commit with persist-id), ``n1`` the same without persist-id (its pending commit belongs
to its session, and reverts when that session ends), ``c1`` and ``c2`` CLI-like (nothing: a push is
live at once). The edge and CLI tests add ``nc1`` (NETCONF-like, :data:`EDGE_DEVICES`), the device
the example activation files name. Each starts with :data:`INITIAL`.

Services (:func:`write_templates`): ``kv`` sets or deletes one key (``key = value`` / ``no key``)
and ``kvu`` does the same with an explicit undo template; ``interface`` and ``system`` take the
parameter schemas of the repository's own services (templates/) and render them as scripted
edits (``if.<name>.description = ...``, ``sys.contact = ...``); ``opaque`` takes any parameters
and always renders one fixed edit (for tests of how the edge translates parameters).

Timeouts are a tenth of a second and the engine's overrun grace is cut to :data:`GRACE_S`
(:func:`cut_overrun_grace`), so a hung device costs a test ~0.15 s.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest

from drivers.base import Capabilities, DeviceProfile, Driver, Timeouts
from drivers.registry import Registry
from drivers.testing.scripted import Operation, ScriptedNetwork
from gateway.engine import Engine
from gateway.engine.limits import EngineSettings
from gateway.engine import transaction
from gateway.inventory import CredentialResolver, Inventory, ProfileStore, select_endpoint
from gateway.journal import JournalOptions, open_journal
from gateway.model import Action, ActivationRequest, TaskSpec, TaskState
from gateway.render import TemplateStore
from gateway.results import ActivationResult, TaskResult

REPO = Path(__file__).resolve().parents[1]

NC, NC1, CLI = "scripted-nc", "scripted-nc-session", "scripted-cli"
PLATFORM = {"r1": NC, "r2": NC, "n1": NC1, "c1": CLI, "c2": CLI}
EDGE_DEVICES = {"nc1": NC, **PLATFORM}
"""The devices of the edge and CLI tests: the engine tests' and ``nc1``, which the examples name."""
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
INTERFACE = """\
{% if action == "delete" %}
no if.{{ name }}.description
no if.{{ name }}.enabled
no if.{{ name }}.type
no if.{{ name }}.ipv4
{% else %}
{% if description is defined %}
if.{{ name }}.description = {{ description }}
{% endif %}
{% if enabled is defined %}
if.{{ name }}.enabled = {{ "true" if enabled else "false" }}
{% endif %}
if.{{ name }}.type = {{ type }}
{% if ipv4 is defined %}
if.{{ name }}.ipv4 = {{ ipv4.address }}/{{ ipv4.prefix_length }}
{% endif %}
{% endif %}
"""
SYSTEM = "".join(f"""\
{{% if {leaf} is defined %}}
{{% if action == "delete" %}}
no sys.{leaf}
{{% else %}}
sys.{leaf} = {{{{ {leaf} }}}}
{{% endif %}}
{{% endif %}}
""" for leaf in ("contact", "location", "name"))
OPAQUE_SERVICE = """\
description: any parameters; one fixed edit
keys: []
examples:
  - parameters: {}
parameters:
  type: object
"""
OPAQUE = "if.opaque = given\n"


def write_templates(root: Path) -> Path:
    """The services above, for every scripted platform, under ``root``."""
    for service, undo in (("kv", False), ("kvu", True)):
        (root / service).mkdir(parents=True)
        (root / service / "service.yaml").write_text(SERVICE)
        for platform in (NC, NC1, CLI):
            (root / service / f"{platform}.j2").write_text(TEMPLATE)
            if undo:
                (root / service / f"{platform}.undo.j2").write_text(UNDO)
    for service, spec, template in (
            ("interface", (REPO / "templates" / "interface" / "service.yaml").read_text(), INTERFACE),
            ("system", (REPO / "templates" / "system" / "service.yaml").read_text(), SYSTEM),
            ("opaque", OPAQUE_SERVICE, OPAQUE)):
        (root / service).mkdir(parents=True)
        (root / service / "service.yaml").write_text(spec)
        for platform in (NC, NC1, CLI):
            (root / service / f"{platform}.j2").write_text(template)
    return root


def cut_overrun_grace(monkeypatch: pytest.MonkeyPatch, grace_s: float = GRACE_S) -> None:
    """How long the engine lets a driver operation overrun its timeout (the module's default is 2 s)."""
    monkeypatch.setattr(transaction, "OVERRUN_GRACE_S", grace_s)


def kv(tid: str, device: str, key: str = "if.ge1", value: str = "up", *, service: str = "kv",
       action: Action = Action.CREATE, deps: tuple[str, ...] = ()) -> TaskSpec:
    params: dict[str, Any] = {"key": key} if action == Action.DELETE else {"key": key, "value": value}
    return TaskSpec(id=tid, device=device, service=service, action=action, parameters=params, depends_on=deps)


def request(*tasks: TaskSpec, atomic: bool = True, request_id: str = "req", order_ref: str = "") -> ActivationRequest:
    return ActivationRequest(request_id=request_id, atomic=atomic, tasks=tasks, order_ref=order_ref)


def initial_text(scope: str = SCOPE) -> str:
    return "\n".join(f"{k} = {v}" for k, v in sorted(INITIAL.items()) if k.split(".")[0] in scope.split(","))


def task(result: ActivationResult, tid: str) -> TaskResult:
    return next(t for t in result.tasks if t.id == tid)


def states(result: ActivationResult) -> dict[str, TaskState]:
    return {t.id: t.state for t in result.tasks}


@dataclass
class Gate:
    reached: asyncio.Event
    release: asyncio.Event


def gate(net: ScriptedNetwork, device: str, op: Operation, **kw: Any) -> Gate:
    """Hold the next ``op`` on ``device`` (before it acts): ``reached`` is set when it is held,
    and it goes on once the test sets ``release``; the activation stays in progress meanwhile.
    The op's time limit still runs: raise the overrun grace (:func:`cut_overrun_grace`) for as
    long as the test holds it."""
    held = Gate(reached=asyncio.Event(), release=asyncio.Event())

    async def hold() -> None:
        held.reached.set()
        await held.release.wait()

    net.on(device, op, hold, **kw)
    return held


@dataclass
class Gateway:
    """A scripted network and the engines run over it, all on one journal file."""

    net: ScriptedNetwork
    journal_path: Path
    templates_root: Path
    devices: Mapping[str, str] = field(default_factory=lambda: dict(PLATFORM))
    engines: list[Engine] = field(default_factory=list)
    stopped: set[int] = field(default_factory=set)
    journal_url: str = ""
    """Another journal than the SQLite file (a PostgreSQL schema, say)."""
    journal_options: JournalOptions | None = None
    settings: EngineSettings | None = None

    @classmethod
    def create(cls, directory: Path, *, templates_root: Path | None = None,
               devices: Mapping[str, str] = PLATFORM) -> "Gateway":
        """Devices ``devices`` (name -> platform), each holding :data:`INITIAL`; the journal (and,
        unless given, the templates) in ``directory``."""
        if templates_root is None:
            templates_root = write_templates(directory / "templates")
        net = ScriptedNetwork({name: INITIAL for name in devices})
        return cls(net=net, journal_path=directory / "journal.db", templates_root=templates_root,
                   devices=dict(devices))

    def build(self) -> Engine:
        registry: Registry[Driver] = Registry("agw.test-scripted-drivers", Driver)
        registry.register("scripted", self.net.driver_class())
        inventory = Inventory.from_mapping({"devices": {
            name: {"address": "192.0.2.1", "host_key_check": False,
                   "endpoints": [{"platform": platform, "port": 830, "credentials": "env:SCRIPTED"}]}
            for name, platform in self.devices.items()}})
        url = self.journal_url or f"sqlite:///{self.journal_path}"
        engine = Engine(journal=open_journal(url, options=self.journal_options), inventory=inventory,
                        profiles=ProfileStore(dict(PROFILES)), templates=TemplateStore(root=self.templates_root),
                        credentials=CredentialResolver(environ={"SCRIPTED_USERNAME": "u", "SCRIPTED_PASSWORD": "p"}),
                        registry=registry, select_endpoint=select_endpoint, settings=self.settings)
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

    async def close(self) -> None:
        """Clear every fault (a held operation is released) and stop every engine."""
        self.net.clear()
        for engine in self.engines:
            await self.stop(engine)

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


# -- the facade calls a real engine gets -------------------------------------------------------------
FACADE = ("submit", "dry_run", "watch", "get", "list_page", "fallout_page", "cancel", "rollback", "retry",
          "force_rollback", "resolve")
"""The engine methods the gRPC edge calls (gateway/api/servicer.py)."""


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class FacadeCalls:
    """The calls a real :class:`Engine` gets through its facade, recorded (the engine's own work
    is untouched: each call goes on to the real method). ``fail_next``: the next call raises this
    instead, as the engine would (for the edge's translation of errors the engine raises only
    deep inside, e.g. a journal that fails)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls: list[Call] = []
        self.fail_next: BaseException | None = None
        for name in FACADE:
            setattr(engine, name, self._wrap(name, getattr(engine, name)))

    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    def last(self, name: str) -> Call:
        return next(c for c in reversed(self.calls) if c.name == name)

    def _enter(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.calls.append(Call(name, args, kwargs))
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(method):
            async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                self._enter(name, args, kwargs)
                async for item in method(*args, **kwargs):
                    yield item

            return stream

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._enter(name, args, kwargs)
            return await method(*args, **kwargs)

        return call


__all__ = ["CLI", "Call", "EDGE_DEVICES", "FacadeCalls", "GRACE_S", "Gate", "Gateway", "INITIAL", "NC", "NC1", "PLATFORM",
           "PROFILES", "SCOPE", "cut_overrun_grace", "gate", "initial_text", "kv", "request", "states", "task",
           "write_templates"]
