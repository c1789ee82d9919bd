"""Show-command checks parsed with TTP: the optional read-back checks of a CLI service.

A service declares them in its ``service.yaml`` under ``checks: {<platform>: [...]}``; each is a
Jinja template (same variables as the service template) that renders to a YAML mapping, with the
TTP template kept beside the service's template and included::

    command: "show ip route {{ prefix }}"
    expect: {prefix: "{{ prefix }}", protocol: static}   # fields a parsed record must have
    absent: {{ "true" if action == "delete" else "false" }}   # true: no record may match
    ttp: |
    {% filter indent(2, first=true) %}{% include "static-route/route.ttp" %}{% endfilter %}

The renderer puts the rendered texts in ``ChangeSet.checks``; a check that renders to nothing is
skipped. :func:`evaluate` is pure: parsed TTP records → pass/fail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import yaml

from drivers.errors import ConfigurationError

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Check:
    name: str
    command: str
    ttp: str
    expect: Mapping[str, str] = field(default_factory=dict)
    absent: bool = False

    @classmethod
    def from_text(cls, text: str) -> "Check | None":
        """Parse a rendered check; None when it rendered to nothing (not for this action)."""
        if not text.strip():
            return None
        try:
            data = yaml.safe_load(text)
            return cls(
                name=str(data.get("name") or data["command"]),
                command=str(data["command"]),
                ttp=str(data["ttp"]),
                expect={str(k): str(v) for k, v in (data.get("expect") or {}).items()},
                absent=bool(data.get("absent", False)),
            )
        except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigurationError(f"invalid CLI check {text[:80]!r}: {exc}") from exc


def records(result: Any) -> list[dict[str, Any]]:
    """Every innermost mapping of scalar values in a TTP result (lists and groups flattened)."""
    found: list[dict[str, Any]] = []
    if isinstance(result, list):
        for item in result:
            found.extend(records(item))
    elif isinstance(result, dict):
        scalars = {k: v for k, v in result.items() if not isinstance(v, (dict, list))}
        if scalars:
            found.append(scalars)
        for value in result.values():
            if isinstance(value, (dict, list)):
                found.extend(records(value))
    return found


def parse_output(output: str, template: str) -> list[dict[str, Any]]:
    from ttp import ttp  # imported on use: TTP is slow to import

    parser = ttp(data=output, template=template)
    parser.parse()
    return records(parser.result())


def evaluate(check: Check, parsed: Iterable[Mapping[str, Any]]) -> tuple[bool, str]:
    """(ok, detail). A record matches when every expected field is equal (as text)."""
    parsed = list(parsed)
    matching = [r for r in parsed if all(str(r.get(k)) == v for k, v in check.expect.items())]
    if check.absent:
        if matching:
            return False, f"{check.name}: expected no record matching {dict(check.expect)}, found {matching[0]}"
        return True, f"{check.name}: ok (absent)"
    if not matching:
        got = parsed[0] if parsed else "nothing parsed"
        return False, f"{check.name}: expected a record matching {dict(check.expect)}, found {got}"
    return True, f"{check.name}: ok"


__all__ = ["Check", "evaluate", "parse_output", "records"]
