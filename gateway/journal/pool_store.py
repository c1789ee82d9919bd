"""The pools' admin side: define pools (the pools file at start, CreatePool), list and show them,
and peek at what a DryRun would be given. Reached as :attr:`SqlJournal.pools <gateway.journal.sql.SqlJournal.pools>`.

A definition is applied idempotently: a new pool is created with one free range (its whole
range); the same definition again changes nothing (a new description is kept); another definition
of an existing pool is refused unless ``replace`` is given, and even then refused when it would
orphan an allocation in use (a kind that no longer fits, a range that no longer holds it): the
free ranges are then rebuilt from the allocations in use. Every change of one call is ONE
transaction, with each pool's row locked (:mod:`gateway.journal.pools`).
"""

from __future__ import annotations

import builtins
import contextlib
import json
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator, Sequence

from sqlalchemy.engine import Engine

from gateway.errors import ConflictError, StateError
from gateway.journal import pools as ops
from gateway.journal.dbcall import call
from gateway.journal.schema import events
from gateway.resources import allocator
from gateway.resources.params import AllocationRequest, Path, ReleaseRequest
from gateway.resources.pools import PoolDef, key, unkey

MAX_SHOWN = 1000
"""Most allocations :meth:`PoolStore.get` lists."""
CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


@dataclass(frozen=True, kw_only=True)
class Allocation:
    """One value in use."""

    pool: str
    value: str
    activation_id: str
    task_id: str
    param: str
    allocated_at: datetime
    release_activation: str = ""
    """A delete task that names it (it goes back to the pool when that task completes)."""
    release_task: str = ""


@dataclass(frozen=True, kw_only=True)
class PoolInfo:
    pool: PoolDef
    allocated: int
    """Allocations in use."""
    free: int
    """Integers (addresses, VLAN ids, ids) not in use."""
    allocations: tuple[Allocation, ...] = ()
    """In use, lowest first (:meth:`PoolStore.get` only; at most ``limit``)."""
    created_at: datetime | None = None
    updated_at: datetime | None = None


@contextlib.contextmanager
def _cursor(engine: Engine, *, commit: bool = True) -> Iterator[tuple[Any, ops.Sql]]:
    """A DB-API cursor in one write transaction (SQLite: BEGIN IMMEDIATE); ``commit=False``
    rolls it back at the end (a peek)."""
    proc = events.c.time.type.bind_processor(engine.dialect)
    q = ops.sql_for(engine.dialect.name, engine.dialect.paramstyle, proc if proc is not None else (lambda v: v))
    with engine.connect() as conn:
        conn.execution_options(agw_write=True)
        trans = conn.begin()
        try:
            cur = conn.connection.cursor()
            try:
                yield cur, q
            finally:
                cur.close()
            if commit:
                trans.commit()
            else:
                trans.rollback()
        except BaseException:
            trans.rollback()
            raise


def _in_use(cur: Any, q: ops.Sql, name: str) -> list[tuple[int, int, str]]:
    cur.execute(f"SELECT lo, hi, value FROM agw_allocations WHERE pool = {q.mark} AND state = {q.mark} ORDER BY lo",
                (name, ops.ALLOCATED))
    return [(unkey(lo), unkey(hi), value) for lo, hi, value in cur.fetchall()]


def _fill(cur: Any, q: ops.Sql, pool: PoolDef, taken: Sequence[tuple[int, int]]) -> None:
    cur.execute(f"DELETE FROM agw_pool_free WHERE pool = {q.mark}", (pool.name,))
    lo, hi = pool.bounds
    rows = [(pool.name, key(a), key(b), allocator.span_bits(a, b)) for a, b in allocator.free_ranges(lo, hi, taken)]
    if rows:
        cur.executemany(f"INSERT INTO agw_pool_free (pool, lo, hi, span) VALUES ({q.marks(4)})", rows)


def define(engine: Engine, defs: Sequence[PoolDef], replace: bool, now: datetime) -> list[tuple[str, str]]:
    """Apply ``defs`` in one transaction: (name, created | updated | unchanged) each; refused (nothing
    applied) with a :class:`ConflictError` (another definition, no ``replace``) or a
    :class:`StateError` (the new definition would orphan allocations in use)."""
    out: list[tuple[str, str]] = []
    with _cursor(engine) as (cur, q):
        if engine.dialect.name == "postgresql":  # replicas starting with one pools file: one defines at a time
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('agw-pools:' || current_schema()))")
        existing = ops.lock_pools(cur, q, [d.name for d in defs])
        for d in sorted(defs, key=lambda d: d.name):
            spec = json.dumps(d.spec(), sort_keys=True)
            lo, hi = d.bounds
            old = existing.get(d.name)
            if old is None:
                cur.execute("INSERT INTO agw_pools (name, kind, spec, lo, hi, created_at, updated_at) "
                            f"VALUES ({q.marks(7)})", (d.name, d.kind.value, spec, key(lo), key(hi), q.time(now),
                                                        q.time(now)))
                _fill(cur, q, d, [])
                out.append((d.name, CREATED))
                continue
            if old.same_as(d):
                if old.description == d.description:
                    out.append((d.name, UNCHANGED))
                    continue
            elif not replace:
                raise ConflictError(f"pool {d.name} exists as {old.kind.value} {old.shown_range}, not "
                                    f"{d.kind.value} {d.shown_range} (a changed definition needs replace)")
            else:
                in_use = _in_use(cur, q, d.name)
                orphans = [v for a, b, v in in_use if old.kind is not d.kind or not (lo <= a and b <= hi)]
                if orphans:
                    raise StateError(
                        f"pool {d.name}: the new definition ({d.kind.value} {d.shown_range}) would orphan "
                        f"{len(orphans)} allocation(s) in use, e.g. {orphans[0]}; release them first")
                _fill(cur, q, d, [(a, b) for a, b, _ in in_use])
            cur.execute(f"UPDATE agw_pools SET kind = {q.mark}, spec = {q.mark}, lo = {q.mark}, hi = {q.mark}, "
                        f"updated_at = {q.mark} WHERE name = {q.mark}",
                        (d.kind.value, spec, key(lo), key(hi), q.time(now), d.name))
            out.append((d.name, UPDATED))
    return out


def _free_counts(cur: Any, q: ops.Sql, name: str = "") -> dict[str, int]:
    where = f" WHERE pool = {q.mark}" if name else ""
    cur.execute(f"SELECT pool, lo, hi FROM agw_pool_free{where}", (name,) if name else ())
    free: dict[str, int] = {}
    for pool, lo, hi in cur.fetchall():
        free[pool] = free.get(pool, 0) + unkey(hi) - unkey(lo) + 1
    return free


def _used_counts(cur: Any, q: ops.Sql, name: str = "") -> dict[str, int]:
    where = f" AND pool = {q.mark}" if name else ""
    cur.execute(f"SELECT pool, COUNT(*) FROM agw_allocations WHERE state = {q.mark}{where} GROUP BY pool",
                (ops.ALLOCATED, name) if name else (ops.ALLOCATED,))
    return {pool: int(n) for pool, n in cur.fetchall()}


def _times(value: Any) -> datetime | None:
    from gateway.journal.codec import utc_time

    return None if value is None else utc_time(value)


def listing(engine: Engine) -> list[PoolInfo]:
    with _cursor(engine, commit=False) as (cur, q):
        cur.execute("SELECT name, spec, created_at, updated_at FROM agw_pools ORDER BY name")
        rows = cur.fetchall()
        free, used = _free_counts(cur, q), _used_counts(cur, q)
    return [PoolInfo(pool=ops.pool_def(name, spec), allocated=used.get(name, 0), free=free.get(name, 0),
                     created_at=_times(c), updated_at=_times(u)) for name, spec, c, u in rows]


def detail(engine: Engine, name: str, limit: int) -> PoolInfo | None:
    with _cursor(engine, commit=False) as (cur, q):
        cur.execute(f"SELECT spec, created_at, updated_at FROM agw_pools WHERE name = {q.mark}", (name,))
        row = cur.fetchone()
        if row is None:
            return None
        free, used = _free_counts(cur, q, name), _used_counts(cur, q, name)
        cur.execute("SELECT value, activation_id, task_id, param, allocated_at, release_activation, release_task "
                    f"FROM agw_allocations WHERE pool = {q.mark} AND state = {q.mark} ORDER BY lo LIMIT {int(limit)}",
                    (name, ops.ALLOCATED))
        shown = tuple(Allocation(pool=name, value=v, activation_id=a, task_id=t, param=p, allocated_at=_times(at)
                                 or datetime.min, release_activation=ra, release_task=rt)
                      for v, a, t, p, at, ra, rt in cur.fetchall())
    return PoolInfo(pool=ops.pool_def(name, row[0]), allocated=used.get(name, 0), free=free.get(name, 0),
                    allocations=shown, created_at=_times(row[1]), updated_at=_times(row[2]))


def definitions(engine: Engine, names: Sequence[str]) -> dict[str, PoolDef]:
    with _cursor(engine, commit=False) as (cur, q):
        wanted = sorted(set(names))
        cur.execute(f"SELECT name, spec FROM agw_pools WHERE name IN ({q.marks(len(wanted))})", wanted)
        return {name: ops.pool_def(name, spec) for name, spec in cur.fetchall()}


def peek(engine: Engine, allocations: Sequence[AllocationRequest], releases: Sequence[ReleaseRequest],
         now: datetime) -> dict[tuple[str, Path], Any]:
    """What a Submit would be given now: the allocation run in a transaction that is rolled back."""
    with _cursor(engine, commit=False) as (cur, q):
        return ops.allocate(cur, q, activation_id="(dry run)", now=now, allocations=allocations,
                            releases=releases).values


class PoolStore:
    """The pools of one open journal: each call on a journal thread, database errors translated."""

    def __init__(self, engine: Engine, executor: Executor) -> None:
        self._engine, self._executor = engine, executor

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        return await call(self._executor, f"pools {what}", fn, self._engine, *args, dialect=self._engine.dialect)

    async def define(self, defs: Sequence[PoolDef], *, replace: bool = False, now: datetime) -> builtins.list[tuple[str, str]]:
        found: builtins.list[tuple[str, str]] = await self._call("define", define, builtins.list(defs), replace, now)
        return found

    async def list(self) -> builtins.list[PoolInfo]:
        found: builtins.list[PoolInfo] = await self._call("list", listing)
        return found

    async def get(self, name: str, *, limit: int = MAX_SHOWN) -> PoolInfo | None:
        found: PoolInfo | None = await self._call("read", detail, name, max(0, min(limit, MAX_SHOWN)))
        return found

    async def definitions(self, names: Sequence[str]) -> dict[str, PoolDef]:
        if not names:
            return {}
        found: dict[str, PoolDef] = await self._call("read", definitions, builtins.list(names))
        return found

    async def peek(self, allocations: Sequence[AllocationRequest], releases: Sequence[ReleaseRequest], *,
                   now: datetime) -> dict[tuple[str, Path], Any]:
        found: dict[tuple[str, Path], Any] = await self._call("peek", peek, builtins.list(allocations),
                                                              builtins.list(releases), now)
        return found


__all__ = ["Allocation", "CREATED", "MAX_SHOWN", "PoolInfo", "PoolStore", "UNCHANGED", "UPDATED"]
