"""Rendered payloads that no parameter value can change the meaning of. Pure.

A driver declares what it sends (:class:`drivers.base.PayloadFormat`); the template environment
and the checks here follow from it, never from a device profile. Three layers, each enough on
its own for the built-in templates, together fail-closed against a template mistake:

1. **Escaping by construction.** XML templates render with autoescape on; varbinds templates must
   pass every value through ``|tojson`` (checked statically, :func:`static_problems`); lines never
   receive a line break (parameter validation refuses control and line-separator characters).
2. **Hostile values refused** before rendering (:func:`value_problem`): for XML, a value that
   holds markup (a tag, an entity or character reference, ``]]>``) is refused even though
   escaping would make it harmless text: an orchestrator that sends ``</description>`` in a
   description is broken or hostile, and the gateway says so instead of configuring it.
3. **The rendered structure is checked** (:func:`check`). While rendering, every value a template
   outputs (each ``{{ ... }}``) is wrapped in two reserved characters, :data:`MARK_OPEN` and
   :data:`MARK_CLOSE` (Unicode private use, refused in every parameter). The marked text is then
   parsed in its format and each marked region must sit inside one atom of it:

   * ``xml``: one ``<config>`` root in the NETCONF namespace, no DOCTYPE, no entity, no
     processing instruction; each region inside one text node or one attribute value (never in
     a comment, a namespace declaration or an ``operation`` attribute, whose value must be a
     literal of the template and a NETCONF operation);
   * ``lines``: each region inside one line, holding no control or line-separator character;
   * ``varbinds`` and ``yaml``: each region inside one YAML scalar that is not a mapping key.

   Then the marks are removed and the clean text is what the driver sends.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable

import jinja2
import yaml
from jinja2 import nodes
from lxml import etree
from markupsafe import Markup

from drivers.base import PayloadFormat

MARK_OPEN = "\ue000"
MARK_CLOSE = "\ue001"
MARKS = frozenset((MARK_OPEN, MARK_CLOSE))
_OPEN_M = Markup(MARK_OPEN)
_CLOSE_M = Markup(MARK_CLOSE)

NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
CONFIG_TAG = f"{{{NC_NS}}}config"
OPERATION = f"{{{NC_NS}}}operation"
NETCONF_OPERATIONS = frozenset({"merge", "replace", "create", "delete", "remove"})

_MARKUP_RE = re.compile(
    r"<[^\s\d=<>]"                                # a tag, closing tag, comment, CDATA, DOCTYPE or PI
    r"|&(?:#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z_:][\w.:-]*);"  # an entity or character reference
    r"|\]\]>"                                      # the end of a CDATA section
)


class PayloadViolation(Exception):
    """A rendered payload breaks its format's structure. ``values`` are the contents of the
    offending marked regions (what the template output there), to name the parameter;
    ``template_fault``: the template's own text is at fault (whatever the values)."""

    def __init__(self, reason: str, *, values: tuple[str, ...] = (), template_fault: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.values = values
        self.template_fault = template_fault


def mark(value: Any) -> Any:
    """Jinja ``finalize``: wrap each output value in the marks (Markup stays Markup)."""
    if isinstance(value, Markup):
        return _OPEN_M + value + _CLOSE_M
    return f"{MARK_OPEN}{value}{MARK_CLOSE}"


def unmark(text: str) -> str:
    return text.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")  # str.translate is 20x slower here


def environment(fmt: PayloadFormat, *, loader: jinja2.BaseLoader | None,
                factory: Callable[..., jinja2.Environment]) -> jinja2.Environment:
    """The environment a format renders in: XML autoescaped, every format marked. YAML formats
    keep non-ASCII characters as they are in ``|tojson`` (JSON's ``\\ud83d\\ude00`` surrogate
    pairs for characters beyond the BMP are not valid YAML escapes)."""
    env = factory(loader=loader, autoescape=fmt is PayloadFormat.XML, finalize=mark)
    if fmt in (PayloadFormat.VARBINDS, PayloadFormat.YAML):
        env.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
    return env


# -- values ---------------------------------------------------------------------------------------
def value_problem(value: str, fmt: PayloadFormat) -> str | None:
    """Why a parameter value may not go into a payload of ``fmt`` (None: it may)."""
    for ch in value:
        if ch in MARKS:
            return f"contains the reserved character U+{ord(ch):04X}"
        if fmt is PayloadFormat.XML:
            o = ord(ch)
            # XML 1.0 forbids C0 controls but TAB, LF, CR (escaping cannot help), U+FFFE/U+FFFF
            if (o < 0x20 and ch not in "\t\n") or o in (0xFFFE, 0xFFFF) or 0xD800 <= o <= 0xDFFF:
                # a carriage return would reach the device as a line feed (XML end-of-line handling)
                return f"contains the control character U+{o:04X}, not allowed in XML output"
        elif unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs"):
            # a line break in a value would add a line (a command); other controls are no better
            return f"contains the control character U+{ord(ch):04X}, not allowed in {fmt.value} output (it could add a line)"
    if fmt is PayloadFormat.XML:
        m = _MARKUP_RE.search(value)
        if m is not None:
            return (f"holds XML markup ({m.group(0)!r}...): a value must be plain text, never tags, "
                    "entity references or CDATA")
    return None


# -- rendered payloads ----------------------------------------------------------------------------
def regions(text: str) -> list[tuple[int, int]]:
    """(start, end) of every marked region's content in ``text``; unbalanced or nested marks raise."""
    out: list[tuple[int, int]] = []
    start = -1
    for i, ch in enumerate(text):
        if ch == MARK_OPEN:
            if start >= 0:
                raise PayloadViolation("a value holds another value (nested marks)")
            start = i + 1
        elif ch == MARK_CLOSE:
            if start < 0:
                raise PayloadViolation("a value ends where none began (the structure around it changed)")
            out.append((start, i))
            start = -1
    if start >= 0:
        raise PayloadViolation("a value does not end where it began: it spans the structure around it",
                               values=(text[start:],))
    return out


def _balanced(text: str | None, what: str) -> None:
    if not text or (MARK_OPEN not in text and MARK_CLOSE not in text):
        return
    try:
        regions(text)
    except PayloadViolation as exc:
        shown = tuple(unmark(v) for v in exc.values) or (unmark(text),)
        raise PayloadViolation(f"a value is not confined to one {what}: {exc.reason}", values=shown) from None


def check(fmt: PayloadFormat, marked: str) -> str:
    """Check a marked render against its format; the clean payload, or :class:`PayloadViolation`."""
    if fmt is PayloadFormat.XML:
        _check_xml(marked)
    elif fmt is PayloadFormat.LINES:
        _check_lines(marked)
    elif fmt in (PayloadFormat.VARBINDS, PayloadFormat.YAML):
        _check_yaml_values(marked)
    else:  # pragma: no cover - an enum member without a check is a bug here
        raise PayloadViolation(f"no structure check for payload format {fmt!r}")
    return unmark(marked)


def _region_values(text: str) -> tuple[str, ...]:
    try:
        return tuple(unmark(text[s:e]) for s, e in regions(text))
    except PayloadViolation:
        return ()


_local = threading.local()


def _xml_parser() -> etree.XMLParser:
    """One parser per thread (lxml parsers must not be shared between threads; making one per
    call costs more than the parse)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False,
                                                 load_dtd=False, remove_comments=False, remove_pis=False)
    return parser


def _check_xml(marked: str) -> None:
    try:
        root = etree.fromstring(marked.encode("utf-8"), _xml_parser())
    except etree.XMLSyntaxError as exc:
        line = marked.split("\n")[exc.lineno - 1] if exc.lineno and exc.lineno <= marked.count("\n") + 1 else ""
        # autoescaped values cannot break well-formedness (their characters were checked first):
        # the template's own text is malformed, or it puts a value where no text may go
        raise PayloadViolation(f"the rendered output is not well-formed XML (line {exc.lineno}: {exc.msg})",
                               values=_region_values(line), template_fault=True) from None
    doc = root.getroottree()
    if doc.docinfo.doctype or doc.docinfo.internalDTD is not None:
        raise PayloadViolation("the rendered XML has a DOCTYPE", template_fault=True)
    if root.tag != CONFIG_TAG:
        raise PayloadViolation(f"the rendered XML must be one <config> element in the NETCONF namespace, not "
                               f"<{root.tag!s}>", template_fault=True)
    for sibling in (*root.itersiblings(preceding=True), *root.itersiblings()):
        if isinstance(sibling, etree._ProcessingInstruction):
            raise PayloadViolation("the rendered XML has a processing instruction", template_fault=True)
    # Every value must be found, balanced, in a text node or an attribute value. Counting the
    # values found against the values rendered catches one anywhere else (a comment, a namespace
    # declaration, a processing instruction) without looking at those one by one.
    rendered = marked.count(MARK_OPEN)
    found = 0
    for node in root.iter():
        # (the same test as ``node.tag is etree.PI`` etc.: lxml's stubs type ``tag`` as a name only)
        if isinstance(node, etree._ProcessingInstruction):
            raise PayloadViolation("the rendered XML has a processing instruction", template_fault=True)
        if isinstance(node, etree._Entity):
            raise PayloadViolation(f"the rendered XML has an entity reference {node.text!r}", template_fault=True)
        if not isinstance(node, etree._Comment):
            text = node.text
            if text and (MARK_OPEN in text or MARK_CLOSE in text):
                _balanced(text, "text node")
                found += text.count(MARK_OPEN)
            for name, value in node.items():
                if name == OPERATION or name.endswith("}operation") or name == "operation":
                    _no_marks(value, "in an operation attribute (only the template may write one)")
                    if value not in NETCONF_OPERATIONS:
                        raise PayloadViolation(f"operation={value!r} is not a NETCONF operation", template_fault=True)
                elif MARK_OPEN in value or MARK_CLOSE in value:
                    _balanced(value, "attribute value")
                    found += value.count(MARK_OPEN)
        tail = node.tail
        if tail and (MARK_OPEN in tail or MARK_CLOSE in tail):
            _balanced(tail, "text node")
            found += tail.count(MARK_OPEN)
    if found != rendered:
        raise PayloadViolation("the template puts a value outside text and attribute values (in a comment, a "
                               "namespace declaration or a processing instruction)", values=_region_values(marked),
                               template_fault=True)


def _no_marks(text: str | None, where: str) -> None:
    if text and (MARK_OPEN in text or MARK_CLOSE in text):
        raise PayloadViolation(f"a value appears {where}", values=_region_values(text) or (unmark(text),))


def _check_lines(marked: str) -> None:
    for number, line in enumerate(marked.split("\n"), 1):
        try:
            spans = regions(line)
        except PayloadViolation as exc:
            raise PayloadViolation(f"line {number}: a value spans more than one line", values=exc.values) from None
        for s, e in spans:
            value = line[s:e]
            bad = next((ch for ch in value if unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs")), None)
            if bad is not None:
                raise PayloadViolation(f"line {number}: a value holds U+{ord(bad):04X}, which would add a line",
                                       values=(value,))


def _check_yaml_values(marked: str) -> None:
    clean_parts: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0  # in the clean text
    last = 0
    for s, e in regions(marked):
        clean_parts.append(marked[last:s - 1])
        pos += s - 1 - last
        clean_parts.append(marked[s:e])
        spans.append((pos, pos + e - s))
        pos += e - s
        last = e + 1
    clean_parts.append(marked[last:])
    clean = "".join(clean_parts)
    try:
        root = yaml.compose(clean, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise PayloadViolation(f"the rendered YAML is not valid: {exc}",
                               values=tuple(clean[s:e] for s, e in spans)) from None
    values: list[tuple[int, int]] = []
    _value_scalars(root, values, is_key=False)
    for s, e in spans:
        if s == e:
            continue
        if not any(vs <= s and e <= ve for vs, ve in values):
            raise PayloadViolation("a value is not confined to one YAML scalar value (render it with |tojson)",
                                   values=(clean[s:e],))


def _value_scalars(node: yaml.Node | None, out: list[tuple[int, int]], *, is_key: bool) -> None:
    stack: list[tuple[yaml.Node | None, bool]] = [(node, is_key)]
    while stack:
        n, key = stack.pop()
        if isinstance(n, yaml.ScalarNode):
            if not key:
                out.append((n.start_mark.index, n.end_mark.index))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend((c, False) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.append((k, True))
                stack.append((v, False))


# -- templates, statically ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Finding:
    line: int
    reason: str


def static_problems(fmt: PayloadFormat, env: jinja2.Environment, source: str) -> list[str]:
    """What a template's own text does that its format forbids ("line N: reason")."""
    found: list[_Finding] = []
    if any(ch in source for ch in MARKS):
        found.append(_Finding(1, "the template holds a reserved character (U+E000/U+E001)"))
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return [f"line {exc.lineno}: template syntax error: {exc.message}"]
    if fmt is PayloadFormat.XML:
        for f in tree.find_all(nodes.Filter):
            if f.name == "safe":
                found.append(_Finding(f.lineno, "|safe turns escaping off for a value"))
        for m in tree.find_all((nodes.ScopedEvalContextModifier, nodes.EvalContextModifier)):
            if any(k.key == "autoescape" for k in m.options):
                found.append(_Finding(m.lineno, "{% autoescape %} changes escaping"))
    if fmt in (PayloadFormat.VARBINDS, PayloadFormat.YAML):
        for out in tree.find_all(nodes.Output):
            for expr in out.nodes:
                if isinstance(expr, (nodes.TemplateData, nodes.Const)):
                    continue
                if not (isinstance(expr, nodes.Filter) and expr.name == "tojson"):
                    found.append(_Finding(expr.lineno, f"every value of a {fmt.value} template must be rendered "
                                                       "with |tojson (one value, one YAML scalar)"))
    return [f"line {f.line}: {f.reason}" for f in sorted(found, key=lambda f: f.line)]


__all__ = [
    "MARKS",
    "MARK_CLOSE",
    "MARK_OPEN",
    "PayloadViolation",
    "check",
    "environment",
    "mark",
    "regions",
    "static_problems",
    "unmark",
    "value_problem",
]
