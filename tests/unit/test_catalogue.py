"""The gateway refuses to start when a profile or a template disagrees with what its driver sends."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

import pytest

from drivers.base import Capabilities, Driver, PayloadFormat
from drivers.registry import Registry, drivers
from gateway.app import check_catalogue
from gateway.errors import ConfigurationError
from gateway.inventory import ProfileStore
from gateway.render import TemplateStore
from gateway.render.payload import PayloadViolation, check, static_problems

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    shutil.copytree(ROOT / "device_profiles", tmp_path / "profiles")
    return tmp_path


def catalogue(tree: Path) -> dict[str, PayloadFormat]:
    return check_catalogue(profiles=ProfileStore.load(tree / "profiles"),
                           templates=TemplateStore(root=tree / "templates"), registry=drivers)


def test_the_shipped_catalogue_passes_with_each_drivers_format(tree: Path) -> None:
    assert catalogue(tree) == {"frr": PayloadFormat.LINES, "napalm-mock": PayloadFormat.LINES,
                               "net-snmp": PayloadFormat.VARBINDS, "netconfd": PayloadFormat.XML}


def test_a_profile_cannot_change_what_its_driver_sends(tree: Path) -> None:
    path = tree / "profiles" / "netconfd.yaml"
    path.write_text(path.read_text().replace("settings:\n", "settings:\n  render_format: lines\n", 1))
    with pytest.raises(ConfigurationError) as err:
        catalogue(tree)
    assert str(path) in err.value.message and "cannot change what its driver sends" in err.value.message
    path.write_text(path.read_text().replace("render_format: lines", "render_format: xml"))
    assert catalogue(tree)["netconfd"] is PayloadFormat.XML  # stating the driver's own format is fine


@pytest.mark.parametrize(("template", "text", "message"), [
    ("interface/netconfd.j2", "interface {{ name }}\n description {{ description }}\nexit\n", "not well-formed XML"),
    ("interface/netconfd.j2", '<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><x>{{ name|safe }}</x></config>\n',
     "|safe turns escaping off"),
    ("interface/netconfd.j2", '<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">{% autoescape false %}'
                              "<x>{{ name }}</x>{% endautoescape %}</config>\n", "autoescape"),
    ("interface/netconfd.j2", '<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><!-- {{ name }} --></config>\n',
     "in a comment"),
    ("interface/netconfd.j2", '<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" xmlns:nc="urn:ietf:params:xml:'
                              'ns:netconf:base:1.0"><x nc:operation="{{ name }}"/></config>\n', "operation attribute"),
    ("interface/netconfd.j2", "<config><x>{{ name }}</x></config>\n", "NETCONF namespace"),
    ("system/net-snmp.j2", '- {"oid": "1.3.6.1.2.1.1.4.0", "type": "OctetString", "value": "{{ contact }}"}\n',
     "|tojson"),
])
def test_a_template_that_disagrees_with_its_drivers_format_stops_the_start(tree: Path, template: str, text: str,
                                                                          message: str) -> None:
    path = tree / "templates" / template
    path.write_text(text)
    with pytest.raises(ConfigurationError) as err:
        catalogue(tree)
    assert str(path) in err.value.message and message in err.value.message, err.value.message


def test_a_service_without_examples_stops_the_start(tree: Path) -> None:
    path = tree / "templates" / "prefix-list" / "service.yaml"
    text = path.read_text()
    start, end = text.index("examples:"), text.index("\nparameters:") + 1
    path.write_text(text[:start] + text[end:])
    with pytest.raises(ConfigurationError, match=r"prefix-list/service\.yaml: no examples"):
        catalogue(tree)


def test_a_typo_in_a_profiles_settings_or_quirks_stops_the_start_naming_the_file(tree: Path) -> None:
    frr, netconfd = tree / "profiles" / "frr.yaml", tree / "profiles" / "netconfd.yaml"
    frr.write_text(frr.read_text().replace("  prompt_pattern:", "  promt_pattern:", 1))
    netconfd.write_text(netconfd.read_text().replace("  hello_settle_ms:", "  hello_setle_ms:", 1))
    ProfileStore.load(tree / "profiles")  # the shape is fine: each driver knows its own keys
    with pytest.raises(ConfigurationError) as err:
        catalogue(tree)
    message = err.value.message
    assert f"{frr}: settings.promt_pattern: unknown setting of driver 'cli' (known: " in message, message
    assert f"{netconfd}: quirks.hello_setle_ms: unknown quirk of driver 'netconf' (known: hello_settle_ms, " in message


def test_build_engine_refuses_a_profile_with_a_typo(tree: Path) -> None:
    from gateway.app import GatewayConfig, build_engine

    path = tree / "profiles" / "net-snmp.yaml"
    path.write_text(path.read_text().replace("  retries:", "  retrys:", 1))
    config = GatewayConfig(data_dir=tree / "data", profiles_dir=tree / "profiles", templates_dir=tree / "templates")
    with pytest.raises(ConfigurationError, match=rf"{path}: settings\.retrys: unknown setting of driver 'snmp'"):
        build_engine(config)


def test_a_driver_without_a_payload_format_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Formless(Driver):
        name: ClassVar[str] = "formless"
        supported: ClassVar[Capabilities] = Capabilities()

    dist = tmp_path / "agw_formless-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: agw-formless\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[agw.test_formless]\nformless = {__name__}:FORMLESS\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(globals(), "FORMLESS", Formless)
    with pytest.raises(ConfigurationError, match="declares no payload_format"):
        Registry("agw.test_formless", Driver).get("formless")


# -- the structure check itself, on marked text -----------------------------------------------------
O, C = "\ue000", "\ue001"
NC = '<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'


@pytest.mark.parametrize(("fmt", "marked", "reason"), [
    (PayloadFormat.XML, f"{NC}<a>{O}x</a><b>{C}</b></config>", "not confined to one text node"),
    (PayloadFormat.XML, f"{NC}<a x='{O}1'>{C}</a></config>", "not confined"),
    (PayloadFormat.XML, f'<!DOCTYPE c [<!ENTITY e "x">]>{NC}<a>&e;</a></config>', "DOCTYPE"),
    (PayloadFormat.XML, f"<?pi x?>{NC}<a/></config>", "processing instruction"),
    (PayloadFormat.XML, f"{NC}<a/></config><b/>", "not well-formed"),
    (PayloadFormat.LINES, f"interface {O}x\n exit{C}\n", "spans more than one line"),
    (PayloadFormat.LINES, f"description {O}a\u2028b{C}\n", "would add a line"),
    (PayloadFormat.VARBINDS, f'- {{"oid": "1", "value": {O}"a", "type": "x"{C}}}\n', "one YAML scalar"),
    (PayloadFormat.VARBINDS, f'- {{{O}"value"{C}: "a"}}\n', "one YAML scalar"),
    (PayloadFormat.YAML, f"a: {O}x{O}y{C}\n", "nested"),
])
def test_structure_violations(fmt: PayloadFormat, marked: str, reason: str) -> None:
    with pytest.raises(PayloadViolation, match=reason):
        check(fmt, marked)


def test_a_clean_payload_loses_its_marks() -> None:
    assert check(PayloadFormat.XML, f"{NC}<a b='{O}1{C}'>{O}x &lt; y{C}</a></config>") == f"{NC}<a b='1'>x &lt; y</a></config>"
    assert check(PayloadFormat.LINES, f"ip route {O}10.0.0.0/8{C} {O}Null0{C}\n") == "ip route 10.0.0.0/8 Null0\n"


def test_static_problems_are_reported_with_their_lines() -> None:
    env = TemplateStore(root=ROOT / "templates")._envs[PayloadFormat.VARBINDS]
    assert static_problems(PayloadFormat.VARBINDS, env, 'x: {{ a|tojson }}\ny: {{ b }}\n') == [
        "line 2: every value of a varbinds template must be rendered with |tojson (one value, one YAML scalar)"]
