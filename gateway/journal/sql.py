"""SqlJournal: the journal on SQLAlchemy Core — SQLite (default, one file) or PostgreSQL (psycopg 3).

A thin facade: it checks the arguments of each call, owns the journal's threads and lifecycle,
and hands the work to the module that does it:

* :mod:`gateway.journal.setup` — options, the engine, SQLite pragmas and file modes, the schema;
* :mod:`gateway.journal.writer` — group commit: the queue of writes and the journal thread that
  drains it (batches applied by :mod:`gateway.journal.batch`, prune steps by
  :mod:`gateway.journal.retention`);
* :mod:`gateway.journal.reads` — every read (the hot ones in plain SQL), listings by page
  (tokens and queries in :mod:`gateway.journal.paging`);
* :mod:`gateway.journal.codec` — values to rows and back; :mod:`gateway.journal.dbcall` — where
  database errors become :class:`~gateway.errors.JournalError`.

Async API over a sync engine: every database call runs in a dedicated thread pool (one thread for
SQLite, a few for PostgreSQL); on a SQLite file reads get threads of their own beside the writer.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from gateway import offload
from gateway.errors import JournalError, NotFoundError, Phase
from gateway.journal import codec, paging, retention
from gateway.journal.base import Journal
from gateway.journal.batch import Create
from gateway.journal.dbcall import call
from gateway.journal.deliveries import Outbox
from gateway.journal.kpi import KpiRows
from gateway.journal.pool_store import PoolStore
from gateway.journal.cluster import Cluster
from gateway.journal.reads import Reader
from gateway.journal.schema import idem_key
from gateway.journal.setup import JournalOptions, claim_sqlite_file, is_sqlite_file, open_engine, sqlite_path
from gateway.journal.writer import Writer, record_op
from gateway.model import TaskState
from gateway.results import ActivationResult, ActivationState, Event, Page, TaskResult
from gateway.transitions import TaskRecovery, Transition

log = logging.getLogger(__name__)

ENCODE_INLINE_MAX = 64
"""An activation with more tasks has its rows encoded on a worker thread (a thousand take ~40 ms,
which the event loop must not spend)."""


class SqlJournal(Journal):
    """The journal on one SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``)."""

    def __init__(self, url: str, *, options: JournalOptions | None = None) -> None:
        self.url = sa.engine.make_url(url)
        self.options = options or JournalOptions()
        if self.options.max_batch < 1:
            raise codec.usage_error("max_batch must be at least 1")
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None  # the writer's; reads too on PostgreSQL / in-memory
        self._reader_threads: ThreadPoolExecutor | None = None
        self._writer = Writer(max_batch=self.options.max_batch)
        self._reader: Reader | None = None
        self._closing = False
        self._claim_fd: int | None = None
        self._cluster: Cluster | None = None

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    @property
    def batches(self) -> int:
        """Write transactions committed so far (for the benchmark and tests)."""
        return self._writer.batches

    @property
    def writer_cpu_s(self) -> float:
        """CPU seconds the journal thread spent writing batches (for the benchmark)."""
        return self._writer.cpu_s

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self._engine is not None:
            return
        workers = 1 if self.backend == "sqlite" else self.options.pg_pool_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agw-journal")
        # SQLite in WAL mode reads beside its one writer: reads (Get, Watch, List) get their own
        # threads so they never queue behind a write batch, nor a batch behind them.
        self._reader_threads = (
            ThreadPoolExecutor(max_workers=self.options.sqlite_readers, thread_name_prefix="agw-journal-read")
            if is_sqlite_file(self.url) else self._executor
        )
        self._closing = False
        try:
            engine = await call(self._executor, "open", open_engine, self.url, self.options)
        except BaseException:
            self._shutdown_executors(wait=False)
            raise
        self._writer.open(engine, self._executor, asyncio.get_running_loop())
        self._reader = Reader(engine, self._reader_threads)
        self._engine = engine
        log.info("journal open: %s", self.url.render_as_string(hide_password=True))

    async def claim(self, *, holder: str, on_lost: Callable[[], None] | None = None) -> None:
        """SQLite file: an exclusive lock beside the database (:func:`~gateway.journal.setup.claim_sqlite_file`);
        refused at once if another process holds it. In memory: nothing to share. PostgreSQL: this
        process becomes one replica among those sharing the journal (:mod:`gateway.journal.cluster`):
        every write is fenced by its lease, and ``on_lost`` is called if the lease is lost."""
        self._require_open()
        if self.backend == "postgresql":
            if self._cluster is None:
                assert self._engine is not None
                cluster = Cluster(self._engine, holder=holder, lease_s=self.options.lease_s)
                try:
                    await cluster.start(on_lost or (lambda: None))
                except BaseException:
                    await cluster.close()
                    raise
                self._cluster = cluster
                self._writer.lease = cluster.lease
                assert self._reader is not None
                self._reader.owner = cluster.replica_id
            return
        path = sqlite_path(self.url)
        if path is None or self._claim_fd is not None:
            return
        self._claim_fd = claim_sqlite_file(path, holder=holder)

    @property
    def cluster(self) -> Cluster | None:
        return self._cluster

    @property
    def outbox(self) -> Outbox:
        """The result events and their deliveries (:mod:`gateway.journal.deliveries`)."""
        self._require_open()
        assert self._engine is not None and self._reader_threads is not None
        return Outbox(self._engine, self._reader_threads)

    @property
    def pools(self) -> PoolStore:
        """The resource pools: definitions, listings, peeks (:mod:`gateway.journal.pool_store`)."""
        self._require_open()
        assert self._engine is not None and self._reader_threads is not None
        return PoolStore(self._engine, self._reader_threads)

    def holds_claim(self) -> bool:
        return self._cluster is None or self._cluster.valid()

    async def _let_go_lease(self) -> None:
        cluster, self._cluster = self._cluster, None
        self._writer.lease = None
        if cluster is not None:
            await cluster.close()

    def _let_go(self) -> None:
        if self._claim_fd is not None:
            os.close(self._claim_fd)
            self._claim_fd = None

    async def close(self) -> None:
        if self._engine is None or self._closing:
            self._let_go()
            return
        self._closing = True  # nothing new is queued from here on; what is queued is written
        await self._writer.idle()
        engine, self._engine = self._engine, None
        await call(self._executor, "close", self._writer.release)
        if self._reader is not None:
            await call(self._executor, "close", self._reader.release)
        await call(self._executor, "close", engine.dispose)
        self._shutdown_executors(wait=True)
        await self._let_go_lease()
        self._let_go()
        log.info("journal closed after %d write transactions", self._writer.batches)

    def _shutdown_executors(self, *, wait: bool) -> None:
        if self._reader_threads is not None and self._reader_threads is not self._executor:
            self._reader_threads.shutdown(wait=wait)
        if self._executor is not None:
            self._executor.shutdown(wait=wait)
        self._executor = self._reader_threads = None

    def _require_open(self) -> None:
        if self._engine is None or self._closing:
            raise JournalError("journal is not open", phase=Phase.JOURNAL, retryable=False)

    @property
    def _reads(self) -> Reader:
        self._require_open()
        assert self._reader is not None
        return self._reader

    # -- writes --------------------------------------------------------------------------------
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
        def encode() -> list[dict[str, Any]]:
            return [codec.task_row(activation_id, i, t) for i, t in enumerate(tasks)]

        rows = encode() if len(tasks) <= ENCODE_INLINE_MAX else await offload.run(encode)
        op = Create(
            activation_id=codec.text(activation_id, "activation_id"),
            request_id=codec.text(request_id, "request_id"),
            submitted_by=codec.text(submitted_by, "submitted_by"),
            fingerprint=codec.text(fingerprint, "fingerprint"),
            order_ref=codec.text(order_ref, "order_ref"),
            atomic=bool(atomic),
            dry_run=bool(dry_run),
            task_rows=rows,
            created_at=codec.utc(created_at, "created_at"),
            future=asyncio.get_running_loop().create_future(),
            retry=codec.dumps(dict(retry or {})),
            allocations=tuple(allocations),
            releases=tuple(releases),
            complete=complete,
        )
        self._require_open()
        result: tuple[str, bool] = await self._writer.submit(op)
        return result

    def record_later(self, transition: Transition) -> asyncio.Future[Event]:
        if not isinstance(transition, Transition):
            raise codec.usage_error(f"a record must be a Transition, got {type(transition).__name__}")
        op = record_op(transition, asyncio.get_running_loop().create_future())
        self._require_open()
        self._writer.enqueue(op)
        return op.future

    async def prune(self, older_than: datetime, *, dry_run: bool = False) -> int:
        cutoff = codec.utc(older_than, "older_than")
        if dry_run:
            return await self._reads.count_prunable(cutoff)
        total = 0
        while True:  # one step per write transaction; other writes queued meanwhile go in between
            op = retention.Prune(cutoff=cutoff, max_activations=self.options.prune_max_activations,
                                 max_tasks=self.options.prune_max_tasks,
                                 future=asyncio.get_running_loop().create_future())
            self._require_open()
            deleted: int = await self._writer.submit(op)
            if not deleted:
                break
            total += deleted
        if total:
            log.info("journal pruned: %d final activation(s) last updated before %s", total, cutoff.isoformat())
        return total

    # -- reads ---------------------------------------------------------------------------------
    async def get(self, activation_id: str) -> ActivationResult:
        found = await self._reads.get(activation_id)
        if found is None:
            raise NotFoundError(f"activation {activation_id} not found", phase=Phase.JOURNAL)
        return found

    async def find_by_request_id(self, request_id: str, *, submitted_by: str = "") -> ActivationResult | None:
        return await self._reads.find(idem_key(request_id, submitted_by))

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
        filters = paging.ListFilters.of(states=states, device=device, since=since, until=until)
        q = paging.list_query(filters, page_token, paging.check_page_size(page_size))  # a bad token raises here
        return await self._reads.list_page(q, filters, page_size)

    async def events(self, activation_id: str, *, after_seq: int = 0) -> builtins.list[Event]:
        return await self._reads.events(activation_id, after_seq)

    async def recovery(self, activation_id: str, task_id: str) -> TaskRecovery:
        raw = await self._reads.recovery(activation_id, task_id)
        if raw is None:
            raise NotFoundError(f"task {task_id!r} not found in activation {activation_id}", phase=Phase.JOURNAL)
        return codec.decode_recovery(raw)

    async def unfinished(self) -> builtins.list[str]:
        return await self._reads.unfinished()

    async def kpi_rows(self, since: datetime, until: datetime) -> KpiRows:
        return await self._reads.kpi_rows(since, until)

    async def fallout_count(self) -> int:
        return await self._reads.count_tasks_in(TaskState.FALLOUT.value)

    async def fallout_page(self, *, page_size: int = 50, page_token: str = "") -> Page[tuple[str, TaskResult]]:
        q = paging.fallout_query(page_token, paging.check_page_size(page_size))  # a bad token raises here
        return await self._reads.fallout_page(q, page_size)


def open_journal(url: str, *, options: JournalOptions | None = None) -> Journal:
    """A journal for ``url`` (not started: ``await journal.start()`` or ``async with``).

    ``url`` is a SQLAlchemy URL — ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
    ``postgresql+psycopg://user:pw@host/db`` — or a plain file path, taken as a SQLite file.
    """
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser()}"
    try:
        parsed = sa.engine.make_url(url)
    except sa_exc.ArgumentError as exc:
        raise codec.usage_error(f"journal URL is not valid: {exc}") from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise codec.usage_error(
            f"journal backend {parsed.get_backend_name()!r} is not supported (use sqlite or postgresql+psycopg)"
        )
    return SqlJournal(url, options=options)


__all__ = ["JournalOptions", "SqlJournal", "open_journal"]
