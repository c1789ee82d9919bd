"""Parsing what a device sends: one safe lxml configuration for the NETCONF driver. Pure.

A device's reply is untrusted input. Every XML document the driver parses (the hello, rpc-replies,
and the configuration texts derived from them) goes through :func:`parse` with a parser from
:func:`make_parser`:

* no entity is resolved, no DTD is loaded or validated, nothing is fetched (``no_network``);
* ``huge_tree`` stays off, so libxml2's own limits stay on (a text node of at most 10 MB, nesting
  depth 256, entity amplification); a document over one of them is refused like an unsafe one;
* a document with a DOCTYPE — an internal subset, entity declarations, an external DTD or
  entity — is refused (:class:`UnsafeXmlError`): NETCONF has no use for one, and lxml with
  ``resolve_entities=False`` would still accept it;
* a document nested more than :data:`MAX_DEPTH` levels below its root element is refused, so the
  recursive walks over parsed trees (:mod:`.xmlconfig`, :mod:`.restore`, :mod:`.exact`) stay far
  from Python's recursion limit. The check runs in libxml2 (one XPath), never recursively.

Threads: lxml serializes the use of one parser object by several threads (its parser context
has a lock): a shared parser is safe, only not parallel, and lxml's FAQ advises one parser per
thread. The session and reply parsers (:mod:`.session`, :mod:`.rpc`) run on the event loop only
and keep one parser each. :mod:`.xmlconfig` also runs on the engine's planning threads (the
planner checks every rendered change with ``NetconfDriver.check_change``), so it parses with
:func:`thread_parser`: one parser per thread. Nothing parsed on one thread is kept and used on
another (what the planner derives is text), and the planning threads live as long as the engine,
which is what lxml asks of trees that cross threads.
"""

from __future__ import annotations

import re
import threading

from lxml import etree

MAX_DEPTH = 64
"""Most element levels below a document's root (below ``<rpc-reply>`` for a reply; a reply's
configuration data starts two levels down, at ``rpc-reply/data``)."""

_DOCTYPE = b"<!DOCTYPE"
_BOM = b"\xef\xbb\xbf"
_SPACE = re.compile(rb"[ \t\r\n]*")
_RESOURCE_LIMIT = etree.ErrorTypes.ERR_RESOURCE_LIMIT  # libxml2: depth, text size, entity amplification
_TOO_DEEP = etree.XPath("boolean(" + "/".join(["*"] * (MAX_DEPTH + 1)) + ")")


class UnsafeXmlError(ValueError):
    """A document the driver refuses to use (a DOCTYPE, nested too deep, over a parser limit)."""


def make_parser(*, remove_blank_text: bool = True) -> etree.XMLParser:
    """A new parser with the safe settings (the one factory every NETCONF module uses)."""
    return etree.XMLParser(
        remove_blank_text=remove_blank_text,
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
    )


_local = threading.local()


def thread_parser() -> etree.XMLParser:
    """This thread's parser from :func:`make_parser` (made on first use)."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = make_parser()
    return parser


def parse(data: bytes, parser: etree.XMLParser, *, what: str = "document") -> etree._Element:
    """The root element of ``data``; :class:`UnsafeXmlError` for a DOCTYPE, a nesting deeper than
    :data:`MAX_DEPTH` or a document over one of libxml2's limits; ``lxml.etree.XMLSyntaxError``
    for malformed XML. ``what`` names the document in the error message."""
    if _DOCTYPE in data and _doctype_in_prolog(data):
        raise UnsafeXmlError(f"{what} refused: it carries a DOCTYPE (DTDs and entities are not accepted)")
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        if exc.code == _RESOURCE_LIMIT:
            raise UnsafeXmlError(f"{what} refused: over a parser limit: {exc}") from exc
        raise
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:  # whatever the prolog scan missed
        raise UnsafeXmlError(f"{what} refused: it carries a DOCTYPE (DTDs and entities are not accepted)")
    check_depth(root, what=what)
    return root


def check_depth(root: etree._Element, *, what: str = "document") -> None:
    """Raise :class:`UnsafeXmlError` if an element lies more than :data:`MAX_DEPTH` levels below ``root``."""
    if _TOO_DEEP(root):
        raise UnsafeXmlError(f"{what} refused: nested more than {MAX_DEPTH} levels deep below its root")


def _doctype_in_prolog(data: bytes) -> bool:
    """Does a DOCTYPE declaration come before the root element (after the XML declaration,
    comments and processing instructions)? Only called when ``<!DOCTYPE`` occurs at all."""
    i = len(_BOM) if data.startswith(_BOM) else 0
    while True:
        space = _SPACE.match(data, i)  # always a match (the empty string at least)
        if space is not None:
            i = space.end()
        if data.startswith(b"<?", i):
            end, skip = data.find(b"?>", i + 2), 2
        elif data.startswith(b"<!--", i):
            end, skip = data.find(b"-->", i + 4), 3
        else:
            return data.startswith(_DOCTYPE, i)
        if end < 0:
            return False  # unterminated: the parser refuses it
        i = end + skip


__all__ = ["MAX_DEPTH", "UnsafeXmlError", "check_depth", "make_parser", "parse", "thread_parser"]
