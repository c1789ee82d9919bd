"""Exact CLI verification: the running configuration must be the snapshot with the lines applied (pure)."""

from __future__ import annotations

import pytest

from drivers.cli import config as cfg
from drivers.cli import exact
from tests.unit.test_cli_driver import RUNNING, SETTINGS, tree

BEFORE = cfg.canonical(tree(RUNNING))
RULES = SETTINGS.replace_rules


def check(rendered: str, after_text: str, **kw: object) -> tuple[int, dict[str, tuple[str | None, str | None, bool]]]:
    want = exact.expected(BEFORE, rendered, rules=RULES, keep_empty_sections=SETTINGS.keep_empty_sections)
    checked, mismatches = exact.compare(want, after_text, rules=RULES, **kw)  # type: ignore[arg-type]
    return checked, {m.path: (m.expected, m.actual, m.unexpected) for m in mismatches}


def after(*edits: tuple[str, str]) -> str:
    text = BEFORE
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    return text


def test_the_frr_profile_declares_its_replace_rules() -> None:
    assert RULES and SETTINGS.keep_empty_sections is False


def test_added_lines_under_their_parents_verify() -> None:
    checked, got = check("interface lo\n ip address 10.9.9.1/32\nexit\nip route 198.51.100.0/24 Null0\n",
                         after((" description loopback-orig\n", " description loopback-orig\n ip address 10.9.9.1/32\n"),
                               ("ip route 203.0.113.0/24 Null0\n", "ip route 203.0.113.0/24 Null0\nip route 198.51.100.0/24 Null0\n")))
    assert got == {} and checked == len(BEFORE.splitlines()) + 2


def test_a_line_that_replaces_its_sibling() -> None:
    assert check("interface lo\n description new\nexit\n", after(("loopback-orig", "new")))[1] == {}
    assert check("ip route 192.0.2.0/24 198.51.100.1 250\n", after((" 198.51.100.1 7", " 198.51.100.1 250")))[1] == {}
    assert check("ip prefix-list PL seq 5 deny 10.0.0.0/8\n", after(("seq 5 permit 10.0.0.0/8 le 24", "seq 5 deny 10.0.0.0/8")))[1] == {}
    # the device kept the old description next to the new one: both differ, and both are named by the change
    _, got = check("interface lo\n description new\nexit\n", after((" description loopback-orig\n",
                                                                     " description loopback-orig\n description new\n")))
    assert got == {"interface lo > description loopback-orig": (None, "description loopback-orig", False)}


def test_negation_removes_the_line_and_its_longer_forms() -> None:
    assert check("interface lo\n no description\nexit\n", after(("interface lo\n description loopback-orig\n", "")))[1] == {}
    assert check("no ip route 192.0.2.0/24 198.51.100.1\n", after(("ip route 192.0.2.0/24 198.51.100.1 7\n", "")))[1] == {}
    _, got = check("no ip prefix-list PL seq 5\n", BEFORE)  # not applied
    assert got == {"ip prefix-list PL seq 5 permit 10.0.0.0/8 le 24": (None, "ip prefix-list PL seq 5 permit 10.0.0.0/8 le 24", False)}


def test_an_emptied_section_is_not_expected_where_the_device_hides_it() -> None:
    gone = after(("interface lo\n description loopback-orig\n", ""))
    want_hidden = exact.expected(BEFORE, "interface lo\n no description\nexit\n", rules=RULES, keep_empty_sections=False)
    want_kept = exact.expected(BEFORE, "interface lo\n no description\nexit\n", rules=RULES, keep_empty_sections=True)
    assert exact.compare(want_hidden, gone, rules=RULES)[1] == []
    assert [m.path for m in exact.compare(want_kept, gone, rules=RULES)[1]] == ["interface lo"]
    # a section opened and closed at once holds nothing: FRR does not show it
    assert check("interface lo11\nexit\n", BEFORE)[1] == {}


def test_a_line_the_change_did_not_name_is_unexpected() -> None:
    rendered = "interface lo\n description new\nexit\n"
    _, got = check(rendered, after(("loopback-orig", "new"), ("description uplink", "description hijacked")))
    assert got == {"interface eth0 > description hijacked": (None, "description hijacked", True),
                   "interface eth0 > description uplink": ("description uplink", None, True)}
    _, got = check(rendered, after(("loopback-orig", "new"), ("hostname cli1\n", "hostname cli1\nip route 0.0.0.0/0 Null0\n")))
    assert got == {"ip route 0.0.0.0/0 Null0": (None, "ip route 0.0.0.0/0 Null0", True)}
    _, got = check(rendered, after(("loopback-orig", "new"), ("interface lo\n", "interface lo\n ip address 1.1.1.1/32\n")))
    assert got == {"interface lo > ip address 1.1.1.1/32": (None, "ip address 1.1.1.1/32", True)}


@pytest.mark.parametrize(("pattern", "left"), [
    (r"^hostname ", {"ip route 0.0.0.0/0 Null0"}),
    (r"^ip route 0\.0\.0\.0/0 ", {"hostname cli1", "hostname renamed"}),
])
def test_device_managed_lines_are_ignored(pattern: str, left: set[str]) -> None:
    import re

    text = after(("hostname cli1\n", "hostname renamed\nip route 0.0.0.0/0 Null0\n"),
                 ("ip route 203.0.113.0/24 Null0\n", "ip route 203.0.113.0/24 Null0\nip route 198.51.100.0/24 Null0\n"))
    _, got = check("ip route 198.51.100.0/24 Null0\n", text, managed=(re.compile(pattern),))
    assert set(got) == left
