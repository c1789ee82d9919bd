"""Lab benchmark: ``python -m bench lab`` (root).

Measures ``up`` of the basic topology and of a fleet of N routers (default 50), the memory of a
router (PSS of every process in its namespace), and the delay and loss faults. Each figure is
printed with its ratio to the issue's budget (basic < 5 s, 50 routers < 30 s, <= 20 MB per
router; delay 10 ms each way must give an RTT >= 20 ms).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import time
from pathlib import Path

from lab import Lab, host

log = logging.getLogger(__name__)

BASIC = Path(__file__).resolve().parent.parent / "lab" / "topologies" / "basic.clab.yml"


def pss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def lab_pss_mb(lab: Lab) -> float:
    inodes = {i for n in lab.nodes.values() if (i := host.netns_inode(n.namespace)) is not None}
    return sum(pss_kb(p) for p in host.pids_in_netns(inodes)) / 1024


def ping(address: str, count: int, interval_s: float) -> tuple[float, float]:
    out = subprocess.run(["ping", "-n", "-c", str(count), "-i", str(interval_s), "-W", "1", address],
                         capture_output=True, text=True, check=False).stdout
    rtts = sorted(float(x) for x in re.findall(r"time=([\d.]+) ms", out))
    return 100.0 * (count - len(rtts)) / count, (rtts[len(rtts) // 2] if rtts else float("inf"))


def timed_up(topology: Path | None, name: str, fleet: int = 0) -> tuple[Lab, float]:
    for stale in (name,):
        if stale in Lab.running():
            Lab.attach(stale).down()
    t0 = time.monotonic()
    lab = Lab.up_fleet(fleet, name=name) if fleet else Lab.up(topology, name=name)  # type: ignore[arg-type]
    return lab, time.monotonic() - t0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench lab")
    ap.add_argument("--fleet", type=int, default=50)
    args = ap.parse_args(argv)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    if os.geteuid() != 0:
        log.error("bench lab needs root (network namespaces)")
        return 2
    lab, up_s = timed_up(BASIC, "benchbasic")
    try:
        n_nodes = len(lab.nodes)
        node = lab.node("cli1")
        _, base_rtt = ping(node.address, 20, 0.01)
        with lab.faulted("cli1", "delay", 10):
            _, delay_rtt = ping(node.address, 20, 0.05)
        with lab.faulted("cli1", "loss", 10):
            loss, _ = ping(node.address, 1000, 0.002)
    finally:
        t0 = time.monotonic()
        lab.down()
        down_s = time.monotonic() - t0
    log.info("lab basic (%d nodes): up %.2f s (budget 5 s: %.2fx), down %.2f s", n_nodes, up_s, up_s / 5, down_s)
    log.info("delay 10 ms each way: RTT %.1f ms (base %.3f ms; must be >= 20 ms: %s)",
             delay_rtt, base_rtt, "ok" if delay_rtt >= 20 else "FAIL")
    log.info("loss 10 %%: %.1f %% of 1000 pings lost", loss)
    fleet, fleet_s = timed_up(None, "benchfleet", fleet=args.fleet)
    try:
        time.sleep(1)  # let start-up allocations settle
        per_router = lab_pss_mb(fleet) / args.fleet
    finally:
        t0 = time.monotonic()
        fleet.down()
        fdown_s = time.monotonic() - t0
    budget = 30 * args.fleet / 50
    log.info("fleet of %d routers: up %.1f s (budget %.0f s: %.2fx), down %.1f s",
             args.fleet, fleet_s, budget, fleet_s / budget, fdown_s)
    log.info("memory per router (PSS of netconfd, sshd, zebra, staticd, snmpd): %.1f MB (budget 20 MB: %.2fx)",
             per_router, per_router / 20)
    ok = up_s < 5 and fleet_s < budget and per_router <= 20 and delay_rtt >= 20
    return 0 if ok else 1
