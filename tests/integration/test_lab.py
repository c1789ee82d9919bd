"""The lab against real clients: ncclient, netmiko, pysnmp; netconfd's commit behaviour; the lab API."""

from __future__ import annotations

import asyncio
import os
import stat
import time
import uuid

import pytest
import yaml
from ncclient import manager
from ncclient.xml_ import to_ele
from netmiko import ConnectHandler

from lab import Lab
from lab.api import Node

pytestmark = pytest.mark.lab

IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
SYS_CONTACT = "1.3.6.1.2.1.1.4.0"


def nc_connect(node: Node, timeout: int = 10) -> manager.Manager:
    c = node.credentials["netconf"]
    return manager.connect(
        host=node.address, port=node.ports["netconf"], username=c["username"], password=c["password"],
        hostkey_verify=False, allow_agent=False, look_for_keys=False, timeout=timeout,
    )


def iface_config(name: str, description: str) -> str:
    return f"""<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <interfaces xmlns="{IF_NS}"><interface>
    <name>{name}</name><description>{description}</description>
    <type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">ianaift:ethernetCsmacd</type>
    <enabled>true</enabled>
  </interface></interfaces></config>"""


def running_has(m: manager.Manager, text: str) -> bool:
    return text in m.get_config("running").data_xml


def cli_connect(node: Node) -> ConnectHandler:
    c = node.credentials["cli"]
    return ConnectHandler(device_type="cisco_ios", host=node.address, port=node.ports["cli"],
                          username=c["username"], password=c["password"], timeout=10)


async def snmp(node: Node, op: str, value: str | None = None, *, v3: bool = False, community: str | None = None,
               timeout_s: float = 1.0, retries: int = 1) -> tuple[object, int, str]:
    from pysnmp.hlapi.v3arch import asyncio as h

    c = node.credentials["snmp"]
    engine = h.SnmpEngine()
    try:
        auth = (
            h.UsmUserData(c["v3_user"], c["v3_auth_key"], c["v3_priv_key"],
                          authProtocol=h.usmHMACSHAAuthProtocol, privProtocol=h.usmAesCfb128Protocol)
            if v3 else h.CommunityData(community or (c["community_rw"] if op == "set" else c["community_ro"]))
        )
        tgt = await h.UdpTransportTarget.create((node.address, node.ports["snmp"]), timeout=timeout_s, retries=retries)
        if op == "set":
            obj = h.ObjectType(h.ObjectIdentity(SYS_CONTACT), h.OctetString(value))
            err, status, _, binds = await h.set_cmd(engine, auth, tgt, h.ContextData(), obj)
        else:
            err, status, _, binds = await h.get_cmd(engine, auth, tgt, h.ContextData(), h.ObjectType(h.ObjectIdentity(SYS_CONTACT)))
        return err, int(status), str(binds[0][1]) if binds and not err else ""
    finally:
        engine.close_dispatcher()


def snmp_sync(*a: object, **kw: object) -> tuple[object, int, str]:
    return asyncio.run(snmp(*a, **kw))  # type: ignore[arg-type]


# --- each protocol through a real client ---------------------------------------------------------


@pytest.mark.parametrize("node", ["nc1", "r1"])
def test_netconf_get_config_and_change_visible(lab: Lab, node: str) -> None:
    n = lab.node(node)
    desc = f"lab-test-{uuid.uuid4().hex[:8]}"
    with nc_connect(n) as m:
        assert ":candidate" in " ".join(m.server_capabilities)
        assert "<data" in m.get_config("running").xml
        m.edit_config(target="candidate", config=iface_config("ge-0/0/1", desc))
        m.commit()
    with nc_connect(n) as m:  # a new session sees it
        assert running_has(m, desc)


@pytest.mark.parametrize("node", ["cli1", "r1"])
def test_cli_show_running_config_and_change_visible(lab: Lab, node: str) -> None:
    n = lab.node(node)
    route = f"ip route 203.0.113.{ {'cli1': 1, 'r1': 2}[node] }/32 Null0"
    with cli_connect(n) as c:
        assert c.find_prompt() == f"{node}#"
        assert "Current configuration" in c.send_command("show running-config")
        c.send_config_set([route])
    with cli_connect(n) as c:
        try:
            assert route in c.send_command("show running-config")
        finally:
            c.send_config_set([f"no {route}"])


def test_router_startup_config_loaded(lab: Lab) -> None:
    with cli_connect(lab.node("r1")) as c:
        assert "r1 loopback (startup-config)" in c.send_command("show running-config")


@pytest.mark.parametrize("node", ["snmp1", "r1"])
def test_snmp_get_set_sys_contact(lab: Lab, node: str) -> None:
    n = lab.node(node)
    err, status, _ = snmp_sync(n, "get")
    assert err is None and status == 0
    value = f"noc-{uuid.uuid4().hex[:6]}@lab"
    err, status, _ = snmp_sync(n, "set", value)
    assert err is None and status == 0
    assert snmp_sync(n, "get")[2] == value
    value3 = f"v3-{uuid.uuid4().hex[:6]}@lab"
    err, status, _ = snmp_sync(n, "set", value3, v3=True)
    assert err is None and status == 0
    assert snmp_sync(n, "get", v3=True)[2] == value3


def test_snmp_set_with_read_only_community_is_refused(lab: Lab) -> None:
    n = lab.node("snmp1")
    before = snmp_sync(n, "get")[2]
    err, status, _ = snmp_sync(n, "set", "should-not-stick", community=n.credentials["snmp"]["community_ro"])
    assert err is None and status != 0  # noAccess (6) / notWritable / authorizationError
    assert snmp_sync(n, "get")[2] == before


# --- netconfd behaviour the gateway depends on ---------------------------------------------------


def test_confirmed_commit_reverts_by_itself(lab: Lab) -> None:
    n = lab.node("nc1")
    desc = f"trial-{uuid.uuid4().hex[:8]}"
    with nc_connect(n) as m:
        m.edit_config(target="candidate", config=iface_config("ge-0/0/9", desc))
        m.commit(confirmed=True, timeout="3")
        with nc_connect(n) as other:
            assert running_has(other, desc)  # applied while the timer runs
        # Poll slowly: netconfd runs its timers only after a second without any request
        # (see the next test), so a busy poll would keep the revert from ever happening.
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline and running_has(m, desc):
            time.sleep(2)
        assert not running_has(m, desc), "confirmed commit did not revert after its timeout"


def test_confirmed_commit_timer_waits_for_an_idle_second(lab: Lab) -> None:
    """netconfd 2.13 quirk, pinned: while a request arrives at least every second, the
    confirmed-commit timer never fires; the revert happens once the device is idle."""
    n = lab.node("nc1")
    desc = f"busy-{uuid.uuid4().hex[:8]}"
    with nc_connect(n) as m:
        m.edit_config(target="candidate", config=iface_config("ge-0/0/8", desc))
        m.commit(confirmed=True, timeout="1")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4:  # 4x the timeout, busy
            assert running_has(m, desc), "reverted although the device was never idle"
            time.sleep(0.3)
        time.sleep(2.5)  # idle
        assert not running_has(m, desc)


def test_validate_then_commit_quirk_is_pinned(lab: Lab) -> None:
    """netconfd 2.13: validate(candidate) then commit answers <ok/> and drops the change."""
    n = lab.node("nc1")
    desc = f"quirk-{uuid.uuid4().hex[:8]}"
    with nc_connect(n) as m:
        m.edit_config(target="candidate", config=iface_config("ge-0/0/7", desc))
        m.validate(source="candidate")
        reply = m.commit()
        assert reply.ok  # the device says ok ...
        assert not running_has(m, desc)  # ... and did not apply it
        # The workaround: commit without a candidate validate applies it.
        m.edit_config(target="candidate", config=iface_config("ge-0/0/7", desc))
        m.validate(source=to_ele(iface_config("ge-0/0/7", desc)))
        m.commit()
        assert running_has(m, desc)


# --- the API -------------------------------------------------------------------------------------


def test_status_reports_every_protocol_ready(lab: Lab) -> None:
    rows = {r.node: r for r in lab.status()}
    assert {"nc1", "cli1", "snmp1", "r1"} <= set(rows)
    assert rows["r1"].ready == {"netconf": True, "cli": True, "snmp": True}
    assert all(all(r.ready.values()) for r in rows.values())
    assert all(s == "running" for r in rows.values() for s in r.daemons.values())


def test_inventory_and_credentials_file(lab: Lab) -> None:
    inv = yaml.safe_load(lab.inventory_yaml())
    assert lab.inventory_yaml().startswith(f"# inventory of lab {lab.name}, generated by agw lab inventory")
    assert inv == yaml.safe_load(lab.inventory_path.read_text())
    r1 = inv["devices"]["r1"]
    assert r1["address"] == lab.node("r1").address
    assert [(e["platform"], e["port"]) for e in r1["endpoints"]] == [("netconfd", 830), ("frr", 22), ("net-snmp", 161)]
    ref = r1["endpoints"][2]["credentials"]
    path, _, key = ref.removeprefix("file:").partition("#")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    creds = yaml.safe_load(open(path).read())
    node, proto = key.split(".")
    assert creds[node][proto]["community"] == lab.node("r1").credentials["snmp"]["community_rw"]
    assert creds["nc1"]["netconf"] == {"username": "labadmin", "password": "labpass"}


def test_up_is_idempotent(lab: Lab) -> None:
    before = lab.pids("r1")
    t0 = time.monotonic()
    again = Lab.up(_topology_of(lab), name=lab.name)
    assert again.pids("r1") == before
    assert again.node("r1").address == lab.node("r1").address
    assert time.monotonic() - t0 < 30


def _topology_of(lab: Lab) -> str:
    import json

    return json.loads((lab.state_dir / "state.json").read_text())["file"]


def test_nodes_have_log_files(lab: Lab) -> None:
    n = lab.node("r1")
    assert set(n.logs) == {"netconfd", "sshd", "zebra", "staticd", "snmpd"}
    assert n.logs["snmpd"].exists()
    assert "labpass" not in repr(n)


def test_cli_status_inventory_and_fault(lab: Lab) -> None:
    import json

    from click.testing import CliRunner

    from lab.cli import lab as lab_cmd

    runner = CliRunner()
    res = runner.invoke(lab_cmd, ["status", "--lab", lab.name, "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["node"]: r for r in json.loads(res.output)["nodes"]}
    assert rows["r1"]["ready"] == {"netconf": True, "cli": True, "snmp": True}
    res = runner.invoke(lab_cmd, ["inventory", "--lab", lab.name])
    assert res.exit_code == 0 and res.output == lab.inventory_yaml()
    assert runner.invoke(lab_cmd, ["fault", "snmp1", "cut", "--lab", lab.name]).exit_code == 0
    try:
        res = runner.invoke(lab_cmd, ["status", "--lab", lab.name])
        assert res.exit_code == 1 and "snmp:DOWN" in res.output and "faults[cut]" in res.output
    finally:
        assert runner.invoke(lab_cmd, ["fault", "snmp1", "restore", "--lab", lab.name]).exit_code == 0
    res = runner.invoke(lab_cmd, ["fault", "snmp1", "loss", "lots", "--lab", lab.name])
    assert res.exit_code != 0 and "needs a number" in res.output


def test_topology_link_is_a_veth_between_the_nodes(lab: Lab) -> None:
    import subprocess

    for node in ("r1", "cli1"):
        out = subprocess.run(["ip", "-n", lab.node(node).namespace, "-o", "link", "show", "eth1"],
                             capture_output=True, text=True, check=True).stdout
        assert "veth" in subprocess.run(["ip", "-n", lab.node(node).namespace, "-d", "link", "show", "eth1"],
                                        capture_output=True, text=True, check=True).stdout
        assert "state UP" in out or "LOWER_UP" in out
