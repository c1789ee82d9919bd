"""Exact NETCONF verification: the read-back must be the snapshot with the edit applied (pure)."""

from __future__ import annotations

import pytest

from drivers.netconf import exact as e
from drivers.netconf import xmlconfig as x
from tests.unit.test_netconf_xmlconfig import GE0, IF, IP, LK, NC, cfg, data, iface

IANA = "urn:ietf:params:xml:ns:yang:iana-if-type"
IFP = "/ietf-interfaces:interfaces/interface"


def snapshot(text: str) -> str:
    """A snapshot as the driver stores it: canonical text of the scope read."""
    return x.canonical(data(text), LK)


def verify(before: str, edit: str, after: str, *, managed: tuple[str, ...] = ()) -> tuple[int, dict]:
    expected = e.expected_state(snapshot(before), x.edit_payload(x.parse_config(edit)), LK)
    checked, mismatches = e.compare(expected, e.state_of(*x.index(data(after), LK)), managed=managed)
    return checked, {m.path: (m.expected, m.actual, m.unexpected) for m in mismatches}


EMPTY = f'<config xmlns="{NC}"/>'


def test_create_verifies_and_is_prefix_and_order_insensitive() -> None:
    after = cfg(iface("ge0", f'<ipv4 xmlns="{IP}"><address><prefix-length>24</prefix-length><ip>10.0.0.1</ip></address></ipv4>'
                      f'<type xmlns:ift="{IANA}">ift:ethernetCsmacd</type><enabled>true</enabled>'
                      "<description>uplink</description>"))
    checked, got = verify(EMPTY, cfg(GE0), after)
    assert got == {} and checked == 6


def test_a_leaf_the_edit_did_not_name_is_unexpected() -> None:
    before = cfg(iface("ge0", "<description>old</description><enabled>true</enabled>"))
    edit = cfg(iface("ge0", "<description>new</description>"))
    checked, got = verify(before, edit, cfg(iface("ge0", "<description>new</description><enabled>false</enabled>")))
    assert got == {f"{IFP}[name='ge0']/enabled": ("true", "false", True)}
    # ... also a leaf that appeared, and one that vanished
    _, got = verify(before, edit, cfg(iface("ge0", "<description>new</description><mtu>9000</mtu>")))
    assert got == {f"{IFP}[name='ge0']/enabled": ("true", None, True), f"{IFP}[name='ge0']/mtu": (None, "9000", True)}


def test_a_named_leaf_not_applied_is_a_plain_mismatch() -> None:
    before = cfg(iface("ge0", "<description>old</description>"))
    _, got = verify(before, cfg(iface("ge0", "<description>new</description>")), before)
    assert got == {f"{IFP}[name='ge0']/description": ("new", "old", False)}


def test_another_entry_in_the_scope_is_unexpected() -> None:
    edit = cfg(iface("ge0", "<description>d</description>"), iface("ge1", op="delete"))
    before = cfg(iface("ge1", "<description>x</description>"))
    _, got = verify(before, edit, cfg(iface("ge0", "<description>d</description>"), iface("ge1", "<description>x</description>")))
    assert got == {f"{IFP}[name='ge1']/description": (None, "x", False), f"{IFP}[name='ge1']/name": (None, "ge1", False)}
    _, got = verify(before, edit, cfg(iface("ge0", "<description>d</description>"), iface("ge9", "<description>i</description>")))
    assert {p: u for p, (_, _, u) in got.items()} == {f"{IFP}[name='ge9']/description": True, f"{IFP}[name='ge9']/name": True}


def test_delete_remove_and_replace() -> None:
    before = cfg(iface("ge0", "<description>a</description><enabled>true</enabled>"), system="<contact>c</contact><location>l</location>")
    edit = cfg(f'<interface xmlns:nc="{NC}" nc:operation="replace"><name>ge0</name><description>b</description></interface>',
               system=f'<contact xmlns:nc="{NC}" nc:operation="remove"/>')
    checked, got = verify(before, edit, cfg(iface("ge0", "<description>b</description>"), system="<location>l</location>"))
    assert got == {} and checked == 5
    # replace drops what the new subtree lacks: a leftover `enabled` is a (named) mismatch
    _, got = verify(before, edit, cfg(iface("ge0", "<description>b</description><enabled>true</enabled>"),
                                      system="<location>l</location>"))
    assert got == {f"{IFP}[name='ge0']/enabled": (None, "true", False)}


def test_leaf_lists_merge_by_value() -> None:
    sys_ns = "urn:ietf:params:xml:ns:yang:ietf-system"
    before = cfg(system="<dns-resolver><search>a.example</search><search>b.example</search></dns-resolver>")
    edit = cfg(system="<dns-resolver><search>c.example</search></dns-resolver>")
    after = cfg(system="<dns-resolver><search>b.example</search><search>c.example</search><search>a.example</search></dns-resolver>")
    assert verify(before, edit, after)[1] == {}
    assert sys_ns  # the namespace the paths below use
    _, got = verify(before, edit, cfg(system="<dns-resolver><search>c.example</search></dns-resolver>"))
    assert got == {"/ietf-system:system/dns-resolver/search": ("a.example, b.example, c.example", "c.example", False)}


def test_device_managed_paths_are_ignored() -> None:
    before = cfg(iface("ge0", "<description>old</description>"))
    edit = cfg(iface("ge0", "<description>new</description>"))
    after = cfg(iface("ge0", "<description>new</description><oper-status>up</oper-status>"))
    assert verify(before, edit, after)[1] != {}
    assert verify(before, edit, after, managed=(f"{IFP}/oper-status",))[1] == {}
    assert verify(before, edit, after, managed=("/ietf-interfaces:interfaces/*/oper-*",))[1] == {}
    assert verify(before, edit, after, managed=(f"{IFP}",))[1] == {}  # a whole subtree


def test_nothing_read_back_after_a_create_names_every_leaf() -> None:
    expected = e.expected_state(snapshot(EMPTY), x.edit_payload(x.parse_config(cfg(GE0))), LK)
    checked, mismatches = e.compare(expected, e.state_of(*x.index(None, LK)))
    assert checked == 6 and len(mismatches) == 6 and not any(m.unexpected for m in mismatches)


def test_entry_without_its_key_in_the_edit_is_refused() -> None:
    with pytest.raises(x.ConfigXmlError, match="lacks its key"):
        e.expected_state(snapshot(EMPTY), x.edit_payload(x.parse_config(cfg("<interface><description>d</description></interface>"))), LK)
