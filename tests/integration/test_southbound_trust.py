"""Southbound trust against the lab: no parameter value changes what a template means, and
verification proves exactly the intended change (NETCONF, CLI and SNMP).

Devices are checked with clients of their own (ncclient, vtysh over a separate session,
net-snmp's snmpget), never through the gateway.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import grpc
import pytest

from drivers.cli import CliDriver
from drivers.netconf import NetconfDriver, rpc
from drivers.snmp import SnmpDriver
from gateway.api.status import bad_request_details
from gateway.model import TaskState
from gateway.results import ActivationState
from tests.integration.gateway_harness import (
    Client,
    InProcessGateway,
    interface_xml,
    make_profiles,
    ncclient_edit,
    ncclient_get,
    submit_request,
    system_xml,
)

pytestmark = [pytest.mark.lab]

IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
# the value reported in the issue: it closes <description> and opens a second interface
EVIL_DESCRIPTION = ('x</description><type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">'
                    "ianaift:ethernetCsmacd</type></interface><interface><name>evil0</name><description>injected")


def rid() -> str:
    return f"trust-{uuid.uuid4()}"


@pytest.fixture(scope="module")
async def gw(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    root = tmp_path_factory.mktemp("trust")
    profiles = make_profiles(root / "profiles", {"netconfd": {"confirm_timeout_s": 30}})
    gateway = InProcessGateway(data_dir=root / "data", inventory=lab.inventory_path, profiles=profiles)
    client = await gateway.start()
    yield client
    await gateway.stop()


def interfaces(node: Any) -> str:
    return ncclient_get(node, f'<interfaces xmlns="{IF_NS}"/>')


def violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    """The BadRequest field violations in the status details."""
    return {v.field: v.reason for v in bad_request_details(err.trailing_metadata())}


# -- hostile values are refused, the device is untouched -----------------------------------------
@pytest.mark.parametrize("how", ["submit", "dry-run"])
async def test_the_reported_injection_is_refused_and_nc1_is_untouched(gw: Client, lab: Any, how: str) -> None:
    nc1 = lab.node("nc1")
    before = await asyncio.to_thread(interfaces, nc1)
    msg = submit_request([{"id": "t1", "device": "nc1", "service": "interface", "action": "create",
                           "parameters": {"name": f"ge{uuid.uuid4().hex[:6]}", "description": EVIL_DESCRIPTION}}],
                         request_id=rid())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        if how == "submit":
            await gw.stub.Submit(msg)
        else:
            await gw.stub.DryRun(msg)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(err.value)
    assert "tasks[0].parameters.description" in found and "markup" in found["tasks[0].parameters.description"]
    after = await asyncio.to_thread(interfaces, nc1)
    assert after == before and "evil0" not in after


async def test_system_variant_cannot_add_a_user(gw: Client, lab: Any) -> None:
    nc1 = lab.node("nc1")
    before = await asyncio.to_thread(system_xml, nc1)
    contact = ("x</contact><authentication><user><name>evil</name><password>$0$evil</password></user>"
               "</authentication><contact>y")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.submit([{"id": "s", "device": "nc1", "service": "system", "action": "modify",
                          "parameters": {"contact": contact, "location": "x</location><location>y"}}], request_id=rid())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"tasks[0].parameters.contact", "tasks[0].parameters.location"} <= set(violations(err.value))
    after = await asyncio.to_thread(system_xml, nc1)
    assert after == before and "evil" not in after


async def test_operation_delete_variant_cannot_remove_an_interface(gw: Client, lab: Any) -> None:
    nc1, victim = lab.node("nc1"), f"victim{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(ncclient_edit, nc1, (
        f'<config xmlns="{NC_NS}"><interfaces xmlns="{IF_NS}"><interface><name>{victim}</name>'
        '<type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">ianaift:ethernetCsmacd</type>'
        "<description>keep me</description></interface></interfaces></config>"))
    before = await asyncio.to_thread(interfaces, nc1)
    evil = (f'x</description></interface><interface xmlns:nc="{NC_NS}" nc:operation="delete"><name>{victim}</name>'
            "</interface><interface><name>other</name><description>y")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.submit([{"id": "t", "device": "nc1", "service": "interface", "action": "modify",
                          "parameters": {"name": "ge9", "description": evil}}], request_id=rid())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tasks[0].parameters.description" in violations(err.value)
    after = await asyncio.to_thread(interfaces, nc1)
    assert after == before and victim in after
    await asyncio.to_thread(ncclient_edit, nc1, (
        f'<config xmlns="{NC_NS}" xmlns:nc="{NC_NS}"><interfaces xmlns="{IF_NS}"><interface nc:operation="delete">'
        f"<name>{victim}</name></interface></interfaces></config>"))


@pytest.mark.parametrize(("device", "service", "parameters", "field"), [
    ("cli1", "interface", {"name": "lo", "description": "x\nip route 0.0.0.0/0 Null0"}, "description"),
    ("cli1", "interface", {"name": "lo", "description": "x\u2028exit"}, "description"),
    ("snmp1", "system", {"contact": "x\n- {oid: 1.3.6.1.2.1.1.5.0}"}, "contact"),
])
async def test_a_value_cannot_add_a_line_or_a_varbind(gw: Client, lab: Any, device: str, service: str,
                                                      parameters: dict[str, Any], field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.submit([{"id": "t", "device": device, "service": service, "action": "modify",
                          "parameters": parameters}], request_id=rid())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"tasks[0].parameters.{field}" in violations(err.value)


# -- exact verification: a difference the change did not name is caught and rolled back -----------
def _unexpected(result: Any) -> list[str]:
    task = result.tasks[0]
    assert task.verification is not None and not task.verification.ok, task
    return [m for m in task.verification.mismatches if "did not name" in m]


async def test_netconf_side_effect_is_caught_and_rolled_back(gw: Client, lab: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The device changes a leaf of the entry by itself right after the commit (simulated in the
    committing session, the only one that can while the gateway holds the candidate lock)."""
    nc1, name = lab.node("nc1"), f"se{uuid.uuid4().hex[:6]}"
    commit = NetconfDriver.commit

    async def commit_with_side_effect(self: NetconfDriver, *, confirm_timeout_s: int | None = None,
                                      persist_id: str | None = None) -> None:
        await commit(self, confirm_timeout_s=confirm_timeout_s, persist_id=persist_id)
        if self.device == "nc1" and persist_id:
            extra = (f'<config xmlns="{NC_NS}"><interfaces xmlns="{IF_NS}"><interface><name>{name}</name>'
                     "<enabled>false</enabled></interface></interfaces></config>").encode()
            await self._rpc(rpc.edit_config(extra), operation="edit-config", phase=None)  # type: ignore[arg-type]
            await self._rpc(rpc.commit(confirm_timeout_s=confirm_timeout_s, persist_id=persist_id,
                                       persist=persist_id), operation="commit", phase=None)  # type: ignore[arg-type]

    monkeypatch.setattr(NetconfDriver, "commit", commit_with_side_effect)
    before = await asyncio.to_thread(interface_xml, nc1, name)
    result = await gw.outcome(await gw.submit([{"id": "t", "device": "nc1", "service": "interface", "action": "create",
                                                "parameters": {"name": name, "description": "exact"}}],
                                              request_id=rid()))
    assert result.state == ActivationState.ROLLED_BACK, result
    shown = _unexpected(result)
    assert len(shown) == 1 and f"interface[name='{name}']/enabled" in shown[0], result.tasks[0].verification
    assert result.tasks[0].rollback is not None and result.tasks[0].rollback.ok
    assert await asyncio.to_thread(interface_xml, nc1, name) == before


async def test_cli_out_of_band_line_is_caught_and_rolled_back(gw: Client, lab: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Another session adds a line right after the gateway's push: verification fails on it and
    the generated undo puts the whole configuration back as it was."""
    cli1 = lab.node("cli1")
    load = CliDriver.load
    extra = "ip route 198.51.100.77/32 Null0"

    async def load_then_interfere(self: CliDriver, change: Any) -> None:
        await load(self, change)
        if self.device == "cli1":
            await asyncio.to_thread(vtysh, cli1, ["configure terminal", extra, "end"])

    monkeypatch.setattr(CliDriver, "load", load_then_interfere)
    before = await asyncio.to_thread(vtysh, cli1, ["show running-config"])
    result = await gw.outcome(await gw.submit([{"id": "t", "device": "cli1", "service": "interface", "action": "modify",
                                                "parameters": {"name": "lo", "description": f"exact {rid()[-6:]}"}}],
                                              request_id=rid()))
    assert result.state == ActivationState.ROLLED_BACK, result
    shown = _unexpected(result)
    assert shown and any(extra in m for m in shown), result.tasks[0].verification
    assert result.tasks[0].state == TaskState.ROLLED_BACK and result.tasks[0].rollback.ok
    assert await asyncio.to_thread(vtysh, cli1, ["show running-config"]) == before


async def test_snmp_sibling_set_is_caught_and_rolled_back(gw: Client, lab: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An out-of-band SET of sysName (same scope group as sysContact) right after the gateway's SET."""
    snmp1 = lab.node("snmp1")
    load = SnmpDriver.load

    async def load_then_interfere(self: SnmpDriver, change: Any) -> None:
        await load(self, change)
        if self.device == "snmp1":
            await asyncio.to_thread(snmp, snmp1, "snmpset", "1.3.6.1.2.1.1.5.0", "s", "renamed-by-someone")

    before = await asyncio.to_thread(snmp, snmp1, "snmpget", "1.3.6.1.2.1.1.4.0", "1.3.6.1.2.1.1.5.0")
    monkeypatch.setattr(SnmpDriver, "load", load_then_interfere)
    result = await gw.outcome(await gw.submit([{"id": "t", "device": "snmp1", "service": "system", "action": "modify",
                                                "parameters": {"contact": f"noc {rid()[-6:]}"}}], request_id=rid()))
    assert result.state == ActivationState.ROLLED_BACK, result
    shown = _unexpected(result)
    assert len(shown) == 1 and shown[0].startswith("1.3.6.1.2.1.1.5.0") and "renamed-by-someone" in shown[0]
    assert await asyncio.to_thread(snmp, snmp1, "snmpget", "1.3.6.1.2.1.1.4.0", "1.3.6.1.2.1.1.5.0") == before


# -- independent device access ----------------------------------------------------------------------
def vtysh(node: Any, commands: list[str]) -> str:
    """vtysh on the node's FRR daemons' own sockets (not through SSH, not through the gateway)."""
    state = Path(node.log_dir) / "frr"
    argv = ["vtysh", "--vty_socket", str(state / "run"), "--config_dir", str(state)]
    for c in commands:
        argv += ["-c", c]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20).stdout


def snmp(node: Any, tool: str, *args: str) -> str:
    c = node.credentials["snmp"]
    argv = [tool, "-v2c", "-c", c["community_rw"], "-m", "", "-On", "-Oq", "-t", "2", "-r", "1",
            f"udp:{node.address}:{node.ports['snmp']}", *args]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20).stdout
