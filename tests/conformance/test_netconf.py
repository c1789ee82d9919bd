"""The conformance kit against NetconfDriver and the lab's netconfd (node ``nc1``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from drivers.base import ChangeSet, Endpoint, Timeouts
from drivers.netconf import NetconfDriver
from drivers.testing import ConformanceTarget, DriverConformance
from gateway.inventory import ProfileStore
from gateway.model import Action
from gateway.render import TemplateStore
from gateway.secrets import Credential, Secret

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = TemplateStore(root=ROOT / "templates")
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"


def valid(tok: str) -> ChangeSet:
    """An interface entry: its whole entry is the read scope."""
    return TEMPLATES.render(service="interface", platform="netconfd", action=Action.MODIFY,
                            parameters={"name": "kit1", "description": f"kit {tok}"}, device="nc1",
                            payload_format="xml")


def interfering(tok: str) -> ChangeSet:
    """Another leaf of the same entry, which ``valid`` does not name."""
    return TEMPLATES.render(service="interface", platform="netconfd", action=Action.MODIFY,
                            parameters={"name": "kit1", "enabled": False}, device="nc1", payload_format="xml")


def invalid(tok: str) -> ChangeSet:
    """`enabled` is a boolean in ietf-interfaces: netconfd answers invalid-value."""
    return ChangeSet(service="interface", action=Action.CREATE, content=(
        f'<config xmlns="{NC}"><interfaces xmlns="{IF}"><interface><name>kit0</name>'
        f"<description>{tok}</description>"
        '<type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">ianaift:ethernetCsmacd</type>'
        "<enabled>notabool</enabled></interface></interfaces></config>"))


class TestNetconfConformance(DriverConformance):
    @pytest.fixture
    def conformance_target(self, lab: Any) -> ConformanceTarget:
        node = lab.node("nc1")
        cred = node.credentials["netconf"]
        profile = ProfileStore.load(ROOT / "device_profiles").get("netconfd")
        profile = dataclasses.replace(profile, timeouts=Timeouts(connect_s=3, operation_s=2, commit_s=3))
        endpoint = Endpoint(device="nc1", host=node.address, port=node.ports["netconf"], platform="netconfd",
                            credential=Credential(ref="lab:nc1", username=cred["username"],
                                                  password=Secret(cred["password"])),
                            known_hosts=str(node.known_hosts))
        return ConformanceTarget(driver_class=NetconfDriver, endpoint=endpoint, profile=profile,
                                 valid_change=valid, invalid_change=invalid, interfering_change=interfering,
                                 hang=lambda: lab.faulted("nc1", "stop", daemon="netconfd"))
