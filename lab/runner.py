"""Bring a lab up and down: plan → record → network → configs → daemons → readiness.

Everything ``up`` will create is written to the state file *before* it is created, so ``down``
(:func:`teardown`) can remove it even when the runner crashed half-way. Nodes start in
parallel: host and namespace networking in a few ``ip -batch`` calls, then every daemon of every
node is spawned at once, and readiness is probed concurrently (asyncio).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gateway.errors import FieldViolation
from lab import daemons as dm
from lab import host, probes
from lab import state as stmod
from lab.errors import LabConflictError, LabError, ReadinessError, TopologyError
from lab.topology import PORTS, Topology, allocate, overlapping_routes

log = logging.getLogger(__name__)

PROTO_DAEMONS = {"netconf": ("netconfd", "sshd"), "cli": ("zebra", "staticd", "sshd"), "snmp": ("snmpd",)}
HOST_KEY = "ssh_host_ed25519_key"


def namespace_name(lab: str, node: str) -> str:
    return f"agw-{lab}-{node}"


def veth_name(lab: str, index: int) -> str:
    """Host-side veth: ``al<6 hex of the lab name>-<index>``, at most 15 characters."""
    return f"al{hashlib.sha1(lab.encode()).hexdigest()[:6]}-{index}"  # noqa: S324 - a name, not security


def plan(topo: Topology, lab_path: Path) -> dict[str, Any]:
    """The full state of the lab to create (pure apart from reading other labs' subnets)."""
    subnets = allocate(topo.range, len(topo.nodes), stmod.used_subnets(exclude=topo.name))
    nodes: dict[str, Any] = {}
    for i, (spec, sub) in enumerate(zip(topo.nodes, subnets, strict=True)):
        ns = namespace_name(topo.name, spec.name)
        nd = lab_path / "nodes" / spec.name
        uts = lab_path / "uts" / spec.name
        nsenter = ("nsenter", f"--net=/run/netns/{ns}", f"--uts={uts}")
        address = str(sub.network_address + 2)
        daemons: dict[str, dm.DaemonSpec] = {}
        if "netconf" in spec.protocols:
            if spec.oper_state and not (dm.netconfd_sil_dir() / "lib" / "libietf-interfaces.so").is_file():
                raise LabError(
                    f"node {spec.name}: oper-state needs netconfd's ietf-interfaces SIL in {dm.netconfd_sil_dir()} "
                    f"(`make setup` unpacks it there; or set {dm.NETCONFD_SIL_ENV})")
            daemons["netconfd"] = dm.netconfd_spec(
                nsenter=nsenter, user=spec.credentials["netconf"]["username"], d=nd / "nc", logdir=nd / "nc",
                oper_state=spec.oper_state,
            )
        if "cli" in spec.protocols:
            for d in dm.frr_specs(nsenter=nsenter, run=nd / "frr" / "run", logdir=nd / "frr"):
                daemons[d.name] = d
        if "snmp" in spec.protocols:
            daemons["snmpd"] = dm.snmpd_spec(nsenter=nsenter, d=nd / "snmp", logdir=nd / "snmp")
        ssh = "netconf" in spec.protocols or "cli" in spec.protocols
        if ssh:
            daemons["sshd"] = dm.sshd_spec(nsenter=nsenter, conf=nd / "sshd_config", logdir=nd)
        nodes[spec.name] = {
            "kind": spec.kind,
            "index": i,
            "subnet": str(sub),
            "address": address,
            "host_address": str(sub.network_address + 1),
            "namespace": ns,
            "veth": veth_name(topo.name, i),
            "uts": str(uts),
            "dir": str(nd),
            "nsenter": list(nsenter),
            "ports": {p: PORTS[p] for p in spec.protocols},
            "credentials": {p: spec.credentials[p] for p in spec.protocols},
            "startup": spec.startup,
            "daemons": {k: v.to_json() for k, v in daemons.items()},
            **({"host_key": str(nd / HOST_KEY)} if ssh else {}),  # each node its own SSH host key
        }
    return {
        "name": topo.name,
        "file": topo.file,
        "digest": topo.digest,
        "dir": str(lab_path),
        "range": str(topo.range),
        "status": "planned",
        "created": time.time(),
        "nodes": nodes,
        "links": [{"a": list(lk.a), "b": list(lk.b)} for lk in topo.links],
        "faults": {},
    }


def preflight(topo: Topology) -> None:
    """Refuse before anything is created: foreign namespaces, overlapping host routes."""
    conflicts = []
    for spec in topo.nodes:
        ns = namespace_name(topo.name, spec.name)
        if host.netns_exists(ns):
            owner = stmod.owner_of_namespace(ns)
            who = f"lab {owner!r}" if owner else "no lab (not in any lab state; remove it with `ip netns del`)"
            conflicts.append(f"namespace {ns} for node {spec.name} already exists and belongs to {who}")
    if conflicts:
        raise LabConflictError(f"{topo.file}: " + "; ".join(conflicts))
    ranges = {str(st.get("range")) for st in stmod.all_labs()}
    bad = overlapping_routes(topo.range, host.routes(), stmod.all_veths(), ranges)
    if bad:
        raise TopologyError(
            topo.file,
            [FieldViolation("mgmt.ipv4-subnet", f"lab range {topo.range} overlaps host route(s): {', '.join(bad)}")],
        )


def neigh_thresholds(devices: int, current: tuple[int, int, int]) -> tuple[int, int, int] | None:
    """The root namespace's ARP table thresholds (gc_thresh1/2/3) for ``devices`` lab devices,
    or None when ``current`` will do. Each device is one ARP entry in the root namespace (on its
    own veth); above gc_thresh2 (512 by default) the kernel collects entries, above gc_thresh3
    (1024) it refuses new ones ("neighbor table overflow"), and a connect to a device then fails.
    Raised, never lowered, so that no lab entry is collected (gc_thresh1 above them all)."""
    need = devices + 256  # room for the host's own neighbours
    if need <= current[1]:
        return None
    return max(current[0], need), max(current[1], 2 * need), max(current[2], 4 * need)


def host_key_path(st: dict[str, Any], n: dict[str, Any]) -> Path:
    """The node's SSH host key (private; the public one is beside it, ``.pub``). A lab created
    before nodes had their own keys shares one key, in the lab directory."""
    return Path(n.get("host_key") or Path(st["dir"]) / HOST_KEY)


def create(st: dict[str, Any]) -> None:
    """Users, unreachable route, namespaces, veths, UTS namespaces, host keys, links, files."""
    lab_path = Path(st["dir"])
    lab_path.mkdir(parents=True, exist_ok=True)
    os.chmod(lab_path, 0o755)
    nodes = st["nodes"]
    users: dict[str, tuple[str, tuple[str, ...]]] = {}
    for n in nodes.values():
        if "netconf" in n["credentials"]:
            c = n["credentials"]["netconf"]
            users.setdefault(c["username"], (c["password"], ()))
        if "cli" in n["credentials"]:
            c = n["credentials"]["cli"]
            users[c["username"]] = (c["password"], ("frrvty",))
    for user, (pw, groups) in users.items():
        host.ensure_user(user, pw, groups)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    st["route_added"] = host.add_unreachable_route(st["range"]) or st.get("route_added", False)
    stmod.save(st)
    devices = len(nodes) + sum(len(o.get("nodes", {})) for o in stmod.all_labs() if o.get("name") != st["name"])
    current = host.neigh_gc_thresholds()
    if (raised := neigh_thresholds(devices, current)) is not None:
        host.set_neigh_gc_thresholds(raised)
        log.info("lab %s: %d devices in all labs: raised the ARP table's gc_thresh1/2/3 from %s to %s",
                 st["name"], devices, "/".join(map(str, current)), "/".join(map(str, raised)))
    lines = []
    for n in nodes.values():
        lines += [
            f"netns add {n['namespace']}",
            f"link add {n['veth']} type veth peer name eth0 netns {n['namespace']}",
            f"addr add {n['host_address']}/30 dev {n['veth']}",
            f"link set {n['veth']} up",
        ]
    host.ip_batch(lines)

    def inside(n: dict[str, Any]) -> None:
        host.ip_batch(
            [
                "link set lo up",
                f"addr add {n['address']}/30 dev eth0",
                "link set eth0 up",
                f"route add default via {n['host_address']}",
            ],
            netns=n["namespace"],
        )
        host.make_uts(Path(n["uts"]), _node_name(st, n))
        _write_files(st, n)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(inside, nodes.values()))
    for lk in st["links"]:
        (a, ai), (b, bi) = lk["a"], lk["b"]
        nsa, nsb = nodes[a]["namespace"], nodes[b]["namespace"]
        host.run(["ip", "link", "add", ai, "netns", nsa, "type", "veth", "peer", "name", bi, "netns", nsb])
        host.run(["ip", "-n", nsa, "link", "set", ai, "up"])
        host.run(["ip", "-n", nsb, "link", "set", bi, "up"])


def _node_name(st: dict[str, Any], n: dict[str, Any]) -> str:
    name: str = next(k for k, v in st["nodes"].items() if v is n)
    return name


def _write_files(st: dict[str, Any], n: dict[str, Any]) -> None:
    name = _node_name(st, n)
    nd = Path(n["dir"])
    (nd / "pids").mkdir(parents=True, exist_ok=True)
    os.chmod(nd, 0o755)
    key = host_key_path(st, n)
    if "sshd" in n["daemons"] and not key.exists():
        host.ssh_host_key(key, comment=f"agw-lab-{st['name']}-{name}")
    creds = n["credentials"]
    startup = n.get("startup", {})
    nc_sock = None
    if "netconf" in creds:
        user = creds["netconf"]["username"]
        d = nd / "nc"
        d.mkdir(exist_ok=True)
        (d / "startup-cfg.xml").write_text(startup.get("netconf") or dm.EMPTY_NETCONF_STARTUP)
        (d / "startup-cfg-txid.txt").write_text("0\n")
        (d / "ncxserver.sock").unlink(missing_ok=True)
        if "--runpath" in " ".join(n["daemons"].get("netconfd", {}).get("argv", ())):  # oper-state: the SIL's helper
            (d / "bin").mkdir(exist_ok=True)
            (d / "bin" / "get-interface-ipv4").write_text(dm.GET_INTERFACE_IPV4)
            os.chmod(d / "bin" / "get-interface-ipv4", 0o755)
        host.chown_tree(d, user, user)
        nc_sock = str(d / "ncxserver.sock")
    cli = None
    if "cli" in creds:
        d = nd / "frr"
        (d / "run").mkdir(parents=True, exist_ok=True)
        (d / "frr.conf").write_text(startup.get("cli") or dm.EMPTY_FRR_CONF)
        (d / "vtysh.conf").write_text("service integrated-vtysh-config\n")
        host.chown_tree(d, "frr", "frrvty")
        os.chmod(d, 0o770)
        os.chmod(d / "run", 0o770)
        os.chmod(d / "frr.conf", 0o660)
        cli = (creds["cli"]["username"], str(d / "run"), str(d))
    if "snmp" in creds:
        d = nd / "snmp"
        (d / "persist").mkdir(parents=True, exist_ok=True)
        stmod.write_private(d / "snmpd.conf", dm.snmpd_conf(node=name, address=n["address"], creds=creds["snmp"], extra=startup.get("snmp", "")))
        host.chown_tree(d, "Debian-snmp", "Debian-snmp")
    if nc_sock or cli:
        conf = dm.sshd_config(
            address=n["address"],
            host_key=str(key),
            netconf=(creds["netconf"]["username"], nc_sock) if nc_sock else None,
            cli=cli,
        )
        (nd / "sshd_config").write_text(conf)


def start(st: dict[str, Any], node: str | None = None, daemon: str | None = None) -> None:
    """Spawn the daemons (all, one node's, or one) that are not already running."""
    for name, n in st["nodes"].items():
        if node and name != node:
            continue
        for dname, spec in n["daemons"].items():
            if daemon and dname != daemon:
                continue
            pidfile = Path(n["dir"]) / "pids" / f"{dname}.pid"
            if dm.alive(dm.read_pid(pidfile)):
                continue
            if dname == "netconfd":
                (Path(spec["cwd"]) / "ncxserver.sock").unlink(missing_ok=True)
            if dname in ("zebra", "staticd"):
                n.pop("startup_loaded", None)  # a restarted FRR reloads its saved configuration
                (Path(n["dir"]) / "frr" / "run" / f"{dname}.vty").unlink(missing_ok=True)
            dm.spawn(dm.DaemonSpec.from_json(spec), pidfile)


def daemon_pid(st: dict[str, Any], node: str, daemon: str) -> int | None:
    return dm.read_pid(Path(st["nodes"][node]["dir"]) / "pids" / f"{daemon}.pid")


# --- readiness -----------------------------------------------------------------------------------


async def _probe(n: dict[str, Any], proto: str, timeout_s: float, sem: asyncio.Semaphore) -> None:
    addr, port, c = n["address"], n["ports"][proto], n["credentials"][proto]
    if proto == "netconf":
        async with sem:
            await probes.netconf_hello(addr, port, c["username"], c["password"], timeout_s)
    elif proto == "cli":
        await probes.ssh_banner(addr, port, timeout_s)
    else:
        await probes.snmp_get(addr, port, c["community_ro"], timeout_s)


async def _frr_startup(n: dict[str, Any], deadline: float) -> None:
    run = Path(n["dir"]) / "frr" / "run"
    loop = asyncio.get_running_loop()
    while not ((run / "zebra.vty").exists() and (run / "staticd.vty").exists()):
        if loop.time() > deadline:
            raise TimeoutError(f"FRR vty sockets did not appear in {run}")
        await asyncio.sleep(0.05)
    while n.get("startup", {}).get("cli") and not n.get("startup_loaded"):
        proc = await asyncio.create_subprocess_exec(
            *n["nsenter"], "vtysh", "--vty_socket", str(run), "--config_dir", str(run.parent), "-b",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode == 0:
            n["startup_loaded"] = True
        elif loop.time() > deadline:  # a daemon may still be starting (stale vty socket): retry
            raise RuntimeError(f"vtysh -b failed: {out.decode(errors='replace')[-300:]}")
        else:
            await asyncio.sleep(0.1)


async def _wait_proto(
    st: dict[str, Any], name: str, proto: str, deadline: float, sem: asyncio.Semaphore
) -> tuple[str, str, str, str] | None:
    """None when ready, else (node, daemon, log, reason)."""
    n = st["nodes"][name]
    loop = asyncio.get_running_loop()
    last: BaseException | None = None
    culprit = PROTO_DAEMONS[proto][0]
    try:
        if proto == "cli":
            await _frr_startup(n, deadline)
        while True:
            for d in PROTO_DAEMONS[proto]:
                if not dm.alive(daemon_pid(st, name, d)):
                    return (name, d, n["daemons"][d]["log"], f"{d} is not running (exited during start-up)")
            try:
                await _probe(n, proto, min(3.0, max(0.5, deadline - loop.time())), sem)
                return None
            except (OSError, asyncio.TimeoutError, ConnectionError, TimeoutError, Exception) as exc:  # noqa: BLE001
                last = exc
            if loop.time() >= deadline:
                break
            await asyncio.sleep(0.1)
    except (TimeoutError, RuntimeError) as exc:
        last, culprit = exc, "zebra"
    reason = f"{proto} not ready: {type(last).__name__}: {last}" if last else f"{proto} not ready"
    return (name, culprit, n["daemons"][culprit]["log"], reason)


async def wait_ready(st: dict[str, Any], timeout_s: float, nodes: list[str] | None = None,
                     protos: list[str] | None = None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    sem = asyncio.Semaphore(16)
    jobs = [
        _wait_proto(st, name, proto, deadline, sem)
        for name, n in st["nodes"].items()
        if nodes is None or name in nodes
        for proto in n["ports"]
        if protos is None or proto in protos
    ]
    fails = tuple(f for f in await asyncio.gather(*jobs) if f)
    if fails:
        detail = "; ".join(f"node {n}: daemon {d} ({r}), log {lg}" for n, d, lg, r in fails)
        raise ReadinessError(f"lab {st['name']}: {len(fails)} service(s) not ready within {timeout_s:.0f} s: {detail}", fails)


def run_async(coro: Any) -> Any:
    """Run a coroutine to completion, also from code already inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


# --- teardown ------------------------------------------------------------------------------------


def network_intact(st: dict[str, Any]) -> bool:
    """Every namespace, veth and UTS mount of the lab exists (its daemons may not)."""
    return bool(st.get("nodes")) and st.get("status") in ("starting", "up", "failed") and all(
        host.netns_exists(n["namespace"]) and host.link_exists(n["veth"]) and host.is_mountpoint(Path(n["uts"]))
        for n in st["nodes"].values()
    )


def teardown(st: dict[str, Any]) -> list[str]:
    """Remove everything the state records. Returns what could not be removed (empty: clean)."""
    nodes = st.get("nodes", {})
    inodes = {i for n in nodes.values() if (i := host.netns_inode(n["namespace"])) is not None}
    # Every process inside the lab's namespaces (daemons, their sessions, delay daemons): found by
    # namespace, not by recorded PID, so nothing is missed after a crash and nothing foreign is hit.
    host.kill_all(host.pids_in_netns(inodes))
    deadline = time.monotonic() + 3
    while inodes and host.pids_in_netns(inodes) and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = [f"netns del {n['namespace']}" for n in nodes.values() if host.netns_exists(n["namespace"])]
    host.ip_batch(lines, check=False)
    host.ip_batch([f"link del {n['veth']}" for n in nodes.values() if host.link_exists(n["veth"])], check=False)
    for n in nodes.values():
        host.umount(Path(n["uts"]))
    rng = st.get("range")
    others = [o for o in stmod.all_labs() if o.get("name") != st.get("name") and o.get("range") == rng]
    if rng and not others:
        host.del_unreachable_route(rng)
    left = [f"namespace {n['namespace']}" for n in nodes.values() if host.netns_exists(n["namespace"])]
    left += [f"veth {n['veth']}" for n in nodes.values() if host.link_exists(n["veth"])]
    left += [f"mount {n['uts']}" for n in nodes.values() if host.is_mountpoint(Path(n["uts"]))]
    if not left and st.get("dir"):
        shutil.rmtree(st["dir"], ignore_errors=True)
    return left


__all__ = ["HOST_KEY", "create", "host_key_path", "neigh_thresholds", "network_intact", "namespace_name", "plan", "preflight", "run_async", "start", "teardown", "veth_name", "wait_ready"]
