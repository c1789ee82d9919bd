"""Inventory YAML loading, device look-up and endpoint selection."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.errors import ConfigurationError, InputError, NotFoundError
from gateway.inventory import Device, EndpointSpec, Inventory, select_endpoint
from gateway.render import TemplateStore

LAB_INVENTORY = """\
devices:
  nc1:
    address: 198.18.0.2
    endpoints:
      - {platform: netconfd, port: 830, credentials: "file:/run/agw-lab/basic/credentials.yaml#nc1.netconf"}
  r1:
    address: 198.18.0.14
    endpoints:
      - {platform: netconfd, port: 830, credentials: "file:/run/agw-lab/basic/credentials.yaml#r1.netconf"}
      - {platform: frr, port: 22, credentials: "file:/run/agw-lab/basic/credentials.yaml#r1.cli"}
      - {platform: net-snmp, port: 161, credentials: "file:/run/agw-lab/basic/credentials.yaml#r1.snmp"}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "inventory.yaml"
    p.write_text(text)
    return p


def test_lab_inventory_loads_as_is(tmp_path: Path) -> None:
    inv = Inventory.load(write(tmp_path, LAB_INVENTORY))
    assert sorted(inv.devices) == ["nc1", "r1"] and len(inv) == 2 and "r1" in inv
    r1 = inv.device("r1")
    assert r1 == Device("r1", "198.18.0.14", (
        EndpointSpec(platform="netconfd", port=830, credentials="file:/run/agw-lab/basic/credentials.yaml#r1.netconf"),
        EndpointSpec(platform="frr", port=22, credentials="file:/run/agw-lab/basic/credentials.yaml#r1.cli"),
        EndpointSpec(platform="net-snmp", port=161, credentials="file:/run/agw-lab/basic/credentials.yaml#r1.snmp"),
    ))
    assert r1.platforms() == ["netconfd", "frr", "net-snmp"]
    assert r1.endpoint("frr").port == 22
    with pytest.raises(dataclasses.FrozenInstanceError):
        r1.address = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        inv.devices["x"] = r1  # type: ignore[index]


def test_flat_single_endpoint_form(tmp_path: Path) -> None:
    inv = Inventory.load(write(tmp_path, "devices:\n  pe1: {address: pe1.example.net, platform: netconfd, port: 830, credentials: 'env:PE1'}\n"))
    assert inv.device("pe1").endpoints == (EndpointSpec(platform="netconfd", port=830, credentials="env:PE1"),)


def test_unknown_device_is_not_found_and_lists_known(tmp_path: Path) -> None:
    inv = Inventory.load(write(tmp_path, LAB_INVENTORY))
    with pytest.raises(NotFoundError, match=r"unknown device 'r9'.*nc1, r1"):
        inv.device("r9")
    with pytest.raises(NotFoundError, match="no endpoint for platform 'junos'"):
        inv.device("r1").endpoint("junos")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("devices:\n  r1:\n    endpoints: [{platform: frr, port: 22, credentials: 'env:R1'}]\n", "device r1: address: missing"),
        ("devices:\n  r1: {address: '300.1.1.1', endpoints: [{platform: frr, port: 22, credentials: 'env:R1'}]}\n", "device r1: address"),
        ("devices:\n  r1: {address: 10.0.0.1, endpoints: [{platform: frr, port: 70000, credentials: 'env:R1'}]}\n", r"device r1: endpoints\[0\]\.port"),
        ("devices:\n  r1: {address: 10.0.0.1, endpoints: [{platform: frr, port: '22', credentials: 'env:R1'}]}\n", r"device r1: endpoints\[0\]\.port"),
        ("devices:\n  r1: {address: 10.0.0.1, endpoints: [{platform: frr, port: true, credentials: 'env:R1'}]}\n", r"endpoints\[0\]\.port"),
        ("devices:\n  r1: {address: 10.0.0.1, endpoints: [{port: 22, credentials: 'env:R1'}]}\n", r"endpoints\[0\]\.platform: missing"),
        ("devices:\n  r1: {address: 10.0.0.1, endpoints: [{platform: frr, port: 22}]}\n", r"endpoints\[0\]\.credentials: missing"),
        ("devices:\n  r1: {address: 10.0.0.1, endpoints: [{platform: frr, port: 22, credentials: 'file:relative.yaml#k'}]}\n", r"endpoints\[0\]\.credentials: not a credential reference"),
        ("devices:\n  r1: {address: 10.0.0.1, endpoints: []}\n", "device r1: endpoints: must be a non-empty list"),
        ("devices:\n  r1: {address: 10.0.0.1, endpoints: [{platform: frr, port: 22, credentials: 'env:A'}, {platform: frr, port: 23, credentials: 'env:B'}]}\n", r"endpoints\[1\]\.platform: 'frr' is listed twice"),
        ("devices:\n  r1: {address: 10.0.0.1, colour: red, endpoints: [{platform: frr, port: 22, credentials: 'env:A'}]}\n", "device r1: unknown field"),
        ("devices:\n  r1: {address: 10.0.0.1, endpoints: [{platform: frr, port: 22, credentials: 'env:A', user: x}]}\n", r"endpoints\[0\]: unknown field"),
        ("devices:\n  r1: {address: 10.0.0.1, endpoints: [{platform: frr, port: 22, credentials: 'env:A'}]}\n  r1: {address: 10.0.0.2, endpoints: [{platform: frr, port: 22, credentials: 'env:A'}]}\n", "duplicate key 'r1'"),
        ("devices:\n  42: {address: 10.0.0.1, endpoints: [{platform: frr, port: 22, credentials: 'env:A'}]}\n", "must be a string"),
        ("devices: [r1]\n", "devices: must be a mapping"),
        ("routers: {}\n", "unknown top-level key"),
        ("- a\n", "must be a mapping"),
        ("devices:\n  r1: {address: [\n", "line"),
    ],
)
def test_bad_inventory_names_file_device_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError, match=expected) as info:
        Inventory.load(path)
    assert str(path) in str(info.value)


def test_every_problem_is_reported(tmp_path: Path) -> None:
    text = ("devices:\n  a: {endpoints: [{platform: frr, port: 0, credentials: 'env:A'}]}\n"
            "  b: {address: 10.0.0.1, endpoints: [{platform: frr, port: 22}]}\n")
    with pytest.raises(ConfigurationError) as info:
        Inventory.load(write(tmp_path, text))
    msg = str(info.value)
    assert "device a: address: missing" in msg and "device a: endpoints[0].port" in msg
    assert "device b: endpoints[0].credentials" in msg


def test_a_pasted_password_is_never_echoed(tmp_path: Path) -> None:
    text = "devices:\n  r1: {address: 10.0.0.1, endpoints: [{platform: frr, port: 22, credentials: 'hunter2-secret'}]}\n"
    with pytest.raises(ConfigurationError) as info:
        Inventory.load(write(tmp_path, text))
    assert "hunter2-secret" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        Inventory.load(tmp_path / "none.yaml")


def _templates(tmp_path: Path) -> TemplateStore:
    root = tmp_path / "templates"
    for service, platforms in {"route": ["frr"], "iface": ["netconfd", "frr"]}.items():
        (root / service).mkdir(parents=True)
        (root / service / "service.yaml").write_text("parameters: {type: object}\n")
        for p in platforms:
            (root / service / f"{p}.j2").write_text("x\n")
    return TemplateStore(root=root)


def test_select_endpoint_takes_the_first_platform_with_a_template(tmp_path: Path) -> None:
    store = _templates(tmp_path)
    r1 = Inventory.load(write(tmp_path, LAB_INVENTORY)).device("r1")
    assert select_endpoint(r1, "iface", store).platform == "netconfd"  # first in inventory order
    assert select_endpoint(r1, "route", store).platform == "frr"


def test_select_endpoint_error_lists_the_device_platforms(tmp_path: Path) -> None:
    store = _templates(tmp_path)
    nc1 = Inventory.load(write(tmp_path, LAB_INVENTORY)).device("nc1")
    with pytest.raises(InputError) as info:
        select_endpoint(nc1, "route", store)
    (v,) = info.value.violations
    assert v.field == "service" and "netconfd" in v.reason and "nc1" in v.reason
    with pytest.raises(InputError):
        select_endpoint(nc1, "no-such-service", store)


def test_what_agw_lab_inventory_prints_loads_and_resolves(tmp_path: Path) -> None:
    """The lab's own generator (lab/inventory.py) → Inventory.load and CredentialResolver, as-is."""
    import os
    from types import SimpleNamespace

    from gateway.inventory import CredentialResolver

    lab_inventory = pytest.importorskip("lab.inventory")
    nodes = [
        SimpleNamespace(name="nc1", address="198.18.0.2", ports={"netconf": 830},
                        credentials={"netconf": {"username": "labadmin", "password": "nc-pass"}}),
        SimpleNamespace(name="r1", address="198.18.0.14", ports={"netconf": 830, "cli": 22, "snmp": 161},
                        credentials={"netconf": {"username": "labadmin", "password": "nc-pass"},
                                     "cli": {"username": "labadmin", "password": "cli-pass"},
                                     "snmp": {"community_rw": "rw", "community_ro": "ro", "v3_user": "u",
                                              "v3_auth_key": "authkey12", "v3_priv_key": "privkey12"}}),
    ]
    cred_path = tmp_path / "credentials.yaml"
    cred_path.write_text(lab_inventory.credentials_yaml(nodes))
    os.chmod(cred_path, 0o600)
    inv_path = write(tmp_path, lab_inventory.inventory_yaml("basic", nodes, str(cred_path)))
    inv = Inventory.load(inv_path)
    r1 = inv.device("r1")
    assert r1.platforms() == ["netconfd", "frr", "net-snmp"]
    resolver = CredentialResolver(environ={})
    assert resolver.resolve(r1.endpoint("frr").credentials).password.reveal() == "cli-pass"
    snmp = resolver.resolve(r1.endpoint("net-snmp").credentials)
    assert snmp.community.reveal() == "rw" and snmp.auth_key.reveal() == "authkey12"
