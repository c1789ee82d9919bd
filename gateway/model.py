"""Domain model shared by the engine, the journal and the API edge: plain, immutable values.

Task states follow TMF652 order-item states plus ``rolledBack`` and ``fallout``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

from drivers.base import Action  # the driver SDK's: a ChangeSet carries it


class TaskState(str, enum.Enum):
    ACKNOWLEDGED = "acknowledged"
    PENDING = "pending"
    IN_PROGRESS = "inProgress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolledBack"
    FALLOUT = "fallout"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED, TaskState.ROLLED_BACK}
)
"""Fallout is *not* final: it waits for a person (retry, force-rollback or resolve)."""


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    id: str
    device: str
    service: str
    action: Action
    parameters: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RetryOverride:
    """An activation's own retry policy: each field given replaces the device profile's
    (:class:`drivers.base.RetryPolicy`) for this activation's tasks; None keeps the profile's.
    Each given value is within the same hard caps as a profile's
    (:func:`drivers.profiles.retry_problem`), checked where the request comes in."""

    attempts: int | None = None
    initial_delay_s: float | None = None
    max_delay_s: float | None = None
    deadline_s: float | None = None

    def given(self) -> dict[str, int | float]:
        """The fields given, by name (what the fingerprint, the journal and the API carry)."""
        out: dict[str, int | float] = {} if self.attempts is None else {"attempts": int(self.attempts)}
        for name, value in (("initial_delay_s", self.initial_delay_s), ("max_delay_s", self.max_delay_s),
                            ("deadline_s", self.deadline_s)):
            if value is not None:
                out[name] = float(value)  # 2 and 2.0 are the same policy (and the same fingerprint)
        return out


@dataclass(frozen=True, kw_only=True)
class ActivationRequest:
    request_id: str
    order_ref: str = ""
    atomic: bool = True
    tasks: tuple[TaskSpec, ...] = ()
    retry: RetryOverride | None = None
    """The activation's retry policy over its devices' profiles' (None: the profiles' alone)."""


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Who makes a call. ``identity`` comes from the client's certificate (its SAN URI, e.g. a
    SPIFFE id, else its subject CN); empty when the gateway runs without client identities
    (plain text on loopback, or TLS without a client CA). Journaled with every mutating call."""

    identity: str = ""

    @property
    def shown(self) -> str:
        return self.identity or "anonymous"


ANONYMOUS = Caller()


__all__ = ["ANONYMOUS", "FINAL_STATES", "Action", "ActivationRequest", "Caller", "RetryOverride", "TaskSpec", "TaskState"]
