"""The journal interface: what the engine writes before every action and reads on restart.

Every transition is written (committed) *before* the action it announces: :meth:`Journal.record`
returns only once its transaction has committed. Backends are free to commit many concurrent
records in one transaction (group commit) as long as that promise holds for each caller.

A transition that announces no action of its own (a task moved to ``inProgress``, a verification
result, ``completed``) may be queued with :meth:`Journal.record_later`: it is written in order,
in or before the transaction of any record queued after it, so the next :meth:`record` that
returns has made it durable too; the caller does not wait for it.

What a record carries is one typed :class:`~gateway.transitions.Transition` (its values checked
when it is made); what the journal hands back are the results of :mod:`gateway.results`.
"""

from __future__ import annotations

import abc
import asyncio
import builtins
from datetime import datetime
from types import TracebackType
from typing import Any, Callable, Mapping, Sequence

from gateway.journal.kpi import KpiRows
from gateway.results import ActivationResult, ActivationState, Event, Page, TaskResult
from gateway.transitions import RECOVERY_FIELDS, TASK_FIELDS, TaskRecovery, Transition


class Journal(abc.ABC):
    """Durable state of activations, their tasks and their events."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Open the store and create (or check) its schema."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Write everything already queued, then release the store. Idempotent."""

    @abc.abstractmethod
    async def claim(self, *, holder: str, on_lost: Callable[[], None] | None = None) -> None:
        """Make this process a gateway that runs (and recovers) the journal's activations, until
        :meth:`close`. A store one process has to itself (a SQLite file) refuses a second one at
        once with a :class:`~gateway.errors.JournalError` naming who holds it; a shared one
        (PostgreSQL) makes this process one replica among several (:attr:`cluster`). ``holder``
        says who claims; ``on_lost`` is called if the claim is lost later (from then on every
        write is a :class:`~gateway.errors.FencedError`)."""

    def holds_claim(self) -> bool:
        """Whether this process may still act for the journal (False once a lease is lost)."""
        return True

    @property
    def cluster(self) -> Any:
        """The replicas sharing the journal (:class:`gateway.journal.cluster.Cluster`), None when
        this gateway runs alone on it."""
        return None

    @property
    def pools(self) -> Any:
        """The resource pools (:class:`gateway.journal.pool_store.PoolStore`)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no pools")

    @property
    def outbox(self) -> Any:
        """The result events written with the state changes, and their deliveries
        (:class:`gateway.journal.deliveries.Outbox`; :mod:`gateway.events` sends them)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no outbox")

    async def __aenter__(self) -> Journal:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def create_activation(
        self,
        *,
        activation_id: str,
        request_id: str,
        fingerprint: str,
        order_ref: str,
        atomic: bool,
        dry_run: bool,
        tasks: Sequence[TaskResult],
        created_at: datetime,
        submitted_by: str = "",
        retry: Mapping[str, float] | None = None,
        allocations: Sequence[Any] = (),
        releases: Sequence[Any] = (),
        complete: Callable[[dict[Any, Any]], dict[int, TaskResult]] | None = None,
    ) -> tuple[str, bool]:
        """Create an activation in state ``acknowledged`` with its first event (its actor:
        ``submitted_by``, the caller's identity). ``retry``: the activation's own retry policy,
        the fields given (shown with it; each task journals the policy it runs with too).

        ``allocations`` / ``releases`` (:mod:`gateway.resources.params`): in the same transaction,
        values are taken from their pools and released values claimed (docs/pools.md); ``complete``
        is then given the values taken and returns the task results (by position) that replace
        those of ``tasks``. An unknown or exhausted pool, or an error ``complete`` raises, creates
        nothing and is raised.

        ``request_id`` is unique among the non-dry-run activations of one caller (``submitted_by``):
        if it is already known with the same ``fingerprint`` return ``(existing_id, False)``; with
        another fingerprint raise :class:`~gateway.errors.ConflictError`. Otherwise return
        ``(activation_id, True)``.
        """

    async def record(self, transition: Transition) -> Event:
        """In one transaction: append the transition's event, apply its task changes, set the
        activation state, merge its recovery changes into the task's recovery record. Returns
        the event after the commit."""
        return await self.record_later(transition)

    @abc.abstractmethod
    def record_later(self, transition: Transition) -> asyncio.Future[Event]:
        """Queue the same record as :meth:`record` without waiting for it: the future resolves
        with the event once committed. Records are committed in the order they were queued
        (``record`` and ``record_later`` alike). A ``transition`` that is not a
        :class:`~gateway.transitions.Transition` raises at once; a bad value in one raised
        when it was made."""

    @abc.abstractmethod
    async def get(self, activation_id: str) -> ActivationResult:
        """The activation; :class:`~gateway.errors.NotFoundError` if unknown."""

    @abc.abstractmethod
    async def find_by_request_id(self, request_id: str, *, submitted_by: str = "") -> ActivationResult | None:
        """The non-dry-run activation ``submitted_by`` submitted with ``request_id``, if any."""

    @abc.abstractmethod
    async def list_page(
        self,
        *,
        states: Sequence[ActivationState] = (),
        device: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 50,
        page_token: str = "",
    ) -> Page[ActivationResult]:
        """A page of activations, newest first by (created_at, id); ``since`` inclusive, ``until``
        exclusive (on ``created_at``). ``page_token``: a token of a page of the same filters
        (see :mod:`gateway.journal.paging`); another raises :class:`~gateway.errors.InputError`
        naming ``page_token``."""

    async def list(
        self,
        *,
        states: Sequence[ActivationState] = (),
        device: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> builtins.list[ActivationResult]:
        """The first ``limit`` activations of :meth:`list_page`."""
        page = await self.list_page(states=states, device=device, since=since, until=until, page_size=limit)
        return builtins.list(page.items)

    @abc.abstractmethod
    async def events(self, activation_id: str, *, after_seq: int = 0) -> builtins.list[Event]:
        """Events of an activation with ``seq > after_seq``, in order."""

    @abc.abstractmethod
    async def recovery(self, activation_id: str, task_id: str) -> TaskRecovery:
        """The task's recovery record; :class:`~gateway.errors.NotFoundError` if unknown."""

    @abc.abstractmethod
    async def kpi_rows(self, since: datetime, until: datetime) -> KpiRows:
        """What `agw report` reads: activations created in [since, until), their tasks, the telling events."""

    @abc.abstractmethod
    async def fallout_count(self) -> int:
        """How many tasks are in fallout now (for the open-fallout gauge)."""

    @abc.abstractmethod
    async def unfinished(self) -> builtins.list[str]:
        """Ids of activations still ``acknowledged`` or ``inProgress`` (oldest first)."""

    @abc.abstractmethod
    async def fallout_page(self, *, page_size: int = 50, page_token: str = "") -> Page[tuple[str, TaskResult]]:
        """A page of the tasks in state ``fallout``, each with its activation id (oldest activation
        first, then in task order)."""

    async def fallout(self) -> builtins.list[tuple[str, TaskResult]]:
        """Every task in state ``fallout``, with its activation id (all pages of :meth:`fallout_page`)."""
        out: builtins.list[tuple[str, TaskResult]] = []
        token = ""
        while True:
            page = await self.fallout_page(page_size=1000, page_token=token)
            out.extend(page.items)
            token = page.next_page_token
            if not token:
                return out

    @abc.abstractmethod
    async def prune(self, older_than: datetime, *, dry_run: bool = False) -> int:
        """Delete the final activations (completed, partial, failed, cancelled, rolledBack; none of
        their tasks in fallout) last updated before ``older_than``, with their tasks and events, in
        short steps beside the other writes. Returns how many were deleted (``dry_run``: how many
        would be, deleting nothing)."""


__all__ = ["RECOVERY_FIELDS", "TASK_FIELDS", "Journal", "TaskRecovery", "Transition"]
