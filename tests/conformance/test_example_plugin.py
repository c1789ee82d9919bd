"""The conformance kit against the example third-party driver, found through its entry point.

``examples/driver-plugin`` is installed by ``make venv`` (``pip install -e examples/driver-plugin``);
without it this module is skipped. The plugin's own tests (``examples/driver-plugin/tests``) run
the same kit from the plugin's side.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from drivers.base import ChangeSet, Endpoint, Timeouts
from drivers.registry import drivers
from drivers.testing import ConformanceTarget, DriverConformance
from gateway.model import Action
from gateway.secrets import Credential, Secret

plugin = pytest.importorskip("agw_driver_example", reason="examples/driver-plugin is not installed")

pytestmark = pytest.mark.lab


def valid(tok: str) -> ChangeSet:
    return ChangeSet(service="system", action=Action.MODIFY, content=yaml.safe_dump({"contact": f"noc {tok}"}))


def interfering(tok: str) -> ChangeSet:
    """sysLocation: in the driver's scope (both fields), not named by ``valid``."""
    return ChangeSet(service="system", action=Action.MODIFY, content=yaml.safe_dump({"location": f"rack {tok}"}))


def invalid(tok: str) -> ChangeSet:
    return ChangeSet(service="system", action=Action.MODIFY,
                     content=yaml.safe_dump({"contact": f"noc {tok}", "location": "y" * 256}))


class TestExamplePluginConformance(DriverConformance):
    @pytest.fixture
    def conformance_target(self, lab: Any) -> ConformanceTarget:
        node = lab.node("snmp1")
        profile = plugin.load_profile()
        profile = dataclasses.replace(profile, timeouts=Timeouts(connect_s=2, operation_s=1.5, commit_s=1.5))
        endpoint = Endpoint(device="snmp1", host=node.address, port=node.ports["snmp"], platform=profile.platform,
                            credential=Credential(ref="lab:snmp1:rw",
                                                  community=Secret(node.credentials["snmp"]["community_rw"])))
        return ConformanceTarget(driver_class=drivers.get(profile.driver), endpoint=endpoint, profile=profile,
                                 valid_change=valid, invalid_change=invalid, interfering_change=interfering,
                                 hang=lambda: lab.faulted("snmp1", "stop", daemon="snmpd"))
