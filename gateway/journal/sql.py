"""SqlJournal: the journal on SQLAlchemy Core — SQLite (default, one file) or PostgreSQL (psycopg 3).

Async API over a sync engine: every database call runs in a dedicated thread pool (one thread for
SQLite, a few for PostgreSQL). Writes go through **group commit**: ``create_activation`` and
``record`` calls are queued; one writer task drains the queue and applies the whole batch in ONE
transaction; each caller's future resolves only after that transaction committed. Under load a
batch grows while the previous one is being written, so the cost of a commit (and of the thread
hop) is shared by every record in it; with no load a batch is a single record, with no added delay.

The writer keeps its own pooled connection and a cache of the activations it wrote (see
:mod:`gateway.journal.batch`: checked against ``last_seq`` in every transaction, never trusted).

A prune step (:mod:`gateway.journal.retention`) is queued the same way and written alone, in its
own short transaction, between batches.

If a batch transaction fails, its operations are retried one transaction each, so one bad record
fails alone. SQLAlchemy / DB-API errors become :class:`~gateway.errors.JournalError` in exactly one
place, :func:`_translated`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from gateway.engine.views import ActivationResult, ActivationState, AuditEntry, Event, Page, TaskResult
from gateway import offload
from gateway.errors import AgwError, JournalError, NotFoundError, Phase
from gateway.journal import codec, paging, reads, retention
from gateway.journal.base import Journal, TaskRecovery
from gateway.journal.batch import Create, Op, Record, WriterCache, apply_batch
from gateway.journal.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    activations,
    events,
    idem_key,
    metadata,
    schema_version,
    tasks,
)
from gateway.permissions import private_file, tighten_file

log = logging.getLogger(__name__)

ENCODE_INLINE_MAX = 64
"""An activation with more tasks has its rows encoded on a worker thread (a thousand take ~40 ms,
which the event loop must not spend)."""

T = TypeVar("T")

_UNFINISHED = (ActivationState.ACKNOWLEDGED.value, ActivationState.IN_PROGRESS.value)


@dataclass(frozen=True, kw_only=True)
class JournalOptions:
    max_batch: int = 512
    """Most operations committed in one transaction; 1 turns group commit off (the baseline)."""
    sqlite_synchronous: str = "NORMAL"
    """NORMAL (WAL: a commit survives a crash of the process, not of the machine) or FULL."""
    busy_timeout_ms: int = 10_000
    """SQLite: how long to wait for another process's write lock."""
    pg_pool_size: int = 4
    """PostgreSQL: connections (and threads) for reads beside the writer."""
    sqlite_readers: int = 2
    """SQLite file: threads (each with its own connection) for reads, beside the one writer."""
    connect_timeout_s: int = 10
    prune_max_activations: int = 200
    """Most activations one prune step (one write transaction) deletes."""
    prune_max_tasks: int = 5000
    """Most tasks one prune step deletes (unless a single activation has more)."""


# -- queued write operations -----------------------------------------------------------------------


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """THE place where database errors become gateway errors."""
    try:
        yield
    except AgwError:
        raise
    except sa_exc.SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        detail = f"{type(orig).__name__}: {orig}" if orig is not None else f"{type(exc).__name__}: {exc}"
        detail = detail.strip().splitlines()[0] if detail.strip() else type(exc).__name__
        # lost connections, locks and timeouts may pass; a constraint or SQL error will not
        retryable = isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError))
        raise JournalError(f"journal {what} failed: {detail}", phase=Phase.JOURNAL, retryable=retryable) from exc
    except OSError as exc:
        raise JournalError(f"journal {what} failed: {exc}", phase=Phase.JOURNAL) from exc


def _private_sqlite_file(path: Path) -> None:
    """The journal file is 0600 before SQLite opens it (created empty if new: a valid database),
    so the ``-wal`` and ``-shm`` files SQLite creates beside it get the same mode; existing ones
    with group/other access are tightened (with a warning)."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        tighten_file(path.with_name(path.name + suffix))


def _now() -> datetime:
    return datetime.now(timezone.utc)


class SqlJournal(Journal):
    """The journal on one SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``)."""

    def __init__(self, url: str, *, options: JournalOptions | None = None) -> None:
        self.url = sa.engine.make_url(url)
        self.options = options or JournalOptions()
        if self.options.max_batch < 1:
            raise codec.usage_error("max_batch must be at least 1")
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None  # reads; the writer's own on PostgreSQL / in-memory
        self._queue: list[Op | retention.Prune] = []
        # the writer: a drain job on the journal thread, running while the queue has work
        self._qlock = threading.Lock()
        self._draining = False
        self._idle = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.batches = 0
        """Write transactions committed so far (for the benchmark and tests)."""
        self._cache = WriterCache()
        self._local = threading.local()  # per reader thread: its own DB-API connection (reads.py)
        self._plain_conns: list[Any] = []  # all of them, released at close
        self._plain_lock = threading.Lock()
        self._sql_texts: dict[str, str] = {}
        self.writer_cpu_s = 0.0
        """CPU seconds the journal thread spent writing batches (for the benchmark)."""

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self._engine is not None:
            return
        sqlite = self.backend == "sqlite"
        workers = 1 if sqlite else self.options.pg_pool_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agw-journal")
        # SQLite in WAL mode reads beside its one writer: reads (Get, Watch, List) get their own
        # threads so they never queue behind a write batch, nor a batch behind them.
        database = self.url.database or ""
        file_db = sqlite and database not in ("", ":memory:") and "mode=memory" not in database
        self._reader = (ThreadPoolExecutor(max_workers=self.options.sqlite_readers, thread_name_prefix="agw-journal-read")
                        if file_db else self._executor)
        self._closing = False
        self._cache = WriterCache()  # a new store may hold anything
        self._idle = asyncio.Event()  # bound to this start's event loop
        self._idle.set()
        self._loop = asyncio.get_running_loop()
        try:
            self._engine = await self._run(self._open_engine, "open")
        except BaseException:
            self._shutdown_executors(wait=False)
            raise
        log.info("journal open: %s", self.url.render_as_string(hide_password=True))

    async def close(self) -> None:
        if self._engine is None or self._closing:
            return
        self._closing = True  # nothing new is queued from here on; what is queued is written
        await self._idle.wait()
        engine, self._engine = self._engine, None
        await self._run(self._cache.release, "close")
        await self._run(self._release_plain, "close")
        await self._run(engine.dispose, "close")
        self._shutdown_executors(wait=True)
        log.info("journal closed after %d write transactions", self.batches)

    def _shutdown_executors(self, *, wait: bool) -> None:
        if self._reader is not None and self._reader is not self._executor:
            self._reader.shutdown(wait=wait)
        if self._executor is not None:
            self._executor.shutdown(wait=wait)
        self._executor = self._reader = None

    def _open_engine(self) -> Engine:
        if self.backend == "sqlite":
            database = self.url.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                _private_sqlite_file(Path(database))
            engine = sa.create_engine(self.url, connect_args={"timeout": self.options.busy_timeout_ms / 1000})
            self._configure_sqlite(engine)
        else:
            engine = sa.create_engine(
                self.url,
                pool_size=self.options.pg_pool_size,
                pool_pre_ping=True,
                connect_args={"connect_timeout": self.options.connect_timeout_s},
            )
        try:
            metadata.create_all(engine)
            with engine.begin() as conn:
                self._check_schema_version(conn)
        except BaseException:
            engine.dispose()
            raise
        return engine

    def _configure_sqlite(self, engine: Engine) -> None:
        synchronous = self.options.sqlite_synchronous.upper()
        if synchronous not in ("NORMAL", "FULL"):
            raise codec.usage_error(f"sqlite_synchronous must be NORMAL or FULL, not {synchronous!r}")
        busy_ms = int(self.options.busy_timeout_ms)

        @sa_event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa_event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # A writer takes the write lock up front: no deadlock upgrading a read lock.
            write = conn.get_execution_options().get("agw_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @staticmethod
    def _check_schema_version(conn: Connection) -> None:
        found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
        if found is None:
            conn.execute(sa.insert(schema_version).values(version=SCHEMA_VERSION, applied_at=_now()))
        elif found > SCHEMA_VERSION:
            raise JournalError(
                f"journal schema version {found} is newer than this gateway supports ({SCHEMA_VERSION})",
                phase=Phase.JOURNAL,
                retryable=False,
            )
        else:
            for version in range(found + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS.get(version, ()):
                    conn.exec_driver_sql(statement)
                conn.execute(sa.insert(schema_version).values(version=version, applied_at=_now()))
                log.warning("journal schema upgraded to version %d", version)

    async def _run(self, fn: Callable[..., T], what: str, *args: Any, read: bool = False) -> T:
        executor = self._reader if read else self._executor
        if executor is None:
            raise JournalError("journal is not started", phase=Phase.JOURNAL, retryable=False)

        def call() -> T:
            with _translated(what):
                return fn(*args)

        return await asyncio.get_running_loop().run_in_executor(executor, call)

    async def _read(self, fn: Callable[..., T], what: str, *args: Any) -> T:
        engine = self._require_engine()

        def in_connection(*a: Any) -> T:
            with engine.connect() as conn:
                return fn(conn, *a)

        return await self._run(in_connection, what, *args, read=True)

    async def _read_plain(self, fn: Callable[..., T], what: str, *args: Any) -> T:
        """``fn(cursor, *args)`` on the reader thread's own DB-API connection (one statement per
        read, see :mod:`gateway.journal.reads`); DB-API errors are raised as SQLAlchemy's, so
        :func:`_translated` treats them like every other journal error."""
        engine = self._require_engine()
        dbapi_error = engine.dialect.loaded_dbapi.Error

        def in_raw(*a: Any) -> T:
            raw = getattr(self._local, "conn", None)
            if raw is None:
                raw = self._local.conn = engine.raw_connection()
                with self._plain_lock:
                    self._plain_conns.append(raw)
            dbapi_conn = raw.dbapi_connection
            assert dbapi_conn is not None
            cur = dbapi_conn.cursor()
            try:
                return fn(cur, *a)
            except dbapi_error as exc:
                invalid = engine.dialect.is_disconnect(exc, dbapi_conn, cur)
                if invalid:  # a new connection next time
                    self._local.conn = None
                    raw.invalidate(exc)
                raise sa_exc.DBAPIError.instance(None, None, exc, dbapi_error, hide_parameters=True,
                                                 connection_invalidated=invalid, dialect=engine.dialect) from exc
            finally:
                with contextlib.suppress(Exception):
                    cur.close()
                with contextlib.suppress(Exception):
                    dbapi_conn.rollback()  # ends PostgreSQL's implicit read transaction

        return await self._run(in_raw, what, *args, read=True)

    def _release_plain(self) -> None:
        with self._plain_lock:
            conns, self._plain_conns = self._plain_conns, []
        for raw in conns:
            with contextlib.suppress(Exception):
                raw.close()
        self._local = threading.local()

    def _sql_text(self, name: str) -> str:
        engine = self._require_engine()
        text = self._sql_texts.get(name)
        if text is None:
            style = engine.dialect.paramstyle
            text = self._sql_texts[name] = {"activation": reads.activation_sql, "audit": reads.audit_sql,
                                            "events": reads.events_sql}[name](style)
        return text

    def _require_engine(self) -> Engine:
        if self._engine is None or self._closing:
            raise JournalError("journal is not open", phase=Phase.JOURNAL, retryable=False)
        return self._engine

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
        )
        result: tuple[str, bool] = await self._submit(op)
        return result

    def record_later(
        self,
        *,
        activation_id: str,
        task_id: str = "",
        phase: str = "",
        state: str = "",
        message: str = "",
        task: Mapping[str, Any] | None = None,
        activation_state: ActivationState | None = None,
        recovery: Mapping[str, Any] | None = None,
        actor: str = "",
    ) -> asyncio.Future[Event]:
        op = Record(
            activation_id=codec.text(activation_id, "activation_id"),
            task_id=codec.text(task_id, "task_id"),
            phase=codec.text(phase, "phase"),
            state=codec.text(state, "state"),
            message=codec.text(message, "message"),
            actor=codec.text(actor, "actor"),
            task_cols=codec.task_changes(task or {}),
            activation_state=None if activation_state is None else ActivationState(activation_state).value,
            recovery=None if recovery is None else codec.recovery_changes(recovery),
            time=_now(),
            future=asyncio.get_running_loop().create_future(),
        )
        if (op.task_cols or op.recovery) and not op.task_id:
            raise codec.usage_error("task or recovery changes need a task_id")
        self._enqueue(op)
        return op.future

    async def _submit(self, op: Op | retention.Prune) -> Any:
        self._enqueue(op)
        return await op.future

    def _enqueue(self, op: Op | retention.Prune) -> None:
        """Queue a write (FIFO). The journal thread drains the queue batch after batch without a
        trip through the event loop between batches; each batch's outcomes come back to the loop
        in one callback, in order."""
        self._require_engine()
        with self._qlock:
            self._queue.append(op)
            if self._draining:
                return
            self._draining = True
        self._idle.clear()
        assert self._executor is not None
        self._executor.submit(self._drain)

    def _drain(self) -> None:
        """Runs in the journal thread: write batches until the queue is empty."""
        loop = self._loop
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
        n = min(len(queue), self.options.max_batch)
        if n and isinstance(queue[0], retention.Prune):
            n = 1
        else:
            n = next((i for i in range(n) if isinstance(queue[i], retention.Prune)), n)
        batch = queue[:n]
        del queue[:n]
        return batch

    def _write_prune(self, op: retention.Prune) -> list[Any]:
        """Runs in the journal thread: one prune step; what it deleted leaves the writer's cache."""
        engine = self._engine
        assert engine is not None
        try:
            with _translated("prune"):
                pruned = retention.prune_step(engine, op)
        except JournalError as exc:
            return [exc]
        self._cache.drop(pruned)
        return [len(pruned)]

    def _maybe_idle(self) -> None:
        with self._qlock:
            if not self._draining:
                self._idle.set()

    def _apply(self, batch: list[Op]) -> list[Any]:
        engine = self._engine  # not _require_engine(): close() drains the queue through here
        assert engine is not None
        outcomes = apply_batch(engine, batch, cache=self._cache)
        self.batches += 1
        return outcomes

    def _write_batch(self, batch: list[Op]) -> list[Any]:
        """Runs in the journal thread: the batch in one transaction, else one transaction each."""
        cpu0 = time.thread_time()
        try:
            return self._write_batch_timed(batch)
        finally:
            self.writer_cpu_s += time.thread_time() - cpu0

    def _write_batch_timed(self, batch: list[Op]) -> list[Any]:
        try:
            with _translated("write"):
                return self._apply(batch)
        except JournalError as exc:
            if len(batch) == 1:
                return [exc]
            log.warning("group commit of %d operations failed (%s); retrying one by one", len(batch), exc)
        outcomes: list[Any] = []
        for op in batch:
            attempts = 2 if isinstance(op, Create) else 1  # a lost unique race is read back on retry
            for attempt in range(attempts):
                try:
                    with _translated("write"):
                        outcomes.extend(self._apply([op]))
                    break
                except JournalError as exc:
                    if attempt == attempts - 1:
                        outcomes.append(exc)
        return outcomes

    async def get(self, activation_id: str) -> ActivationResult:
        found = await self._read_plain(reads.load_activation, "read", self._sql_text("activation"),
                                       self._sql_text("audit"), activation_id)
        if found is None:
            raise NotFoundError(f"activation {activation_id} not found", phase=Phase.JOURNAL)
        return found

    async def find_by_request_id(self, request_id: str, *, submitted_by: str = "") -> ActivationResult | None:
        key = idem_key(request_id, submitted_by)

        def query(conn: Connection) -> builtins.list[ActivationResult]:
            row = conn.execute(sa.select(activations.c.id).where(activations.c.idem_key == key)).first()
            return [] if row is None else self._load(conn, [row.id])

        found = await self._read(query, "read")
        return found[0] if found else None

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
        return await self._read(paging.read_list_page, "list", q, filters, page_size, self._load)

    @staticmethod
    def _load(conn: Connection, ids: builtins.list[str]) -> builtins.list[ActivationResult]:
        """Activations with their tasks, in the order of ``ids`` (unknown ids are left out)."""
        if not ids:
            return []
        rows = {r.id: r for r in conn.execute(sa.select(activations).where(activations.c.id.in_(ids)))}
        by_activation: dict[str, builtins.list[TaskResult]] = {i: [] for i in ids}
        q = sa.select(tasks).where(tasks.c.activation_id.in_(ids)).order_by(tasks.c.activation_id, tasks.c.position)
        for t in conn.execute(q).mappings():
            by_activation[t["activation_id"]].append(codec.decode_task(t))
        audit: dict[str, builtins.list[AuditEntry]] = {}
        qa = (sa.select(events).where(events.c.activation_id.in_(ids), events.c.actor != "")
              .order_by(events.c.activation_id, events.c.seq))
        for e in conn.execute(qa):
            audit.setdefault(e.activation_id, []).append(reads.audit_entry(e.time, e.actor, e.phase, e.task_id, e.message))
        return [
            ActivationResult(
                id=r.id,
                request_id=r.request_id,
                order_ref=r.order_ref,
                atomic=bool(r.atomic),
                state=ActivationState(r.state),
                created_at=r.created_at,
                updated_at=r.updated_at,
                dry_run=bool(r.dry_run),
                tasks=tuple(by_activation[r.id]),
                submitted_by=r.submitted_by,
                audit=tuple(audit.get(r.id, ())),
            )
            for r in (rows.get(i) for i in ids)
            if r is not None
        ]

    async def events(self, activation_id: str, *, after_seq: int = 0) -> builtins.list[Event]:
        return await self._read_plain(reads.load_events, "read events", self._sql_text("events"),
                                      activation_id, after_seq)

    async def recovery(self, activation_id: str, task_id: str) -> TaskRecovery:
        q = sa.select(tasks.c.recovery).where(tasks.c.activation_id == activation_id, tasks.c.task_id == task_id)

        def query(conn: Connection) -> str | None:
            return conn.execute(q).scalar()

        raw = await self._read(query, "read recovery")
        if raw is None:
            raise NotFoundError(f"task {task_id!r} not found in activation {activation_id}", phase=Phase.JOURNAL)
        return codec.decode_recovery(raw)

    async def unfinished(self) -> builtins.list[str]:
        q = (
            sa.select(activations.c.id)
            .where(activations.c.state.in_(_UNFINISHED))
            .order_by(activations.c.created_at, activations.c.id)
        )

        def query(conn: Connection) -> builtins.list[str]:
            return [r.id for r in conn.execute(q)]

        return await self._read(query, "read")

    async def fallout_page(self, *, page_size: int = 50, page_token: str = "") -> Page[tuple[str, TaskResult]]:
        q = paging.fallout_query(page_token, paging.check_page_size(page_size))  # a bad token raises here
        return await self._read(paging.read_fallout_page, "read fallout", q, page_size)

    async def prune(self, older_than: datetime, *, dry_run: bool = False) -> int:
        cutoff = codec.utc(older_than, "older_than")
        if dry_run:
            return await self._read(retention.count, "count prunable", cutoff)
        total = 0
        while True:  # one step per write transaction; other writes queued meanwhile go in between
            op = retention.Prune(cutoff=cutoff, max_activations=self.options.prune_max_activations,
                                 max_tasks=self.options.prune_max_tasks,
                                 future=asyncio.get_running_loop().create_future())
            deleted: int = await self._submit(op)
            if not deleted:
                break
            total += deleted
        if total:
            log.info("journal pruned: %d final activation(s) last updated before %s", total, cutoff.isoformat())
        return total


def _deliver(batch: list[Op], outcomes: list[Any]) -> None:
    """On the event loop: hand each queued operation its outcome, in queue order."""
    for op, outcome in zip(batch, outcomes, strict=True):
        if op.future.done():  # the caller went away; the write stands
            continue
        if isinstance(outcome, BaseException):
            op.future.set_exception(outcome)
        else:
            op.future.set_result(outcome)


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
