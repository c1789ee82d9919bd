"""The retention policy: final activations older than a duration are pruned from the journal.

``agw serve --retention 30d`` (or ``AGW_RETENTION``) makes the engine run :func:`keep_pruning`
in the background: once at start, then every ``interval_s`` (an hour). The pruning itself is the
journal's (:meth:`gateway.journal.Journal.prune`): short steps through its one writer.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from gateway.errors import AgwError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 3600.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"\s*(\d+)\s*([smhdw]?)\s*\Z")


def parse_duration(text: str) -> timedelta:
    """``"12h"``, ``"30d"``, ``"2w"``, ``"90m"``, ``"45s"``; ``"0"`` is zero. ValueError otherwise."""
    m = _DURATION.match(str(text).lower())
    if m is None or (m.group(2) == "" and int(m.group(1)) != 0):
        raise ValueError(f"{text!r} is not a duration: a whole number and a unit, s, m, h, d or w (e.g. 30d); "
                         "0 for none")
    seconds = int(m.group(1)) * _UNITS.get(m.group(2), 1)
    if seconds > 100 * 365 * 86400:
        raise ValueError(f"{text!r} is more than 100 years")
    return timedelta(seconds=seconds)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def keep_pruning(journal: Any, *, keep: timedelta, interval_s: float = DEFAULT_INTERVAL_S,
                       now: Callable[[], datetime] = _utcnow) -> None:
    """Forever: prune the final activations last updated more than ``keep`` ago, then sleep
    ``interval_s``. A failed prune is logged and tried again at the next interval."""
    while True:
        try:
            pruned = await journal.prune(now() - keep)
            if pruned:
                log.info("retention: %d final activation(s) older than %s deleted", pruned, keep)
        except AgwError as exc:
            log.warning("retention: prune failed (%s); trying again in %.0f s", exc, interval_s)
        except Exception:  # noqa: BLE001 - a bug must not stop the policy for good
            log.exception("retention: prune failed; trying again in %.0f s", interval_s)
        await asyncio.sleep(interval_s)


__all__ = ["DEFAULT_INTERVAL_S", "keep_pruning", "parse_duration"]
