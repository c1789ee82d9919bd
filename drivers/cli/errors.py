"""Pure detection of a line the device rejected, from the error patterns in the device profile.

A CLI push that "succeeds" with an error in its output is the classic bug of CLI automation: the
driver runs :func:`rejection` on the output of *every* line it sends.
"""

from __future__ import annotations

import logging
import re
from typing import Sequence

from drivers.errors import DeviceErrorInfo

log = logging.getLogger(__name__)


MAX_MESSAGE_CHARS = 500


def rejection(output: str, patterns: Sequence[re.Pattern[str]]) -> str | None:
    """The device's error message in ``output``, or None.

    The message starts at the first line matching a pattern and keeps the non-blank lines after
    it (FRR explains some errors on the following lines), joined by `` / ``.
    """
    lines = [raw.strip() for raw in output.replace("\r", "\n").split("\n")]
    lines = [line for line in lines if line]
    for i, line in enumerate(lines):
        if any(p.search(line) for p in patterns):
            return " / ".join(lines[i:])[:MAX_MESSAGE_CHARS]
    return None


def rejected_info(*, line: str, output: str, parents: Sequence[str],
                  patterns: Sequence[re.Pattern[str]]) -> DeviceErrorInfo | None:
    """DeviceErrorInfo naming the rejected ``line``, the device's message and the parent context."""
    message = rejection(output, patterns)
    if message is None:
        return None
    tag = ""
    match = re.match(r"%\s*([A-Za-z][A-Za-z' ]*?)(?:[:.]|$)", message)
    if match:
        tag = match.group(1).strip().lower().replace(" ", "-").replace("'", "")
    return DeviceErrorInfo(message=message, tag=tag, path=" > ".join(parents), line=line)


__all__ = ["rejected_info", "rejection"]
