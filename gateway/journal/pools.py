"""Allocations inside the journal's transactions: take values out of pools, give them back.

Runs on a DB-API cursor inside a transaction that is already open: the writer's group-commit
batch (:mod:`gateway.journal.batch`: a Submit's allocations in the transaction that creates the
activation, releases in the one that records the end state or the task state that frees them) and
the pool admin calls (:mod:`gateway.journal.pool_store`).

Serialized per pool: every transaction that changes a pool's free ranges first locks the pool's
row (``SELECT ... FOR UPDATE`` on PostgreSQL, in name order, so two transactions locking several
pools never wait on each other in a cycle; SQLite has one writer at a time, ``BEGIN IMMEDIATE``).
So two Submits — on one gateway or on replicas sharing a PostgreSQL journal — never get the same
value: the second reads the free ranges only after the first has committed its split.

Each value is taken from the free ranges (:mod:`gateway.resources.allocator`): a search reads the
ranges in order through the primary key ``(pool, lo)`` (for a block of 2**k, only the ranges with
``span >= k``), a page at a time, and stops at the first fit; a release joins the range with its
neighbours, found through ``(pool, hi)`` and ``(pool, lo)``. An allocation is released once: the
row goes from ``allocated`` to ``released`` by a conditional UPDATE before its range is given back.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping, Sequence

from gateway.errors import FieldViolation, InputError, StateError
from gateway.resources import allocator
from gateway.resources.params import AllocationRequest, Path, ReleaseRequest
from gateway.resources.pools import PoolDef, PoolDefinitionError, key, parse_pool, unkey

ALLOCATED, RELEASED = "allocated", "released"
PAGE = 256
"""Free ranges read per query while searching for a block that fits."""


@dataclass(frozen=True, slots=True)
class Sql:
    """The SQL of one dialect."""

    mark: str
    lock: str
    """`` FOR UPDATE`` on PostgreSQL."""
    time: Callable[[datetime], Any]
    """How a UTC datetime is bound (as the writer binds it)."""

    def marks(self, n: int) -> str:
        return ", ".join([self.mark] * n)


def sql_for(dialect_name: str, paramstyle: str, time: Callable[[datetime], Any]) -> Sql:
    return Sql(mark="?" if paramstyle == "qmark" else "%s", lock="" if dialect_name == "sqlite" else " FOR UPDATE",
               time=time)


def pool_def(name: str, spec: str) -> PoolDef:
    data = json.loads(spec)
    return parse_pool(name, data)


def lock_pools(cur: Any, q: Sql, names: Iterable[str]) -> dict[str, PoolDef]:
    """The definitions of the pools named, their rows locked until the transaction ends (in name
    order); an unknown name is missing from the answer."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    cur.execute(f"SELECT name, spec FROM agw_pools WHERE name IN ({q.marks(len(wanted))}) ORDER BY name{q.lock}",
                wanted)
    return {name: pool_def(name, spec) for name, spec in cur.fetchall()}


def unknown_pool(name: str) -> StateError:
    return StateError(f"pool {name} does not exist (define it in the pools file or with agw pools create)")


def take(cur: Any, q: Sql, pool: PoolDef, prefix_length: int | None) -> tuple[int, int]:
    """Take the lowest free block of that size out of ``pool`` (its row locked); ``(start, end)``.
    An exhausted pool is a :class:`StateError` naming it."""
    size = pool.block_size(prefix_length)
    k = size.bit_length() - 1
    found: tuple[int, int, int] | None = None
    after = ""
    while found is None:
        cur.execute(f"SELECT lo, hi FROM agw_pool_free WHERE pool = {q.mark} AND span >= {q.mark} AND lo > {q.mark} "
                    f"ORDER BY lo LIMIT {1 if size == 1 else PAGE}", (pool.name, k, after))
        rows = cur.fetchall()
        if not rows:
            break
        found = allocator.fit(((unkey(lo), unkey(hi)) for lo, hi in rows), size)
        after = rows[-1][0]
        if size == 1 and found is None:  # pragma: no cover - a free range always holds one value
            break
    if found is None:
        what = "an address" if pool.kind.is_ip and prefix_length is None else (
            f"a /{prefix_length}" if pool.kind.is_ip else f"a {pool.kind.value}")
        raise StateError(f"pool {pool.name} ({pool.shown_range}) is exhausted: no free {what} left")
    start, lo, hi = found
    cur.execute(f"DELETE FROM agw_pool_free WHERE pool = {q.mark} AND lo = {q.mark}", (pool.name, key(lo)))
    for a, b in allocator.split(lo, hi, start, size):
        _insert_free(cur, q, pool.name, a, b)
    return start, start + size - 1


def _insert_free(cur: Any, q: Sql, pool: str, lo: int, hi: int) -> None:
    cur.execute(f"INSERT INTO agw_pool_free (pool, lo, hi, span) VALUES ({q.marks(4)})",
                (pool, key(lo), key(hi), allocator.span_bits(lo, hi)))


def give_back(cur: Any, q: Sql, pool: str, start: int, end: int) -> None:
    """Return ``[start, end]`` to the pool's free ranges, joined with its neighbours (pool locked)."""
    before = after = None
    if start > 0:
        cur.execute(f"SELECT lo, hi FROM agw_pool_free WHERE pool = {q.mark} AND hi = {q.mark}", (pool, key(start - 1)))
        row = cur.fetchone()
        before = None if row is None else (unkey(row[0]), unkey(row[1]))
    cur.execute(f"SELECT lo, hi FROM agw_pool_free WHERE pool = {q.mark} AND lo = {q.mark}", (pool, key(end + 1)))
    row = cur.fetchone()
    after = None if row is None else (unkey(row[0]), unkey(row[1]))
    lo, hi = allocator.merge(start, end, before, after)
    for rng in (before, after):
        if rng is not None:
            cur.execute(f"DELETE FROM agw_pool_free WHERE pool = {q.mark} AND lo = {q.mark}", (pool, key(rng[0])))
    _insert_free(cur, q, pool, lo, hi)


@dataclass(frozen=True, slots=True)
class Taken:
    """What a Submit got: the value of each allocation request, by (task id, parameter path)."""

    values: dict[tuple[str, Path], Any]


def allocate(cur: Any, q: Sql, *, activation_id: str, now: datetime, allocations: Sequence[AllocationRequest],
             releases: Sequence[ReleaseRequest]) -> Taken:
    """In the Submit's transaction: lock the pools named (in name order), take a value for each
    allocation, journal it as the task's, and mark each released value as claimed by its delete
    task. Raises :class:`StateError` naming the pool for an unknown or exhausted pool or a value
    that is not allocated, :class:`InputError` naming the field for a request the pool cannot
    serve (the caller rolls the transaction back to before the activation)."""
    defs = lock_pools(cur, q, [a.pool for a in allocations] + [r.pool for r in releases])
    values: dict[tuple[str, Path], Any] = {}
    rows: list[tuple[Any, ...]] = []
    problems: list[FieldViolation] = []
    for a in allocations:
        pool = defs.get(a.pool)
        if pool is None:
            raise unknown_pool(a.pool)
        why = pool.check_prefix_length(a.prefix_length)
        if why:
            problems.append(FieldViolation(f"{a.field}.allocate.prefix_length", why))
            continue
        start, end = take(cur, q, pool, a.prefix_length)
        value = pool.value(start, a.prefix_length)
        values[(a.task_id, a.path)] = value
        rows.append((str(uuid.uuid4()), a.pool, key(start), key(end), str(value), activation_id, a.task_id, a.param,
                     ALLOCATED, q.time(now)))
    if problems:
        raise InputError(problems)
    if rows:
        cur.executemany(
            "INSERT INTO agw_allocations (id, pool, lo, hi, value, activation_id, task_id, param, state, allocated_at) "
            f"VALUES ({q.marks(10)})", rows)
    for r in releases:
        pool = defs.get(r.pool)
        if pool is None:
            raise unknown_pool(r.pool)
        try:
            start, end = pool.parse_value(r.value)
        except PoolDefinitionError as exc:
            raise InputError([FieldViolation(f"{r.field}.release.value", str(exc))]) from None
        cur.execute(f"UPDATE agw_allocations SET release_activation = {q.mark}, release_task = {q.mark} "
                    f"WHERE pool = {q.mark} AND state = {q.mark} AND lo = {q.mark} AND hi = {q.mark}",
                    (activation_id, r.task_id, r.pool, ALLOCATED, key(start), key(end)))
        if cur.rowcount != 1:
            raise StateError(f"pool {r.pool} has no allocation of {r.value!r} to release ({r.field})")
    return Taken(values=values)


def release(cur: Any, q: Sql, now: datetime, *, owned: Sequence[tuple[str, str]] = (),
            claimed: Sequence[tuple[str, str]] = ()) -> int:
    """Give back the allocations ``owned`` by ``(activation id, task id)`` (task id "": every task
    of the activation) and those ``claimed`` by a completed delete task; the pools locked in name
    order first. Each allocation is released once. Returns how many were."""
    found: dict[str, tuple[str, int, int]] = {}
    for column, task_column, pairs in (("activation_id", "task_id", owned),
                                       ("release_activation", "release_task", claimed)):
        for aid, tid in pairs:
            where = f"{column} = {q.mark} AND state = {q.mark}"
            args: tuple[Any, ...] = (aid, ALLOCATED)
            if tid:
                where += f" AND {task_column} = {q.mark}"
                args += (tid,)
            cur.execute(f"SELECT id, pool, lo, hi FROM agw_allocations WHERE {where}", args)
            for aid_, pool, lo, hi in cur.fetchall():
                found[aid_] = (pool, unkey(lo), unkey(hi))
    if not found:
        return 0
    lock_pools(cur, q, (p for p, _, _ in found.values()))
    count = 0
    for alloc_id, (pool, start, end) in sorted(found.items(), key=lambda kv: (kv[1][0], kv[1][1])):
        cur.execute(f"UPDATE agw_allocations SET state = {q.mark}, released_at = {q.mark} "
                    f"WHERE id = {q.mark} AND state = {q.mark}", (RELEASED, q.time(now), alloc_id, ALLOCATED))
        if cur.rowcount == 1:
            give_back(cur, q, pool, start, end)
            count += 1
    return count


def retake(cur: Any, q: Sql, *, activation_id: str, task_id: str = "") -> int:
    """Take back what the completed delete tasks of ``activation_id`` (``task_id``: of that task
    only) released, as a rollback of that activation starts: it puts the deleted objects, and the
    values they use, back on their devices. Each value goes back to ``allocated`` with its first
    owner. A value allocated again since is a :class:`StateError` naming the pool, the value and
    its new holder (the rollback would make two services use it); the caller's transaction (or
    savepoint) then rolls back whatever this took. Returns how many were taken back."""
    where = f"release_activation = {q.mark} AND state = {q.mark}"
    args: tuple[Any, ...] = (activation_id, RELEASED)
    if task_id:
        where += f" AND release_task = {q.mark}"
        args += (task_id,)
    cur.execute(f"SELECT id, pool, lo, hi, value FROM agw_allocations WHERE {where} AND released_at IS NOT NULL", args)
    rows = sorted(cur.fetchall(), key=lambda r: (r[1], r[2]))
    if not rows:
        return 0
    lock_pools(cur, q, (r[1] for r in rows))
    for alloc_id, pool, lo, hi, value in rows:
        start, end = unkey(lo), unkey(hi)
        cur.execute(f"SELECT lo, hi FROM agw_pool_free WHERE pool = {q.mark} AND lo <= {q.mark} AND hi >= {q.mark}",
                    (pool, lo, hi))
        free = cur.fetchone()
        if free is None:
            cur.execute(f"SELECT activation_id, task_id FROM agw_allocations WHERE pool = {q.mark} AND state = "
                        f"{q.mark} AND lo <= {q.mark} AND hi >= {q.mark}", (pool, ALLOCATED, hi, lo))
            holder = cur.fetchone()
            by = f" (to activation {holder[0]}, task {holder[1]})" if holder else ""
            raise StateError(f"{value} of pool {pool} was allocated again{by} after this activation's delete "
                             "released it: rolling the delete back would make two services use it; release it "
                             "there first")
        flo, fhi = unkey(free[0]), unkey(free[1])
        cur.execute(f"DELETE FROM agw_pool_free WHERE pool = {q.mark} AND lo = {q.mark}", (pool, free[0]))
        for a, b in allocator.split(flo, fhi, start, end - start + 1):
            _insert_free(cur, q, pool, a, b)
        cur.execute(f"UPDATE agw_allocations SET state = {q.mark}, released_at = NULL WHERE id = {q.mark} "
                    f"AND state = {q.mark}", (ALLOCATED, alloc_id, RELEASED))
    return len(rows)


def has_allocations(cur: Any, q: Sql, activation_ids: Sequence[str]) -> set[str]:
    """Which of these activations own or claim an allocation (ever): only those have releases to look for."""
    if not activation_ids:
        return set()
    marks = q.marks(len(activation_ids))
    cur.execute(f"SELECT DISTINCT activation_id FROM agw_allocations WHERE activation_id IN ({marks})",
                list(activation_ids))
    out = {r[0] for r in cur.fetchall()}
    cur.execute(f"SELECT DISTINCT release_activation FROM agw_allocations WHERE release_activation IN ({marks})",
                list(activation_ids))
    out.update(r[0] for r in cur.fetchall())
    return out


def values_of(taken: Mapping[tuple[str, Path], Any]) -> dict[str, dict[str, Any]]:
    """Task id -> parameter path -> value (for logs and tests)."""
    from gateway.resources.params import path_text

    out: dict[str, dict[str, Any]] = {}
    for (tid, path), value in taken.items():
        out.setdefault(tid, {})[path_text(path)] = value
    return out


__all__ = ["ALLOCATED", "RELEASED", "Sql", "Taken", "allocate", "give_back", "has_allocations", "lock_pools",
           "pool_def", "release", "retake", "sql_for", "take", "unknown_pool", "values_of"]
