"""Each fault does what it says, measured against the real daemons of the session lab."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import pytest

from lab import FaultError, Lab
from lab.api import Node
from tests.integration.test_lab import nc_connect, snmp_sync

pytestmark = pytest.mark.lab


def tcp_connect_s(node: Node, port: int, timeout_s: float) -> tuple[bool, float]:
    t0 = time.monotonic()
    try:
        with socket.create_connection((node.address, port), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            ok = s.recv(64).startswith(b"SSH-")
    except OSError:
        ok = False
    return ok, time.monotonic() - t0


def ping(address: str, count: int, interval_s: float = 0.01) -> tuple[float, float]:
    """(loss %, median RTT ms) over ``count`` pings."""
    out = subprocess.run(
        ["ping", "-n", "-c", str(count), "-i", str(interval_s), "-W", "1", address],
        capture_output=True, text=True, check=False,
    ).stdout
    rtts = sorted(float(x) for x in re.findall(r"time=([\d.]+) ms", out))
    loss = 100.0 * (count - len(rtts)) / count
    return loss, (rtts[len(rtts) // 2] if rtts else float("inf"))


def test_cut_fails_fast_and_restore_works(lab: Lab) -> None:
    n = lab.node("nc1")
    with lab.faulted("nc1", "cut"):
        ok, took = tcp_connect_s(n, 830, 5)
        assert not ok and took < 0.5, f"cut: connect should fail at once, took {took:.2f} s"
        assert lab.status()[0].ready == {"netconf": False}
    ok, _ = tcp_connect_s(n, 830, 5)
    assert ok
    with nc_connect(n) as m:
        assert "<data" in m.get_config("running").xml


def test_stop_gives_timeout_and_cont_works(lab: Lab) -> None:
    n = lab.node("nc1")
    with lab.faulted("nc1", "stop", daemon="netconfd"):
        t0 = time.monotonic()
        with pytest.raises(Exception):  # ncclient: the hello never comes
            nc_connect(n, timeout=2)
        assert time.monotonic() - t0 >= 1.5
    with nc_connect(n) as m:
        assert "<data" in m.get_config("running").xml


def test_stop_whole_node_then_cont(lab: Lab) -> None:
    n = lab.node("snmp1")
    with lab.faulted("snmp1", "stop"):
        err, _, _ = snmp_sync(n, "get", timeout_s=0.5, retries=0)
        assert err is not None and "timeout" in str(err).lower()
    err, status, _ = snmp_sync(n, "get")
    assert err is None and status == 0


def test_kill_then_restart(lab: Lab) -> None:
    n = lab.node("snmp1")
    lab.fault("snmp1", "kill", daemon="snmpd")
    try:
        err, _, _ = snmp_sync(n, "get", timeout_s=0.5, retries=0)
        assert err is not None
        assert [r for r in lab.status() if r.node == "snmp1"][0].daemons["snmpd"] == "dead"
    finally:
        lab.fault("snmp1", "restart", daemon="snmpd")
    err, status, _ = snmp_sync(n, "get")
    assert err is None and status == 0


def test_restart_netconfd_comes_back(lab: Lab) -> None:
    pid = lab.pids("r1")["netconfd"]
    lab.fault("r1", "restart", daemon="netconfd")
    assert lab.pids("r1")["netconfd"] != pid
    with nc_connect(lab.node("r1")) as m:
        assert "<data" in m.get_config("running").xml


def test_loss_is_measured_within_tolerance(lab: Lab) -> None:
    n = lab.node("cli1")
    with lab.faulted("cli1", "loss", 25):
        loss, _ = ping(n.address, 400, 0.004)
    assert 15 <= loss <= 35, f"25 % loss set, {loss:.1f} % measured"
    assert ping(n.address, 50, 0.004)[0] == 0


def test_delay_adds_twice_the_one_way_delay_to_the_rtt(lab: Lab) -> None:
    n = lab.node("cli1")
    _, base = ping(n.address, 10)
    with lab.faulted("cli1", "delay", 10):
        loss, rtt = ping(n.address, 20, 0.05)
        ok, _ = tcp_connect_s(n, 22, 5)  # TCP works through the delay too
    assert loss == 0 and ok
    assert 20 <= rtt < 40, f"10 ms each way: RTT {rtt:.1f} ms (base {base:.2f} ms)"
    assert ping(n.address, 10)[1] < 5


def test_rate_limits_throughput(lab: Lab) -> None:
    n = lab.node("cli1")
    port = 9000
    sink = subprocess.Popen(  # a TCP sink inside the node's namespace
        ["nsenter", f"--net=/run/netns/{n.namespace}", sys.executable, "-c",
         "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
         f"s.bind(('{n.address}',{port}));s.listen(1);print('ready',flush=True);c,_=s.accept()\n"
         "while c.recv(65536): pass\nc.sendall(b'done')"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        payload = b"x" * 125_000  # 1000 kbit
        with lab.faulted("cli1", "rate", 1000):
            t0 = time.monotonic()
            with socket.create_connection((n.address, port), timeout=10) as s:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                assert s.recv(4) == b"done"
            took = time.monotonic() - t0
    finally:
        sink.kill()
        sink.wait()
    kbit_s = len(payload) * 8 / 1000 / took
    assert 600 <= kbit_s <= 1300, f"rate 1000 kbit set, {kbit_s:.0f} kbit/s measured"


def test_bad_fault_requests_are_refused(lab: Lab) -> None:
    with pytest.raises(FaultError, match="unknown fault action"):
        lab.fault("nc1", "explode")
    with pytest.raises(FaultError, match="no node"):
        lab.fault("nope", "cut")
    with pytest.raises(FaultError, match="needs a value"):
        lab.fault("nc1", "loss")
    with pytest.raises(FaultError, match="no daemon 'zebra'"):
        lab.fault("nc1", "kill", daemon="zebra")
    with pytest.raises(FaultError, match="needs a daemon"):
        lab.fault("nc1", "restart")


def test_restart_zebra_reloads_the_startup_config(lab: Lab) -> None:
    from tests.integration.test_lab import cli_connect

    lab.fault("r1", "kill", daemon="zebra")
    assert [r for r in lab.status() if r.node == "r1"][0].ready["cli"] is False
    lab.fault("r1", "restart", daemon="zebra")
    with cli_connect(lab.node("r1")) as c:
        assert "r1 loopback (startup-config)" in c.send_command("show running-config")
