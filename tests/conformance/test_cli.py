"""The conformance kit against CliDriver and the lab's FRR over vtysh/SSH (node ``cli1``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from drivers.base import ChangeSet, Endpoint, Timeouts
from drivers.cli import CliDriver
from drivers.testing import ConformanceTarget, DriverConformance
from gateway.inventory import ProfileStore
from gateway.model import Action
from gateway.render import TemplateStore
from gateway.secrets import Credential, Secret

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = TemplateStore(root=ROOT / "templates")


def valid(tok: str) -> ChangeSet:
    return TEMPLATES.render(service="interface", platform="frr", action=Action.MODIFY,
                            parameters={"name": "lo", "description": f"kit {tok}"}, device="cli1", payload_format="lines")


def interfering(tok: str) -> ChangeSet:
    """Another line of the running configuration (the CLI read scope), which ``valid`` does not name."""
    return ChangeSet(service="static-route", action=Action.CREATE, content="ip route 198.51.100.0/24 Null0 200\n")


def invalid(tok: str) -> ChangeSet:
    """A valid line, then one vtysh refuses: the first is applied, so recovery must restore it."""
    return ChangeSet(service="interface", action=Action.MODIFY,
                     content=f"interface lo\n description kit {tok}\nexit\nip route 203.0.113.0/33 Null0\n")


class TestCliConformance(DriverConformance):
    @pytest.fixture
    def conformance_target(self, lab: Any) -> ConformanceTarget:
        node = lab.node("cli1")
        cred = node.credentials["cli"]
        profile = ProfileStore.load(ROOT / "device_profiles").get("frr")
        profile = dataclasses.replace(profile, timeouts=Timeouts(connect_s=4, operation_s=3, commit_s=3))
        endpoint = Endpoint(device="cli1", host=node.address, port=node.ports["cli"], platform="frr",
                            credential=Credential(ref="lab:cli1", username=cred["username"],
                                                  password=Secret(cred["password"])),
                            known_hosts=str(node.known_hosts))
        return ConformanceTarget(driver_class=CliDriver, endpoint=endpoint, profile=profile,
                                 valid_change=valid, invalid_change=invalid, interfering_change=interfering,
                                 hang=lambda: lab.faulted("cli1", "stop"))
