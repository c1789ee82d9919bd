"""Self-healing fallout: a task that fell out only because its rollback could not reach the
device (unreachable, timed out, its lock denied: :attr:`RollbackView.retryable`) is retried in
the background, with backoff, until the device answers and the verified rollback ends it
(``rolledBack``), or it falls out for a reason that needs a person, or the attempts run out.

Each attempt is the fallout action *retry* (:meth:`Engine.retry`, the safe rules: restore only
if nobody changed the device since), journaled like a person's with the actor ``agw:self-healing``,
so ``agw get`` and ``agw fallout list`` show what was tried and how it ended. A fallout whose
reason is that the device changed, or differs after a restore, is never retried by itself.

The first attempt comes ``interval_s`` after the fallout is seen, then the wait doubles up to
``max_delay_s``; after ``max_attempts`` the task is left to a person (said once in the log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.errors import AgwError
from gateway.model import Caller
from gateway.results import ActivationResult, Page, TaskResult

log = logging.getLogger(__name__)

SELF_HEALING = Caller(identity="agw:self-healing")
PAGE = 200
"""Fallout items looked at per sweep (the oldest first)."""


class Facade(Protocol):
    """What the healer uses of the engine."""

    def busy(self, activation_id: str) -> bool: ...
    async def fallout_page(self, *, page_size: int = 50, page_token: str = "") -> Page[tuple[str, TaskResult]]: ...
    async def retry(self, activation_id: str, task_id: str = "", *, caller: Caller = ...) -> ActivationResult: ...


@dataclass
class _Tries:
    attempts: int = 0
    next_at: float = 0.0


class Healer:
    def __init__(self, engine: Facade, *, interval_s: float, max_delay_s: float = 300.0, max_attempts: int = 20) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.max_delay_s = max_delay_s
        self.max_attempts = max_attempts
        self._tries: dict[tuple[str, str], _Tries] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - the healer must outlive a bad sweep
                log.warning("self-healing sweep failed: %s", exc if isinstance(exc, AgwError) else type(exc).__name__)

    async def sweep(self) -> int:
        """Start the retries that are due; how many were started."""
        now = time.monotonic()
        page = await self.engine.fallout_page(page_size=PAGE)
        seen: set[tuple[str, str]] = set()
        started = 0
        for activation_id, task in page.items:
            key = (activation_id, task.id)
            seen.add(key)
            if task.rollback is None or not task.rollback.retryable:
                continue
            tries = self._tries.setdefault(key, _Tries(next_at=now + self.interval_s))
            if now < tries.next_at or self.engine.busy(activation_id):
                continue
            if tries.attempts >= self.max_attempts:
                if tries.attempts == self.max_attempts:
                    log.warning("self-healing of task %s of %s: %d attempts, left to a person", task.id, activation_id,
                                tries.attempts)
                    tries.attempts += 1
                continue
            tries.attempts += 1
            tries.next_at = now + min(self.max_delay_s, self.interval_s * 2 ** tries.attempts)
            try:
                await self.engine.retry(activation_id, task.id, caller=SELF_HEALING)
                started += 1
            except AgwError as exc:  # busy meanwhile, or no longer in fallout: the next sweep sees
                log.info("self-healing of task %s of %s not started: %s", task.id, activation_id, exc)
        for key in [k for k in self._tries if k not in seen]:
            del self._tries[key]  # out of fallout (healed, resolved, pruned)
        return started


__all__ = ["Healer", "SELF_HEALING"]
