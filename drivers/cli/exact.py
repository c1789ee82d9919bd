"""Exact verification for CLI configuration text: the read-back must equal the snapshot with the
rendered lines applied. Pure.

The running configuration (canonical text, :func:`drivers.cli.config.canonical`) is a tree of
lines. :func:`expected` applies the rendered lines to the snapshot's tree the way an IOS-like
device does:

* a plain line is added under its parents (a section header creates the section);
* a line matching one of the platform's ``replace_rules`` (profile data, regexes) replaces the
  siblings that match the same rule with the same captured groups: ``description X`` replaces
  any ``description``; ``ip route P NH 250`` replaces ``ip route P NH`` (rule
  ``^ip route (\\S+ \\S+)``);
* ``no X`` removes the sibling ``X`` and every sibling starting with ``X `` (``no description``
  removes ``description foo``);
* with ``keep_empty_sections`` false (profile data; FRR), a section left without lines is not
  shown by the device, so it is not expected either.

:func:`compare` sets the expected tree against the read-back, line path by line path: a line the
change named that is missing or still there is a plain mismatch; any other difference is
*unexpected* (an out-of-band change, a side effect) unless its path (lines joined with ``" > "``)
matches one of the profile's ``device_managed`` regexes.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from drivers.base import Mismatch
from drivers.cli.config import push_lines

LinePath = tuple[str, ...]
Tree = dict[str, "Tree"]


def tree_of(canonical: str) -> Tree:
    """The line tree of canonical text (one space of indentation per level)."""
    root: Tree = {}
    stack: list[tuple[int, Tree]] = [(-1, root)]
    for raw in canonical.split("\n"):
        text = raw.strip()
        if not text:
            continue
        depth = len(raw) - len(raw.lstrip(" "))
        while stack[-1][0] >= depth:
            stack.pop()
        node = stack[-1][1].setdefault(text, {})
        stack.append((depth, node))
    return root


def paths_of(tree: Tree) -> set[LinePath]:
    out: set[LinePath] = set()
    stack: list[tuple[LinePath, Tree]] = [((), tree)]
    while stack:
        prefix, node = stack.pop()
        for line, kids in node.items():
            p = (*prefix, line)
            out.add(p)
            stack.append((p, kids))
    return out


def _node(tree: Tree, path: LinePath) -> Tree | None:
    node: Tree | None = tree
    for line in path:
        node = node.get(line) if node is not None else None
    return node


def _identity(line: str, rules: tuple[re.Pattern[str], ...]) -> tuple[int, tuple[str | None, ...]] | None:
    for i, rule in enumerate(rules):
        m = rule.match(line)
        if m is not None:
            return i, m.groups()
    return None


@dataclass(frozen=True)
class Named:
    """What a rendered change names: its leaf lines (with parents) and the targets of its ``no`` lines."""

    lines: frozenset[LinePath]
    negated: frozenset[LinePath]
    replaced: frozenset[tuple[LinePath, tuple[int, tuple[str | None, ...]]]]

    def covers(self, path: LinePath, rules: tuple[re.Pattern[str], ...]) -> bool:
        for n in self.lines:
            if path[: len(n)] == n:
                return True
        parents, last = path[:-1], path[-1]
        for n in self.negated:
            if n[:-1] == parents and (last == n[-1] or last.startswith(n[-1] + " ")):
                return True
        ident = _identity(last, rules)
        return ident is not None and (parents, ident) in self.replaced


@dataclass(frozen=True)
class Expected:
    paths: frozenset[LinePath]
    named: Named


@functools.lru_cache(maxsize=64)
def expected(before: str, rendered: str, *, rules: tuple[re.Pattern[str], ...], section_exit: str = "exit",
             keep_empty_sections: bool = True) -> Expected:
    """The configuration ``before`` (canonical text) holds once ``rendered`` is applied."""
    tree = tree_of(before)
    pushed = push_lines(rendered, section_exit=section_exit)
    lines = [p for p in pushed if p.text != section_exit]
    headers = {p.parents for p in lines if p.parents}
    # a line closed at once by the section exit opened a section that holds nothing yet
    headers |= {(*a.parents, a.text) for a, b in zip(pushed, pushed[1:])
                if a.text != section_exit and b.text == section_exit and b.parents == a.parents}
    sections = headers | {p for p in paths_of(tree) if _node(tree, p)}
    named: set[LinePath] = set()
    negated: set[LinePath] = set()
    replaced: set[tuple[LinePath, tuple[int, tuple[str | None, ...]]]] = set()
    for line in lines:
        parent = tree
        for p in line.parents:
            parent = parent.setdefault(p, {})
        full = (*line.parents, line.text)
        if line.text.startswith("no "):
            target = line.text[3:].strip()
            negated.add((*line.parents, target))
            for k in [k for k in parent if k == target or k.startswith(target + " ")]:
                del parent[k]
            continue
        ident = _identity(line.text, rules)
        if ident is not None:
            replaced.add((line.parents, ident))
            for k in [k for k in parent if k != line.text and _identity(k, rules) == ident]:
                del parent[k]
        parent.setdefault(line.text, {})
        if full not in headers:
            named.add(full)
    if not keep_empty_sections:
        for section in sorted(sections, key=len, reverse=True):  # innermost first: emptiness cascades up
            node = _node(tree, section[:-1])
            if node is not None and node.get(section[-1]) == {}:
                del node[section[-1]]
    return Expected(paths=frozenset(paths_of(tree)),
                    named=Named(lines=frozenset(named), negated=frozenset(negated), replaced=frozenset(replaced)))


def compare(want: Expected, actual: str, *, rules: tuple[re.Pattern[str], ...] = (),
            managed: tuple[re.Pattern[str], ...] = ()) -> tuple[int, list[Mismatch]]:
    """(lines compared, every difference) between the expected configuration and ``actual``
    (canonical text of the read-back)."""
    have = paths_of(tree_of(actual))
    mismatches: list[Mismatch] = []
    for p in sorted(want.paths ^ have):
        shown = " > ".join(p)
        if any(m.search(shown) for m in managed):
            continue
        present = p in have
        mismatches.append(Mismatch(path=shown, expected=None if present else p[-1], actual=p[-1] if present else None,
                                   unexpected=not want.named.covers(p, rules)))
    return len(want.paths | have), mismatches


__all__ = ["Expected", "LinePath", "compare", "expected", "paths_of", "tree_of"]
