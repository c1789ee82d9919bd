"""What every step of the engine needs: the journal, sessions, locks, events — and the one
function through which every transition is written (journal first, then announced)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from drivers.base import Verification
from gateway.engine.devices import DeviceLocks, SessionPool
from gateway.journal.base import Journal
from gateway.engine.events import EventBus
from gateway.errors import AgwError, DeviceError, Phase
from gateway.incidents import public_kind, public_message
from gateway.render.masking import Redactor, redact_transition
from gateway.results import ErrorView, Event, PhaseTiming, VerificationView
from gateway.transitions import Transition

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class EngineContext:
    journal: Journal
    pool: SessionPool
    locks: DeviceLocks
    bus: EventBus
    redactors: dict[str, Redactor] = field(default_factory=dict)
    """Activation id -> the masking of its secret parameter values, while its run is here: every
    transition of that activation is journaled (and so shown and sent) with them masked."""

    def _masked(self, transition: Transition) -> Transition:
        redact = self.redactors.get(transition.activation_id) if self.redactors else None
        return transition if redact is None else redact_transition(transition, redact)

    def secret_values(self) -> frozenset[str]:
        """The secret parameter values of the activations running here (for the log filter)."""
        if not self.redactors:
            return frozenset()
        return frozenset().union(*(r.values for r in list(self.redactors.values())))

    async def record(self, transition: Transition) -> Event:
        """Write a transition to the journal, then tell the watchers. Returns after the write."""
        transition = self._masked(transition)
        event: Event = await self.journal.record_later(transition)
        self.bus.publish(event)
        return event

    def note(self, transition: Transition) -> None:
        """Journal a transition that announces no device action, without waiting for it.

        It is committed in order, before (or with) the next :meth:`record`, which therefore still
        returns only once everything before it is durable; watchers hear of it once committed.
        Its ``recovery`` may only carry what a recovery can do without (the read-back ``after``, a
        cleared ``pending`` once confirmed): a crash may lose a note, never a :meth:`record`."""
        future = self.journal.record_later(self._masked(transition))
        future.add_done_callback(self._published)

    def _published(self, future: Any) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:  # the next awaited record fails the same way and is handled there
            log.error("journal write of a queued transition failed: %s", exc)
            return
        self.bus.publish(future.result())


@dataclass
class PhaseClock:
    """Per-phase timings of one task."""

    timings: list[PhaseTiming] = field(default_factory=list)
    _phase: str = ""
    _started_at: datetime | None = None
    _t0: float = 0.0

    def start(self, phase: Phase | str) -> None:
        self.stop()
        self._phase = phase.value if isinstance(phase, Phase) else phase
        self._started_at = utcnow()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        if self._started_at is not None:
            self.timings.append(
                PhaseTiming(
                    phase=self._phase,
                    started_at=self._started_at,
                    duration_ms=(time.perf_counter() - self._t0) * 1000.0,
                )
            )
            self._started_at = None

    def snapshot(self) -> tuple[PhaseTiming, ...]:
        return tuple(self.timings)


def error_view(exc: BaseException, *, phase: Phase | None = None) -> ErrorView:
    """A task's error as journaled and shown to callers: only what a caller may see
    (:mod:`gateway.incidents`: configuration, journal and unexpected errors become an incident id)."""
    if isinstance(exc, AgwError):
        return ErrorView(
            kind=public_kind(exc),
            message=public_message(exc),
            phase=_phase_name(exc.phase or phase),
            retryable=exc.retryable,
            device_error=exc.info if isinstance(exc, DeviceError) else None,
        )
    return ErrorView(
        kind=public_kind(exc),
        message=public_message(exc),
        phase=_phase_name(phase),
        retryable=False,
    )


def verification_view(v: Verification) -> VerificationView:
    return VerificationView(
        ok=v.ok, checked=v.checked, mismatches=tuple(str(m) for m in v.mismatches), detail=v.detail
    )


__all__ = ["EngineContext", "PhaseClock", "error_view", "utcnow", "verification_view"]


def _phase_name(phase: Phase | None) -> str:
    return phase.value if phase is not None else ""
