"""The CLI side of service checks (:mod:`drivers.checks`): a show command's output → records.

A CLI check runs ``command`` and reads its output either with a TTP template (``ttp``) or as JSON
(``json: true``, for commands such as FRR's ``show interface NAME json``)::

    command: "show ip route {{ prefix }}"
    expect: {prefix: "{{ prefix }}", protocol: static}
    absent: {{ "true" if action == "delete" else "false" }}
    ttp: |
    {% filter indent(2, first=true) %}{% include "static-route/route.ttp" %}{% endfilter %}

Both parsers are pure; output longer than :data:`drivers.checks.MAX_OUTPUT_CHARS` is refused
(:class:`~drivers.checks.TooMuch`: the check fails, naming the limit).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from drivers.checks import MAX_OUTPUT_CHARS, CliQuery, TooMuch, records

log = logging.getLogger(__name__)


def parse_output(output: str, template: str) -> list[dict[str, str]]:
    """TTP-parse ``output``: every innermost record of the result."""
    from ttp import ttp  # imported on use: TTP is slow to import

    parser = ttp(data=output, template=template)
    parser.parse()
    return records(parser.result())


class NotJson(ValueError):
    """The command's output is not a JSON document."""


def json_records(output: str) -> list[dict[str, str]]:
    """The records of a command's JSON output; :class:`NotJson` when it is not JSON."""
    try:
        data: Any = json.loads(output)
    except (ValueError, RecursionError) as exc:
        raise NotJson(f"the output is not JSON ({str(exc)[:80]}): {output.strip()[:80]!r}") from None
    return records(data)


def output_records(query: CliQuery, output: str) -> list[dict[str, str]]:
    """The records a CLI check's query reads from the command's ``output``."""
    if len(output) > MAX_OUTPUT_CHARS:
        raise TooMuch(f"the command printed {len(output)} characters, more than {MAX_OUTPUT_CHARS}")
    return json_records(output) if query.json else parse_output(output, query.ttp)


__all__ = ["NotJson", "json_records", "output_records", "parse_output"]
