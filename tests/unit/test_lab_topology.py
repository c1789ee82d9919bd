"""Pure logic of the lab: topology validation, allocator, route overlap, configs, BER, inventory."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lab import NotRootError, TopologyError
from lab import daemons, probes, runner, topology
from lab import inventory as inv
from lab.api import Lab, Node

BASIC = Path(__file__).resolve().parents[2] / "lab" / "topologies" / "basic.clab.yml"


def parse(text: str) -> topology.Topology:
    return topology.parse(text, file="t.clab.yml")


def errors_of(text: str) -> str:
    with pytest.raises(TopologyError) as exc:
        parse(text)
    assert exc.value.file == "t.clab.yml"
    assert str(exc.value).startswith("t.clab.yml: ")
    return str(exc.value)


def test_basic_topology_is_valid() -> None:
    t = topology.load(BASIC)
    assert {"nc1", "cli1", "snmp1", "r1"} <= {n.name for n in t.nodes}
    assert {n.kind for n in t.nodes} == {"netconf", "cli", "snmp", "router"}
    assert t.node("r1").protocols == ("netconf", "cli", "snmp")
    assert "startup-config" in t.node("r1").startup["cli"]
    assert t.range == ipaddress.IPv4Network("198.18.0.0/15")


def test_unknown_kind() -> None:
    msg = errors_of("name: x\ntopology:\n  nodes:\n    a: {kind: juniper}\n")
    assert "topology.nodes.a.kind" in msg and "unknown kind 'juniper'" in msg


def test_duplicate_node_names() -> None:
    msg = errors_of("name: x\ntopology:\n  nodes:\n    a: {kind: snmp}\n    a: {kind: cli}\n")
    assert "duplicate key 'a'" in msg and "line 5" in msg


def test_link_to_missing_node() -> None:
    msg = errors_of(
        "name: x\ntopology:\n  nodes:\n    a: {kind: cli}\n  links:\n    - endpoints: ['a:eth1', 'ghost:eth1']\n"
    )
    assert "topology.links[0].endpoints" in msg and "missing node 'ghost'" in msg


def test_yaml_error_names_line() -> None:
    msg = errors_of("name: x\ntopology:\n  nodes:\n    a: {kind: cli\n")
    assert "YAML error" in msg and "line" in msg


def test_every_error_is_reported_at_once() -> None:
    msg = errors_of(
        "name: X!\nbogus: 1\ntopology:\n  nodes:\n    a: {kind: nope}\n    b: {kind: snmp, colour: red}\n"
    )
    assert "name:" in msg and "bogus" in msg and "unknown kind" in msg and "topology.nodes.b.colour" in msg


def test_credentials_overrides_and_checks() -> None:
    t = parse(
        "name: x\ntopology:\n  defaults: {credentials: {snmp: {community_ro: ro1}}}\n"
        "  kinds: {router: {credentials: {snmp: {community_rw: rw2}}}}\n"
        "  nodes:\n    r: {kind: router, credentials: {netconf: {password: other}}}\n"
    )
    c = t.node("r").credentials
    assert c["snmp"]["community_ro"] == "ro1" and c["snmp"]["community_rw"] == "rw2"
    assert c["netconf"] == {"username": "labadmin", "password": "other"}
    msg = errors_of("name: x\ntopology:\n  nodes:\n    a: {kind: snmp, credentials: {snmp: {v3_auth_key: short}}}\n")
    assert "at least 8" in msg
    msg = errors_of("name: x\ntopology:\n  nodes:\n    a: {kind: cli, credentials: {cli: {username: root}}}\n")
    assert "not root" in msg
    msg = errors_of(
        "name: x\ntopology:\n  nodes:\n    a: {kind: cli}\n    b: {kind: cli, credentials: {cli: {password: other}}}\n"
    )
    assert "user labcli already has another password" in msg


def test_missing_startup_file() -> None:
    msg = errors_of("name: x\ntopology:\n  nodes:\n    a: {kind: cli, startup-config: /nonexistent/frr.conf}\n")
    assert "topology.nodes.a.startup-config.cli" in msg and "cannot read" in msg


def test_missing_file() -> None:
    with pytest.raises(TopologyError, match="cannot read"):
        topology.load("/nonexistent.clab.yml")


def test_range_too_small() -> None:
    text = "name: x\nmgmt: {ipv4-subnet: 10.9.0.0/29}\ntopology:\n  nodes:\n" + "".join(
        f"    n{i}: {{kind: snmp}}\n" for i in range(3)
    )
    assert "holds 2 /30 subnets" in errors_of(text)


def test_allocator_skips_other_labs() -> None:
    rng = ipaddress.IPv4Network("198.18.0.0/15")
    used = {ipaddress.IPv4Network("198.18.0.0/30"), ipaddress.IPv4Network("198.18.0.8/30")}
    got = topology.allocate(rng, 3, used)
    assert [str(s) for s in got] == ["198.18.0.4/30", "198.18.0.12/30", "198.18.0.16/30"]
    with pytest.raises(TopologyError, match="no room"):
        topology.allocate(ipaddress.IPv4Network("10.0.0.0/29"), 3, set())


def test_overlapping_routes() -> None:
    rng = ipaddress.IPv4Network("198.18.0.0/15")
    routes = [
        {"dst": "default", "gateway": "10.0.0.1", "dev": "eth0"},
        {"dst": "198.18.0.0/15", "type": "unreachable"},
        {"dst": "198.18.0.0/30", "dev": "al123456-0"},
        {"dst": "198.19.1.0/24", "dev": "eth1"},
        {"dst": "10.1.0.0/16", "dev": "eth1"},
    ]
    assert topology.overlapping_routes(rng, routes, {"al123456-0"}) == ["198.19.1.0/24 dev eth1"]
    inner = ipaddress.IPv4Network("198.19.254.0/24")
    assert topology.overlapping_routes(inner, routes[1:3], set()) == ["198.18.0.0/15 unreachable dev -"]
    assert topology.overlapping_routes(inner, routes[1:2], set(), {"198.18.0.0/15"}) == []


def test_fleet() -> None:
    t = topology.from_dict(topology.fleet(50))
    assert len(t.nodes) == 50 and {n.kind for n in t.nodes} == {"router"}
    assert yaml.safe_load(topology.fleet_yaml(3))["topology"]["nodes"]["r3"] == {"kind": "router"}


def test_netconf_only_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`agw lab up --fleet N --netconf-only`: N nodes of kind netconf, so netconfd and its sshd
    only (no FRR, no snmpd), port 830 only, and a gateway inventory of netconfd endpoints."""
    data = topology.fleet(1000, name="benchfleet", kind="netconf")
    t = topology.from_dict(data)
    assert [n.name for n in t.nodes[:3]] == ["r1", "r2", "r3"] and t.nodes[-1].name == "r1000"
    assert {n.kind for n in t.nodes} == {"netconf"} and {n.protocols for n in t.nodes} == {("netconf",)}
    assert yaml.safe_load(topology.fleet_yaml(2, name="f", kind="netconf"))["topology"]["nodes"] == {
        "r1": {"kind": "netconf"}, "r2": {"kind": "netconf"}}
    assert topology.fleet_yaml(2, kind="netconf").startswith("# generated: a fleet of 2 netconf nodes\n")
    monkeypatch.setattr("lab.state.used_subnets", lambda exclude: set())
    st = runner.plan(t, tmp_path)
    r1000 = st["nodes"]["r1000"]
    assert set(r1000["daemons"]) == {"netconfd", "sshd"} and r1000["ports"] == {"netconf": 830}
    assert len({n["address"] for n in st["nodes"].values()}) == 1000
    nodes = [_node(f"r{i}", "netconf", st["nodes"][f"r{i}"]["address"]) for i in (1, 2)]
    devices = inv.inventory("benchfleet", nodes, "/c.yaml", "/kh")["devices"]
    assert devices["r2"]["endpoints"] == [{"platform": "netconfd", "port": 830, "credentials": "file:/c.yaml#r2.netconf"}]
    assert set(yaml.safe_load(inv.credentials_yaml(nodes))["r1"]) == {"netconf"}
    with pytest.raises(ValueError, match="unknown kind"):
        topology.fleet(3, kind="juniper")
    from lab.api import fleet_timeout_s

    assert fleet_timeout_s(1000) > fleet_timeout_s(50) >= 120


def test_arp_table_thresholds_grow_with_the_fleet() -> None:
    """Each device is one ARP entry in the root namespace: past the kernel's default gc_thresh3
    (1024) a 1,000-device fleet got "neighbor table overflow" and failed connects."""
    default = (128, 512, 1024)
    assert runner.neigh_thresholds(5, default) is None and runner.neigh_thresholds(256, default) is None
    t1, t2, t3 = runner.neigh_thresholds(1000, default)  # type: ignore[misc]
    assert 1000 < t1 <= t2 <= t3 and t2 >= 2 * 1000
    assert runner.neigh_thresholds(1000, (t1, t2, t3)) is None  # idempotent
    assert runner.neigh_thresholds(1000, (128, 600, 99999)) == (1256, 2512, 99999)  # never lowered


def test_cli_netconf_only_needs_fleet() -> None:
    from lab.cli import lab as lab_cmd

    res = CliRunner().invoke(lab_cmd, ["up", "--netconf-only", str(BASIC)])
    assert res.exit_code == 2 and "--netconf-only goes with --fleet N" in res.output


def test_names_fit_the_kernel() -> None:
    assert len(runner.veth_name("a-very-long-lab-name-indeed", 1999)) <= 15
    assert runner.veth_name("a", 1) != runner.veth_name("b", 1)
    assert runner.namespace_name("basic", "r1") == "agw-basic-r1"


def test_sshd_config_router() -> None:
    conf = daemons.sshd_config(address="198.18.0.2", host_key="/k", netconf=("labadmin", "/s.sock"),
                               cli=("labcli", "/run", "/cfg"))
    assert "ListenAddress 198.18.0.2:830" in conf and "ListenAddress 198.18.0.2:22" in conf
    assert "Subsystem netconf /usr/sbin/netconf-subsystem --ncxserver-sockname=830@/s.sock" in conf
    assert "MaxStartups 200" in conf
    assert "Match LocalPort 22\n    AllowUsers labcli\n    ForceCommand /usr/bin/vtysh --vty_socket /run --config_dir /cfg" in conf


def test_snmpd_conf_does_not_pin_writable_objects() -> None:
    conf = daemons.snmpd_conf(node="s1", address="198.18.0.2", creds=topology.DEFAULT_CREDENTIALS["snmp"])
    assert "agentAddress udp:198.18.0.2:161" in conf
    assert 'createUser labv3 SHA "labauthpass" AES "labprivpass"' in conf
    assert "rwcommunity private default" in conf and "rocommunity public default" in conf
    assert not any(k in conf for k in ("sysContact", "sysName", "sysLocation"))


def test_ber_get_request_round_trip() -> None:
    req = probes.snmp_get_request("public", 4242)
    assert req[0] == 0x30 and b"public" in req and probes.ber_oid("1.3.6.1.2.1.1.1.0") in req
    # a GetResponse built with the same encoder parses back
    vb = probes.tlv(0x30, probes.tlv(0x30, probes.ber_oid("1.3.6.1.2.1.1.1.0") + probes.tlv(0x04, b"x" * 200)))
    pdu = probes.tlv(0xA2, probes.ber_int(4242) + probes.ber_int(0) + probes.ber_int(0) + vb)
    resp = probes.tlv(0x30, probes.ber_int(1) + probes.tlv(0x04, b"public") + pdu)
    assert probes.parse_response(resp) == (4242, 0)
    with pytest.raises(ValueError):
        probes.parse_response(req)  # a GetRequest is not a response
    with pytest.raises(ValueError):
        probes.parse_response(resp[:5])
    assert probes.ber_oid("1.3.6.1.4.1.8072") == bytes([6, 7, 0x2B, 6, 1, 4, 1, 0xBF, 0x08])


def _node(name: str, kind: str, addr: str) -> Node:
    protos = topology.KIND_PROTOCOLS[kind]
    return Node(name=name, kind=kind, address=addr, namespace=f"agw-x-{name}",
                ports={p: topology.PORTS[p] for p in protos},
                credentials={p: topology.DEFAULT_CREDENTIALS[p] for p in protos})


def test_inventory_shape() -> None:
    nodes = [_node("nc1", "netconf", "198.18.0.2"), _node("r1", "router", "198.18.0.14")]
    text = inv.inventory_yaml("basic", nodes, "/run/agw-lab/basic/credentials.yaml")
    assert text.splitlines()[0] == "# inventory of lab basic, generated by agw lab inventory"
    assert '      - {platform: netconfd, port: 830, credentials: "file:/run/agw-lab/basic/credentials.yaml#nc1.netconf"}' in text
    data = yaml.safe_load(text)
    assert data == inv.inventory("basic", nodes, "/run/agw-lab/basic/credentials.yaml")
    assert [e["platform"] for e in data["devices"]["r1"]["endpoints"]] == ["netconfd", "frr", "net-snmp"]
    creds = yaml.safe_load(inv.credentials_yaml(nodes))
    assert creds["r1"]["snmp"] == {
        "community": "private", "community_ro": "public", "username": "labv3", "auth_key": "labauthpass",
        "priv_key": "labprivpass", "auth_protocol": "SHA", "priv_protocol": "AES",
    }
    assert creds["r1"]["cli"] == {"username": "labcli", "password": "labpass"}


def test_not_root_says_what_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(NotRootError) as exc:
        Lab.up(BASIC)
    assert "needs root" in str(exc.value) and "network namespaces" in str(exc.value)
    from lab.cli import lab as lab_cmd

    res = CliRunner().invoke(lab_cmd, ["up", str(BASIC)])
    assert res.exit_code != 0 and "needs root" in res.output


def test_cli_refuses_bad_topology_without_root_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    p = tmp_path / "bad.clab.yml"
    p.write_text("name: bad\ntopology:\n  nodes:\n    a: {kind: juniper}\n")
    from lab.cli import lab as lab_cmd

    res = CliRunner().invoke(lab_cmd, ["up", str(p)])
    assert res.exit_code != 0 and f"{p}: topology.nodes.a.kind: unknown kind 'juniper'" in res.output
