"""Golden outputs of the shipped NETCONF services (templates/interface, templates/system) for netconfd."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from gateway.errors import RenderError
from gateway.model import Action
from gateway.render import TemplateStore

ROOT = Path(__file__).resolve().parents[2] / "templates"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"


@pytest.fixture(scope="module")
def store() -> TemplateStore:
    return TemplateStore(root=ROOT)


def render(store: TemplateStore, service: str, action: str, **params: object) -> str:
    cs = store.render(service=service, platform="netconfd", action=Action(action), parameters=params,
                      device="nc1", payload_format="xml")
    assert cs.service == service and cs.action is Action(action)
    assert cs.undo is None
    assert all(not c.strip() for c in cs.checks)  # the oper_status check renders to nothing without it
    return cs.content


INTERFACE_CREATE = """\
<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <interfaces xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces">
    <interface>
      <name>ge-0/0/1</name>
      <description>uplink to core</description>
      <type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">ianaift:ethernetCsmacd</type>
      <enabled>true</enabled>
      <ipv4 xmlns="urn:ietf:params:xml:ns:yang:ietf-ip">
        <address>
          <ip>192.0.2.1</ip>
          <prefix-length>24</prefix-length>
        </address>
      </ipv4>
    </interface>
  </interfaces>
</config>
"""

INTERFACE_MODIFY = """\
<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <interfaces xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces">
    <interface>
      <name>lo10</name>
      <type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">ianaift:softwareLoopback</type>
      <enabled>false</enabled>
    </interface>
  </interfaces>
</config>
"""

INTERFACE_DELETE = """\
<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <interfaces xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces">
    <interface xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="delete">
      <name>ge-0/0/1</name>
    </interface>
  </interfaces>
</config>
"""

SYSTEM_CREATE = """\
<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <system xmlns="urn:ietf:params:xml:ns:yang:ietf-system">
    <contact>noc@example.net</contact>
    <hostname>pe1.example.net</hostname>
    <location>Paris &amp; Co, rack 4</location>
  </system>
</config>
"""

SYSTEM_MODIFY = """\
<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <system xmlns="urn:ietf:params:xml:ns:yang:ietf-system">
    <location>Lyon</location>
  </system>
</config>
"""

SYSTEM_DELETE = """\
<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <system xmlns="urn:ietf:params:xml:ns:yang:ietf-system">
    <contact xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="remove"/>
    <hostname xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="remove"/>
    <location xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" nc:operation="remove"/>
  </system>
</config>
"""


def test_store_lists_the_shipped_services(store: TemplateStore) -> None:
    assert {"interface", "system"} <= set(store.services())
    assert "netconfd" in store.platforms("interface")
    assert store.has("interface", "netconfd") and store.has("system", "netconfd")
    assert not store.has("interface", "no-such-platform")
    store.check()  # every shipped service file and template loads and compiles


def test_interface_create(store: TemplateStore) -> None:
    out = render(store, "interface", "create", name="ge-0/0/1", description="uplink to core", enabled=True,
                 ipv4={"address": "192.0.2.1", "prefix_length": 24})
    assert out == INTERFACE_CREATE


def test_interface_modify_with_explicit_type(store: TemplateStore) -> None:
    out = render(store, "interface", "modify", name="lo10", type="softwareLoopback", enabled=False)
    assert out == INTERFACE_MODIFY


def test_interface_delete_renders_only_the_key(store: TemplateStore) -> None:
    out = render(store, "interface", "delete", name="ge-0/0/1", description="ignored on delete")
    assert out == INTERFACE_DELETE
    root = etree.fromstring(out.encode())
    (iface,) = root.iter("{urn:ietf:params:xml:ns:yang:ietf-interfaces}interface")
    assert iface.get(f"{{{NC}}}operation") == "delete"


def test_system_create_escapes_xml_specials(store: TemplateStore) -> None:
    assert render(store, "system", "create", contact="noc@example.net", name="pe1.example.net",
                  location="Paris & Co, rack 4") == SYSTEM_CREATE


def test_system_modify_one_leaf(store: TemplateStore) -> None:
    assert render(store, "system", "modify", location="Lyon") == SYSTEM_MODIFY


def test_system_delete_removes_the_leaves_given(store: TemplateStore) -> None:
    assert render(store, "system", "delete", contact=None, name=None, location="") == SYSTEM_DELETE
    only = render(store, "system", "delete", location=None)
    assert "location" in only and "contact" not in only


def test_protobuf_float_integer_renders_as_integer(store: TemplateStore) -> None:
    # a protobuf Struct carries every number as a double
    out = render(store, "interface", "create", name="ge1", ipv4={"address": "10.0.0.1", "prefix_length": 24.0})
    assert "<prefix-length>24</prefix-length>" in out


def test_description_holding_markup_is_refused(store: TemplateStore) -> None:
    with pytest.raises(RenderError, match="parameters.description: holds XML markup"):
        render(store, "interface", "create", name="ge1", description="</description><enabled>false</enabled>")


def test_description_with_xml_characters_is_escaped_text(store: TemplateStore) -> None:
    out = render(store, "interface", "create", name="ge1", description='R&D < lab > "core" \'1\'')
    root = etree.fromstring(out.encode())
    ns = "{urn:ietf:params:xml:ns:yang:ietf-interfaces}"
    assert root.find(f".//{ns}description").text == 'R&D < lab > "core" \'1\''
    assert root.find(f".//{ns}enabled") is None


@pytest.mark.parametrize(
    ("service", "action", "params", "field"),
    [
        ("interface", "create", {"description": "x"}, "parameters.name"),
        ("interface", "create", {"name": "ge1", "ipv4": {"address": "10.0.0.256", "prefix_length": 24}}, "parameters.ipv4.address"),
        ("interface", "create", {"name": "ge1", "ipv4": {"address": "10.0.0.1", "prefix_length": 33}}, "parameters.ipv4.prefix_length"),
        ("interface", "create", {"name": "ge1", "enabled": "yes"}, "parameters.enabled"),
        ("interface", "create", {"name": "ge1", "mtu": 1500}, "parameters.mtu"),
        ("interface", "delete", {"description": "x"}, "parameters.name"),
        ("system", "create", {}, "parameters"),
        ("system", "delete", {}, "parameters"),
        ("system", "modify", {"contact": 5}, "parameters.contact"),
        ("system", "modify", {"name": "bad name!"}, "parameters.name"),
    ],
)
def test_shipped_schemas_refuse_bad_parameters(store: TemplateStore, service: str, action: str, params: dict, field: str) -> None:
    violations = store.validate(service=service, action=Action(action), parameters=params, payload_format="xml")
    assert field in [v.field for v in violations]


def test_delete_needs_only_the_key(store: TemplateStore) -> None:
    assert store.validate(service="interface", action=Action.DELETE, parameters={"name": "ge1"}, payload_format="xml") == []
