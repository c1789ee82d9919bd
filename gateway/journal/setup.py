"""Opening a journal store: its options, the SQLAlchemy engine, SQLite's pragmas and file modes,
and the schema (created, checked, or upgraded in place to :data:`~gateway.journal.schema.SCHEMA_VERSION`).

:func:`open_engine` connects, so it runs on the journal's writer thread (see
:mod:`gateway.journal.sql`). SQLite runs in WAL mode (reads beside the one writer) with
``BEGIN IMMEDIATE`` for writes (the write lock up front: no deadlock upgrading a read lock); its
file is 0600 before SQLite opens it, in a 0700 directory if the journal creates one.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import URL, Connection, Engine

from gateway.errors import JournalError, Phase
from gateway.journal.schema import MIGRATIONS, OUTBOX_SEQUENCE, SCHEMA_VERSION, metadata, outbox, schema_version, sequences
from gateway.permissions import private_file, tighten_file
from gateway.transitions import refused

log = logging.getLogger(__name__)


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
    lease_s: float = 15.0
    """PostgreSQL: each replica's lease (:mod:`gateway.journal.lease`): a replica that stops renewing
    it (killed, frozen, cut off) is taken over by another within this time."""


def now() -> datetime:
    return datetime.now(timezone.utc)


def is_sqlite_file(url: URL) -> bool:
    """A SQLite database in a file (not in memory): its reads get their own threads."""
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and database not in ("", ":memory:") and "mode=memory" not in database


def open_engine(url: URL, options: JournalOptions) -> Engine:
    """The engine on ``url`` with the schema ready (connects: call it on the journal thread)."""
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            _private_sqlite_file(Path(database))
        engine = sa.create_engine(url, connect_args={"timeout": options.busy_timeout_ms / 1000})
        _configure_sqlite(engine, options)
    else:
        engine = sa.create_engine(
            url,
            pool_size=options.pg_pool_size,
            pool_pre_ping=True,
            connect_args={"connect_timeout": options.connect_timeout_s},
        )
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":  # replicas starting at once create (or upgrade) it once
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('agw-schema:' || current_schema()))")
            metadata.create_all(conn)
            check_schema_version(conn)
            ensure_sequences(conn)
    except BaseException:
        engine.dispose()
        raise
    return engine


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite journal in a file (None: in memory, or not SQLite)."""
    database = url.database or ""
    if not is_sqlite_file(url) or database.startswith("file:"):
        return None
    return Path(database)


def claim_sqlite_file(path: Path, *, holder: str) -> int:
    """Hold an exclusive lock on ``<journal>.lock`` beside the journal (an open file descriptor,
    returned: closing it, or the process ending, lets go). A SQLite journal serves one gateway
    process: a second one would recover (roll back) the first one's live work. The lock file says
    who holds it, for the message the second one gets."""
    lock = path.with_name(path.name + ".lock")
    if not lock.parent.exists():
        lock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            held_by = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
        finally:
            os.close(fd)
        raise JournalError(
            f"the SQLite journal {path} is in use by another gateway ({held_by}); a SQLite journal serves one "
            f"gateway process: stop that one first, or share a PostgreSQL journal between replicas",
            phase=Phase.JOURNAL, retryable=False) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{holder}, pid {os.getpid()}, since {now().isoformat(timespec='seconds')}\n".encode(), 0)
    return fd


def _private_sqlite_file(path: Path) -> None:
    """The journal file is 0600 before SQLite opens it (created empty if new: a valid database),
    so the ``-wal`` and ``-shm`` files SQLite creates beside it get the same mode; existing ones
    with group/other access are tightened (with a warning)."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        tighten_file(path.with_name(path.name + suffix))


def _configure_sqlite(engine: Engine, options: JournalOptions) -> None:
    synchronous = options.sqlite_synchronous.upper()
    if synchronous not in ("NORMAL", "FULL"):
        raise refused(f"sqlite_synchronous must be NORMAL or FULL, not {synchronous!r}")
    busy_ms = int(options.busy_timeout_ms)

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


def check_schema_version(conn: Connection) -> None:
    """Record the version of a new store, refuse a newer one, upgrade an older one in place."""
    found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    if found is None:
        conn.execute(sa.insert(schema_version).values(version=SCHEMA_VERSION, applied_at=now()))
    elif found > SCHEMA_VERSION:
        raise JournalError(
            f"journal schema version {found} is newer than this gateway supports ({SCHEMA_VERSION})",
            phase=Phase.JOURNAL,
            retryable=False,
        )
    else:
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS.get(version, ()):
                if isinstance(statement, str):
                    conn.exec_driver_sql(statement)
                else:
                    statement(conn)
            conn.execute(sa.insert(schema_version).values(version=version, applied_at=now()))
            log.warning("journal schema upgraded to version %d", version)


def ensure_sequences(conn: Connection) -> None:
    """The counters' rows, once: ``outbox`` starts at the highest position kept (0 on a new journal)."""
    if conn.execute(sa.select(sequences.c.name).where(sequences.c.name == OUTBOX_SEQUENCE)).first() is None:
        last = conn.execute(sa.select(sa.func.coalesce(sa.func.max(outbox.c.position), 0))).scalar()
        conn.execute(sa.insert(sequences).values(name=OUTBOX_SEQUENCE, value=int(last or 0)))


__all__ = ["JournalOptions", "check_schema_version", "ensure_sequences", "is_sqlite_file", "now", "open_engine"]
