"""Text for a terminal: what ``agw`` prints for people never carries a control character.

A device message, a journal note or a server's error text may hold terminal escape sequences
(``\\x1b[2J``, a title change, a fake prompt), carriage returns that overwrite a line, or Unicode
bidi controls that reorder it. :func:`shown` prints every one of them visibly, as ``\\x1b`` or
``\\u202e``; every human-readable output of ``agw`` that carries such text goes through it.
(``--json`` output is safe already: JSON escapes control characters.)
"""

from __future__ import annotations

import re
from typing import Any

_BIDI_AND_SEPARATORS = "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}]")
_BLOCK = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}]")  # keeps tab and line feed


def _escaped(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def shown(text: Any, *, block: bool = False) -> str:
    """``text`` safe to print: C0 and C1 controls, DEL, the Unicode line separators and bidi
    controls escaped. One line by default (a line feed is escaped too, so a value cannot forge a
    line of output); ``block`` keeps line feeds and tabs for multi-line text (rendered
    configuration, diffs), reading CRLF as a line feed."""
    value = str(text)
    if block:
        return _BLOCK.sub(_escaped, value.replace("\r\n", "\n"))
    return _LINE.sub(_escaped, value)


__all__ = ["shown"]
