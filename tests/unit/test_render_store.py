"""TemplateStore: schema validation, strictness, sandbox, escaping and error reporting."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.errors import ConfigurationError, RenderError
from gateway.model import Action
from gateway.render import TemplateStore

SERVICE = """\
description: test service
keys: [name]
parameters:
  type: object
  additionalProperties: false
  required: [name, size]
  properties:
    name: {type: string, minLength: 1}
    size: {type: integer, minimum: 1, maximum: 10}
    mode: {type: string, enum: [fast, slow], default: fast}
    items: {type: array, items: {type: integer}}
    nested:
      type: object
      required: [a]
      properties:
        a: {type: string}
        b: {type: boolean}
"""


def make(root: Path, service: str, files: dict[str, str]) -> None:
    d = root / service
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(textwrap.dedent(text))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make(tmp_path, "svc", {"service.yaml": SERVICE, "cli.j2": "item {{ name }} size {{ size }} mode {{ mode }}\n"})
    return tmp_path


def render(store: TemplateStore, platform: str = "cli", action: str = "create", fmt: str = "lines", **params: object):
    return store.render(service="svc", platform=platform, action=Action(action), parameters=params, device="d1",
                        payload_format=fmt)


# -- validation ----------------------------------------------------------------------------------

def test_all_schema_errors_are_listed(root: Path) -> None:
    store = TemplateStore(root=root)
    v = store.validate(service="svc", action=Action.CREATE,
                       parameters={"size": 11, "mode": "medium", "extra": 1, "items": [1, "x"], "nested": {"b": 3}}, payload_format="lines")
    fields = {x.field: x.reason for x in v}
    assert set(fields) == {
        "parameters.name", "parameters.size", "parameters.mode", "parameters.extra",
        "parameters.items[1]", "parameters.nested.a", "parameters.nested.b",
    }
    assert fields["parameters.name"] == "required parameter is missing"
    assert "unknown parameter" in fields["parameters.extra"] and "size" in fields["parameters.extra"]
    assert "maximum" in fields["parameters.size"]


def test_valid_parameters_give_no_violation(root: Path) -> None:
    assert TemplateStore(root=root).validate(service="svc", action=Action.MODIFY, parameters={"name": "a", "size": 2}, payload_format="lines") == []


def test_unknown_service_is_one_violation_on_service(root: Path) -> None:
    v = TemplateStore(root=root).validate(service="nope", action=Action.CREATE, parameters={"x": 1}, payload_format="lines")
    assert [x.field for x in v] == ["service"] and "svc" in v[0].reason


@pytest.mark.parametrize("name", ["../svc", "svc/..", "/etc", "", ".hidden"])
def test_service_names_cannot_escape_the_root(root: Path, name: str) -> None:
    store = TemplateStore(root=root)
    assert [x.field for x in store.validate(service=name, action=Action.CREATE, parameters={}, payload_format="lines")] == ["service"]
    assert not store.has(name, "cli")
    assert not store.has("svc", "../svc/cli")


def test_unknown_action_and_non_mapping_parameters(root: Path) -> None:
    store = TemplateStore(root=root)
    assert [x.field for x in store.validate(service="svc", action="merge", parameters={}, payload_format="lines")] == ["action"]
    assert [x.field for x in store.validate(service="svc", action="create", parameters=["a"], payload_format="lines")] == ["parameters"]  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\tb", "a\x00b", "a\x1bb", "a\x7fb", "a\u2028b", "a\x85b"])
def test_text_output_refuses_control_characters(root: Path, bad: str) -> None:
    store = TemplateStore(root=root)
    v = store.validate(service="svc", action=Action.CREATE, parameters={"name": bad, "size": 1}, payload_format="lines")
    assert [x.field for x in v] == ["parameters.name"] and "control character" in v[0].reason
    with pytest.raises(RenderError, match="parameters.name"):
        render(store, name=bad, size=1)


def test_control_characters_found_at_any_depth(root: Path) -> None:
    v = TemplateStore(root=root).validate(service="svc", action=Action.CREATE,
                                          parameters={"name": "ok", "size": 1, "nested": {"a": "x\ny"}}, payload_format="lines")
    assert [x.field for x in v] == ["parameters.nested.a"]


def test_xml_output_allows_newline_but_not_other_controls(root: Path) -> None:
    store = TemplateStore(root=root)
    assert store.validate(service="svc", action=Action.CREATE, parameters={"name": "a\nb", "size": 1}, payload_format="xml") == []
    v = store.validate(service="svc", action=Action.CREATE, parameters={"name": "a\x01b", "size": 1}, payload_format="xml")
    assert [x.field for x in v] == ["parameters.name"]


def test_delete_requires_only_keys_and_accepts_null(root: Path) -> None:
    store = TemplateStore(root=root)
    assert store.validate(service="svc", action=Action.DELETE, parameters={"name": "a"}, payload_format="lines") == []
    assert store.validate(service="svc", action=Action.DELETE, parameters={"name": "a", "size": None}, payload_format="lines") == []
    assert [x.field for x in store.validate(service="svc", action=Action.DELETE, parameters={"size": 3}, payload_format="lines")] == ["parameters.name"]
    # other parameters, when given a value, are still checked
    assert [x.field for x in store.validate(service="svc", action=Action.DELETE, parameters={"name": "a", "size": 99}, payload_format="lines")] == ["parameters.size"]


# -- rendering -----------------------------------------------------------------------------------

def test_render_applies_defaults_and_coerces_integers(root: Path) -> None:
    cs = render(TemplateStore(root=root), name="a", size=3.0)
    assert cs.content == "item a size 3 mode fast\n" and cs.action is Action.CREATE


def test_render_refuses_invalid_parameters(root: Path) -> None:
    with pytest.raises(RenderError, match=r"svc/cli\.j2.*parameters\.size"):
        render(TemplateStore(root=root), name="a", size=0)


def test_action_and_device_are_template_variables(root: Path) -> None:
    make(root, "svc", {"ctx.j2": "{{ action }} on {{ device }}\n"})
    assert render(TemplateStore(root=root), platform="ctx", action="modify", name="a", size=1).content == "modify on d1\n"


def test_parameter_named_like_a_renderer_variable_is_under_parameters(tmp_path: Path) -> None:
    make(tmp_path, "acl", {
        "service.yaml": "keys: [name]\nparameters:\n  type: object\n  properties:\n"
                        "    name: {type: string}\n    action: {type: string, enum: [permit, deny]}\n",
        "cli.j2": "{{ action }} {{ name }} {{ parameters.action }} {{ parameters.name }} {{ device }}\n",
    })
    cs = TemplateStore(root=tmp_path).render(service="acl", platform="cli", action=Action.CREATE,
                                             parameters={"name": "pl1", "action": "deny"}, device="r1",
                                             payload_format="lines")
    assert cs.content == "create pl1 deny pl1 r1\n"


def test_undefined_variable_names_template_line_and_variable(root: Path) -> None:
    make(root, "svc", {"bad.j2": "line one {{ name }}\n{% if size %}\nsize {{ colour }}\n{% endif %}\n"})
    with pytest.raises(RenderError) as info:
        render(TemplateStore(root=root), platform="bad", name="a", size=1)
    msg = str(info.value)
    assert "svc/bad.j2" in msg and "line 3" in msg and "'colour'" in msg
    assert info.value.device == "d1"


def test_undefined_attribute_of_a_parameter(root: Path) -> None:
    make(root, "svc", {"attr.j2": "{{ nested.b }}\n"})
    with pytest.raises(RenderError, match=r"svc/attr\.j2, line 1: undefined variable 'b'"):
        render(TemplateStore(root=root), platform="attr", name="a", size=1, nested={"a": "x"})


@pytest.mark.parametrize(
    "expr",
    ["{{ ''.__class__ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ name.__init__.__globals__ }}",
     "{{ cycler.__init__.__globals__.os }}"],
)
def test_sandbox_blocks_attribute_escapes(root: Path, expr: str) -> None:
    make(root, "svc", {"evil.j2": "ok\n" + expr + "\n"})
    with pytest.raises(RenderError) as info:
        render(TemplateStore(root=root), platform="evil", name="a", size=1)
    assert "svc/evil.j2, line 2" in str(info.value)


def test_sandbox_blocks_mutation(root: Path) -> None:
    make(root, "svc", {"mut.j2": "{{ items.append(4) }}\n"})
    with pytest.raises(RenderError, match="sandbox"):
        render(TemplateStore(root=root), platform="mut", name="a", size=1, items=[1])


def test_syntax_error_names_template_and_line(root: Path) -> None:
    make(root, "svc", {"syn.j2": "a\n{% if name %}\nb\n"})
    store = TemplateStore(root=root)
    with pytest.raises(RenderError, match=r"svc/syn\.j2, line \d+: template syntax error"):
        render(store, platform="syn", name="a", size=1)
    with pytest.raises(ConfigurationError, match=r"svc/syn\.j2"):
        store.check()


def test_runtime_error_in_template_is_a_render_error(root: Path) -> None:
    make(root, "svc", {"div.j2": "{{ size / 0 }}\n"})
    with pytest.raises(RenderError, match=r"svc/div\.j2, line 1: ZeroDivisionError"):
        render(TemplateStore(root=root), platform="div", name="a", size=1)


NC_CONFIG = '<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'


def test_xml_output_is_autoescaped(root: Path) -> None:
    make(root, "svc", {"x.j2": NC_CONFIG + "<d>{{ name }}</d></config>\n"})
    out = render(TemplateStore(root=root), platform="x", fmt="xml", name="a < b & 'c' > \"d\"", size=1).content
    assert out == NC_CONFIG + "<d>a &lt; b &amp; &#39;c&#39; &gt; &#34;d&#34;</d></config>\n"


@pytest.mark.parametrize("value", ["</d><x a='1'>", "x<y", "&amp;", "&#60;", "<!-- c -->", "<![CDATA[x]]>", "a]]>b"])
def test_xml_values_holding_markup_are_refused(root: Path, value: str) -> None:
    make(root, "svc", {"x.j2": NC_CONFIG + "<d>{{ name }}</d></config>\n"})
    v = TemplateStore(root=root).validate(service="svc", action=Action.CREATE, parameters={"name": value, "size": 1},
                                          payload_format="xml")
    assert [x.field for x in v] == ["parameters.name"] and "markup" in v[0].reason


def test_text_output_is_not_escaped(root: Path) -> None:
    out = render(TemplateStore(root=root), name="<a & b>", size=1).content
    assert out == "item <a & b> size 1 mode fast\n"


def test_malformed_xml_output_is_a_render_error(root: Path) -> None:
    make(root, "svc", {"broken.j2": NC_CONFIG + "<d>{{ name }}</config>\n"})
    with pytest.raises(RenderError, match=r"svc/broken\.j2 \(xml\): the rendered output is not well-formed XML"):
        render(TemplateStore(root=root), platform="broken", fmt="xml", name="a", size=1)


def test_unknown_platform_and_output_format(root: Path) -> None:
    store = TemplateStore(root=root)
    with pytest.raises(RenderError, match="no template svc/junos.j2"):
        render(store, platform="junos", name="a", size=1)
    with pytest.raises(ConfigurationError, match="unknown payload format"):
        render(store, fmt="json", name="a", size=1)


def test_undo_template_and_checks(root: Path) -> None:
    make(root, "svc", {
        "service.yaml": SERVICE + "checks:\n  '*': ['show item {{ name }}']\n  cli: ['show size {{ size }}']\n",
        "cli.undo.j2": "no item {{ name }}\n",
    })
    store = TemplateStore(root=root)
    cs = render(store, name="a", size=2)
    assert cs.undo == "no item a\n"
    assert cs.checks == ("show item a", "show size 2")
    assert store.platforms("svc") == ["cli"]  # the undo template is not a platform


def test_check_template_error_names_the_service_file(root: Path) -> None:
    make(root, "svc", {"service.yaml": SERVICE + "checks: ['show {{ missing }}']\n"})
    with pytest.raises(RenderError, match=r"svc/service\.yaml checks\[0\].*'missing'"):
        render(TemplateStore(root=root), name="a", size=1)


def test_service_file_is_reloaded_when_it_changes(root: Path) -> None:
    store = TemplateStore(root=root, recheck_s=0.2)
    assert store.validate(service="svc", action=Action.CREATE, parameters={"name": "a", "size": 1}, payload_format="lines") == []
    text = SERVICE.replace("required: [name, size]", "required: [name, size, mode]")
    path = root / "svc" / "service.yaml"
    path.write_text(text)
    import os
    import time
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    # within recheck_s the store trusts its last look at the files; after it, it sees the change
    assert store.validate(service="svc", action=Action.CREATE, parameters={"name": "a", "size": 1}, payload_format="lines") == []
    time.sleep(0.25)
    assert [x.field for x in store.validate(service="svc", action=Action.CREATE, parameters={"name": "a", "size": 1}, payload_format="lines")] == ["parameters.mode"]
    path.unlink()
    time.sleep(0.25)
    assert [x.field for x in store.validate(service="svc", action=Action.CREATE, parameters={}, payload_format="lines")] == ["service"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keys: [id]\nparameters: {type: object, properties: {name: {type: string}}}\n", "'id' is not a parameter"),
        ("parameters: {type: object, properties: {name: {type: strng}}}\n", "not a valid JSON Schema"),
        ("parameters: {type: array}\n", "must be 'object'"),
        ("parameters: {type: object}\ncolour: red\n", "unknown field"),
        ("parameters: {type: object}\nparameters: {type: object}\n", "duplicate key"),
        ("parameters: [\n", "line"),
    ],
)
def test_bad_service_file_is_a_configuration_error(tmp_path: Path, text: str, message: str) -> None:
    make(tmp_path, "bad", {"service.yaml": text, "cli.j2": "x\n"})
    store = TemplateStore(root=tmp_path)
    with pytest.raises(ConfigurationError, match=message) as info:
        store.validate(service="bad", action=Action.CREATE, parameters={}, payload_format="lines")
    assert "bad/service.yaml" in str(info.value)
    with pytest.raises(ConfigurationError):
        store.check()


def test_directory_without_service_file_is_not_a_service(root: Path) -> None:
    (root / "loose").mkdir()
    (root / "loose" / "cli.j2").write_text("x\n")
    store = TemplateStore(root=root)
    assert store.services() == ["svc"] and not store.has("loose", "cli")
