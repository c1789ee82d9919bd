"""The lab's Python API, used by the CLI, the pytest plugin, the benchmarks and other tests.

>>> lab = Lab.up("lab/topologies/basic.clab.yml")      # idempotent
>>> nc1 = lab.node("nc1"); nc1.address, nc1.ports["netconf"], nc1.credentials["netconf"]
>>> with lab.faulted("nc1", "delay", 10): ...
>>> lab.down()
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import daemons as dm
from lab import faults as fl
from lab import host, runner
from lab import inventory as inv
from lab import state as stmod
from lab import topology as topomod
from lab.errors import FaultError, LabError

log = logging.getLogger(__name__)


def fleet_timeout_s(n: int) -> float:
    """How long a fleet of ``n`` nodes may take to answer after its daemons start: every node's
    readiness probe is an SSH handshake (~75 ms of the machine's CPU), so it grows with ``n``."""
    return 120.0 + 0.2 * n


@dataclass(frozen=True, kw_only=True)
class Node:
    name: str
    kind: str
    address: str
    namespace: str
    ports: dict[str, int]
    credentials: dict[str, dict[str, str]] = field(repr=False)
    host_address: str = ""
    veth: str = ""
    log_dir: Path = Path()
    logs: dict[str, Path] = field(default_factory=dict)  # daemon -> its log file
    known_hosts: Path | None = None
    """The lab's known_hosts file (every node's SSH host key): give it to an Endpoint
    (``known_hosts=str(node.known_hosts)``) so a driver checks the node's key. None: no SSH."""
    host_key: Path | None = None
    """The node's own SSH host key (private; ``.pub`` beside it). None: the node runs no sshd."""

    def __repr__(self) -> str:  # credentials stay out of reprs and logs
        return f"Node(name={self.name!r}, kind={self.kind!r}, address={self.address!r}, ports={self.ports!r})"


@dataclass(frozen=True)
class NodeStatus:
    node: str
    kind: str
    address: str
    ready: dict[str, bool]  # protocol -> answered its probe
    daemons: dict[str, str]  # daemon -> running / stopped / dead
    faults: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "kind": self.kind, "address": self.address, "ready": self.ready,
                "daemons": self.daemons, "faults": self.faults}


class Lab:
    """A running lab, described by its state directory."""

    def __init__(self, st: dict[str, Any]) -> None:
        self._st = st

    # --- life cycle ------------------------------------------------------------------------
    @classmethod
    def up(cls, topology: Path | str, *, timeout_s: float = 60, name: str | None = None) -> Lab:
        """Validate, create and start the lab and wait until every node answers.

        Idempotent: a healthy lab of the same topology is returned as it is; a stale or
        half-created one (a crashed runner) is torn down and created again. ``name``
        overrides the topology's lab name (the test plugin runs its own copy of a topology).
        """
        host.require_root()
        topo = topomod.load(topology, name=name)
        return cls._up(topo, timeout_s=timeout_s)

    @classmethod
    def up_fleet(cls, n: int, *, name: str = "fleet", timeout_s: float | None = None,
                 netconf_only: bool = False) -> Lab:
        """A lab of ``n`` routers ``r1..rN`` (benchmarks); with ``netconf_only``, ``n`` NETCONF
        devices (netconfd behind its sshd, no FRR or snmpd: about 4 MB each, so 1,000 fit).
        ``timeout_s``: readiness timeout, default :func:`fleet_timeout_s`."""
        host.require_root()
        with tempfile.NamedTemporaryFile("w", suffix=".clab.yml", delete=False) as fh:
            fh.write(topomod.fleet_yaml(n, name=name, kind="netconf" if netconf_only else "router"))
        topo = topomod.load(fh.name)
        Path(fh.name).unlink()
        return cls._up(topo, timeout_s=fleet_timeout_s(n) if timeout_s is None else timeout_s)

    @classmethod
    def _up(cls, topo: topomod.Topology, *, timeout_s: float) -> Lab:
        path = stmod.lab_dir(topo.name)
        with stmod.locked():
            old = stmod.load(topo.name)
            if old is not None:
                if old.get("digest") == topo.digest and runner.network_intact(old):
                    # Same lab, network in place: start whatever daemon is missing, never rebuild
                    # (another test session may be using it).
                    log.info("lab %s is already up; starting any missing daemon", topo.name)
                    runner.start(old)
                    lab = cls(old)
                    lab._finish_up(timeout_s)
                    return lab
                log.info("lab %s: stale or different state found; tearing it down first", topo.name)
                left = runner.teardown(old)
                if left:
                    raise LabError(f"lab {topo.name}: could not remove the previous instance: {', '.join(left)}")
            runner.preflight(topo)
            st = runner.plan(topo, path)
            stmod.save(st)  # recorded before anything is created
            try:
                runner.create(st)
                st["status"] = "starting"
                stmod.save(st)
                runner.start(st)
            except BaseException:
                stmod.save(st)
                raise
        lab = cls(st)
        lab._finish_up(timeout_s)
        log.info("lab %s up: %d nodes", topo.name, len(st["nodes"]))
        return lab

    def _finish_up(self, timeout_s: float) -> None:
        st = self._st
        try:
            runner.run_async(runner.wait_ready(st, timeout_s))
        except LabError:
            st["status"] = "failed"
            stmod.save(st)
            raise
        st["status"] = "up"
        stmod.save(st)
        self._write_inventory()

    @classmethod
    def attach(cls, name: str) -> Lab:
        st = stmod.load(name)
        if st is None:
            raise LabError(f"no lab named {name!r} (no state in {stmod.lab_dir(name)})")
        return cls(st)

    @classmethod
    def running(cls) -> list[str]:
        return [str(st["name"]) for st in stmod.all_labs()]

    def down(self) -> None:
        """Remove every namespace, process, veth, mount and route of the lab."""
        host.require_root()
        with stmod.locked():
            st = stmod.load(self.name) or self._st
            left = runner.teardown(st)
        if left:
            raise LabError(f"lab {self.name}: could not remove: {', '.join(left)}")
        log.info("lab %s down", self.name)

    # --- nodes -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self._st["name"])

    @property
    def state_dir(self) -> Path:
        return Path(self._st["dir"])

    @property
    def nodes(self) -> dict[str, Node]:
        return {name: self._node(name, n) for name, n in self._st["nodes"].items()}

    def node(self, name: str) -> Node:
        try:
            n = self._st["nodes"][name]
        except KeyError:
            raise LabError(f"lab {self.name} has no node {name!r} (nodes: {', '.join(self._st['nodes'])})") from None
        return self._node(name, n)

    def _node(self, name: str, n: dict[str, Any]) -> Node:
        ssh = "sshd" in n["daemons"]
        return Node(
            name=name,
            kind=n["kind"],
            address=n["address"],
            namespace=n["namespace"],
            ports=dict(n["ports"]),
            credentials={k: dict(v) for k, v in n["credentials"].items()},
            host_address=n["host_address"],
            veth=n["veth"],
            log_dir=Path(n["dir"]),
            logs={d: Path(spec["log"]) for d, spec in n["daemons"].items()},
            known_hosts=self.known_hosts_path if ssh else None,
            host_key=runner.host_key_path(self._st, n) if ssh else None,
        )

    def pids(self, node: str) -> dict[str, int | None]:
        n = self._st["nodes"][node]
        return {d: dm.read_pid(Path(n["dir"]) / "pids" / f"{d}.pid") for d in n["daemons"]}

    # --- status ----------------------------------------------------------------------------
    def status(self, *, timeout_s: float = 1.0) -> list[NodeStatus]:
        st = stmod.load(self.name) or self._st

        async def probe_all() -> list[dict[str, bool]]:
            import asyncio

            sem = asyncio.Semaphore(16)

            async def one(n: dict[str, Any], proto: str) -> bool:
                try:
                    await runner._probe(n, proto, timeout_s, sem)  # noqa: SLF001 - same package
                    return True
                except Exception:  # noqa: BLE001 - any failure means "not ready"
                    return False

            out = []
            for n in st["nodes"].values():
                res = await asyncio.gather(*(one(n, p) for p in n["ports"]))
                out.append(dict(zip(n["ports"], res, strict=True)))
            return out

        ready = runner.run_async(probe_all())
        out = []
        for (name, n), r in zip(st["nodes"].items(), ready, strict=True):
            states = {d: dm.state_of(dm.read_pid(Path(n["dir"]) / "pids" / f"{d}.pid")) for d in n["daemons"]}
            ok = {p: r[p] and all(states[d] == "running" for d in runner.PROTO_DAEMONS[p]) for p in r}
            out.append(NodeStatus(node=name, kind=n["kind"], address=n["address"], ready=ok, daemons=states,
                                  faults=st.get("faults", {}).get(name, {})))
        return out

    # --- faults ----------------------------------------------------------------------------
    def fault(self, node: str, action: str, value: float | int | None = None, daemon: str | None = None,
              *, timeout_s: float = 30) -> None:
        """Apply a fault (see :mod:`lab.faults`). ``restart`` waits until the daemon answers again."""
        host.require_root()
        st = stmod.load(self.name) or self._st
        if node not in st["nodes"]:
            raise FaultError(f"lab {self.name} has no node {node!r} (nodes: {', '.join(st['nodes'])})")
        n = st["nodes"][node]
        fl.check(n, node, action, value, daemon)
        stopped = fl.apply(st, node, action, value, daemon)
        for d in stopped:  # restart, rekey, restore of a rekeyed node: start again, wait until it answers
            runner.start(st, node=node, daemon=d)
        if stopped:
            protos = [p for p, ds in runner.PROTO_DAEMONS.items() if set(stopped) & set(ds) and p in n["ports"]]
            runner.run_async(runner.wait_ready(st, timeout_s, nodes=[node], protos=protos))
        self._record_fault(st, node, action, value, daemon)
        log.info("lab %s: fault %s %s%s%s", self.name, node, action,
                 f" {value}" if value is not None else "", f" {daemon}" if daemon else "")

    def _record_fault(self, st: dict[str, Any], node: str, action: str, value: float | None, daemon: str | None) -> None:
        with stmod.locked():
            cur = stmod.load(self.name) or st
            f = cur.setdefault("faults", {}).setdefault(node, {})
            if action in ("cut", "rekey"):
                f[action] = True
            elif action == "restore":
                f.pop("cut", None)
                f.pop("rekey", None)
            elif action in fl.VALUE_ACTIONS:
                if value:
                    f[action] = value
                else:
                    f.pop(action, None)
            elif action in ("stop", "kill"):
                for d in [daemon] if daemon else list(cur["nodes"][node]["daemons"]):
                    f[f"{action}:{d}"] = True
            elif action in ("cont", "restart"):
                for d in [daemon] if daemon else list(cur["nodes"][node]["daemons"]):
                    f.pop(f"stop:{d}", None)
                    f.pop(f"kill:{d}", None)
            if not f:
                cur["faults"].pop(node, None)
            stmod.save(cur)
            self._st = cur

    @contextlib.contextmanager
    def faulted(self, node: str, action: str, value: float | int | None = None,
                daemon: str | None = None) -> Iterator[Lab]:
        """Apply a fault for the duration of a ``with`` block and undo it on exit."""
        self.fault(node, action, value, daemon)
        try:
            yield self
        finally:
            if action in fl.UNDO:
                undo, undo_value = fl.UNDO[action]
                self.fault(node, undo, undo_value, daemon)

    # --- inventory -------------------------------------------------------------------------
    @property
    def inventory_path(self) -> Path:
        return self.state_dir / "inventory.yaml"

    @property
    def credentials_path(self) -> Path:
        return self.state_dir / "credentials.yaml"

    @property
    def known_hosts_path(self) -> Path:
        """Every node's SSH host key, for each NETCONF and CLI endpoint (OpenSSH known_hosts)."""
        return self.state_dir / "known_hosts"

    def inventory(self) -> dict[str, Any]:
        return inv.inventory(self.name, list(self.nodes.values()), str(self.credentials_path),
                             str(self.known_hosts_path))

    def inventory_yaml(self) -> str:
        return inv.inventory_yaml(self.name, list(self.nodes.values()), str(self.credentials_path),
                                  str(self.known_hosts_path))

    def write_known_hosts(self) -> Path:
        """(Re)write the lab's known_hosts from the nodes' current host keys (after a ``rekey``
        fault, this accepts the new key). Returns its path."""
        nodes = list(self.nodes.values())
        keys = {n.name: n.host_key.with_name(n.host_key.name + ".pub").read_text()
                for n in nodes if n.host_key is not None}
        tmp = self.known_hosts_path.with_name(f"{self.known_hosts_path.name}.{os.getpid()}.tmp")
        tmp.write_text(inv.known_hosts(self.name, nodes, keys))
        os.chmod(tmp, 0o644)
        tmp.replace(self.known_hosts_path)
        return self.known_hosts_path

    def _write_inventory(self) -> None:
        stmod.write_private(self.credentials_path, inv.credentials_yaml(list(self.nodes.values())))
        self.write_known_hosts()
        self.inventory_path.write_text(self.inventory_yaml())


__all__ = ["Lab", "Node", "NodeStatus", "fleet_timeout_s"]
