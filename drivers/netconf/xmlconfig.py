"""What a rendered ``<config>`` touches, how to check it, and how to put it back. Pure (lxml).

From a rendered ``<config>`` (which may carry ``nc:operation="delete"/"remove"``) this module
derives:

* the **scope**: a subtree filter selecting exactly what the change touches — each list entry
  (by its keys, from profile data :class:`ListKeys`) and each leaf outside a list entry;
* the **index** of a read-back (every node path, every leaf value) that exact verification
  compares with the snapshot plus the edit (:mod:`drivers.netconf.exact`);
* the **canonical text** of a read-back (:func:`canonical`): keys first, other siblings sorted,
  whitespace dropped, identity prefixes normalized — equal state ⇔ equal text;
* a **restore edit** from a snapshot (:func:`drivers.netconf.restore.restore_config`): what the snapshot holds goes back
  with ``operation="replace"``, what it lacks is removed (``operation="remove"``);
* a readable unified **diff** of two canonical texts (:func:`diff`).

Known limits: ``ordered-by user`` lists are compared as sets; leaf-lists are checked by membership.
"""

from __future__ import annotations

import functools
import logging
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from lxml import etree

from drivers.netconf import xmlsafe


log = logging.getLogger(__name__)

NC_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"
OPERATION = f"{{{NC_NS}}}operation"
REMOVING = frozenset({"delete", "remove"})
_parser = xmlsafe.thread_parser  # this module also runs on the planning threads
_NCNAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")


class ConfigXmlError(ValueError):
    """The rendered configuration (or a stored snapshot/scope) is not what this module needs."""


class ListKeys:
    """List keys per (namespace, list name), from profile settings ``list_keys``:
    ``{namespace: {list: [key, ...]}}``. Hashable, so derived results can be cached."""

    __slots__ = ("_by_tag", "_hash", "_map")

    def __init__(self, data: Mapping[str, Mapping[str, Sequence[str]]] | None = None) -> None:
        m: dict[tuple[str, str], tuple[str, ...]] = {}
        for ns, lists in (data or {}).items():
            for name, keys in lists.items():
                if isinstance(keys, str) or not keys:
                    raise ConfigXmlError(f"list_keys[{ns!r}][{name!r}] must be a non-empty list of key names")
                m[(ns, name)] = tuple(keys)
        self._map = m
        self._hash = hash(frozenset(m.items()))
        self._by_tag: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
            (f"{{{ns}}}{name}" if ns else name): (keys, tuple((k, f"{{{ns}}}{k}" if ns else k) for k in keys))
            for (ns, name), keys in m.items()
        }
        """Clark tag of a list → (key names, ((key, Clark tag of the key), ...)): the hot walks' lookup."""

    def keys_of(self, el: etree._Element) -> tuple[str, ...]:
        return self._map.get(_split(_tag(el)), ()) if self._map else ()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ListKeys) and other._map == self._map


# -- parsing ----------------------------------------------------------------------------------
def parse(text: str | bytes) -> etree._Element:
    try:
        return xmlsafe.parse(text.encode() if isinstance(text, str) else text, _parser())
    except etree.XMLSyntaxError as exc:
        raise ConfigXmlError(f"not well-formed XML: {exc}") from exc
    except xmlsafe.UnsafeXmlError as exc:
        raise ConfigXmlError(str(exc)) from exc


def parse_config(text: str | bytes) -> etree._Element:
    """The rendered ``<config>`` element (any namespace; NETCONF's is used on the wire)."""
    root = parse(text)
    if not isinstance(root.tag, str) or etree.QName(root).localname != "config":
        raise ConfigXmlError(f"the rendered configuration must be a <config> element, not <{root.tag!s}>")
    if not _elements(root):
        raise ConfigXmlError("the rendered <config> is empty")
    return root


def edit_payload(root: etree._Element) -> bytes:
    """The ``<config>`` element in the NETCONF namespace, serialized for edit-config."""
    if root.tag == f"{{{NC_NS}}}config":
        return etree.tostring(root)
    out = etree.Element(f"{{{NC_NS}}}config", nsmap={None: NC_NS})
    for child in _elements(root):
        out.append(_copy(child))
    return etree.tostring(out)


def _elements(el: etree._Element) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str)]


def _tag(el: etree._Element) -> str:
    """An element's Clark tag. lxml types ``tag`` as ``str | bytes | bytearray | QName`` (a tag set
    by hand is kept as given; a comment's or processing instruction's is a function): the elements
    of a parsed tree, the ones this module builds and those :func:`_elements` selects have a str tag."""
    tag = el.tag
    if not isinstance(tag, str):
        raise TypeError(f"not an element with a str tag: {tag!r}")
    return tag


def _copy(el: etree._Element) -> etree._Element:
    return etree.fromstring(etree.tostring(el), _parser())


@functools.lru_cache(maxsize=4096)
def _split(tag: str) -> tuple[str, str]:
    """``{ns}local`` → (ns, local), cached (Clark notation; much cheaper than ``etree.QName``)."""
    if tag[:1] == "{":
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _ns(el: etree._Element) -> str:
    return _split(_tag(el))[0]


def _sub(parent: etree._Element, tag: str) -> etree._Element:
    """A child element declaring its namespace as default only where it changes."""
    ns = etree.QName(tag).namespace
    if ns and ns != _ns(parent):
        return etree.SubElement(parent, tag, nsmap={None: ns})
    return etree.SubElement(parent, tag)


def _text(el: etree._Element) -> str:
    return (el.text or "").strip()


def _value(el: etree._Element) -> str:
    """A leaf's value, identity prefixes resolved to ``{namespace}name`` so prefixes don't matter."""
    text = _text(el)
    prefix, sep, local = text.partition(":")
    if sep and prefix in el.nsmap and prefix is not None and "/" not in local:
        return f"{{{el.nsmap[prefix]}}}{local}"
    return text


@functools.lru_cache(maxsize=1024)
def _key_tags(ns: str, keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((k, f"{{{ns}}}{k}" if ns else k) for k in keys)


def _key_values(el: etree._Element, keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The entry's key values (the first child of each key's tag, like ``find``)."""
    return _entry_key_values(el, _key_tags(_ns(el), keys))


def _entry_key_values(el: etree._Element, key_tags: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for k, ktag in key_tags:
        for kel in el:
            if kel.tag == ktag:
                out.append((k, _text(kel)))
                break
        else:
            raise ConfigXmlError(f"list entry <{etree.QName(el).localname}> lacks its key <{k}>")
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def _module(ns: str) -> str:
    tail = re.split(r"[:/]", ns.rstrip("/:"))[-1] or "ns"
    name = _NCNAME_BAD.sub("_", tail)
    return name if name[0].isalpha() or name[0] == "_" else f"m{name}"


def _step(el: etree._Element, parent_ns: str, lk: ListKeys) -> str:
    ns, name = _split(_tag(el))
    step = f"{_module(ns)}:{name}" if ns != parent_ns else name
    keys = lk.keys_of(el)
    if keys:
        step += "".join(f"[{k}={v!r}]" for k, v in _key_values(el, keys))
    return step


# -- scope ------------------------------------------------------------------------------------
def scope_filter(root: etree._Element, lk: ListKeys) -> str:
    """The subtree filter (a ``<filter type="subtree">`` document) selecting what ``root`` touches."""
    return etree.tostring(scope_element(root, lk)).decode()


def scope_element(root: etree._Element, lk: ListKeys) -> etree._Element:
    flt = etree.Element(f"{{{NC_NS}}}filter", nsmap={None: NC_NS})
    flt.set("type", "subtree")
    _scope_into(root, flt, lk)
    return flt


def _scope_into(el: etree._Element, fp: etree._Element, lk: ListKeys) -> None:
    for child in _elements(el):
        tag = _tag(child)
        keys = lk.keys_of(child)
        if keys:
            kv = _key_values(child, keys)
            if not any(_filter_entry_keys(f, lk) == kv for f in fp.iterchildren(tag)):
                entry = _sub(fp, tag)
                for k, v in kv:
                    _sub(entry, f"{{{_ns(child)}}}{k}").text = v
        elif _elements(child):
            container = next((f for f in fp.iterchildren(tag) if _filter_kind(f, lk) == "container"), None)
            if container is None:
                container = _sub(fp, tag)
            _scope_into(child, container, lk)
        elif not any(True for _ in fp.iterchildren(tag)):
            _sub(fp, tag)


def _filter_kind(f: etree._Element, lk: ListKeys) -> str:
    if lk.keys_of(f):
        return "entry"
    return "container" if _elements(f) else "leaf"


def _filter_entry_keys(f: etree._Element, lk: ListKeys) -> tuple[tuple[str, str], ...]:
    keys = lk.keys_of(f)
    return _key_values(f, keys) if keys else ()


def scope_texts(root: etree._Element, lk: ListKeys) -> tuple[str, bytes]:
    """The scope filter as text (what :func:`scope_filter` returns) and its content for
    ``get-config`` (what :func:`filter_content` returns), built as text in one walk; what that
    walk does not handle exactly as lxml would serialize it falls back to the element tree."""
    try:
        parts = _scope_parts(root, NC_NS, lk)
        text = f'<filter xmlns="{NC_NS}" type="subtree">{"".join(parts)}</filter>'
        if not text.isascii():
            text = text.encode("ascii", "xmlcharrefreplace").decode()
            parts = [p.encode("ascii", "xmlcharrefreplace").decode() for p in parts]
        return text, "".join(parts).encode()
    except _Unusual:
        flt = scope_element(root, lk)
        return etree.tostring(flt).decode(), filter_content(flt)


def _escape_text(text: str) -> str:
    if "\r" in text:
        raise _Unusual("carriage return")
    if "&" in text or "<" in text or ">" in text:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


_ScopeDone = tuple[Literal["entry", "leaf"], str, None, str]
"""An entry or a leaf of :func:`_scope_parts`: (kind, tag, None, serialized)."""
_ScopeContainer = tuple[Literal["container"], str, list[etree._Element], tuple[str, str, str]]
"""A container of :func:`_scope_parts`: (kind, tag, its elements, (local name, xmlns declaration, namespace))."""


def _scope_parts(el: etree._Element, parent_ns: str, lk: ListKeys) -> list[str]:
    """Serialized scope children of ``el`` (the same selection and order as :func:`_scope_into`)."""
    order: list[_ScopeDone | _ScopeContainer] = []
    entries: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    containers: dict[str, _ScopeContainer] = {}
    seen: set[str] = set()
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        ns, local = _split(tag)
        if ns == NC_NS and parent_ns == NC_NS:
            raise _Unusual("a top-level node in the NETCONF namespace")
        decl = _xmlns(None, ns) if ns != parent_ns else ""
        key_tags = lk._by_tag.get(tag, _NO_KEYS)[1] if lk._map else ()
        if key_tags:
            kv = _entry_key_values(child, key_tags)
            if (tag, kv) not in entries:
                entries.add((tag, kv))
                seen.add(tag)
                inner = "".join(f"<{k}>{_escape_text(v)}</{k}>" for k, v in kv)
                order.append(("entry", tag, None, f"<{local}{decl}>{inner}</{local}>"))
        elif len(child) and any(isinstance(c.tag, str) for c in child):
            item = containers.get(tag)
            if item is None:
                item = ("container", tag, [], (local, decl, ns))
                containers[tag] = item
                seen.add(tag)
                order.append(item)
            item[2].append(child)
        elif tag not in seen:
            seen.add(tag)
            order.append(("leaf", tag, None, f"<{local}{decl}/>"))
    out = []
    for part in order:
        if part[0] == "container":
            _, _, kids, (local, decl, ns) = part
            merged = _scope_parts_of(kids, ns, lk)
            out.append(f"<{local}{decl}>{''.join(merged)}</{local}>")
        else:
            out.append(part[3])
    return out


def _scope_parts_of(els: list[etree._Element], ns: str, lk: ListKeys) -> list[str]:
    if len(els) == 1:
        return _scope_parts(els[0], ns, lk)
    raise _Unusual("a container rendered twice")  # the element tree merges them


def filter_content(scope: str | etree._Element) -> bytes:
    """The inside of a scope filter (stored text or element), for ``get-config``."""
    flt = parse(scope) if isinstance(scope, str) else scope
    return b"".join(etree.tostring(c) for c in _elements(flt))


# -- paths and the index of a read-back ----------------------------------------------------
Step = tuple[str, tuple[tuple[str, str], ...]]
"""One path step: the element's Clark tag and its list-key values (empty outside lists)."""
Path = tuple[Step, ...]


_NO_KEYS: tuple[tuple[str, ...], tuple[tuple[str, str], ...]] = ((), ())


def _fast_step(el: etree._Element, lk: ListKeys) -> Step:
    tag = _tag(el)
    key_tags = lk._by_tag.get(tag, _NO_KEYS)[1]
    return (tag, _entry_key_values(el, key_tags) if key_tags else ())


def path_text(path: Path) -> str:
    """``/module:container/list[key='v']/leaf``: the module prefix only where the namespace changes."""
    out = []
    parent_ns = ""
    for tag, kv in path:
        ns, name = _split(tag)
        step = f"{_module(ns)}:{name}" if ns != parent_ns else name
        out.append(step + "".join(f"[{k}={v!r}]" for k, v in kv))
        parent_ns = ns
    return "/" + "/".join(out)


def index(data: etree._Element | None, lk: ListKeys) -> tuple[set[Path], dict[Path, list[tuple[str, str]]]]:
    """Every node path of a read-back, and the (normalized, raw) values of its leaves."""
    nodes: set[Path] = set()
    leaves: dict[Path, list[tuple[str, str]]] = {}

    def walk(el: etree._Element, path: Path) -> None:
        for child in el:
            if not isinstance(child.tag, str):
                continue
            p = path + (_fast_step(child, lk),)
            nodes.add(p)
            if len(child):
                walk(child, p)
            else:
                leaves.setdefault(p, []).append((_value(child), _text(child)))

    if data is not None:
        walk(data, ())
    return nodes, leaves


def readback(data: etree._Element | None, lk: ListKeys) -> tuple[set[Path], dict[Path, list[tuple[str, str]]], str]:
    """:func:`index` and :func:`canonical` of one read-back, from a single walk of it."""
    nodes: set[Path] = set()
    leaves: dict[Path, list[tuple[str, str]]] = {}
    text = None
    if data is not None:
        try:
            text = _canon_text(data, lk, nodes, leaves)
        except _Unusual:
            nodes.clear()
            leaves.clear()
    if text is None:
        nodes, leaves = index(data, lk)
        text = _canonical_tree(data, lk)
    return nodes, leaves, text


# -- canonical text ---------------------------------------------------------------------------
def canonical(data: etree._Element | None, lk: ListKeys) -> str:
    """Canonical text of a read-back's children: equal device state ⇔ equal text.

    Siblings are ordered by (list key position, tag, key values or leaf value); ties (keyless
    repeated containers) keep the device's order. Built as text in one pass; what that pass does
    not handle exactly as lxml would serialize it falls back to :func:`_canonical_tree`.
    """
    if data is not None:
        try:
            return _canon_text(data, lk, None, None)
        except _Unusual:
            pass
    return _canonical_tree(data, lk)


class _Unusual(Exception):
    """The one-pass canonical text cannot reproduce lxml's serialization for this read-back."""


_EMPTY = f'<config xmlns="{NC_NS}"/>\n'
_ATTR_BAD = frozenset('&<>"\n\r\t')


@functools.lru_cache(maxsize=1024)
def _xmlns(prefix: str | None, ns: str) -> str:
    if not ns or _ATTR_BAD.intersection(ns):
        raise _Unusual(ns)
    return f' xmlns="{ns}"' if prefix is None else f' xmlns:{prefix}="{ns}"'


_first = operator.itemgetter(0)

_CanonItem = tuple[tuple[int, str, tuple[str, ...]], str, str]
"""A sibling in :func:`_canon_text`: (sort key: rank, tag, signature), its serialized fragment, its text."""


def _canon_text(
    data: etree._Element,
    lk: ListKeys,
    nodes: set[Path] | None,
    leaves: dict[Path, list[tuple[str, str]]] | None,
) -> str:
    """The text :func:`_canonical_tree` serializes, built directly; with ``nodes``/``leaves`` it
    also fills the :func:`index` of the read-back (same walk)."""
    indexing = nodes is not None
    node_set: set[Path] = nodes if nodes is not None else set()
    leaf_map: dict[Path, list[tuple[str, str]]] = leaves if leaves is not None else {}
    by_tag = lk._by_tag

    def walk(el: etree._Element, parent_ns: str, keys: tuple[str, ...], depth: int, path: Path) -> list[_CanonItem]:
        items: list[_CanonItem] = []
        indent = "  " * depth
        for child in el:
            tag = child.tag
            if not isinstance(tag, str):
                raise _Unusual("comment or processing instruction")
            ns, local = _split(tag)
            decl = _xmlns(None, ns) if ns != parent_ns else ""
            if len(child):
                child_keys, key_tags = by_tag.get(tag, _NO_KEYS) if by_tag else _NO_KEYS
                p = path + ((tag, _entry_key_values(child, key_tags) if key_tags else ()),) if indexing else path
                if indexing:
                    node_set.add(p)
                kids = walk(child, ns, child_keys, depth + 1, p)
                sig = tuple([k[2] for k in kids[: len(child_keys)]])
                frag = f"{indent}<{local}{decl}>\n{''.join([k[1] for k in kids])}{indent}</{local}>\n"
                text = ""
            else:
                raw = child.text
                raw = raw.strip() if raw else ""
                norm = _value(child) if ":" in raw else raw
                text = norm
                if text.startswith("{"):
                    ident_ns, _, ident = text[1:].partition("}")
                    prefix = _module(ident_ns)
                    if ident_ns == ns or prefix[:3].lower() == "xml":
                        raise _Unusual(text)
                    decl += _xmlns(prefix, ident_ns)
                    text = f"{prefix}:{ident}"
                if indexing:
                    key_tags = by_tag.get(tag, _NO_KEYS)[1] if by_tag else ()
                    p = path + ((tag, _entry_key_values(child, key_tags) if key_tags else ()),)
                    node_set.add(p)
                    leaf_map.setdefault(p, []).append((norm, raw))
                frag = f"{indent}<{local}{decl}>{_escape_text(text)}</{local}>\n"
                sig = (text,)
            rank = keys.index(local) if local in keys else len(keys)
            items.append(((rank, tag, sig), frag, text))
        if len(items) > 1:
            items.sort(key=_first)
        return items

    for child in data:
        if isinstance(child.tag, str):
            break
    else:
        if len(data):
            raise _Unusual("comments only")
        return _EMPTY
    body = "".join([item[1] for item in walk(data, NC_NS, (), 1, ())])
    out = f'<config xmlns="{NC_NS}">\n{body}</config>\n'
    return out if out.isascii() else out.encode("ascii", "xmlcharrefreplace").decode()


def _canonical_tree(data: etree._Element | None, lk: ListKeys) -> str:
    """The reference canonical text (an lxml tree, serialized): the fallback of :func:`canonical`."""
    out = etree.Element(f"{{{NC_NS}}}config", nsmap={None: NC_NS})
    if data is not None:
        for child in _canon_children(data, NC_NS, (), lk):
            out.append(child)
    return etree.tostring(out, pretty_print=True).decode()


def _canon_children(el: etree._Element, parent_ns: str, keys: tuple[str, ...], lk: ListKeys) -> list[etree._Element]:
    items: list[tuple[tuple[int, str, tuple[str, ...]], etree._Element]] = []
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        ns, local = _split(tag)
        nsmap: dict[str | None, str] = {None: ns} if ns and ns != parent_ns else {}
        if len(child):
            child_keys = lk.keys_of(child)
            new = etree.Element(tag, nsmap=nsmap or None)
            kids = _canon_children(child, ns, child_keys, lk)
            new.extend(kids)
            sig = tuple(_text(k) for k in kids[: len(child_keys)])
        else:
            text = _value(child)
            if text.startswith("{"):
                ident_ns, _, local = text[1:].partition("}")
                prefix = _module(ident_ns)
                nsmap[prefix] = ident_ns
                text = f"{prefix}:{local}"
            new = etree.Element(tag, nsmap=nsmap or None)
            new.text = text
            sig = (text,)
        rank = keys.index(local) if local in keys else len(keys)
        items.append(((rank, tag, sig), new))
    items.sort(key=lambda item: item[0])
    return [new for _, new in items]


__all__ = [
    "ConfigXmlError",
    "ListKeys",
    "Path",
    "canonical",
    "edit_payload",
    "filter_content",
    "index",
    "parse",
    "parse_config",
    "path_text",
    "readback",
    "scope_element",
    "scope_filter",
]
