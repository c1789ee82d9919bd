"""The gateway's driver conformance kit, run against this plugin and the lab's snmpd (node ``snmp1``).

Run from the gateway checkout (the ``lab`` fixture is the gateway's pytest plugin)::

    AGW_TEST_LAB=kit .venv/bin/pytest examples/driver-plugin/tests
"""

from __future__ import annotations

import dataclasses
from importlib import metadata
from typing import Any

import pytest
import yaml
from agw_driver_example import ExampleSystemDriver, load_profile, parse_change
from agw_driver_example.driver import ToolSettings, parse_get_output

from drivers.base import Action, ChangeSet, Endpoint, Timeouts
from drivers.errors import ConfigurationError, ConnectError, InputError
from drivers.registry import drivers
from drivers.secrets import Credential, Secret
from drivers.testing import ConformanceTarget, DriverConformance


def valid(tok: str) -> ChangeSet:
    return ChangeSet(service="system", action=Action.MODIFY,
                     content=yaml.safe_dump({"contact": f'noc "{tok}" # x'}))


def interfering(tok: str) -> ChangeSet:
    """sysLocation, in the driver's scope but not named by ``valid``."""
    return ChangeSet(service="system", action=Action.MODIFY, content=yaml.safe_dump({"location": f"rack {tok}"}))


def invalid(tok: str) -> ChangeSet:
    """sysLocation is a DisplayString (at most 255 bytes): the agent refuses the SET, contact included."""
    return ChangeSet(service="system", action=Action.MODIFY,
                     content=yaml.safe_dump({"contact": f"noc {tok}", "location": "x" * 300}))


def endpoint(lab: Any, community: str | None = None) -> Endpoint:
    node = lab.node("snmp1")
    secret = community if community is not None else node.credentials["snmp"]["community_rw"]
    return Endpoint(device="snmp1", host=node.address, port=node.ports["snmp"], platform="example-snmp",
                    credential=Credential(ref="lab:snmp1:rw", community=Secret(secret)))


def short_profile() -> Any:
    return dataclasses.replace(load_profile(), timeouts=Timeouts(connect_s=2, operation_s=1.5, commit_s=1.5))


@pytest.mark.lab
class TestExampleDriverConformance(DriverConformance):
    @pytest.fixture
    def conformance_target(self, lab: Any) -> ConformanceTarget:
        return ConformanceTarget(driver_class=ExampleSystemDriver, endpoint=endpoint(lab), profile=short_profile(),
                                 valid_change=valid, invalid_change=invalid, interfering_change=interfering,
                                 hang=lambda: lab.faulted("snmp1", "stop", daemon="snmpd"))


@pytest.mark.lab
async def test_wrong_community_fails_to_connect_and_is_not_leaked(lab: Any) -> None:
    drv = ExampleSystemDriver(endpoint=endpoint(lab, community="not-the-community-42"), profile=short_profile())
    with pytest.raises(ConnectError) as err:
        await drv.open()
    assert "not-the-community-42" not in str(err.value) and not drv.is_open


def test_entry_point_finds_the_installed_plugin() -> None:
    eps = {ep.name: ep for ep in metadata.entry_points(group="agw.drivers")}
    assert eps["example-snmp"].value == "agw_driver_example:ExampleSystemDriver"
    assert eps["example-snmp"].dist is not None and eps["example-snmp"].dist.name == "agw-driver-example"
    assert drivers.get("example-snmp") is ExampleSystemDriver


def test_shipped_profile_names_the_driver() -> None:
    profile = load_profile()
    assert profile.platform == "example-snmp" and profile.driver == ExampleSystemDriver.name
    assert ExampleSystemDriver.capabilities_for(profile).names() == ("atomic_push",)


def test_change_format() -> None:
    assert parse_change(ChangeSet(service="s", action=Action.DELETE, content="contact: x\n")) == {"contact": ""}
    with pytest.raises(InputError) as err:
        parse_change(ChangeSet(service="s", action=Action.MODIFY, content="contact: 1\nhostname: x\n"))
    assert {v.field for v in err.value.violations} == {"content.contact", "content.hostname"}


def test_hex_output_that_wraps_is_decoded() -> None:
    text = ('.1.3.6.1.2.1.1.4.0 "61 62 63 64 65 66 67 68 69 6A 6B 6C 6D 6E 6F 70 \n'
            '71 72 "\n.1.3.6.1.2.1.1.6.0 ""\n')
    assert parse_get_output(text) == {"1.3.6.1.2.1.1.4.0": "abcdefghijklmnopqr", "1.3.6.1.2.1.1.6.0": ""}


def test_shipped_profile_settings_are_typed_and_a_typo_is_refused_naming_the_file() -> None:
    profile = load_profile()
    assert ExampleSystemDriver.settings_from(profile) == ToolSettings(retries=0, snmpget="snmpget", snmpset="snmpset")
    for section, key in (("settings", "retires"), ("quirks", "slow_agent")):
        typo = dataclasses.replace(profile, **{section: {**getattr(profile, section), key: 1}})
        with pytest.raises(ConfigurationError) as err:
            ExampleSystemDriver.settings_from(typo)
        assert err.value.message.startswith(f"{profile.source}: {section}.{key}: unknown"), err.value.message
    with pytest.raises(ConfigurationError, match=r"settings\.retries: must be an integer 0\.\.10"):
        ExampleSystemDriver.settings_from(dataclasses.replace(profile, settings={"retries": "2"}))
