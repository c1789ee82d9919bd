"""What one request may cost the gateway: the engine's limits and per-caller concurrency slots.

:class:`EngineSettings` groups the engine's knobs (units in the names). :class:`CallerSlots`
counts the concurrent work of each caller identity (``Caller.identity``; every caller without
an identity shares ``""``) and refuses one more over the limit with
:class:`~gateway.errors.ResourceExhaustedError` (RESOURCE_EXHAUSTED + a RetryInfo hint).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from gateway.errors import ResourceExhaustedError
from gateway.model import Caller


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    lock_wait_s: float | None = 300.0
    """How long an activation task waits for a device another activation holds, then fails with
    DeviceBusyError (nothing sent). None: as long as it takes."""
    lock_max_rounds: int = 3
    """How often a several-device lock acquisition waits holding nothing before it escalates
    (:mod:`gateway.engine.devices`)."""
    dry_run_timeout_s: float = 30.0
    """The whole DryRun ends within this (or the caller's gRPC deadline, if shorter)."""
    dry_run_lock_wait_s: float = 2.0
    """How long a DryRun waits for a busy device before that task says the device is busy."""
    max_activations_per_caller: int = 200
    """Concurrent activations (submitted, not yet ended here) per caller identity."""
    max_dry_runs_per_caller: int = 4
    """Concurrent DryRuns per caller identity."""
    activation_retry_after_s: float = 5.0
    """The retry hint when a caller is at its activation limit."""
    dry_run_retry_after_s: float = 1.0
    """The retry hint when a caller is at its DryRun limit."""
    plan_off_loop: bool = True
    """Plan (validate + render) requests above ``plan_inline_max_tasks`` on worker threads, so the
    event loop keeps answering (False: everything on the loop; the benchmark's baseline)."""
    plan_inline_max_tasks: int = 16
    """Requests with at most this many tasks are planned on the loop (a thread hop costs more)."""
    plan_workers: int = 2
    """Worker threads for planning (bounded: more would only contend for the GIL)."""
    self_healing_interval_s: float = 0.0
    """Retry fallout that an unreachable device caused, in the background, first after this long,
    then with doubling waits (:mod:`gateway.engine.healing`); 0: off (``agw serve`` turns it on)."""
    self_healing_max_attempts: int = 20
    max_subscriptions_per_caller: int = 8
    """Concurrent Subscribe streams per caller identity (:mod:`gateway.engine.feed`)."""
    results_poll_interval_s: float = 0.5
    """How often a Subscribe stream reads the journal for new result events (at once when an
    activation ends in this process)."""

    def __post_init__(self) -> None:
        for name in ("max_activations_per_caller", "max_dry_runs_per_caller", "plan_workers",
                     "max_subscriptions_per_caller"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.lock_max_rounds < 0 or self.plan_inline_max_tasks < 0:
            raise ValueError("lock_max_rounds and plan_inline_max_tasks must not be negative")
        if self.self_healing_interval_s < 0 or self.self_healing_max_attempts < 1:
            raise ValueError("self_healing_interval_s must not be negative, self_healing_max_attempts at least 1")
        for name in ("dry_run_timeout_s", "dry_run_lock_wait_s", "results_poll_interval_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


class CallerSlots:
    """At most ``limit`` concurrent pieces of work (``what``) per caller identity."""

    def __init__(self, *, what: str, limit: int, retry_after_s: float) -> None:
        self.what = what
        self.limit = limit
        self.retry_after_s = retry_after_s
        self._used: collections.Counter[str] = collections.Counter()

    def used(self, caller: Caller | str) -> int:
        return self._used[caller if isinstance(caller, str) else caller.identity]

    def full(self, caller: Caller) -> bool:
        return self._used[caller.identity] >= self.limit

    def take(self, caller: Caller, *, force: bool = False) -> None:
        """One more for ``caller``, or :class:`ResourceExhaustedError` at the limit (``force``:
        counted even over it)."""
        if self.full(caller) and not force:
            raise self.exhausted(caller)
        self._used[caller.identity] += 1

    def give_back(self, caller: Caller | str) -> None:
        identity = caller if isinstance(caller, str) else caller.identity
        self._used[identity] -= 1
        if self._used[identity] <= 0:
            del self._used[identity]

    def exhausted(self, caller: Caller) -> ResourceExhaustedError:
        return ResourceExhaustedError(
            f"caller {caller.shown} already has {self._used[caller.identity]} {self.what} in progress, the limit "
            f"per caller; try again when one has ended", retry_after_s=self.retry_after_s)


__all__ = ["CallerSlots", "EngineSettings"]
