"""Pure parts of the CLI driver, on FRR 8.4 output recorded from the lab's vtysh."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from drivers.base import Capabilities, Endpoint
from drivers.cli import CliDriver
from drivers.cli import config as cfg
from drivers import checks as svc_checks
from drivers.checks import records
from drivers.cli.checks import parse_output
from drivers.cli.driver import unsafe_lines
from drivers.cli.errors import rejected_info, rejection
from drivers.cli.settings import CliSettings, scrapli_definition
from gateway.errors import ConfigurationError
from gateway.inventory.profiles import parse_profile
from gateway.render.store import TemplateStore
from gateway.secrets import Credential, Secret

ROOT = Path(__file__).resolve().parents[2]
PROFILE = parse_profile(yaml.safe_load((ROOT / "device_profiles" / "frr.yaml").read_text()), source="frr.yaml",
                        expected_platform="frr")
SETTINGS = CliSettings.from_profile(PROFILE.settings, platform="frr")

RUNNING = """Building configuration...

Current configuration:
!
frr version 8.4.4
frr defaults traditional
hostname cli1
no ip forwarding
no ipv6 forwarding
service integrated-vtysh-config
!
ip route 192.0.2.0/24 198.51.100.1 7
ip route 203.0.113.0/24 Null0
!
interface eth0
 description uplink
exit
!
interface lo
 description loopback-orig
exit
!
ip prefix-list PL seq 5 permit 10.0.0.0/8 le 24
!
end"""

SHOW_ROUTE = """Routing entry for 203.0.113.0/24
  Known via "static", distance 1, metric 0, best
  Last update 00:00:00 ago
  * unreachable (blackhole), weight 1
"""
TTP = """<group name="route">
Routing entry for {{ prefix }}
  Known via "{{ protocol }}", distance {{ distance }}, metric {{ metric }}, {{ selected }}
  Known via "{{ protocol }}", distance {{ distance }}, metric {{ metric }}
</group>
"""


def tree(text: str):
    return cfg.parse(text, strip=SETTINGS.strip_lines)


# -- parsing and canonical text --------------------------------------------------------------
def test_clean_drops_headers_separators_and_terminators() -> None:
    cleaned = cfg.clean(RUNNING, SETTINGS.strip_lines)
    assert "Building" not in cleaned and "Current configuration" not in cleaned
    assert "!" not in cleaned and "\nexit\n" not in cleaned and not cleaned.rstrip().endswith("end")
    assert " description uplink\n" in cleaned


def test_canonical_keeps_device_order_and_structure() -> None:
    text = cfg.canonical(tree(RUNNING))
    assert text.splitlines()[:3] == ["frr version 8.4.4", "frr defaults traditional", "hostname cli1"]
    assert "interface lo\n description loopback-orig\n" in text
    # the same config with other separators canonicalises identically; a changed value does not
    assert cfg.canonical(tree(RUNNING.replace("!\n", ""))) == text
    assert cfg.canonical(tree(RUNNING.replace("loopback-orig", "other"))) != text


def test_push_lines_parents_and_terminators() -> None:
    lines = cfg.push_lines("interface lo\n description x\n shutdown\nexit\n! comment\nip route 1.0.0.0/8 Null0\n")
    assert [(p.text, p.parents) for p in lines] == [
        ("interface lo", ()), ("description x", ("interface lo",)), ("shutdown", ("interface lo",)),
        ("exit", ()), ("ip route 1.0.0.0/8 Null0", ()),
    ]


# -- generated undo --------------------------------------------------------------------------
def undo(current: str, snapshot: str) -> list[tuple[str, tuple[str, ...]]]:
    lines = cfg.undo_lines(tree(current), tree(snapshot), rules=SETTINGS.negation_rules())
    return [(p.text, p.parents) for p in lines]


def test_undo_of_added_route_and_removed_prefix_list_entry() -> None:
    current = RUNNING.replace("ip prefix-list PL seq 5 permit 10.0.0.0/8 le 24\n", "") + "\nip route 198.18.0.0/24 Null0\n"
    assert sorted(undo(current, RUNNING)) == sorted([
        ("no ip route 198.18.0.0/24 Null0", ()),
        ("ip prefix-list PL seq 5 permit 10.0.0.0/8 le 24", ()),
    ])


def test_undo_of_changed_description_sets_the_old_one() -> None:
    current = RUNNING.replace("loopback-orig", "changed")
    assert undo(current, RUNNING) == [("interface lo", ()), ("description loopback-orig", ("interface lo",)),
                                      ("exit", ())]


def test_undo_uses_the_profiles_negation_rules() -> None:
    # a new description: vtysh refuses `no description TEXT`, the profile rewrites it
    snapshot = RUNNING.replace("interface eth0\n description uplink\nexit\n", "")
    assert undo(RUNNING, snapshot) == [("interface eth0", ()), ("no description", ("interface eth0",)),
                                       ("exit", ())]
    # without the rules hier_config would negate the section, which FRR refuses for an active interface
    plain = cfg.undo_lines(tree(RUNNING), tree(snapshot))
    assert [p.text for p in plain] == ["no interface eth0"]


def test_undo_of_equal_configs_is_empty() -> None:
    assert undo(RUNNING, RUNNING.replace("!\n", "")) == []


def test_preview_future_and_diff() -> None:
    after = cfg.future(tree(RUNNING), "ip route 198.18.0.0/24 Null0\n")
    assert "ip route 198.18.0.0/24 Null0\n" in cfg.canonical(after)
    diff = cfg.unified_diff("a\nb\n", "a\nc\n")
    assert "-b\n" in diff and "+c\n" in diff


# -- rejected lines --------------------------------------------------------------------------
@pytest.mark.parametrize("output", [
    "% Unknown command: ip route bogus",
    "% Command incomplete: ip route 1.1.1.0/24",
    "% Refusing to remove a non-existent route",
    "% Configuration failed.\n\nError type: validation\nError description: only inactive interfaces can be deleted",
])
def test_rejection_detected_from_profile_patterns(output: str) -> None:
    message = rejection(output, SETTINGS.error_patterns)
    assert message is not None and message.startswith("%")


def test_rejection_keeps_the_explanation_lines() -> None:
    info = rejected_info(line="no interface eth0", parents=(), patterns=SETTINGS.error_patterns,
                         output="% Configuration failed.\n\nError type: validation\n"
                                "Error description: only inactive interfaces can be deleted")
    assert info is not None and info.line == "no interface eth0"
    assert "only inactive interfaces can be deleted" in info.message


def test_no_rejection_on_clean_output() -> None:
    assert rejection("", SETTINGS.error_patterns) is None
    assert rejection("Routing entry for 203.0.113.0/24", SETTINGS.error_patterns) is None
    info = rejected_info(line="description x", output="", parents=("interface lo",), patterns=SETTINGS.error_patterns)
    assert info is None


def test_rejected_info_names_line_parent_and_tag() -> None:
    info = rejected_info(line="descr x", output="% Unknown command: descr x", parents=("interface lo",),
                         patterns=SETTINGS.error_patterns)
    assert info is not None
    assert (info.line, info.path, info.tag, info.message) == ("descr x", "interface lo", "unknown-command",
                                                              "% Unknown command: descr x")


# -- TTP checks ------------------------------------------------------------------------------
def _cli_check(expect: dict, *, absent: bool = False) -> svc_checks.Check:
    import json as _json
    text = (f"command: x\nexpect: {_json.dumps(expect)}\nabsent: {'true' if absent else 'false'}\nttp: |\n"
            + "".join(f"  {line}\n" for line in TTP.splitlines()))
    check = svc_checks.parse(text, default=svc_checks.Wait(timeout_s=0, interval_s=0.5))
    assert check is not None
    return check


def test_ttp_check_on_recorded_show_ip_route() -> None:
    parsed = parse_output(SHOW_ROUTE, TTP)
    check = _cli_check({"prefix": "203.0.113.0/24", "protocol": "static"})
    assert svc_checks.evaluate(check, parsed).ok is True
    assert svc_checks.evaluate(_cli_check({"protocol": "connected"}), parsed).ok is False
    missing = parse_output("% Network not in table\n", TTP)
    assert svc_checks.evaluate(check, missing).ok is False
    absent = _cli_check({"prefix": "203.0.113.0/24", "protocol": "static"}, absent=True)
    assert svc_checks.evaluate(absent, missing).ok is True
    assert svc_checks.evaluate(absent, parsed).ok is False


def test_records_flattens_ttp_results() -> None:
    assert records([[{"route": [{"a": "1"}, {"a": "2"}]}]]) == [{"a": "1"}, {"a": "2"}]


def test_rendered_static_route_check_parses() -> None:
    store = TemplateStore(root=ROOT / "templates")
    cs = store.render(service="static-route", platform="frr", action="create",
                      parameters={"prefix": "203.0.113.0/24", "nexthop": "Null0"}, device="cli1", payload_format="lines")
    check = svc_checks.parse(cs.checks[0], default=svc_checks.Wait(timeout_s=2, interval_s=0.5))
    assert check is not None and isinstance(check.query, svc_checks.CliQuery)
    assert check.query.command == "show ip route 203.0.113.0/24" and not check.condition.absent
    assert svc_checks.evaluate(check, parse_output(SHOW_ROUTE, check.query.ttp)).ok is True
    with pytest.raises(svc_checks.CheckError):
        svc_checks.parse("command: [unterminated", default=check.wait)
    assert svc_checks.parse("  \n", default=check.wait) is None


# -- templates -------------------------------------------------------------------------------
@pytest.mark.parametrize(("service", "action", "params", "expected"), [
    ("static-route", "create", {"prefix": "203.0.113.0/24", "nexthop": "192.0.2.1", "distance": 7},
     "ip route 203.0.113.0/24 192.0.2.1 7\n"),
    ("static-route", "create", {"prefix": "203.0.113.0/24", "nexthop": "Null0", "distance": 1},
     "ip route 203.0.113.0/24 Null0\n"),
    ("static-route", "delete", {"prefix": "203.0.113.0/24", "nexthop": "blackhole"},
     "no ip route 203.0.113.0/24 blackhole\n"),
    ("prefix-list", "create", {"name": "PL-GW", "seq": 10, "rule": "deny", "prefix": "10.0.0.0/8", "ge": 16, "le": 24},
     "ip prefix-list PL-GW seq 10 deny 10.0.0.0/8 ge 16 le 24\n"),
    ("prefix-list", "delete", {"name": "PL-GW", "seq": 10}, "no ip prefix-list PL-GW seq 10\n"),
    ("interface", "create", {"name": "gw0", "description": "to core", "enabled": True,
                             "ipv4": {"address": "192.0.2.9", "prefix_length": 24}},
     "interface gw0\n description to core\n no shutdown\n ip address 192.0.2.9/24\nexit\n"),
    ("interface", "delete", {"name": "gw0"}, "interface gw0\n no description\nexit\n"),
])
def test_frr_templates_golden(service: str, action: str, params: dict, expected: str) -> None:
    store = TemplateStore(root=ROOT / "templates")
    assert store.render(service=service, platform="frr", action=action, parameters=params,
                        device="cli1", payload_format="lines").content == expected


@pytest.mark.parametrize("params", [
    {"prefix": "203.0.113.0/24\nip route 0.0.0.0/0 Null0", "nexthop": "Null0"},
    {"prefix": "203.0.113.0/24", "nexthop": "Null0\r"},
    {"prefix": "203.0.113.0/33", "nexthop": "Null0"},
    {"prefix": "203.0.113.0/24", "nexthop": "eth0"},
])
def test_bad_parameters_are_refused_before_any_push(params: dict) -> None:
    from gateway.errors import RenderError

    store = TemplateStore(root=ROOT / "templates")
    with pytest.raises(RenderError):
        store.render(service="static-route", platform="frr", action="create", parameters=params, device="cli1", payload_format="lines")


def test_driver_refuses_control_characters_itself() -> None:
    assert unsafe_lines(["ip route 1.0.0.0/8 Null0", "description a\x1bb"])[0].field == "content line 2"
    assert unsafe_lines(["description tab\tok"]) == []


# -- profile and settings --------------------------------------------------------------------
def test_profile_declares_no_native_capability() -> None:
    assert PROFILE.driver == "cli" and PROFILE.capabilities == Capabilities()
    endpoint = Endpoint(device="cli1", host="127.0.0.1", port=22, platform="frr",
                        credential=Credential(ref="r", username="u", password=Secret("p")))
    driver = CliDriver(endpoint=endpoint, profile=PROFILE)
    assert driver.capabilities.names() == () and driver.is_open is False


def test_settings_errors_name_the_field() -> None:
    with pytest.raises(ConfigurationError, match=r"settings.error_patterns\[0\]"):
        CliSettings.from_profile({"error_patterns": ["("]}, platform="x")
    with pytest.raises(ConfigurationError, match="settings.error_patterns"):
        CliSettings.from_profile({}, platform="x")
    with pytest.raises(ConfigurationError, match="settings.transport"):
        CliSettings.from_profile({"error_patterns": ["^%"], "transport": "telnet"}, platform="x")


def test_scrapli_definition_is_built_from_the_profile() -> None:
    definition = yaml.safe_load(scrapli_definition(SETTINGS))
    modes = {m["name"]: m for m in definition["modes"]}
    assert modes["privileged_exec"]["accessible_modes"][0]["instructions"][0]["send_input"]["input"] == "configure terminal"
    assert modes["configuration"]["accessible_modes"][0]["instructions"][0]["send_input"]["input"] == "end"
    assert "% Unknown command" in definition["failure_indicators"]
    assert "% Can't find" in definition["failure_indicators"]
