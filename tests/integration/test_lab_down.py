"""Throwaway labs: down leaves nothing, also after the runner is gone; refusals start nothing.

These use their own small topologies and their own address range, so the session lab is untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import Lab, LabConflictError, TopologyError
from lab import daemons as dm
from lab import host, state

pytestmark = pytest.mark.lab

RANGE = "198.19.254.0/24"
AGW = [sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())"]


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


def write_topology(tmp_path: Path, name: str, nodes: dict[str, str], rng: str = RANGE) -> Path:
    p = tmp_path / f"{name}.clab.yml"
    body = "\n".join(f"    {n}: {{kind: {k}}}" for n, k in nodes.items())
    p.write_text(f"name: {name}\nmgmt: {{ipv4-subnet: {rng}}}\ntopology:\n  nodes:\n{body}\n")
    return p


def lab_processes(st: dict) -> list[int]:
    inodes = {i for n in st["nodes"].values() if (i := host.netns_inode(n["namespace"]))}
    return host.pids_in_netns(inodes)


def assert_nothing_left(st: dict) -> None:
    for n in st["nodes"].values():
        assert not host.netns_exists(n["namespace"]), n["namespace"]
        assert not host.link_exists(n["veth"]), n["veth"]
        assert not host.is_mountpoint(Path(n["uts"])), n["uts"]
        for pidfile in (Path(n["dir"]) / "pids").glob("*.pid"):
            pytest.fail(f"state dir left with {pidfile}")
    recorded = [int(p) for p in st.get("_pids", [])]
    alive = [p for p in recorded if Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1][:3]]
    assert not alive, f"processes left: {alive}"
    assert not any(r.get("dst") == st["range"] for r in host.routes()), "route left"
    assert not Path(st["dir"]).exists()


def test_down_after_the_runner_exited_leaves_nothing(tmp_path: Path) -> None:
    topo = write_topology(tmp_path, "tdown", {"d1": "router", "d2": "snmp"})
    # up in another process that then exits: down must work from the state directory alone
    out = subprocess.run([*AGW, "lab", "up", str(topo)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    st = json.loads((state.lab_dir("tdown") / "state.json").read_text())
    pids = lab_processes(st)
    assert len(pids) >= 6  # netconfd, sshd, zebra, staticd, snmpd + snmpd
    assert any(r.get("dst") == RANGE and r.get("type") == "unreachable" for r in host.routes())
    lab = Lab.attach("tdown")
    lab.fault("d1", "delay", 5)  # a fault process too
    out = subprocess.run([*AGW, "lab", "down", "tdown"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    st["_pids"] = pids
    assert_nothing_left(st)


def test_half_created_lab_is_cleaned_by_the_next_up(tmp_path: Path) -> None:
    topo = write_topology(tmp_path, "tcrash", {"c1": "snmp"})
    lab = Lab.up(topo)
    st = json.loads((lab.state_dir / "state.json").read_text())
    pid = lab.pids("c1")["snmpd"]
    os.kill(pid, 9)  # a crashed node: up again must repair it
    deadline = time.monotonic() + 5
    while dm.alive(pid) and time.monotonic() < deadline:  # SIGKILL is delivered, not done, when kill returns
        time.sleep(0.02)
    again = Lab.up(topo)
    assert all(again.status()[0].ready.values())
    again.down()
    assert_nothing_left(st)


def test_range_overlapping_a_host_route_is_refused_before_anything_starts(tmp_path: Path) -> None:
    host.run(["ip", "route", "add", "blackhole", "198.19.253.128/25"])
    try:
        topo = write_topology(tmp_path, "toverlap", {"o1": "snmp"}, rng="198.19.253.0/24")
        with pytest.raises(TopologyError) as exc:
            Lab.up(topo)
        assert "mgmt.ipv4-subnet" in str(exc.value) and "198.19.253.128/25" in str(exc.value)
        assert str(topo) in str(exc.value)
        assert not host.netns_exists("agw-toverlap-o1")
        assert not state.lab_dir("toverlap").exists()
    finally:
        host.run(["ip", "route", "del", "blackhole", "198.19.253.128/25"], check=False)


def test_namespace_of_someone_else_is_refused(tmp_path: Path) -> None:
    host.run(["ip", "netns", "add", "agw-tforeign-f1"])
    try:
        topo = write_topology(tmp_path, "tforeign", {"f1": "snmp"})
        with pytest.raises(LabConflictError, match="agw-tforeign-f1.*belongs to no lab"):
            Lab.up(topo)
        assert not state.lab_dir("tforeign").exists()
    finally:
        host.run(["ip", "netns", "del", "agw-tforeign-f1"], check=False)


def test_readiness_failure_names_node_daemon_and_log(tmp_path: Path) -> None:
    p = tmp_path / "tbroken.clab.yml"
    (tmp_path / "bad.xml").write_text("<this is not xml")
    p.write_text(
        f"name: tbroken\nmgmt: {{ipv4-subnet: {RANGE}}}\n"
        "topology:\n  nodes:\n    b1: {kind: netconf, startup-config: bad.xml}\n"
    )
    from lab import ReadinessError

    try:
        with pytest.raises(ReadinessError) as exc:
            Lab.up(p, timeout_s=5)
        msg = str(exc.value)
        assert "node b1" in msg and "netconfd" in msg and "/nodes/b1/nc/netconfd.log" in msg
    finally:
        if state.load("tbroken"):
            Lab.attach("tbroken").down()
