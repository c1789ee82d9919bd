"""Putting a scope back as a snapshot holds it (the restore edit), and readable diffs.

Pure functions over the trees and texts of :mod:`drivers.netconf.xmlconfig`.
"""

from __future__ import annotations

import difflib

from lxml import etree

from drivers.netconf.xmlconfig import (
    NC_NS,
    OPERATION,
    ListKeys,
    _copy,
    _elements,
    _filter_entry_keys,
    _filter_kind,
    _key_values,
    _ns,
    _step,
    _sub,
    _tag,
    _text,
    parse,
)


# -- restore ----------------------------------------------------------------------------------
def restore_config(content: str, scope: str, lk: ListKeys, *, current: str | None = None) -> bytes:
    """An edit-config ``<config>`` that puts the scope back as ``content`` (a snapshot) holds it.

    With ``current`` (the scope as the device holds it now), nodes absent from both are left
    alone: netconfd 2.13 answers ``remove`` of a list entry that does not exist by creating it
    and then failing validation (``data-missing .../if:type``).
    """
    snap = parse(content)
    flt = parse(scope)
    now = [parse(current)] if current is not None else None
    out = etree.Element(f"{{{NC_NS}}}config", nsmap={None: NC_NS, "nc": NC_NS})
    _restore_into(flt, [snap], out, lk, now)
    return etree.tostring(out)


def _select(f: etree._Element, parents: list[etree._Element], lk: ListKeys) -> list[etree._Element]:
    candidates = [s for parent in parents for s in parent.iterchildren(_tag(f))]
    if _filter_kind(f, lk) == "entry":
        kv = _filter_entry_keys(f, lk)
        return [s for s in candidates if _key_values(s, lk.keys_of(s)) == kv]
    return candidates


def _restore_into(
    fp: etree._Element,
    snaps: list[etree._Element],
    out: etree._Element,
    lk: ListKeys,
    now: list[etree._Element] | None,
) -> None:
    for f in _elements(fp):
        kind = _filter_kind(f, lk)
        present_now = None if now is None else _select(f, now, lk)
        if kind == "container":
            if present_now == []:
                if _select(f, snaps, lk):
                    node = _copy(_select(f, snaps, lk)[0])
                    node.set(OPERATION, "replace")
                    out.append(node)
                continue
            _restore_into(f, _select(f, snaps, lk), _sub(out, _tag(f)), lk, present_now)
            continue
        found = _select(f, snaps, lk)
        if found:
            for s in found:
                node = _copy(s)
                node.set(OPERATION, "replace")
                out.append(node)
        elif present_now != []:
            node = _sub(out, _tag(f))
            for k in _elements(f):  # an entry's keys
                _sub(node, _tag(k)).text = _text(k)
            node.set(OPERATION, "remove")


# -- diff -------------------------------------------------------------------------------------
def diff(before: str, after: str, *, before_name: str = "before", after_name: str = "after") -> str:
    """A unified diff of two canonical texts ('' when equal)."""
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), fromfile=before_name, tofile=after_name, lineterm="", n=3
    )
    return "\n".join(lines)


def targets(scope: str, lk: ListKeys) -> list[str]:
    """Readable paths of what a scope selects (for logs and messages)."""
    out: list[str] = []

    def walk(f: etree._Element, path: str, parent_ns: str) -> None:
        for c in _elements(f):
            p = f"{path}/{_step(c, parent_ns, lk)}"
            if _filter_kind(c, lk) == "container":
                walk(c, p, _ns(c))
            else:
                out.append(p)

    walk(parse(scope), "", NC_NS)
    return out


__all__ = ["diff", "restore_config", "targets"]
