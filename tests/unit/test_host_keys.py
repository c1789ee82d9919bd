"""SSH host-key checking without a device: where the inventory names known_hosts, what a profile
may not say, how drivers refuse before connecting, and how refusals are translated and reported."""

from __future__ import annotations

import logging
from pathlib import Path

import asyncssh
import grpc
import pytest
import yaml

from drivers.base import Capabilities, DeviceProfile, Endpoint
from drivers.cli import CliDriver
from drivers.cli.session import _translate as cli_translate
from drivers.netconf import NetconfDriver
from drivers.netconf.driver import NetconfSettings, translate
from drivers.netconf.transport import HostKeyRefused
from gateway.api.status import map_error
from gateway.app import warn_unchecked_host_keys
from gateway.errors import ConfigurationError, HostKeyError, Phase
from gateway.inventory import Inventory, ProfileStore
from gateway.inventory.profiles import parse_profile
from gateway.secrets import Credential, Secret
from lab import inventory as lab_inventory
from lab.api import Node

ROOT = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIFjbBt10c7fxW1nV4exlkm7P0TQlT7nXiwlz1ykylXV"
OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFxlbsXLh4IVv10jCobNY7EqdUI9wMp/1ok3b5YEEG8i"
EP = "{platform: netconfd, port: 830, credentials: 'env:A'}"


def load(tmp_path: Path, text: str, name: str = "inventory.yaml") -> Inventory:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return Inventory.load(path)


# -- the inventory ------------------------------------------------------------------------------
def test_inventory_level_known_hosts_applies_to_every_device(tmp_path: Path) -> None:
    inv = load(tmp_path, f"known_hosts: /etc/agw/known_hosts\ndevices:\n  a: {{address: 10.0.0.1, endpoints: [{EP}]}}\n"
                         f"  b: {{address: 10.0.0.2, endpoints: [{EP}]}}\n")
    assert {d.known_hosts for d in inv.devices.values()} == {"/etc/agw/known_hosts"}
    assert all(d.host_key_check for d in inv.devices.values())
    assert inv.unchecked_host_keys() == []


def test_device_known_hosts_overrides_the_inventory_one(tmp_path: Path) -> None:
    inv = load(tmp_path, f"known_hosts: /etc/agw/known_hosts\ndevices:\n  a: {{address: 10.0.0.1, endpoints: [{EP}]}}\n"
                         f"  b: {{address: 10.0.0.2, known_hosts: /etc/agw/b_hosts, endpoints: [{EP}]}}\n"
                         "  c: {address: 10.0.0.3, platform: frr, port: 22, credentials: 'env:C', known_hosts: /k}\n")
    assert inv.device("a").known_hosts == "/etc/agw/known_hosts"
    assert inv.device("b").known_hosts == "/etc/agw/b_hosts"
    assert inv.device("c").known_hosts == "/k"  # the flat single-endpoint form keeps device fields


def test_relative_known_hosts_is_relative_to_the_inventory_file(tmp_path: Path) -> None:
    inv = load(tmp_path, f"known_hosts: keys/known_hosts\ndevices:\n  a: {{address: 10.0.0.1, endpoints: [{EP}]}}\n"
                         f"  b: {{address: 10.0.0.2, known_hosts: ../other_hosts, endpoints: [{EP}]}}\n",
               name="conf/inventory.yaml")
    assert inv.device("a").known_hosts == str(tmp_path / "conf" / "keys" / "known_hosts")
    assert inv.device("b").known_hosts == str(tmp_path / "other_hosts")


def test_host_key_check_false_is_a_device_setting(tmp_path: Path) -> None:
    inv = load(tmp_path, f"devices:\n  a: {{address: 10.0.0.1, endpoints: [{EP}]}}\n"
                         f"  b: {{address: 10.0.0.2, host_key_check: false, endpoints: [{EP}]}}\n"
                         f"  c: {{address: 10.0.0.3, host_key_check: true, endpoints: [{EP}]}}\n")
    assert [d.host_key_check for d in inv.devices.values()] == [True, False, True]
    assert inv.device("a").known_hosts == ""  # nothing named: refused when used (see below)
    assert inv.unchecked_host_keys() == ["b"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"known_hosts: 5\ndevices:\n  a: {{address: 10.0.0.1, endpoints: [{EP}]}}\n", "known_hosts: must be the path"),
        (f"known_hosts: ''\ndevices:\n  a: {{address: 10.0.0.1, endpoints: [{EP}]}}\n", "known_hosts: must be the path"),
        (f"known_hosts: [a, b]\ndevices:\n  a: {{address: 10.0.0.1, endpoints: [{EP}]}}\n", "known_hosts: must be the path"),
        (f"devices:\n  a: {{address: 10.0.0.1, known_hosts: 7, endpoints: [{EP}]}}\n", "device a: known_hosts: must be"),
        (f"devices:\n  a: {{address: 10.0.0.1, host_key_check: 'no', endpoints: [{EP}]}}\n",
         "device a: host_key_check: must be true or false"),
        (f"devices:\n  a: {{address: 10.0.0.1, host_key_check: 0, endpoints: [{EP}]}}\n",
         "device a: host_key_check: must be true or false"),
        (f"devices:\n  a: {{address: 10.0.0.1, host_key_check: false, known_hosts: /k, endpoints: [{EP}]}}\n",
         "device a: known_hosts and host_key_check: false together"),
        (f"host_key_check: false\ndevices:\n  a: {{address: 10.0.0.1, endpoints: [{EP}]}}\n",
         r"unknown top-level key\(s\) host_key_check"),
    ],
)
def test_bad_host_key_settings_are_refused_naming_the_file(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected) as ei:
        load(tmp_path, text)
    assert str(tmp_path / "inventory.yaml") in str(ei.value)


def test_a_relative_path_without_an_inventory_file_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="relative path"):
        Inventory.from_mapping({"known_hosts": "kh", "devices": {}}, source="<test>")


# -- the profile never says anything about host keys -----------------------------------------------
@pytest.mark.parametrize(("section", "key", "value"), [("settings", "host_key_check", False),
                                                       ("settings", "known_hosts", "/k"),
                                                       ("quirks", "host_key_check", False)])
def test_a_profile_that_sets_host_keys_is_refused_naming_the_file(tmp_path: Path, section: str, key: str,
                                                                    value: object) -> None:
    data = yaml.safe_load((ROOT / "device_profiles" / "netconfd.yaml").read_text())
    data[section][key] = value
    (tmp_path / "netconfd.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigurationError, match=rf"{section}\.{key}: SSH host keys are not a device-profile setting") as ei:
        ProfileStore.load(tmp_path)
    assert str(tmp_path / "netconfd.yaml") in str(ei.value) and "inventory" in str(ei.value)


def test_netconf_settings_refuse_host_keys_naming_the_profile_file() -> None:
    prof = DeviceProfile(platform="netconfd", driver="netconf", capabilities=Capabilities(), source="/p/netconfd.yaml",
                         settings={"list_keys": {}, "host_key_check": False})
    with pytest.raises(ConfigurationError, match=r"/p/netconfd.yaml: settings.host_key_check is not a device-profile"):
        NetconfSettings.from_profile(prof)
    shipped = parse_profile(yaml.safe_load((ROOT / "device_profiles" / "netconfd.yaml").read_text()), source="x")
    assert not {"host_key_check", "known_hosts"} & set(shipped.settings)
    assert not hasattr(NetconfSettings.from_profile(shipped), "host_key_check")


# -- drivers refuse a device with no known_hosts before connecting --------------------------------
def endpoint(**kw: object) -> Endpoint:
    return Endpoint(device="d1", host="127.0.0.1", port=1, platform="x",
                    credential=Credential(ref="r", username="u", password=Secret("pw")), **kw)  # type: ignore[arg-type]


def test_endpoint_checks_host_keys_by_default() -> None:
    e = endpoint()
    assert e.host_key_check is True and e.known_hosts == ""


@pytest.mark.parametrize("driver", ["netconf", "cli"])
async def test_no_known_hosts_is_refused_before_connecting(driver: str) -> None:
    store = ProfileStore.load(ROOT / "device_profiles")
    cls, profile = (NetconfDriver, store.get("netconfd")) if driver == "netconf" else (CliDriver, store.get("frr"))
    d = cls(endpoint=endpoint(), profile=profile)
    with pytest.raises(ConfigurationError) as ei:
        await d.open()  # port 1: had it connected, this would be a ConnectError
    msg = str(ei.value)
    assert "device 'd1'" in msg and "`known_hosts: /path/to/known_hosts` to the inventory" in msg
    assert "`host_key_check: false` on device d1" in msg and not ei.value.retryable
    d = cls(endpoint=endpoint(known_hosts="/nonexistent/known_hosts"), profile=profile)
    with pytest.raises(ConfigurationError, match="known_hosts file /nonexistent/known_hosts does not exist"):
        await d.open()


# -- the error: message, retryability, translation, gRPC status ------------------------------------
def test_host_key_error_names_device_address_problem_fingerprint_and_file() -> None:
    err = HostKeyError.refused(device="nc1", host="198.18.0.2", port=830, changed=True,
                               fingerprint="ssh-ed25519 SHA256:abc", known_hosts="/run/kh")
    text = str(err)
    for part in ("device nc1", "198.18.0.2:830", "host key changed", "ssh-ed25519 SHA256:abc", "/run/kh",
                 "[198.18.0.2]:830", "no credentials were sent"):
        assert part in text
    assert not err.retryable and err.phase is Phase.CONNECT and err.problem == HostKeyError.CHANGED
    unknown = HostKeyError.refused(device="cli1", host="198.18.0.6", port=22, changed=False, fingerprint="",
                                   known_hosts="/run/kh")
    assert "unknown host key" in unknown.message and "holds no key for 198.18.0.6 " in unknown.message
    assert HostKeyError("x", retryable=True).retryable is False  # never retryable
    assert map_error(err).code == grpc.StatusCode.FAILED_PRECONDITION


def test_netconf_translates_a_refused_key() -> None:
    refused = HostKeyRefused("Host key is not trusted", host="h", port=830, known_hosts="/kh",
                             offered="ssh-ed25519 SHA256:x", changed=False)
    err = translate(refused, device="nc1", phase=Phase.CONNECT)
    assert isinstance(err, HostKeyError) and err.problem == HostKeyError.UNKNOWN and not err.retryable
    assert err.fingerprint == "ssh-ed25519 SHA256:x" and err.known_hosts == "/kh"
    assert isinstance(translate(asyncssh.HostKeyNotVerifiable("revoked"), device="nc1", phase=Phase.CONNECT),
                      HostKeyError)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Transport: ssh2.Transport initKnownHost: known host check mismatch", HostKeyError.CHANGED),
        ("Transport: ssh2.Transport initKnownHost: known host check not found", HostKeyError.UNKNOWN),
        ("Transport: ssh2.Transport initKnownHost: failed to read known hosts file", ""),
    ],
)
def test_cli_translates_libscrapli_host_key_refusals(text: str, problem: str) -> None:
    err = cli_translate(RuntimeError(text), device="cli1", phase=Phase.CONNECT, what="connect", timeout_s=5,
                        host="198.18.0.6", port=22, known_hosts="/kh", offered="ssh-ed25519 SHA256:y")
    assert isinstance(err, HostKeyError) and err.problem == problem and not err.retryable
    assert "/kh" in err.message


def test_cli_translates_openssh_refusal_from_the_file(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"198.18.0.6 {KEY}\n")
    exc = RuntimeError("Session: session.Session authenticate: open failed, error: 'host key verification failed'")
    known = cli_translate(exc, device="cli1", phase=Phase.CONNECT, what="connect", timeout_s=5, host="198.18.0.6",
                          port=22, known_hosts=str(kh))
    other = cli_translate(exc, device="cli1", phase=Phase.CONNECT, what="connect", timeout_s=5, host="198.18.0.7",
                          port=22, known_hosts=str(kh))
    assert (known.problem, other.problem) == (HostKeyError.CHANGED, HostKeyError.UNKNOWN)  # type: ignore[attr-defined]
    # without a host-key check, the same words are not a host-key error
    assert not isinstance(cli_translate(exc, device="cli1", phase=Phase.CONNECT, what="c", timeout_s=5), HostKeyError)


# -- the warning at start, the engine's Endpoint, the lab's files ------------------------------------
def test_serve_warns_about_every_device_without_a_host_key_check(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    inv = load(tmp_path, f"known_hosts: /k\ndevices:\n  a: {{address: 10.0.0.1, endpoints: [{EP}]}}\n"
                         f"  b: {{address: 10.0.0.2, host_key_check: false, endpoints: [{EP}]}}\n"
                         f"  c: {{address: 10.0.0.3, host_key_check: false, endpoints: [{EP}]}}\n")
    with caplog.at_level(logging.WARNING, logger="gateway.app"):
        assert warn_unchecked_host_keys(inv) == ["b", "c"]
    (record,) = [r for r in caplog.records if r.name == "gateway.app"]
    assert record.levelno == logging.WARNING and "b, c" in record.getMessage() and "OFF" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.app"):
        warn_unchecked_host_keys(load(tmp_path, f"devices:\n  a: {{address: 10.0.0.1, endpoints: [{EP}]}}\n"))
    assert not caplog.records


async def test_the_session_pool_hands_the_host_key_source_to_the_driver() -> None:
    from tests.unit.test_devices import PROFILE, pool

    p = pool()
    drv = await p.get(device="d1", platform="mem", address="127.0.0.1", port=1, credentials_ref="env:X",
                      profile=PROFILE, known_hosts="/k", host_key_check=True)
    assert (drv.endpoint.known_hosts, drv.endpoint.host_key_check) == ("/k", True)
    drv = await p.get(device="d2", platform="mem", address="127.0.0.1", port=1, credentials_ref="env:X",
                      profile=PROFILE, host_key_check=False)
    assert drv.endpoint.host_key_check is False
    await p.close_all()


def test_lab_known_hosts_and_inventory(tmp_path: Path) -> None:
    nodes = [Node(name="nc1", kind="netconf", address="198.18.0.2", namespace="n", ports={"netconf": 830}, credentials={}),
             Node(name="cli1", kind="cli", address="198.18.0.6", namespace="n", ports={"cli": 22}, credentials={}),
             Node(name="s1", kind="snmp", address="198.18.0.10", namespace="n", ports={"snmp": 161}, credentials={}),
             Node(name="r1", kind="router", address="198.18.0.14", namespace="n",
                  ports={"netconf": 830, "cli": 22, "snmp": 161}, credentials={})]
    text = lab_inventory.known_hosts("basic", nodes, {"nc1": KEY + " agw-lab-basic-nc1", "cli1": OTHER, "r1": KEY})
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [f"[198.18.0.2]:830 {KEY}", f"[198.18.0.6]:22 {OTHER}", f"198.18.0.6 {OTHER}",
                     f"[198.18.0.14]:830 {KEY}", f"[198.18.0.14]:22 {KEY}", f"198.18.0.14 {KEY}"]
    kh = tmp_path / "known_hosts"
    kh.write_text(text)
    trusted, *_ = asyncssh.match_known_hosts(str(kh), "198.18.0.2", "198.18.0.2", 830)
    assert {tuple(k.export_public_key().decode().split()[:2]) for k in trusted} == {tuple(KEY.split())}
    trusted, *_ = asyncssh.match_known_hosts(str(kh), "198.18.0.6", "198.18.0.6", None)  # port 22
    assert {tuple(k.export_public_key().decode().split()[:2]) for k in trusted} == {tuple(OTHER.split())}
    inv_text = lab_inventory.inventory_yaml("basic", nodes, "/run/agw-lab/basic/credentials.yaml", str(kh))
    path = tmp_path / "inventory.yaml"
    path.write_text(inv_text)
    inv = Inventory.load(path)
    assert {d.known_hosts for d in inv.devices.values()} == {str(kh)}
    assert all(d.host_key_check for d in inv.devices.values())
