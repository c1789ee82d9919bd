"""NETCONF service checks (:mod:`drivers.checks`): a ``<get>`` filter and its records. Pure.

A check's ``get`` is a subtree filter (one or more top-level elements, each in its module's
namespace); the driver sends it in a ``<get>``, which returns configuration and operational
state. The reply's data becomes *records*: one per element that has leaf children (elements
without element children), mapping each leaf's local name to its text (the first of a repeated
leaf). For ``interfaces-state``::

    <interface><name>eth1</name><oper-status>up</oper-status><statistics>...</statistics></interface>
      → {name: eth1, oper-status: up}   and the statistics as a record of their own
"""

from __future__ import annotations

from lxml import etree

from drivers.checks import MAX_RECORDS, TooMuch
from drivers.netconf import xmlsafe


class FilterError(ValueError):
    """A check's ``get`` that is not a usable subtree filter."""


_WRAP_NS = "urn:agw:check-filter"


def filter_bytes(text: str) -> bytes:
    """The filter's top-level elements, checked (well-formed, no DOCTYPE, no processing
    instruction, every element namespaced) and serialized again."""
    raw = text.encode("utf-8")
    if b"<!DOCTYPE" in raw.upper() or b"<?" in raw:
        raise FilterError("a DOCTYPE or processing instruction is not allowed in a filter")
    try:
        root = xmlsafe.parse(b'<f xmlns:agwcheck="' + _WRAP_NS.encode() + b'">' + raw + b"</f>",
                             xmlsafe.thread_parser(), what="check filter")
    except (etree.XMLSyntaxError, xmlsafe.UnsafeXmlError) as exc:
        raise FilterError(f"not a well-formed subtree filter: {str(exc)[:160]}") from None
    tops = [el for el in root if isinstance(el.tag, str)]
    if not tops:
        raise FilterError("the filter selects nothing (no element)")
    if (root.text or "").strip() or any((el.tail or "").strip() for el in tops):
        raise FilterError("text outside the filter's elements")
    for el in root.iter():
        if el is root or not isinstance(el.tag, str):
            continue
        if not etree.QName(el).namespace:
            raise FilterError(f"element <{el.tag}> has no namespace (give its module's xmlns)")
    return b"".join(etree.tostring(el, with_tail=False) for el in tops)


def xml_records(data: etree._Element | None) -> list[dict[str, str]]:
    """The records of a ``<get>`` reply's ``<data>`` (see the module docstring)."""
    if data is None:
        return []
    out: list[dict[str, str]] = []
    for el in data.iter():
        if not isinstance(el.tag, str) or el is data:
            continue
        record: dict[str, str] = {}
        for child in el:
            if not isinstance(child.tag, str) or len(child):
                continue
            name = etree.QName(child).localname
            record.setdefault(name, (child.text or "").strip())
        if record:
            out.append(record)
            if len(out) > MAX_RECORDS:
                raise TooMuch(f"more than {MAX_RECORDS} records read")
    return out


__all__ = ["FilterError", "filter_bytes", "xml_records"]
