"""The one-pass read-back (verify + canonical text) against the reference lxml-tree canonical text
and the separate index/verify walk (pure)."""

from __future__ import annotations

import pytest
from lxml import etree

from drivers.netconf import xmlconfig as x

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IP = "urn:ietf:params:xml:ns:yang:ietf-ip"
SYS = "urn:ietf:params:xml:ns:yang:ietf-system"
IANA = "urn:ietf:params:xml:ns:yang:iana-if-type"
LK = x.ListKeys({IF: {"interface": ["name"]}, IP: {"address": ["ip"]}, SYS: {"server": ["name"]}})


def reply_data(inner: str) -> etree._Element:
    raw = f'<rpc-reply xmlns="{NC}" message-id="1"><data>{inner}</data></rpc-reply>'
    return etree.fromstring(raw.encode(), x._parser()).find(f"{{{NC}}}data")


IFACES = (
    f'<interfaces xmlns="{IF}">'
    f'<interface><name>ge1</name><enabled>false</enabled><description>b &amp; &lt;c&gt; "q" café</description>'
    f'<type xmlns:ianaift="{IANA}">ianaift:softwareLoopback</type></interface>'
    f'<interface><name>ge0</name><type xmlns:t="{IANA}">t:ethernetCsmacd</type>'
    f'<ipv4 xmlns="{IP}"><address><prefix-length>24</prefix-length><ip>10.0.0.2</ip></address>'
    "<address><ip>10.0.0.1</ip><prefix-length>24</prefix-length></address><enabled>true</enabled></ipv4>"
    "<description>  spaced  </description></interface></interfaces>"
)
SYSTEM = (
    f'<system xmlns="{SYS}"><ntp><server><name>b</name><udp><address>2.2.2.2</address></udp></server>'
    "<server><name>a</name><udp><address>1.1.1.1</address></udp></server><enabled>true</enabled></ntp>"
    "<dns-resolver><search>z.example</search><search>a.example</search></dns-resolver>"
    "<hostname>r1</hostname><contact/><location>{odd}curly</location><clock><timezone-name>x:y</timezone-name></clock>"
    "<authentication><user><name>u</name></user><user><name>u2</name></user></authentication></system>"
)
CASES = {
    "empty": "",
    "interfaces": IFACES,
    "system": SYSTEM,
    "both": SYSTEM + IFACES,
    "keyless-repeats": '<x xmlns="urn:x"><c><v>2</v></c><c><v>1</v></c><c><w>1</w></c></x>',
    "same-ns-identity": '<x xmlns="urn:a:x"><kind xmlns:x="urn:a:x">x:thing</kind></x>',
    "comment": '<x xmlns="urn:x"><!-- hi --><v>1</v></x>',
    "inherits-netconf-ns": "<bare><v>1</v></bare>",
    "no-namespace": '<x xmlns="urn:x"><v xmlns="">1</v></x>',
    "carriage-return": '<x xmlns="urn:x"><v>a&#13;b</v></x>',
    "odd-ns": '<x xmlns="urn:x?a&amp;b"><v>1</v></x>',
}

UNUSUAL = {"same-ns-identity", "comment", "no-namespace", "carriage-return", "odd-ns"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_pass_text_equals_reference_tree(name: str) -> None:
    d = reply_data(CASES[name])
    assert x.canonical(d, LK) == x._canonical_tree(d, LK)
    assert x.canonical(d, x.ListKeys()) == x._canonical_tree(d, x.ListKeys())
    if name in UNUSUAL:  # the one pass declines; canonical() used the tree
        with pytest.raises(x._Unusual):
            x._canon_text(d, LK, None, None)
    else:  # the one pass itself produced it
        assert x._canon_text(d, LK, None, None) == x._canonical_tree(d, LK)


def test_canonical_of_nothing() -> None:
    assert x.canonical(None, LK) == x._canonical_tree(None, LK) == f'<config xmlns="{NC}"/>\n'


@pytest.mark.parametrize("name", sorted(CASES))
def test_readback_equals_index_and_canonical(name: str) -> None:
    d = reply_data(CASES[name])
    nodes, leaves, text = x.readback(d, LK)
    assert text == x.canonical(d, LK)
    assert (nodes, leaves) == x.index(d, LK)


def test_readback_of_nothing_read_back() -> None:
    assert x.readback(None, LK) == (set(), {}, f'<config xmlns="{NC}"/>\n')


def test_readback_entry_without_its_key_is_an_error() -> None:
    d = reply_data(f'<interfaces xmlns="{IF}"><interface><description>x</description></interface></interfaces>')
    with pytest.raises(x.ConfigXmlError, match="lacks its key"):
        x.readback(d, LK)


# -- scope as text ------------------------------------------------------------------------------
CONFIGS = {
    "bench": (
        f'<interfaces xmlns="{IF}"><interface><name>bench0</name><description>run-1</description>'
        f'<type xmlns:ianaift="{IANA}">ianaift:ethernetCsmacd</type><enabled>true</enabled></interface></interfaces>'
    ),
    "entries-leaves-deletes": (
        f'<interfaces xmlns="{IF}"><interface><name>a&amp;b é</name><enabled>true</enabled></interface>'
        '<interface nc:operation="delete"><name>z</name></interface><interface><name>a&amp;b é</name></interface>'
        f'</interfaces><system xmlns="{SYS}"><hostname>r1</hostname><hostname>r2</hostname>'
        "<ntp><enabled>true</enabled><server><name>s1</name><udp><address>1.1.1.1</address></udp></server>"
        '<server nc:operation="remove"><name>s2</name></server></ntp><contact nc:operation="delete"/></system>'
    ),
    "leaf-then-container": '<x xmlns="urn:x"><c/><c><v>1</v></c><w>1</w></x>',
    "container-twice": '<x xmlns="urn:x"><c><v>1</v></c><c><w>1</w><v>2</v></c></x>',
    "netconf-namespace": "<top><v>1</v></top>",
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_scope_texts_equal_the_element_tree(name: str) -> None:
    root = x.parse_config(f'<config xmlns="{NC}" xmlns:nc="{NC}">{CONFIGS[name]}</config>')
    flt = x.scope_element(root, LK)
    assert x.scope_texts(root, LK) == (etree.tostring(flt).decode(), x.filter_content(flt))
    if name in {"container-twice", "netconf-namespace"}:  # the text walk declines; the tree answered
        with pytest.raises(x._Unusual):
            x._scope_parts(root, NC, LK)
    else:
        assert x.scope_texts(root, LK)[0] == f'<filter xmlns="{NC}" type="subtree">{"".join(x._scope_parts(root, NC, LK))}</filter>'.encode("ascii", "xmlcharrefreplace").decode()


def test_scope_texts_entry_without_its_key_is_an_error() -> None:
    root = x.parse_config(f'<config xmlns="{NC}"><interfaces xmlns="{IF}"><interface><enabled>true</enabled>'
                          "</interface></interfaces></config>")
    with pytest.raises(x.ConfigXmlError, match="lacks its key"):
        x.scope_texts(root, LK)


def test_key_values_in_and_out_of_namespaces() -> None:
    lk = x.ListKeys({"": {"e": ["k"]}, "urn:x": {"e": ["k", "j"]}})
    bare = etree.fromstring(b"<e><v>1</v><k> a </k><k>b</k></e>")
    assert x._key_values(bare, lk.keys_of(bare)) == (("k", "a"),)
    nsd = etree.fromstring(b'<e xmlns="urn:x"><j>2</j><k>1</k></e>')
    assert x._key_values(nsd, lk.keys_of(nsd)) == (("k", "1"), ("j", "2"))
    with pytest.raises(x.ConfigXmlError, match="lacks its key <j>"):
        x._key_values(etree.fromstring(b'<e xmlns="urn:x"><k>1</k><j xmlns="urn:y">2</j></e>'), ("k", "j"))
