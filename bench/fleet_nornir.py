"""The fleet benchmark's peer: Nornir 3 (threaded runner) driving ncclient, doing per device what
the gateway does per activation, with the same template and the same parameters.

The gateway's NETCONF driver, for one single-task activation on netconfd (profile
``device_profiles/netconfd.yaml``: ``validate: false``, confirmed commit with persist-id), sends
seven RPCs: lock candidate, get-config (the pre-change snapshot), edit-config, commit confirmed
(persist), get-config (verify), confirming commit (persist-id), unlock. The peer sends the same
seven with ncclient, renders ``templates/interface/netconfd.j2`` with Jinja2, and verifies the
read-back's description (cancel-commit when it differs). ncclient checks no host key here (the
gateway does): that only favours the peer.

Sessions are a Nornir connection plugin (``ncclient``), so Nornir opens them in the first round
("cold") and keeps them for the next ("warm") until :meth:`NornirPeer.close`. ncclient runs two
threads per open session (its session thread and paramiko's transport), each waking every 100 ms:
with hundreds of sessions open in one process they fight for the GIL. ``close_after`` closes each
session after its activation instead (a cold round that never holds more than ``workers``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from nornir.core import Nornir
from nornir.core.configuration import Config
from nornir.core.inventory import Defaults, Groups, Host, Hosts, Inventory
from nornir.core.plugins.connections import ConnectionPluginRegister
from nornir.core.task import Result, Task
from nornir.plugins.runners import ThreadedRunner

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "templates" / "interface" / "netconfd.j2"
IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
CONNECTION = "ncclient"
CONFIRM_TIMEOUT_S = 120  # the netconfd profile's confirm_timeout_s


class PeerError(Exception):
    pass


@dataclass(frozen=True, kw_only=True)
class Device:
    name: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)


class NcclientConnection:
    """A Nornir connection plugin holding one ncclient manager per host."""

    def __init__(self) -> None:
        self._connection: Any = None

    def open(self, hostname: str | None, username: str | None, password: str | None, port: int | None,
             platform: str | None, extras: dict[str, Any] | None = None,
             configuration: Config | None = None) -> None:
        from ncclient import manager

        self._connection = manager.connect(
            host=hostname, port=port or 830, username=username, password=password, hostkey_verify=False,
            allow_agent=False, look_for_keys=False, timeout=60, device_params={"name": "default"},
        )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close_session()

    @property
    def connection(self) -> Any:
        return self._connection


def render(template: jinja2.Template, *, name: str, description: str) -> str:
    """The gateway's template with the task's parameters (``interface``/``modify``)."""
    return template.render(action="modify", name=name, description=description, type="ethernetCsmacd",
                           enabled=True)


def subtree(name: str) -> str:
    return f'<interfaces xmlns="{IF_NS}"><interface><name>{name}</name></interface></interfaces>'


def read_description(reply: Any, name: str) -> str | None:
    for iface in reply.data_ele.iter(f"{{{IF_NS}}}interface"):
        if iface.findtext(f"{{{IF_NS}}}name") == name:
            return str(iface.findtext(f"{{{IF_NS}}}description"))
    return None


def activation(task: Task, *, config: str, ifname: str, description: str, persist_prefix: str,
               close_after: bool = False) -> Result:
    """The seven-RPC verified activation on one device; its result is the latency in seconds
    (with ``close_after``, the session is closed after it, outside the latency)."""
    t0 = time.perf_counter()
    m = task.host.get_connection(CONNECTION, task.nornir.config)
    persist = f"{persist_prefix}-{task.host.name}"
    filter_ = ("subtree", subtree(ifname))
    try:
        m.lock(target="candidate")
        try:
            m.get_config(source="running", filter=filter_)  # the snapshot, as the gateway reads it
            m.edit_config(target="candidate", config=config, default_operation="merge")
            m.commit(confirmed=True, timeout=str(CONFIRM_TIMEOUT_S), persist=persist)
            got = read_description(m.get_config(source="running", filter=filter_), ifname)
            if got != description:
                m.cancel_commit(persist_id=persist)
                raise PeerError(f"verification failed on {task.host.name}: description {got!r}, want {description!r}")
            m.commit(persist_id=persist)
        finally:
            m.unlock(target="candidate")
        return Result(host=task.host, result=time.perf_counter() - t0)
    finally:
        if close_after:
            task.host.close_connection(CONNECTION)


@dataclass(frozen=True, kw_only=True)
class RoundResult:
    latencies_s: tuple[float, ...]
    errors: int
    first_errors: tuple[str, ...]


class NornirPeer:
    def __init__(self, devices: list[Device], *, workers: int) -> None:
        ConnectionPluginRegister.register(CONNECTION, NcclientConnection)
        hosts = Hosts({d.name: Host(name=d.name, hostname=d.host, port=d.port, username=d.username,
                                    password=d.password, platform="netconfd") for d in devices})
        self.nr = Nornir(inventory=Inventory(hosts=hosts, groups=Groups(), defaults=Defaults()),
                         config=Config(), runner=ThreadedRunner(num_workers=workers))
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                 autoescape=True)
        self.template = env.from_string(TEMPLATE.read_text())

    def round(self, *, ifname: str, description: str, tag: str, close_after: bool = False) -> RoundResult:
        config = render(self.template, name=ifname, description=description)
        agg = self.nr.run(task=activation, config=config, ifname=ifname, description=description,
                          persist_prefix=f"nornir-{tag}", close_after=close_after, on_failed=True)
        lat: list[float] = []
        errors: list[str] = []
        for host, multi in agg.items():
            res = multi[0]
            if multi.failed or not isinstance(res.result, float):
                errors.append(f"{host}: {type(res.exception).__name__}: {res.exception}"[:300])
            else:
                lat.append(res.result)
        return RoundResult(latencies_s=tuple(lat), errors=len(errors), first_errors=tuple(errors[:5]))

    def close(self) -> None:
        self.nr.close_connections(on_good=True, on_failed=True)


__all__ = ["Device", "NcclientConnection", "NornirPeer", "PeerError", "RoundResult", "activation", "render"]
