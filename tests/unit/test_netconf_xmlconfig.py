"""Scope, index, canonical text, restore edit and diff of rendered <config> (pure)."""

from __future__ import annotations

import pytest
from lxml import etree

from drivers.netconf import restore as r
from drivers.netconf import xmlconfig as x

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
SYS = "urn:ietf:params:xml:ns:yang:ietf-system"
LK = x.ListKeys({IF: {"interface": ["name"]}, IP: {"address": ["ip"]}})


def iface(name: str, body: str = "", op: str = "") -> str:
    attr = f' nc:operation="{op}"' if op else ""
    return f"<interface{attr}><name>{name}</name>{body}</interface>"


def cfg(*ifaces: str, system: str = "") -> str:
    inner = f'<interfaces xmlns="{IF}">{"".join(ifaces)}</interfaces>' if ifaces else ""
    if system:
        inner += f'<system xmlns="{SYS}">{system}</system>'
    return f'<config xmlns="{NC}" xmlns:nc="{NC}">{inner}</config>'


GE0 = iface(
    "ge0",
    '<description>uplink</description><type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">'
    f'ianaift:ethernetCsmacd</type><enabled>true</enabled><ipv4 xmlns="{IP}"><address><ip>10.0.0.1</ip>'
    "<prefix-length>24</prefix-length></address></ipv4>",
)


def data(text: str) -> etree._Element:
    """A <data> element as get-config returns it."""
    root = x.parse(text)
    d = etree.Element(f"{{{NC}}}data")
    d.extend(list(root))
    return d


def test_parse_config_errors() -> None:
    with pytest.raises(x.ConfigXmlError, match="well-formed"):
        x.parse_config("<config><oops></config>")
    with pytest.raises(x.ConfigXmlError, match="<config>"):
        x.parse_config(f'<interfaces xmlns="{IF}"/>')
    with pytest.raises(x.ConfigXmlError, match="empty"):
        x.parse_config(f'<config xmlns="{NC}"/>')
    with pytest.raises(x.ConfigXmlError, match="key"):
        x.scope_filter(x.parse_config(cfg("<interface><description>d</description></interface>")), LK)
    with pytest.raises(x.ConfigXmlError):
        x.ListKeys({IF: {"interface": "name"}})


def test_scope_selects_entries_and_leaves() -> None:
    root = x.parse_config(cfg(GE0, iface("ge1", op="delete"), iface("ge0", "<mtu>1500</mtu>"),
                              system="<contact>c</contact><location>l</location>"))
    scope = x.scope_filter(root, LK)
    assert r.targets(scope, LK) == [
        "/ietf-interfaces:interfaces/interface[name='ge0']",
        "/ietf-interfaces:interfaces/interface[name='ge1']",
        "/ietf-system:system/contact",
        "/ietf-system:system/location",
    ]
    content = x.filter_content(scope)
    assert content.startswith(f'<interfaces xmlns="{IF}"><interface><name>ge0</name></interface>'.encode())


def test_edit_payload_keeps_operations_and_uses_netconf_namespace() -> None:
    root = x.parse_config(f'<config><interfaces xmlns="{IF}" xmlns:nc="{NC}">{iface("ge1", op="remove")}</interfaces></config>')
    payload = etree.fromstring(x.edit_payload(root))
    assert payload.tag == f"{{{NC}}}config"
    assert payload.find(f".//{{{IF}}}interface").get(f"{{{NC}}}operation") == "remove"


def test_canonical_is_order_and_prefix_insensitive() -> None:
    a = data(cfg(GE0, iface("ge1", "<description>b</description>"), system="<contact>c</contact>"))
    b = data(f'<config xmlns="{NC}"><system xmlns="{SYS}"><contact> c </contact></system>'
             f'<interfaces xmlns="{IF}">{iface("ge1", "<description>b</description>")}'
             f'<interface><ipv4 xmlns="{IP}"><address><prefix-length>24</prefix-length><ip>10.0.0.1</ip></address></ipv4>'
             '<enabled>true</enabled><type xmlns:t="urn:ietf:params:xml:ns:yang:iana-if-type">t:ethernetCsmacd</type>'
             "<description>uplink</description><name>ge0</name></interface></interfaces></config>")
    ca, cb = x.canonical(a, LK), x.canonical(b, LK)
    assert ca == cb
    assert ca.index("<name>ge0</name>") < ca.index("<description>uplink")  # keys first
    c = data(cfg(GE0, iface("ge1", "<description>B</description>"), system="<contact>c</contact>"))
    assert x.canonical(c, LK) != ca
    assert x.canonical(None, LK) == x.canonical(data(f'<config xmlns="{NC}"/>'), LK)


def test_restore_puts_back_and_removes() -> None:
    change = x.parse_config(cfg(GE0, iface("ge5", "<description>new</description>"),
                                system="<contact>new</contact><location>new</location>"))
    scope = x.scope_filter(change, LK)
    snapshot = x.canonical(data(cfg(iface("ge0", "<description>before</description>"), system="<contact>old</contact>")), LK)
    out = etree.fromstring(r.restore_config(snapshot, scope, LK))
    op = f"{{{NC}}}operation"
    entries = out.findall(f".//{{{IF}}}interface")
    assert [(e.findtext(f"{{{IF}}}name"), e.get(op)) for e in entries] == [("ge0", "replace"), ("ge5", "remove")]
    assert entries[0].findtext(f"{{{IF}}}description") == "before"
    assert entries[1].findtext(f"{{{IF}}}description") is None
    assert out.find(f".//{{{SYS}}}contact").get(op) == "replace"
    assert out.find(f".//{{{SYS}}}contact").text == "old"
    assert out.find(f".//{{{SYS}}}location").get(op) == "remove"
    assert out.find(f"{{{IF}}}interfaces").get(op) is None  # containers merge


def test_restore_of_an_equal_snapshot_round_trips() -> None:
    change = x.parse_config(cfg(GE0))
    snap = x.canonical(data(cfg(GE0)), LK)
    edit = x.parse(r.restore_config(snap, x.scope_filter(change, LK), LK))
    for el in edit.iter():
        el.attrib.pop(f"{{{NC}}}operation", None)
    assert x.canonical(edit, LK) == snap


def test_diff() -> None:
    a = x.canonical(data(cfg(iface("ge0", "<description>a</description>"))), LK)
    b = x.canonical(data(cfg(iface("ge0", "<description>b</description>"))), LK)
    d = r.diff(a, b)
    assert "-      <description>a</description>" in d and "+      <description>b</description>" in d
    assert r.diff(a, a) == ""


def test_path_text() -> None:
    path = ((f"{{{IF}}}interfaces", ()), (f"{{{IF}}}interface", (("name", "ge0"),)), (f"{{{IP}}}ipv4", ()))
    assert x.path_text(path) == "/ietf-interfaces:interfaces/interface[name='ge0']/ietf-ip:ipv4"


def test_restore_does_not_remove_what_is_absent_now() -> None:
    """netconfd creates a list entry for a `remove` of one that does not exist, then fails
    validation: with the current state known, absent-in-both nodes are left out of the edit."""
    change = x.parse_config(cfg(iface("ge5", "<description>new</description>"), system="<contact>new</contact>"))
    scope = x.scope_filter(change, LK)
    empty = x.canonical(data(f'<config xmlns="{NC}"/>'), LK)
    out = etree.fromstring(r.restore_config(empty, scope, LK, current=empty))
    op = f"{{{NC}}}operation"
    assert not [e for e in out.iter() if e.get(op) == "remove"]
    now = x.canonical(data(cfg(iface("ge5", "<description>new</description>"))), LK)
    out = etree.fromstring(r.restore_config(empty, scope, LK, current=now))
    removed = [e.findtext(f"{{{IF}}}name") for e in out.iter(f"{{{IF}}}interface") if e.get(op) == "remove"]
    assert removed == ["ge5"]
    assert out.find(f".//{{{SYS}}}contact") is None  # absent before and now: untouched
