"""One atomic activation over NETCONF, SSH CLI and SNMP (issue: mixed activation).

When the SNMP task fails, the NETCONF and CLI tasks are rolled back too, each verified against
its snapshot; every device is checked afterwards by an independent client (ncclient, netmiko,
pysnmp), not through the gateway.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, AsyncIterator

import pytest

from gateway.model import TaskState
from gateway.results import ActivationState
from tests.integration.gateway_harness import Client, InProcessGateway, interface_xml, make_profiles

pytestmark = [pytest.mark.lab]


def cli_running_config(node: Any) -> str:
    from netmiko import ConnectHandler

    creds = node.credentials["cli"]
    with ConnectHandler(device_type="cisco_ios", host=node.address, port=node.ports["cli"],
                        username=creds["username"], password=creds["password"], fast_cli=False) as conn:
        return str(conn.send_command("show running-config"))


async def snmp_get(node: Any, oid: str) -> str:
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData, ContextData, ObjectIdentity, ObjectType, SnmpEngine, UdpTransportTarget, get_cmd)

    engine = SnmpEngine()
    try:
        target = await UdpTransportTarget.create((node.address, node.ports["snmp"]), timeout=2, retries=1)
        err, status, _, binds = await get_cmd(engine, CommunityData(node.credentials["snmp"]["community_ro"]),
                                              target, ContextData(), ObjectType(ObjectIdentity(oid)))
        assert not err and not status, (err, status)
        return str(binds[0][1])
    finally:
        engine.close_dispatcher()


SYS_CONTACT = "1.3.6.1.2.1.1.4.0"


@pytest.fixture(scope="module")
async def gw(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    root = tmp_path_factory.mktemp("gw-mixed")
    profiles = make_profiles(root / "profiles", {"netconfd": {"confirm_timeout_s": 30},
                                                 "net-snmp": {"timeouts": {"connect_s": 2, "operation_s": 2}}})
    gateway = InProcessGateway(data_dir=root / "data", inventory=lab.inventory_path, profiles=profiles)
    client = await gateway.start()
    yield client
    await gateway.stop()


def mixed_tasks(tag: str) -> list[dict[str, Any]]:
    return [
        {"id": "nc", "device": "nc1", "service": "interface", "parameters": {"name": f"mx{tag}", "description": "mixed"}},
        {"id": "cli", "device": "cli1", "service": "prefix-list",
         "parameters": {"name": f"PL-MX-{tag}", "seq": 10, "rule": "permit", "prefix": "203.0.113.0/24"}},
        {"id": "snmp", "device": "snmp1", "service": "system", "action": "modify", "depends_on": ["nc", "cli"],
         "parameters": {"contact": f"mixed-{tag}@example.net"}},
    ]


async def test_mixed_activation_completes_on_all_three_protocols(gw: Client, lab: Any) -> None:
    tag = uuid.uuid4().hex[:6]
    result = await gw.wait(await gw.submit(mixed_tasks(tag), request_id=f"mixed-{tag}"))
    assert result.state == ActivationState.COMPLETED, result
    assert {t.driver for t in result.tasks} == {"netconf", "cli", "snmp"}
    assert "mixed" in await asyncio.to_thread(interface_xml, lab.node("nc1"), f"mx{tag}")
    assert f"ip prefix-list PL-MX-{tag} seq 10 permit 203.0.113.0/24" in await asyncio.to_thread(
        cli_running_config, lab.node("cli1"))
    assert await snmp_get(lab.node("snmp1"), SYS_CONTACT) == f"mixed-{tag}@example.net"


async def test_snmp_failure_rolls_back_netconf_and_cli(gw: Client, lab: Any) -> None:
    tag = uuid.uuid4().hex[:6]
    nc1, cli1 = lab.node("nc1"), lab.node("cli1")
    nc_before = await asyncio.to_thread(interface_xml, nc1, f"mx{tag}")
    cli_before = await asyncio.to_thread(cli_running_config, cli1)
    with lab.faulted("snmp1", "stop", daemon="snmpd"):  # the SNMP agent hangs: its task fails
        result = await gw.wait(await gw.submit(mixed_tasks(tag), request_id=f"mixed-fail-{tag}"), timeout_s=90)
    assert result.state == ActivationState.ROLLED_BACK, result
    by_id = {t.id: t for t in result.tasks}
    assert by_id["snmp"].state == TaskState.FAILED and by_id["snmp"].error is not None
    for tid in ("nc", "cli"):
        assert by_id[tid].state == TaskState.ROLLED_BACK, by_id[tid]
        assert by_id[tid].rollback is not None and by_id[tid].rollback.ok
    assert await asyncio.to_thread(interface_xml, nc1, f"mx{tag}") == nc_before
    assert f"PL-MX-{tag}" not in await asyncio.to_thread(cli_running_config, cli1)
    assert (await asyncio.to_thread(cli_running_config, cli1)).count("ip prefix-list") == cli_before.count("ip prefix-list")
