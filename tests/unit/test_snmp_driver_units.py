"""SNMP driver pieces that need no device: error translation, auth choice, settings, profile,
template, registry, and the checks a driver makes before it sends anything."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jinja2
import pytest
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pysnmp.proto import errind

from drivers.base import Capabilities, ChangeSet, Endpoint, Snapshot
from drivers.registry import drivers
from drivers.snmp import SnmpDriver, SnmpSettings
from drivers.snmp.errors import ERROR_STATUS, translate
from drivers.snmp.session import build_auth
from drivers.snmp.varbinds import parse_varbinds
from gateway.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    DeviceRejectedError,
    DeviceTimeoutError,
    InputError,
    Phase,
    StateError,
)
from gateway.inventory.profiles import parse_profile
from gateway.model import Action
from gateway.render import TemplateStore
from gateway.secrets import Credential, Secret

ROOT = Path(__file__).resolve().parents[2]
PROFILE_PATH = ROOT / "device_profiles" / "net-snmp.yaml"
OIDS = ("1.3.6.1.2.1.1.4.0", "1.3.6.1.2.1.1.1.0")


# -- error translation ------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["noAccess", "notWritable", "wrongType", "wrongValue", "wrongLength",
                                    "inconsistentValue", "authorizationError", "readOnly", "noCreation"])
def test_error_status_becomes_device_rejected_with_tag_and_oid(status: str) -> None:
    err = translate(device="d1", phase=Phase.PUSH, operation="SET", timeout_s=3,
                    status=ERROR_STATUS.index(status), index=2, oids=OIDS)
    assert isinstance(err, DeviceRejectedError) and not err.retryable
    assert err.info is not None and (err.info.tag, err.info.path) == (status, OIDS[1])
    assert err.device == "d1" and err.phase is Phase.PUSH
    assert f"{status} at {OIDS[1]}" in str(err)


def test_error_index_out_of_range_gives_no_path() -> None:
    err = translate(device="d1", phase=Phase.PUSH, operation="SET", timeout_s=3, status=5, index=0, oids=OIDS)
    assert err.info is not None and (err.info.tag, err.info.path) == ("genErr", "")
    odd = translate(device="d1", phase=Phase.PUSH, operation="SET", timeout_s=3, status=99, index=9, oids=OIDS)
    assert odd.info is not None and odd.info.tag == "errorStatus(99)"


def test_timeouts_and_transport_errors() -> None:
    timeout = translate(device="d1", phase=Phase.VERIFY, operation="GET", timeout_s=2.5,
                        indication=errind.RequestTimedOut("No SNMP response received before timeout"))
    assert isinstance(timeout, DeviceTimeoutError) and timeout.retryable and "2.5 s" in str(timeout)
    at_open = translate(device="d1", phase=Phase.CONNECT, operation="probe GET", timeout_s=1,
                        indication=errind.RequestTimedOut("x"))
    assert type(at_open) is ConnectError and at_open.retryable
    hard = translate(device="d1", phase=Phase.PUSH, operation="SET", timeout_s=3, exc=TimeoutError())
    assert isinstance(hard, DeviceTimeoutError)
    sock = translate(device="d1", phase=Phase.PUSH, operation="SET", timeout_s=3,
                     exc=OSError(101, "Network is unreachable"))
    assert type(sock) is ConnectError and "Network is unreachable" in str(sock)
    other = translate(device="d1", phase=Phase.PUSH, operation="SET", timeout_s=3,
                      indication=errind.NotInTimeWindow("Time window mismatch"))
    assert type(other) is ConnectError


@pytest.mark.parametrize("indication", [errind.UnknownUserName("Unknown USM user"),
                                        errind.WrongDigest("Wrong SNMP PDU digest"),
                                        errind.DecryptionError("Decryption error")])
def test_usm_failures_are_authentication_errors(indication: object) -> None:
    err = translate(device="d1", phase=Phase.CONNECT, operation="probe GET", timeout_s=1, indication=indication)
    assert isinstance(err, AuthenticationError) and not err.retryable


# -- auth choice --------------------------------------------------------------------------------

V3 = Credential(ref="c", username="u1", auth_key=Secret("authkey123"), priv_key=Secret("privkey123"),
                auth_protocol="SHA256", priv_protocol="AES256", community=Secret("comm"))


def test_v3_when_the_credential_has_keys_unless_forced_to_v2c() -> None:
    auth, key, mode = build_auth(V3, "v3")
    assert mode == "v3" and key.startswith("v3:") and auth.userName == "u1"
    assert "authkey123" not in key and "privkey123" not in key
    _, other_key, _ = build_auth(dataclasses.replace(V3, priv_key=Secret("another-key")), "v3")
    assert other_key != key, "different v3 keys must not share a pysnmp engine"
    assert build_auth(V3, "v2c")[1:] == ("v2c", "v2c")
    assert build_auth(Credential(ref="c", community=Secret("x")), "v3")[2] == "v2c"
    no_priv = build_auth(dataclasses.replace(V3, priv_key=None), "v3")[0]
    assert no_priv.security_level == "authNoPriv"


@pytest.mark.parametrize(("cred", "security", "reason"), [
    (Credential(ref="c"), "v3", "needs a community"),
    (dataclasses.replace(V3, auth_protocol="SHA3"), "v3", "unknown SNMP auth_protocol 'SHA3'"),
    (dataclasses.replace(V3, priv_protocol="BLOWFISH"), "v3", "unknown SNMP priv_protocol 'BLOWFISH'"),
    (V3, "v1", "settings.security must be one of v2c, v3"),
])
def test_bad_auth_configuration(cred: Credential, security: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        build_auth(cred, security)


@pytest.mark.parametrize(("settings", "reason"), [({"security": "v1"}, "settings.security"),
                                                  ({"retries": -1}, "settings.retries"),
                                                  ({"retries": True}, "settings.retries")])
def test_bad_settings(settings: dict[str, object], reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        SnmpSettings.from_profile(settings, platform="p")


# -- profile, registry, template ------------------------------------------------------------------

def test_profile_file_schema_and_capabilities() -> None:
    raw = yaml.safe_load(PROFILE_PATH.read_text())
    assert set(raw) == {"platform", "description", "driver", "capabilities", "timeouts", "confirm_timeout_s",
                        "quirks", "settings"}
    assert raw["platform"] == "net-snmp" and raw["driver"] == "snmp" and raw["quirks"] == {}
    assert {k for k, v in raw["capabilities"].items() if v} == {"atomic_push"}
    assert set(raw["timeouts"]) == {"connect_s", "operation_s", "commit_s"}
    assert raw["settings"] == {"retries": 1, "security": "v3", "scope_groups": [
        ["1.3.6.1.2.1.1.4.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.6.0"]]}
    profile = parse_profile(raw, source=str(PROFILE_PATH), expected_platform="net-snmp")
    assert SnmpDriver.capabilities_for(profile) == Capabilities(atomic_push=True)
    assert drivers.get("snmp") is SnmpDriver


def _env() -> jinja2.Environment:
    return ImmutableSandboxedEnvironment(loader=jinja2.FileSystemLoader(ROOT / "templates"),
                                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                         keep_trailing_newline=True)


def test_template_renders_only_given_parameters_safely_quoted() -> None:
    out = _env().get_template("system/net-snmp.j2").render(
        action="create", device="snmp1", name='core-1: "edge" #1', location="rack 'B'")
    vbs = parse_varbinds(out)
    assert [(vb.oid, vb.value) for vb in vbs] == [("1.3.6.1.2.1.1.5.0", b'core-1: "edge" #1'),
                                                  ("1.3.6.1.2.1.1.6.0", b"rack 'B'")]


def test_template_delete_empties_the_given_leaves() -> None:
    out = _env().get_template("system/net-snmp.j2").render(action="delete", device="snmp1", contact=None,
                                                           name="x", location="y")
    assert [(vb.oid, vb.value) for vb in parse_varbinds(out)] == [
        ("1.3.6.1.2.1.1.4.0", b""), ("1.3.6.1.2.1.1.5.0", b""), ("1.3.6.1.2.1.1.6.0", b"")]


def test_template_through_the_gateway_renderer() -> None:
    store = TemplateStore(root=ROOT / "templates")
    cs = store.render(service="system", platform="net-snmp", action=Action.MODIFY,
                      parameters={"contact": "noc@example.net"}, device="snmp1", payload_format="varbinds")
    assert cs.content == (
        "# system service, net-snmp: sysContact, sysName, sysLocation (SNMPv2-MIB::system)\n"
        '- {"oid": "1.3.6.1.2.1.1.4.0", "type": "OctetString", "value": "noc@example.net"}\n')


# -- driver checks before any I/O -------------------------------------------------------------------

def _driver() -> SnmpDriver:
    profile = parse_profile(yaml.safe_load(PROFILE_PATH.read_text()), source="t", expected_platform="net-snmp")
    endpoint = Endpoint(device="d1", host="127.0.0.1", port=161, platform="net-snmp",
                        credential=Credential(ref="c", community=Secret("x")))
    return SnmpDriver(endpoint=endpoint, profile=profile)


async def test_operations_before_open_and_bad_input() -> None:
    driver = _driver()
    ch = ChangeSet(service="system", action=Action.MODIFY,
                   content='- {"oid": "1.3.6.1.2.1.1.4.0", "type": "OctetString", "value": "x"}')
    assert not driver.is_open
    with pytest.raises(StateError, match="not open"):
        await driver.load(ch)
    bad = ChangeSet(service="system", action=Action.MODIFY,
                    content='- {"oid": "1.3.6.1.2.1.1.4.0", "type": "OctetString", "value": 5}')
    with pytest.raises(InputError) as err:
        await driver.load(bad)
    assert err.value.violations[0].field == "system.content[0].value" and err.value.device == "d1"
    with pytest.raises(StateError, match="bad SNMP snapshot"):
        await driver.restore(Snapshot(content="garbage", scope="1.3.6.1.2.1.1.4.0"))
    with pytest.raises(DeviceRejectedError, match="cannot restore 1.3.6.1.2.1.1.77.0"):
        await driver.restore(Snapshot(content="1.3.6.1.2.1.1.77.0 = noSuchInstance", scope="1.3.6.1.2.1.1.77.0"))
    preview = await driver.preview(ch, Snapshot(content='1.3.6.1.2.1.1.4.0 = OctetString: "x"',
                                                scope="1.3.6.1.2.1.1.4.0"))
    assert preview == "", "no change, no diff"


async def test_bad_transport_address_is_a_connect_error_and_sends_nothing() -> None:
    driver = _driver()
    driver = SnmpDriver(endpoint=dataclasses.replace(driver.endpoint, host="::1"), profile=driver.profile)
    with pytest.raises(ConnectError, match="Bad IPv4/UDP transport address") as err:
        await driver.open()
    assert err.value.phase is Phase.CONNECT and err.value.retryable and not driver.is_open
