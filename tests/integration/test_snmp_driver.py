"""The SNMP driver against the lab's real net-snmp agent (node ``snmp1``): v2c and v3 authPriv."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.base import Capabilities, ChangeSet, DeviceProfile, Endpoint
from drivers.snmp import SnmpDriver
from gateway.errors import (
    AuthenticationError,
    ConnectError,
    DeviceRejectedError,
    DeviceTimeoutError,
)
from gateway.inventory.profiles import parse_profile
from gateway.model import Action
from gateway.render import TemplateStore
from gateway.secrets import Credential, Secret

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_CONTACT = "1.3.6.1.2.1.1.4.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_LOCATION = "1.3.6.1.2.1.1.6.0"


def load_profile(**timeouts: float) -> DeviceProfile:
    path = ROOT / "device_profiles" / "net-snmp.yaml"
    profile = parse_profile(yaml.safe_load(path.read_text()), source=str(path), expected_platform="net-snmp")
    if timeouts:
        profile = dataclasses.replace(profile, timeouts=dataclasses.replace(profile.timeouts, **timeouts))
    return profile


def credential(node: Any, kind: str) -> Credential:
    c = node.credentials["snmp"]
    if kind == "v3":
        return Credential(ref=f"lab:{node.name}:v3", username=c["v3_user"], auth_key=Secret(c["v3_auth_key"]),
                          priv_key=Secret(c["v3_priv_key"]), auth_protocol="SHA", priv_protocol="AES")
    return Credential(ref=f"lab:{node.name}:{kind}", community=Secret(c[f"community_{kind}"]))


def make_driver(node: Any, cred: Credential, profile: DeviceProfile | None = None) -> SnmpDriver:
    endpoint = Endpoint(device=node.name, host=node.address, port=node.ports["snmp"], platform="net-snmp",
                        credential=cred)
    return SnmpDriver(endpoint=endpoint, profile=profile or load_profile())


def change(*items: tuple[str, str, Any], action: Action = Action.MODIFY) -> ChangeSet:
    content = yaml.safe_dump([{"oid": o, "type": t, "value": v} for o, t, v in items])
    return ChangeSet(service="test", action=action, content=content)


def token() -> str:
    return f"agw-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def snmp1(lab: Any) -> Any:
    return lab.node("snmp1")


@pytest.fixture
async def rw(snmp1: Any) -> AsyncIterator[SnmpDriver]:
    driver = make_driver(snmp1, credential(snmp1, "rw"))
    await driver.open()
    yield driver
    await driver.close()


@pytest.fixture
async def v3(snmp1: Any) -> AsyncIterator[SnmpDriver]:
    driver = make_driver(snmp1, credential(snmp1, "v3"))
    await driver.open()
    yield driver
    await driver.close()


async def test_capabilities_and_security_mode(rw: SnmpDriver, v3: SnmpDriver, snmp1: Any) -> None:
    assert rw.capabilities == Capabilities(atomic_push=True)
    assert rw.security_mode == "v2c" and v3.security_mode == "v3"
    forced = make_driver(snmp1, dataclasses.replace(credential(snmp1, "v3"), community=Secret(
        snmp1.credentials["snmp"]["community_rw"])),
        dataclasses.replace(load_profile(), settings={"security": "v2c", "retries": 1}))
    await forced.open()
    try:
        assert forced.security_mode == "v2c"
    finally:
        await forced.close()


@pytest.mark.parametrize("mode", ["v2c", "v3"])
async def test_lifecycle_round_trip(mode: str, rw: SnmpDriver, v3: SnmpDriver) -> None:
    """read → preview → load → verify → restore → reread equals the snapshot, on v2c and v3."""
    driver = rw if mode == "v2c" else v3
    contact, location = token(), f'rack "9": {token()}'
    ch = change((SYS_CONTACT, "OctetString", contact), (SYS_LOCATION, "OctetString", location))

    before = await driver.read(driver.scope_of(ch))
    assert before.scope == f"{SYS_CONTACT}\n{SYS_NAME}\n{SYS_LOCATION}"  # the profile's system scope group
    assert before.content.startswith(f"{SYS_CONTACT} = OctetString: ")

    preview = await driver.preview(ch, before)
    assert f'+ {SYS_CONTACT} = OctetString: "{contact}"' in preview.splitlines()
    assert await driver.read(before.scope) == before, "preview must not change the device"

    await driver.load(ch)
    result = await driver.verify(ch, before)
    assert result.ok and result.checked == 3 and not result.mismatches
    assert result.readback is not None and f'"{contact}"' in result.readback.content
    after = await driver.read(before.scope)
    assert driver.diff(before, after) == preview

    # an independent read through the other protocol version sees the change
    other = v3 if driver is rw else rw
    assert (await other.read(before.scope)).content == after.content

    await driver.restore(before)
    assert await driver.read(before.scope) == before
    assert not (await driver.verify(ch, before)).ok


async def test_verify_reports_each_mismatch(rw: SnmpDriver) -> None:
    wanted, other = token(), token()
    await rw.load(change((SYS_CONTACT, "OctetString", other)))
    ch = change((SYS_CONTACT, "OctetString", wanted), (SYS_LOCATION, "OctetString", token()))
    result = await rw.verify(ch, await rw.read(rw.scope_of(ch)))  # nothing was pushed
    assert not result.ok and result.checked == 3
    assert [m.path for m in result.mismatches] == [SYS_CONTACT, SYS_LOCATION]
    assert not any(m.unexpected for m in result.mismatches)
    assert result.mismatches[0].expected == f'OctetString: "{wanted}"'
    assert result.mismatches[0].actual == f'OctetString: "{other}"'


async def test_read_only_community_is_refused_and_changes_nothing(snmp1: Any, rw: SnmpDriver) -> None:
    ro = make_driver(snmp1, credential(snmp1, "ro"))
    await ro.open()
    try:
        ch = change((SYS_CONTACT, "OctetString", token()))
        before = await ro.read(ro.scope_of(ch))
        with pytest.raises(DeviceRejectedError) as err:
            await ro.load(ch)
        assert err.value.info is not None
        assert (err.value.info.tag, err.value.info.path) == ("noAccess", SYS_CONTACT)
        assert "read-only" in str(err.value) and not err.value.retryable
        assert snmp1.credentials["snmp"]["community_ro"] not in str(err.value)
        assert await rw.read(before.scope) == before
    finally:
        await ro.close()


async def test_wrong_type_is_refused(rw: SnmpDriver) -> None:
    ch = change((SYS_CONTACT, "Integer", 42))
    before = await rw.read(rw.scope_of(ch))
    with pytest.raises(DeviceRejectedError) as err:
        await rw.load(ch)
    assert err.value.info is not None and (err.value.info.tag, err.value.info.path) == ("wrongType", SYS_CONTACT)
    assert await rw.read(before.scope) == before


async def test_not_writable_fails_the_whole_set(rw: SnmpDriver) -> None:
    """sysDescr is read-only: the SET is refused and the writable varbind in it is not applied."""
    ch = change((SYS_CONTACT, "OctetString", token()), (SYS_DESCR, "OctetString", "hacked"))
    before = await rw.read(rw.scope_of(ch))
    with pytest.raises(DeviceRejectedError) as err:
        await rw.load(ch)
    assert err.value.info is not None and (err.value.info.tag, err.value.info.path) == ("notWritable", SYS_DESCR)
    assert await rw.read(before.scope) == before


async def test_restore_refuses_an_object_that_did_not_exist(rw: SnmpDriver) -> None:
    ch = change((SYS_CONTACT, "OctetString", token()), ("1.3.6.1.2.1.1.77.0", "OctetString", "x"))
    before = await rw.read(rw.scope_of(ch))
    assert "1.3.6.1.2.1.1.77.0 = noSuchObject" in before.content
    with pytest.raises(DeviceRejectedError) as err:
        await rw.restore(before)
    assert err.value.info is not None and err.value.info.tag == "noSuchObject"
    assert err.value.info.path == "1.3.6.1.2.1.1.77.0"


async def test_stopped_agent_times_out_within_the_timeout_then_recovers(lab: Any, snmp1: Any) -> None:
    profile = load_profile(operation_s=1.5)
    driver = make_driver(snmp1, credential(snmp1, "rw"), profile)
    await driver.open()
    try:
        ch = change((SYS_CONTACT, "OctetString", token()))
        before = await driver.read(driver.scope_of(ch))
        with lab.faulted("snmp1", "stop", daemon="snmpd"):
            started = time.monotonic()
            with pytest.raises(DeviceTimeoutError) as err:
                await driver.load(ch)
            elapsed = time.monotonic() - started
            assert err.value.retryable
            assert elapsed < profile.timeouts.operation_s + 0.5, elapsed
        # after SIGCONT the agent answers again; the SET may or may not have been applied (it was
        # queued in the stopped agent's socket): restore and prove the device is as before
        await driver.restore(before)
        assert await driver.read(before.scope) == before
    finally:
        await driver.close()


async def test_open_failures(snmp1: Any) -> None:
    bad_key = dataclasses.replace(credential(snmp1, "v3"), auth_key=Secret("wrong-auth-key"))
    with pytest.raises(AuthenticationError):
        await make_driver(snmp1, bad_key).open()

    profile = load_profile(connect_s=1.0)
    wrong_community = Credential(ref="lab:wrong", community=Secret("not-the-community"))
    driver = make_driver(snmp1, wrong_community, profile)
    started = time.monotonic()
    with pytest.raises(ConnectError) as err:
        await driver.open()
    assert time.monotonic() - started < 1.5
    assert "not-the-community" not in str(err.value) and not driver.is_open


async def test_system_service_template_end_to_end(snmp1: Any, rw: SnmpDriver) -> None:
    """The shipped template renders varbinds the driver pushes; delete empties the leaves."""
    store = TemplateStore(root=ROOT / "templates")
    params = {"contact": f"noc: {token()} # 'q'", "location": token()}
    ch = store.render(service="system", platform="net-snmp", action=Action.CREATE, parameters=params,
                      device=snmp1.name, payload_format="varbinds")
    before = await rw.read(rw.scope_of(ch))
    await rw.load(ch)
    assert (await rw.verify(ch, before)).ok
    got = (await rw.read(before.scope)).content
    assert params["contact"] in got.replace('\\"', '"')
    delete = store.render(service="system", platform="net-snmp", action=Action.DELETE, parameters=params,
                          device=snmp1.name, payload_format="varbinds")
    created = await rw.read(rw.scope_of(delete))
    await rw.load(delete)
    assert (await rw.verify(delete, created)).ok
    lines = (await rw.read(before.scope)).content.splitlines()
    assert f'{SYS_CONTACT} = OctetString: ""' in lines and f'{SYS_LOCATION} = OctetString: ""' in lines
    await rw.restore(before)
    assert await rw.read(before.scope) == before

