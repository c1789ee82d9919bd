"""Pure logic on IOS-like configuration text (FRR, IOS...): no I/O here.

* :func:`clean` drops what ``show running-config`` prints that is not configuration (headers,
  ``!`` separators, bare ``exit``/``end`` terminators; the profile's ``strip_lines``).
* :func:`parse` builds a hier_config tree (hier_config 3.7, ``get_hconfig``, the platform's
  driver built once); :class:`ParseCache` keeps the last few trees of a device by text.
* :func:`canonical` is the text snapshots are compared with: equal exactly when the configs are.
* :func:`push_lines` turns rendered text into the lines to send, each with its parents.
* the read-back check lives in :mod:`drivers.cli.exact` (snapshot + change = read-back).
* :func:`undo_lines` is the generated undo (hier_config's remediation from current to snapshot).
* :func:`preview` predicts the effect of a change; :func:`unified_diff` shows two snapshots.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Sequence

from hier_config import (
    HConfig,
    Platform,
    WorkflowRemediation,
    get_hconfig,
    get_hconfig_driver,
)
from hier_config.child import HConfigChild
from hier_config.platforms.driver_base import HConfigDriverBase


log = logging.getLogger(__name__)

DEFAULT_STRIP = (
    re.compile(r"^Building configuration\.\.\.$"),
    re.compile(r"^Current configuration"),
    re.compile(r"^!.*$"),
    re.compile(r"^exit$"),
    re.compile(r"^end$"),
)


@dataclass(frozen=True)
class PushLine:
    """One line to send in configuration mode, with the section lines it sits under."""

    text: str
    parents: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return " > ".join(self.parents)


def platform_of(name: str) -> Platform:
    try:
        return Platform[name.upper()]
    except KeyError:
        raise ValueError(f"unknown hier_config platform {name!r}") from None


def clean(text: str, strip: Sequence[re.Pattern[str]] = DEFAULT_STRIP) -> str:
    """Configuration lines only, indentation kept, trailing blanks and non-config lines dropped."""
    out = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or any(p.search(stripped) for p in strip):
            continue
        out.append(line)
    return "\n".join(out) + ("\n" if out else "")


@functools.cache
def hconfig_driver(platform: Platform) -> HConfigDriverBase:
    """hier_config's driver for ``platform``, built once: building it validates every rule with
    pydantic, which cost about a third of each parse. Its rules are read-only data."""
    return get_hconfig_driver(platform)


def parse(text: str, *, platform: Platform = Platform.CISCO_IOS,
          strip: Sequence[re.Pattern[str]] = DEFAULT_STRIP) -> HConfig:
    return parse_clean(clean(text, strip), platform=platform)


def parse_clean(cleaned: str, *, platform: Platform = Platform.CISCO_IOS) -> HConfig:
    """Parse text :func:`clean` already returned."""
    return get_hconfig(hconfig_driver(platform), cleaned)


@dataclass(frozen=True)
class Parsed:
    """A parsed configuration and its canonical text. The tree is shared: read it, never change
    it (nothing in this module changes a tree it is given)."""

    tree: HConfig
    canonical: str


class ParseCache:
    """The last few parsed configurations of one device, keyed by their cleaned text (LRU).

    One activation parses the same configuration several times: the snapshot read and the
    reread after a good restore give the same text, restore parses the snapshot again and the
    running configuration verify just parsed, and the next activation's snapshot is usually this
    one's verified configuration. A hit needs equal text, so it can never return a stale tree.
    """

    def __init__(self, *, platform: Platform = Platform.CISCO_IOS,
                 strip: Sequence[re.Pattern[str]] = DEFAULT_STRIP, size: int = 4) -> None:
        if size < 1:
            raise ValueError("ParseCache size must be at least 1")
        self.platform = platform
        self.strip = tuple(strip)
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, Parsed] = OrderedDict()

    def get(self, text: str) -> Parsed:
        key = clean(text, self.strip)
        parsed = self._entries.get(key)
        if parsed is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return parsed
        self.misses += 1
        tree = parse_clean(key, platform=self.platform)
        parsed = Parsed(tree=tree, canonical=canonical(tree))
        self._entries[key] = parsed
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return parsed

    def clear(self) -> None:
        self._entries.clear()


def _walk(children: Iterable[HConfigChild], depth: int = 0) -> Iterable[tuple[int, HConfigChild]]:
    for child in children:
        yield depth, child
        yield from _walk(child.children, depth + 1)


def canonical(config: HConfig) -> str:
    """One-space indented text in the device's own order: the snapshot form."""
    return "".join(f"{' ' * depth}{child.text}\n" for depth, child in _walk(config.children))


def canonical_text(text: str, *, platform: Platform = Platform.CISCO_IOS,
                   strip: Sequence[re.Pattern[str]] = DEFAULT_STRIP) -> str:
    return canonical(parse(text, platform=platform, strip=strip))


def push_lines(rendered: str, *, section_exit: str = "exit") -> list[PushLine]:
    """The rendered lines in order, stripped, each with its parents (from indentation).

    Section terminators (``exit``) are kept so the device leaves the sub-mode; ``!`` comments and
    blank lines are dropped. A line indented deeper than the line before is a child of it.
    """
    out: list[PushLine] = []
    stack: list[tuple[int, str]] = []  # (indent, text) of open sections
    previous: tuple[int, str] | None = None
    for raw in rendered.replace("\r\n", "\n").split("\n"):
        if not raw.strip() or raw.strip().startswith("!"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        text = raw.strip()
        if previous is not None and indent > previous[0]:
            stack.append(previous)
        while stack and indent <= stack[-1][0]:
            stack.pop()
        out.append(PushLine(text=text, parents=tuple(t for _, t in stack)))
        previous = (indent, text) if text != section_exit else None
    return out


def config_lines(rendered: str, *, section_exit: str = "exit") -> list[PushLine]:
    """The configuration statements of a rendered change (terminators left out)."""
    return [p for p in push_lines(rendered, section_exit=section_exit) if p.text != section_exit]


def _negated(text: str) -> str | None:
    return text[3:].strip() if text.startswith("no ") else None


def tree_lines(config: HConfig, *, section_exit: str = "exit") -> list[PushLine]:
    """A hier_config tree as lines to send, closing each section with ``section_exit``."""
    out: list[PushLine] = []

    def emit(children: Iterable[HConfigChild], parents: tuple[str, ...]) -> None:
        for child in children:
            out.append(PushLine(text=child.text, parents=parents))
            if child.children:
                emit(child.children, (*parents, child.text))
                out.append(PushLine(text=section_exit, parents=parents))

    emit(config.children, ())
    return out


@dataclass(frozen=True, kw_only=True)
class NegationRules:
    """How the platform negates, where hier_config's IOS rules do not fit (profile data).

    ``rewrite``: (regex, replacement) applied to ``no …`` lines (FRR: ``no description X`` is
    refused, ``no description`` works). ``by_children``: sections that cannot be negated as a
    whole (FRR: ``no interface eth0`` fails for an active interface), so each of their lines is
    negated instead.
    """

    rewrite: tuple[tuple[re.Pattern[str], str], ...] = ()
    by_children: tuple[re.Pattern[str], ...] = ()

    def line(self, text: str) -> str:
        if text.startswith("no "):
            for pattern, replacement in self.rewrite:
                if pattern.search(text):
                    return pattern.sub(replacement, text)
        return text


def undo_lines(current: HConfig, snapshot: HConfig, *, section_exit: str = "exit",
               rules: NegationRules = NegationRules()) -> list[PushLine]:
    """The generated undo: what to send to turn ``current`` back into ``snapshot``."""
    remediation = WorkflowRemediation(current, snapshot).remediation_config
    out: list[PushLine] = []

    def emit(children: Iterable[HConfigChild], parents: tuple[str, ...], live: HConfig | HConfigChild | None) -> None:
        for child in children:
            negated = _negated(child.text)
            section = live.get_child(equals=negated) if (negated and live is not None) else None
            if (negated and section is not None and section.children
                    and any(p.search(negated) for p in rules.by_children)):
                out.append(PushLine(text=negated, parents=parents))
                for sub in section.children:
                    out.append(PushLine(text=rules.line(f"no {sub.text}"), parents=(*parents, negated)))
                out.append(PushLine(text=section_exit, parents=parents))
                continue
            out.append(PushLine(text=rules.line(child.text), parents=parents))
            if child.children:
                sub_live = live.get_child(equals=child.text) if live is not None else None
                emit(child.children, (*parents, child.text), sub_live)
                out.append(PushLine(text=section_exit, parents=parents))

    emit(remediation.children, (), current)
    return out


def future(running: HConfig, rendered: str, *, platform: Platform = Platform.CISCO_IOS) -> HConfig:
    """The configuration hier_config predicts after applying ``rendered`` to ``running``."""
    change = parse_clean(clean(rendered), platform=platform)
    return running.future(change)


def remediation_text(running: HConfig, rendered: str, *, platform: Platform = Platform.CISCO_IOS) -> str:
    """What hier_config would send to get from ``running`` to the predicted future."""
    remediation = WorkflowRemediation(running, future(running, rendered, platform=platform)).remediation_config
    return canonical(remediation)


def unified_diff(before: str, after: str, *, before_name: str = "before", after_name: str = "after") -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True),
            fromfile=before_name, tofile=after_name,
        )
    )


__all__ = [
    "NegationRules",
    "ParseCache",
    "Parsed",
    "PushLine",
    "canonical",
    "canonical_text",
    "clean",
    "config_lines",
    "future",
    "hconfig_driver",
    "parse",
    "parse_clean",
    "platform_of",
    "push_lines",
    "remediation_text",
    "tree_lines",
    "undo_lines",
    "unified_diff",
]
