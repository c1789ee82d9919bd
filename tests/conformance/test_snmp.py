"""The conformance kit against SnmpDriver and the lab's net-snmp agent (node ``snmp1``), SNMPv3."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.base import ChangeSet, Endpoint, Timeouts
from drivers.snmp import SnmpDriver
from drivers.testing import ConformanceTarget, DriverConformance
from gateway.inventory import ProfileStore
from gateway.model import Action
from gateway.render import TemplateStore
from gateway.secrets import Credential, Secret

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = TemplateStore(root=ROOT / "templates")
SYS_LOCATION = "1.3.6.1.2.1.1.6.0"
SYS_CONTACT = "1.3.6.1.2.1.1.4.0"


def valid(tok: str) -> ChangeSet:
    return TEMPLATES.render(service="system", platform="net-snmp", action=Action.MODIFY,
                            parameters={"contact": f"noc {tok}", "location": f"rack {tok}"}, device="snmp1", payload_format="varbinds")


def interfering(tok: str) -> ChangeSet:
    """sysName: in the system group's scope (profile scope_groups), not named by ``valid``."""
    return TEMPLATES.render(service="system", platform="net-snmp", action=Action.MODIFY,
                            parameters={"name": f"kit-{tok}"}, device="snmp1", payload_format="varbinds")


def invalid(tok: str) -> ChangeSet:
    """sysLocation is a string: the agent refuses the whole SET (wrongType), sysContact included."""
    content = yaml.safe_dump([{"oid": SYS_CONTACT, "type": "OctetString", "value": f"noc {tok}"},
                              {"oid": SYS_LOCATION, "type": "Integer", "value": 42}])
    return ChangeSet(service="system", action=Action.MODIFY, content=content)


class TestSnmpConformance(DriverConformance):
    @pytest.fixture
    def conformance_target(self, lab: Any) -> ConformanceTarget:
        node = lab.node("snmp1")
        c = node.credentials["snmp"]
        profile = ProfileStore.load(ROOT / "device_profiles").get("net-snmp")
        profile = dataclasses.replace(profile, timeouts=Timeouts(connect_s=2, operation_s=1.5, commit_s=1.5))
        credential = Credential(ref="lab:snmp1:v3", username=c["v3_user"], auth_key=Secret(c["v3_auth_key"]),
                                priv_key=Secret(c["v3_priv_key"]), auth_protocol="SHA", priv_protocol="AES")
        endpoint = Endpoint(device="snmp1", host=node.address, port=node.ports["snmp"], platform="net-snmp",
                            credential=credential)
        return ConformanceTarget(driver_class=SnmpDriver, endpoint=endpoint, profile=profile,
                                 valid_change=valid, invalid_change=invalid, interfering_change=interfering,
                                 hang=lambda: lab.faulted("snmp1", "stop", daemon="snmpd"))
