"""Exact verification: the read-back scope must equal the snapshot with the edit applied. Pure.

From the pre-change snapshot (canonical text of the scope) and the rendered ``<config>`` edit,
:func:`expected_state` computes what the scope must hold after the change — RFC 6241 edit
semantics: merge (default) and create set leaves and add entries, ``replace`` swaps a subtree,
``delete``/``remove`` drop it. :func:`compare` then sets that against the read-back, leaf by leaf
(list entries by their keys, identities by namespace, sibling order ignored): a leaf the change
named that is not as rendered is a plain mismatch; any other difference in the scope is
*unexpected* (an out-of-band change, a side effect of the edit) unless the profile lists its path
as ``device_managed``.

Paths in ``device_managed`` patterns are written without list keys, module prefix where the
namespace changes, ``*`` as a wildcard: ``/ietf-interfaces:interfaces/interface/oper-status``.
Leaf-lists are told from leaves by repetition (several siblings of one tag); a single-valued
leaf-list entry merged into a leaf-list of one is taken as a leaf (the profile's
``device_managed`` can cover such a path).
"""

from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass

from lxml import etree

from drivers.base import Mismatch
from drivers.netconf.xmlconfig import (
    OPERATION,
    REMOVING,
    ListKeys,
    Path,
    _fast_step,
    _split,
    _module,
    _value,
    index,
    parse,
    path_text,
)

Values = dict[Path, list[str]]


@dataclass(frozen=True)
class State:
    """A scope as comparable data: every node path, and the normalized values of every leaf."""

    nodes: frozenset[Path]
    leaves: dict[Path, tuple[str, ...]]


def state_of(nodes: set[Path], leaves: dict[Path, list[tuple[str, str]]]) -> State:
    """From :func:`drivers.netconf.xmlconfig.index` output."""
    return State(nodes=frozenset(nodes), leaves={p: tuple(sorted(n for n, _ in v)) for p, v in leaves.items()})


@dataclass(frozen=True)
class Expected:
    state: State
    named: tuple[Path, ...]
    """Paths the edit names: leaves it sets, subtrees it replaces or removes."""
    before: frozenset[Path] = frozenset()
    """The snapshot's leaf paths (what a delete compares: the leaves that must be gone)."""


@functools.lru_cache(maxsize=256)
def expected_state(before: str, edit: bytes, lk: ListKeys) -> Expected:
    """The scope after ``edit`` (a serialized ``<config>``) is applied to ``before`` (a snapshot)."""
    nodes, leaves = index(parse(before), lk)
    vals: Values = {p: [n for n, _ in v] for p, v in leaves.items()}
    node_set = set(nodes)
    named: list[Path] = []
    _apply(parse(edit), (), node_set, vals, lk, named, "merge")
    return Expected(state=State(nodes=frozenset(node_set), leaves={p: tuple(sorted(v)) for p, v in vals.items() if v}),
                    named=tuple(named), before=frozenset(leaves))


def _drop(path: Path, nodes: set[Path], vals: Values) -> None:
    n = len(path)
    for p in [p for p in nodes if p[:n] == path]:
        nodes.discard(p)
    for p in [p for p in vals if p[:n] == path]:
        del vals[p]


def _leaf_list_tags(el: etree._Element) -> set[str]:
    seen: set[str] = set()
    repeated: set[str] = set()
    for c in el:
        if isinstance(c.tag, str) and not len(c):
            (repeated if c.tag in seen else seen).add(c.tag)
    return repeated


def _apply(el: etree._Element, path: Path, nodes: set[Path], vals: Values, lk: ListKeys,
           named: list[Path], inherited: str) -> None:
    repeated = _leaf_list_tags(el)
    for child in el:
        if not isinstance(child.tag, str):
            continue
        p = path + (_fast_step(child, lk),)
        op = child.get(OPERATION) or inherited
        if op in REMOVING:
            named.append(p)
            value = _value(child) if not len(child) and (child.text or "").strip() else None
            current = vals.get(p, [])
            if value is not None and len(current) > 1:  # one value of a leaf-list
                vals[p] = [v for v in current if v != value]
                if not vals[p]:
                    _drop(p, nodes, vals)
            else:
                _drop(p, nodes, vals)
            continue
        if op == "replace":
            named.append(p)
            _drop(p, nodes, vals)
            _add(child, p, nodes, vals, lk, repeated)
            continue
        nodes.add(p)
        if len(child):
            _apply(child, p, nodes, vals, lk, named, "merge")
        else:
            named.append(p)
            _set_leaf(child, p, vals, list_like=child.tag in repeated)


def _set_leaf(el: etree._Element, p: Path, vals: Values, *, list_like: bool) -> None:
    value = _value(el)
    current = vals.get(p, [])
    if list_like or len(current) > 1:
        if value not in current:
            vals[p] = [*current, value]
    else:
        vals[p] = [value]


def _add(el: etree._Element, p: Path, nodes: set[Path], vals: Values, lk: ListKeys, repeated: set[str]) -> None:
    nodes.add(p)
    if not len(el):
        _set_leaf(el, p, vals, list_like=el.tag in repeated)
        return
    inner = _leaf_list_tags(el)
    for child in el:
        if isinstance(child.tag, str):
            _add(child, p + (_fast_step(child, lk),), nodes, vals, lk, inner)


# -- comparing --------------------------------------------------------------------------------
def keyless(path: Path) -> str:
    """A path as ``device_managed`` patterns are written: no keys, module where the namespace changes."""
    out = []
    parent_ns = ""
    for tag, _ in path:
        ns, name = _split(tag)
        out.append(f"{_module(ns)}:{name}" if ns != parent_ns else name)
        parent_ns = ns
    return "/" + "/".join(out)


def _managed(path: Path, patterns: tuple[str, ...]) -> bool:
    if not patterns:
        return False
    text = keyless(path)
    return any(fnmatch.fnmatchcase(text, pat) or text.startswith(pat.rstrip("/") + "/") for pat in patterns)


def _under(path: Path, named: tuple[Path, ...]) -> bool:
    return any(path[: len(n)] == n for n in named)


def _shown(values: tuple[str, ...] | None) -> str | None:
    if not values:
        return None
    return ", ".join(_plain(v) for v in values)


def _plain(value: str) -> str:
    if value.startswith("{"):
        ns, _, local = value[1:].partition("}")
        return f"{_module(ns)}:{local}"
    return value


def compare(expected: Expected, actual: State, *, managed: tuple[str, ...] = ()) -> tuple[int, list[Mismatch]]:
    """(leaves compared, every difference) between the expected and the read-back scope."""
    want, have = expected.state, actual
    mismatches: list[Mismatch] = []
    paths = want.leaves.keys() | have.leaves.keys()
    for p in paths:
        w, h = want.leaves.get(p), have.leaves.get(p)
        if w == h or _managed(p, managed):
            continue
        mismatches.append(Mismatch(path=path_text(p), expected=_shown(w), actual=_shown(h),
                                   unexpected=not _under(p, expected.named)))
    mismatches.sort(key=lambda m: m.path)
    # Containers are compared through their leaves: an element without children is a leaf (a
    # presence container is one), and a container emptied by the edit is not read back at all.
    return len(paths | expected.before), mismatches


__all__ = ["Expected", "State", "compare", "expected_state", "keyless", "state_of"]
