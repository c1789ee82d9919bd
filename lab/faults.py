"""Faults that work on this kernel (no netem): see ``shared/lab-notes.md`` §4.

========  =====================================================================================
cut       host-side veth down: connects fail at once ("no route", thanks to the lab's
          ``unreachable`` route) instead of leaking to the default route
restore   veth up again, and the node's default route back; after ``rekey``, the node's original
          SSH host key back (its sshd restarted)
rekey     a new SSH host key for the node, its sshd restarted: a client holding the lab's
          known_hosts now sees a changed key (the original is kept for ``restore``; ``agw lab
          inventory`` rewrites known_hosts with the new one instead)
loss PCT  nft in the node's namespace drops PCT % of the packets arriving at the node (0: off)
delay MS  iptables NFQUEUE (``--queue-bypass``) + :mod:`lab.delayd` in the node's namespace
          delays every packet MS in each direction, so the RTT grows by 2×MS (0: off)
rate KBIT tbf on both ends of the node's veth (0: off)
kill D    SIGKILL daemon D;  restart D: stop it and start it again, wait until it answers
stop D    SIGSTOP daemon D (a hung device; no D: every daemon of the node);  cont D: SIGCONT
========  =====================================================================================
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from lab import daemons as dm
from lab import host
from lab.errors import FaultError
from lab.runner import host_key_path

log = logging.getLogger(__name__)

ACTIONS = ("cut", "restore", "loss", "delay", "rate", "kill", "restart", "stop", "cont", "rekey")
VALUE_ACTIONS = ("loss", "delay", "rate")
DAEMON_ACTIONS = ("kill", "restart", "stop", "cont")
NFQUEUE = 7
NFT_TABLE = "agw_impair"
UNDO = {"cut": ("restore", None), "loss": ("loss", 0), "delay": ("delay", 0), "rate": ("rate", 0),
        "kill": ("restart", None), "stop": ("cont", None), "rekey": ("restore", None)}


def check(n: dict[str, Any], node: str, action: str, value: float | None, daemon: str | None) -> None:
    """Validate a fault request (pure); raises FaultError naming what is wrong."""
    if action not in ACTIONS:
        raise FaultError(f"unknown fault action {action!r} (known: {', '.join(ACTIONS)})")
    if action in VALUE_ACTIONS:
        if value is None:
            raise FaultError(f"fault {action} on {node} needs a value ({'PCT' if action == 'loss' else 'MS' if action == 'delay' else 'KBIT'})")
        if value < 0 or (action == "loss" and value > 100):
            raise FaultError(f"fault {action} on {node}: value {value} out of range")
    if action in ("kill", "restart") and not daemon:
        raise FaultError(f"fault {action} on {node} needs a daemon (one of: {', '.join(n['daemons'])})")
    if action == "rekey" and "sshd" not in n["daemons"]:
        raise FaultError(f"fault rekey on {node}: the node runs no sshd (no NETCONF or CLI endpoint)")
    if action == "rekey" and "host_key" not in n:
        raise FaultError(f"fault rekey on {node}: this lab was created before each node had its own host key; "
                         "bring it down and up again")
    if daemon and daemon not in n["daemons"]:
        raise FaultError(f"node {node} has no daemon {daemon!r} (it has: {', '.join(n['daemons'])})")


def apply(st: dict[str, Any], node: str, action: str, value: float | None, daemon: str | None) -> list[str]:
    """Apply the fault. Returns the daemons it stopped that the caller must start again (and
    wait for): ``restart D``, and sshd after ``rekey`` or a ``restore`` that put a key back."""
    n = st["nodes"][node]
    ns, veth = n["namespace"], n["veth"]
    if action == "cut":
        host.run(["ip", "link", "set", veth, "down"])
    elif action == "restore":
        host.run(["ip", "link", "set", veth, "up"])
        host.run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        host.run(["ip", "-n", ns, "route", "replace", "default", "via", n["host_address"]])
        if "sshd" in n["daemons"] and _original_key_back(st, n):
            return ["sshd"]
    elif action == "rekey":
        _rekey(st, node, n)
        return ["sshd"]
    elif action == "loss":
        _loss(ns, float(value or 0))
    elif action == "rate":
        _rate(ns, veth, int(value or 0))
    elif action == "delay":
        _delay(n, float(value or 0))
    else:
        names = [daemon] if daemon else list(n["daemons"])
        for d in names:
            pid = dm.read_pid(Path(n["dir"]) / "pids" / f"{d}.pid")
            if action == "kill":
                dm.signal_pid(pid, signal.SIGKILL)
            elif action == "stop":
                dm.signal_pid(pid, signal.SIGSTOP)
            elif action == "cont":
                dm.signal_pid(pid, signal.SIGCONT)
            elif action == "restart":
                dm.terminate(pid)
        if action == "restart" and daemon:
            return [daemon]
    return []


def _keys(st: dict[str, Any], n: dict[str, Any]) -> tuple[Path, Path]:
    """The node's host key and where its original is kept while it is rekeyed."""
    key = host_key_path(st, n)
    return key, key.with_name(key.name + ".orig")


def _pub(key: Path) -> Path:
    return key.with_name(key.name + ".pub")


def _rekey(st: dict[str, Any], node: str, n: dict[str, Any]) -> None:
    key, orig = _keys(st, n)
    if not orig.exists():  # a second rekey keeps the first original
        key.rename(orig)
        _pub(key).rename(_pub(orig))
    host.ssh_host_key(key, comment=f"agw-lab-{st['name']}-{node}-rekeyed-{int(time.time())}")
    dm.terminate(dm.read_pid(Path(n["dir"]) / "pids" / "sshd.pid"))


def _original_key_back(st: dict[str, Any], n: dict[str, Any]) -> bool:
    """Put the key the node had before ``rekey`` back (sshd stopped); False if it was not rekeyed."""
    key, orig = _keys(st, n)
    if not orig.exists():
        return False
    orig.replace(key)
    _pub(orig).replace(_pub(key))
    dm.terminate(dm.read_pid(Path(n["dir"]) / "pids" / "sshd.pid"))
    return True


def _loss(ns: str, pct: float) -> None:
    host.run(["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", NFT_TABLE], check=False)
    if pct <= 0:
        return
    threshold = round(pct * 100)  # numgen over 0..9999: 0.01 % resolution
    rules = (
        f"table inet {NFT_TABLE} {{\n"
        f"  chain in {{ type filter hook input priority -10; policy accept;\n"
        f"    iifname \"eth0\" numgen random mod 10000 < {threshold} drop\n  }}\n"
        "}\n"
    )
    host.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input_=rules)


def _rate(ns: str, veth: str, kbit: int) -> None:
    host.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
    host.run(["tc", "qdisc", "del", "dev", veth, "root"], check=False)
    if kbit <= 0:
        return
    burst = max(1600, kbit * 1000 // 8 // 50)  # 20 ms worth of bytes, at least one MTU
    tbf = ["root", "tbf", "rate", f"{kbit}kbit", "burst", str(burst), "latency", "400ms"]
    host.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", *tbf])
    host.run(["tc", "qdisc", "add", "dev", veth, *tbf])


def _iptables(ns: str, op: str) -> list[list[str]]:
    q = ["-j", "NFQUEUE", "--queue-num", str(NFQUEUE), "--queue-bypass"]
    base = ["ip", "netns", "exec", ns, "iptables", "-w"]
    return [base + [op, "INPUT", "-i", "eth0", *q], base + [op, "OUTPUT", "-o", "eth0", *q]]


def _delay(n: dict[str, Any], ms: float) -> None:
    ns = n["namespace"]
    pidfile = Path(n["dir"]) / "pids" / "delayd.pid"
    for cmd in _iptables(ns, "-D"):
        while host.run(cmd, check=False).returncode == 0:
            pass
    dm.terminate(dm.read_pid(pidfile))
    pidfile.unlink(missing_ok=True)
    if ms <= 0:
        return
    ready = Path(n["dir"]) / "delayd.ready"
    ready.unlink(missing_ok=True)
    lab_root = str(Path(__file__).resolve().parent.parent)
    spec = dm.DaemonSpec(
        name="delayd",
        argv=("nsenter", f"--net=/run/netns/{ns}", sys.executable, "-m", "lab.delayd", str(NFQUEUE), str(ms), "0", str(ready)),
        cwd=lab_root,
        log=str(Path(n["dir"]) / "delayd.log"),
        out=str(Path(n["dir"]) / "delayd.log"),
        env={"PATH": dm.PATH_ENV, "PYTHONPATH": lab_root},
    )
    pid = dm.spawn(spec, pidfile)
    deadline = time.monotonic() + 10
    while not ready.exists():
        if not dm.alive(pid) or time.monotonic() > deadline:
            raise FaultError(f"delay daemon for {ns} did not start; see {spec.log}")
        time.sleep(0.02)
    for cmd in _iptables(ns, "-A"):
        host.run(cmd)


__all__ = ["ACTIONS", "UNDO", "apply", "check"]
