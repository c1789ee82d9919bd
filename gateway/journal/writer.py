"""The journal's one writer: group commit through a FIFO queue drained on the journal thread.

``create_activation``, ``record`` / ``record_later`` and prune steps are queued as operations
(:func:`record_op` makes one of a :class:`~gateway.transitions.Transition`). While the queue has
work, ONE drain job runs on the journal thread and writes it batch after batch without a trip
through the event loop between batches: each batch of up to ``max_batch`` operations is applied
in ONE transaction (:func:`gateway.journal.batch.apply_batch`), and its outcomes come back to the
loop in one callback, in queue order; each caller's future resolves only after that commit.
Under load a batch grows while the previous one is being written, so the cost of a commit (and
of the thread hop) is shared by every record in it; with no load a batch is a single record, with
no added delay.

A prune step (:mod:`gateway.journal.retention`) is written alone, in its own short transaction,
between batches. If a batch transaction fails, its operations are retried one transaction each,
so one bad record fails alone. The writer keeps its own pooled connection and a cache of the
activations it wrote (:class:`~gateway.journal.batch.WriterCache`: checked, never trusted).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Executor
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import Engine

from gateway.errors import FencedError, JournalError, Phase
from gateway.journal import codec, retention
from gateway.journal.batch import Create, Op, Record, WriterCache, apply_batch
from gateway.journal.dbcall import translated
from gateway.journal.lease import ReplicaLease
from gateway.metrics import JOURNAL_COMMIT_SECONDS
from gateway.results import Event
from gateway.transitions import Transition

log = logging.getLogger(__name__)


def record_op(t: Transition, future: asyncio.Future[Event]) -> Record:
    """The queued operation of a transition (its values were checked when it was made)."""
    return Record(
        activation_id=t.activation_id,
        task_id=t.task_id,
        phase=t.phase,
        state=t.state,
        message=t.message,
        actor=t.actor,
        task_cols={} if t.task is None else codec.task_columns(t.task),
        activation_state=None if t.activation_state is None else t.activation_state.value,
        recovery=None if t.recovery is None else codec.recovery_values(t.recovery),
        time=datetime.now(timezone.utc),
        future=future,
        expect=t.expect,
    )


class Writer:
    """The queue, the drain job and the writer's state; one per journal, reopened by each start."""

    def __init__(self, *, max_batch: int) -> None:
        self.max_batch = max_batch
        self.engine: Engine | None = None
        self.executor: Executor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.cache = WriterCache()
        self.batches = 0
        """Write transactions committed so far (for the benchmark and tests)."""
        self.cpu_s = 0.0
        """CPU seconds the journal thread spent writing batches (for the benchmark)."""
        self._queue: list[Op | retention.Prune] = []
        self._qlock = threading.Lock()
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.lease: ReplicaLease | None = None
        """Set while this gateway is a replica on a PostgreSQL journal: every batch is fenced by its
        lease, and owns what it writes."""

    def open(self, engine: Engine, executor: Executor, loop: asyncio.AbstractEventLoop) -> None:
        """Write to ``engine`` from ``executor`` (the journal thread), for callers on ``loop``."""
        self.engine, self.executor, self.loop = engine, executor, loop
        self.cache = WriterCache()  # a new store may hold anything
        self._idle = asyncio.Event()  # bound to this start's event loop
        self._idle.set()

    async def idle(self) -> None:
        """Until everything queued so far is written."""
        await self._idle.wait()

    def release(self) -> None:
        """Give the writer's connection back (call in the journal thread, once idle)."""
        self.cache.release()

    # -- the queue -----------------------------------------------------------------------------
    async def submit(self, op: Op | retention.Prune) -> Any:
        self.enqueue(op)
        return await op.future

    def enqueue(self, op: Op | retention.Prune) -> None:
        """Queue a write (FIFO); start a drain job unless one is running."""
        with self._qlock:
            self._queue.append(op)
            if self._draining:
                return
            self._draining = True
        self._idle.clear()
        assert self.executor is not None
        self.executor.submit(self._drain)

    def _drain(self) -> None:
        """Runs in the journal thread: write batches until the queue is empty."""
        loop = self.loop
        assert loop is not None
        while True:
            with self._qlock:
                batch = self._take()
                if not batch:
                    self._draining = False
                    break
            try:
                if isinstance(batch[0], retention.Prune):
                    outcomes: list[Any] = self._write_prune(batch[0])
                else:
                    outcomes = self._write_batch(batch)  # type: ignore[arg-type]  # no Prune in it
            except Exception as exc:  # a bug, not a database error: fail the batch, keep writing
                log.exception("journal writer failed on a batch of %d", len(batch))
                err = JournalError(f"journal write failed: {exc!r}", phase=Phase.JOURNAL)
                outcomes = [err] * len(batch)
            loop.call_soon_threadsafe(_deliver, batch, outcomes)
        loop.call_soon_threadsafe(self._maybe_idle)

    def _take(self) -> list[Op | retention.Prune]:
        """The next batch (the caller holds ``_qlock``): a prune step alone, else the writes queued
        before the next prune step (at most ``max_batch``)."""
        queue = self._queue
        n = min(len(queue), self.max_batch)
        if n and isinstance(queue[0], retention.Prune):
            n = 1
        else:
            n = next((i for i in range(n) if isinstance(queue[i], retention.Prune)), n)
        batch = queue[:n]
        del queue[:n]
        return batch

    def _maybe_idle(self) -> None:
        with self._qlock:
            if not self._draining:
                self._idle.set()

    # -- writing (the journal thread) ----------------------------------------------------------
    def _write_prune(self, op: retention.Prune) -> list[Any]:
        """One prune step; what it deleted leaves the writer's cache."""
        engine = self.engine
        assert engine is not None
        try:
            if self.lease is not None:
                self.lease.check()
            with translated("prune", engine.dialect):
                pruned = retention.prune_step(engine, op)
        except JournalError as exc:
            return [exc]
        self.cache.drop(pruned)
        return [len(pruned)]

    def _apply(self, batch: list[Op]) -> list[Any]:
        engine = self.engine  # still set while close() drains the queue through here
        assert engine is not None
        lease = self.lease
        if lease is not None:
            lease.check()  # the local count first: a lapsed lease writes nothing
        t0 = time.perf_counter()
        outcomes = apply_batch(engine, batch, cache=self.cache, replica="" if lease is None else lease.replica_id,
                               fenced=lease is not None)
        JOURNAL_COMMIT_SECONDS.observe(time.perf_counter() - t0)
        self.batches += 1
        return outcomes

    def _write_batch(self, batch: list[Op]) -> list[Any]:
        """The batch in one transaction, else one transaction each."""
        cpu0 = time.thread_time()
        try:
            return self._write_batch_timed(batch)
        finally:
            self.cpu_s += time.thread_time() - cpu0

    def _write_batch_timed(self, batch: list[Op]) -> list[Any]:
        dialect = self.engine.dialect if self.engine is not None else None
        try:
            with translated("write", dialect):
                return self._apply(batch)
        except FencedError as exc:
            return [exc] * len(batch)  # no write of this gateway may land any more
        except JournalError as exc:
            if len(batch) == 1:
                return [exc]
            log.warning("group commit of %d operations failed (%s); retrying one by one", len(batch), exc)
        outcomes: list[Any] = []
        for op in batch:
            attempts = 2 if isinstance(op, Create) else 1  # a lost unique race is read back on retry
            for attempt in range(attempts):
                try:
                    with translated("write", dialect):
                        outcomes.extend(self._apply([op]))
                    break
                except JournalError as exc:
                    if attempt == attempts - 1:
                        outcomes.append(exc)
        return outcomes


def _deliver(batch: list[Op | retention.Prune], outcomes: list[Any]) -> None:
    """On the event loop: hand each queued operation its outcome, in queue order."""
    for op, outcome in zip(batch, outcomes, strict=True):
        if op.future.done():  # the caller went away; the write stands
            continue
        if isinstance(outcome, BaseException):
            op.future.set_exception(outcome)
        else:
            op.future.set_result(outcome)


__all__ = ["Writer", "record_op"]
