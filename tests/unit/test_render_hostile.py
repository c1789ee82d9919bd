"""No parameter value can change what a shipped template means (property-based, Hypothesis).

For every shipped service, every platform template (rendered in the payload format its driver
declares), every example of the service and every string parameter of that example, a hostile
value in place of the example's value is either refused (a violation naming that parameter), or
renders a payload that parses in its format, has the same structure as with the benign value,
and holds the value only where the template put the benign one.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from drivers.base import PayloadFormat
from drivers.registry import drivers
from gateway.app import check_catalogue
from gateway.errors import InputError, RenderError
from gateway.inventory import ProfileStore
from gateway.render import TemplateStore
from gateway.render.payload import MARK_CLOSE, MARK_OPEN
from gateway.render.schema import path_of

ROOT = Path(__file__).resolve().parents[2]
STORE = TemplateStore(root=ROOT / "templates")
PROFILES = ProfileStore.load(ROOT / "device_profiles")
FORMATS = check_catalogue(profiles=PROFILES, templates=STORE, registry=drivers)

EVIL_DESCRIPTION = ('x</description><type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">'
                    "ianaift:ethernetCsmacd</type></interface><interface><name>evil0</name><description>injected")
CORPUS = [
    EVIL_DESCRIPTION,
    'x</description></interface><interface xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0" '
    'nc:operation="delete"><name>eth0</name></interface><interface><name>y</name><description>',
    "x</contact><authentication><user><name>evil</name><password>$0$x</password></user></authentication><contact>",
    "<![CDATA[</description>]]>", "]]>", "]]>]]>", "&lt;", "&amp;", "&#60;", "&#x3c;", "&nbsp;", "&ext;",
    '<?xml version="1.0"?>', "<!DOCTYPE x [<!ENTITY a 'b'>]>", "<?pi x?>", "<!-- c -->", "--", "<", ">", "&",
    '"', "'", "\\", "\\n", "{{ 7*7 }}", "{% raw %}", "{{ ''.__class__ }}", "{# c #}", "${x}",
    "exit", "end", "no shutdown", "do write memory", "!", "x\nexit\nip route 0.0.0.0/0 Null0", "x\rend",
    "\r\n", "\n", "\t", "\x00", "\x1b[2J", "\x7f", "\x85", "\u2028", "\u2029", "\u000b", "\u000c",
    '", "oid": "1.3.6.1.2.1.1.5.0', '"}\n- {"oid": "1.3.6.1.2.1.1.5.0", "type": "OctetString", "value": "x"}',
    "- {oid: 1.3.6.1.2.1.1.5.0}", "x: y", "# c", "key: [a, b]", "&anchor", "*alias", "!!python/object:os.system",
    MARK_OPEN, MARK_CLOSE, f"a{MARK_CLOSE}b{MARK_OPEN}", "\u202e", "\u200b", "\ufeff", "\U0001f600", "é",
    "x" * 300, " ", "",
]
HOSTILE_CHARS = "<>&\"';:#{}[]%!-*|?/\\\n\r\t\x00\x1b\x85\u2028\u2029\ue000\ue001 ]"
VALUES = st.one_of(
    st.sampled_from(CORPUS),
    st.text(alphabet=st.sampled_from(HOSTILE_CHARS) | st.characters(codec="utf-8"), max_size=40),
    st.builds(lambda a, b, c: a + b + c, st.sampled_from(CORPUS), st.text(max_size=8), st.sampled_from(CORPUS)),
)


def _string_leaves(node: Any, parts: list[Any]) -> Iterator[list[Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _string_leaves(v, parts + [k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _string_leaves(v, parts + [i])
    elif isinstance(node, str):
        yield parts


def _cases() -> Iterator[Any]:
    for service in STORE.services():
        spec = STORE.spec(service)
        for platform in STORE.platforms(service):
            fmt = FORMATS[platform]
            for n, example in enumerate(spec.examples):
                params = dict(example.parameters)
                # schema defaults are rendered too: give them as parameters so they get hostile values
                for name, sub in (spec.parameters.get("properties") or {}).items():
                    if name not in params and isinstance(sub, dict) and isinstance(sub.get("default"), str) \
                            and example.action.value != "delete":
                        params[name] = sub["default"]
                for parts in _string_leaves(params, []):
                    yield pytest.param(service, platform, fmt, example.action.value, params, parts,
                                       id=f"{service}-{platform}-ex{n}-{path_of(parts)}")


def _set(params: dict[str, Any], parts: list[Any], value: str) -> dict[str, Any]:
    out = copy.deepcopy(params)
    node: Any = out
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value
    return out


def _get(params: dict[str, Any], parts: list[Any]) -> str:
    node: Any = params
    for p in parts:
        node = node[p]
    return str(node)


def _render(service: str, platform: str, fmt: PayloadFormat, action: str, params: dict[str, Any]) -> str:
    change = STORE.render(service=service, platform=platform, action=action, parameters=params, device="d1",
                          payload_format=fmt)
    drivers.get(PROFILES.get(platform).driver).check_change(change, PROFILES.get(platform))
    return change.content


def _xml_shape(text: str, benign: str, hostile: str) -> list[tuple[Any, ...]]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(text.encode(), parser)
    assert root.getroottree().docinfo.doctype == ""
    out = []
    for el in root.iter():
        assert isinstance(el.tag, str), f"a comment, PI or entity in the payload: {el!r}"
        text = (el.text or "").strip()
        out.append((el.tag, tuple(sorted(el.attrib.items())), tuple(sorted((k or "", v) for k, v in el.nsmap.items())),
                    text.replace(benign, hostile.strip()) if benign else text))
    return out


def _structure(fmt: PayloadFormat, text: str) -> Any:
    if fmt is PayloadFormat.XML:
        return text
    if fmt is PayloadFormat.LINES:
        return text.split("\n")
    return yaml.safe_load(text)


@pytest.mark.parametrize(("service", "platform", "fmt", "action", "params", "parts"), list(_cases()))
@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=VALUES)
def test_a_value_never_changes_the_template_structure(service: str, platform: str, fmt: PayloadFormat, action: str,
                                                      params: dict[str, Any], parts: list[Any], value: str) -> None:
    where = path_of(parts)
    benign = _get(params, parts)
    expected = _render(service, platform, fmt, action, params)
    hostile_params = _set(params, parts, value)
    violations = STORE.validate(service=service, action=action, parameters=hostile_params, payload_format=fmt)
    if violations:  # refused, naming the parameter (or the object holding it: a delete's anyOf null)
        assert any(where == v.field or where.startswith(v.field + ".") for v in violations), (where, violations)
        return
    try:
        got = _render(service, platform, fmt, action, hostile_params)
    except InputError as exc:  # the rendered payload was refused: it must name this parameter
        assert any(v.field == where for v in exc.violations), (where, exc.violations)
        return
    except RenderError as exc:  # pragma: no cover - a template fault: a finding
        pytest.fail(f"{service}/{platform}.j2 with {where}={value!r}: {exc}")
    assert MARK_OPEN not in got and MARK_CLOSE not in got
    if fmt is PayloadFormat.XML:
        # same elements, attributes and namespaces in the same order; texts as the benign ones
        # with the value in place of the benign value (the value is text, and only there)
        assert _xml_shape(got, "", "") == _xml_shape(expected, benign, value)
    elif fmt is PayloadFormat.LINES:
        want = expected.replace(benign, value) if benign else expected
        assert got.split("\n") == want.split("\n"), "the value changed the lines around it"
    else:
        doc, ref = yaml.safe_load(got), yaml.safe_load(expected)
        assert isinstance(doc, list) and len(doc) == len(ref), "the value added or removed a varbind"
        for item, base in zip(doc, ref):
            assert set(item) == set(base) and item["oid"] == base["oid"] and item["type"] == base["type"]
            assert item["value"] == (str(base["value"]).replace(benign, value) if benign else base["value"])


def test_the_cases_cover_every_shipped_template() -> None:
    covered = {(c.values[0], c.values[1]) for c in _cases()}
    assert covered == {(s, p) for s in STORE.services() for p in STORE.platforms(s)}


@pytest.mark.parametrize("value", [EVIL_DESCRIPTION, CORPUS[1]])
def test_the_reported_injections_are_refused_naming_the_parameter(value: str) -> None:
    params = {"name": "ge-0/0/1", "description": value}
    violations = STORE.validate(service="interface", action="create", parameters=params, payload_format="xml")
    assert [v.field for v in violations] == ["parameters.description"]
    assert "markup" in violations[0].reason
