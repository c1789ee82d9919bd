"""The SQL text of the journal's write batches (:mod:`gateway.journal.batch`), per dialect: plain
statements run straight on the DB-API cursor, with the placeholder of the dialect's driver."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from sqlalchemy.engine import Dialect

from gateway.journal import pools
from gateway.journal.schema import activations, events, tasks


TASK_COLUMNS = tuple(c.name for c in tasks.columns)
"""Every column of ``agw_tasks``, in table order (what a Submit inserts)."""


@dataclass(frozen=True, slots=True)
class Sql:
    """Plain SQL text for one dialect, and the bind converter of the UTC datetime columns."""

    mark: str
    begin: str
    time: Callable[[datetime], Any]
    select_act: str
    select_recovery: str
    update_act: str
    insert_events: str
    insert_act: str
    select_idem: str
    insert_tasks: str
    notify: str
    """PostgreSQL: wake the replicas watching these activations (delivered at commit)."""
    pools: pools.Sql

    def update_task(self, cols: tuple[str, ...]) -> str:
        sets = ", ".join(f"{c} = {self.mark}" for c in cols)
        return f"UPDATE {tasks.name} SET {sets} WHERE activation_id = {self.mark} AND task_id = {self.mark}"


_SQL: dict[str, Sql] = {}


def sql_for(dialect: Dialect) -> Sql:
    """The SQL of ``dialect`` (made once per dialect)."""
    found = _SQL.get(dialect.name)
    if found is not None:
        return found
    m = "?" if dialect.paramstyle == "qmark" else "%s"
    proc = events.c.time.type.bind_processor(dialect)
    a, t, e = activations.name, tasks.name, events.name

    def marks(n: int) -> str:
        return ", ".join([m] * n)

    lock = "" if dialect.name == "sqlite" else " FOR UPDATE"
    act_cols = (
        "id, request_id, idem_key, fingerprint, order_ref, atomic, dry_run, state, created_at, updated_at, last_seq, "
        "submitted_by, owner, retry"
    )
    # ON CONFLICT on idem_key: a lost race (another writer took the request_id) inserts nothing
    # and the existing activation is read back, with no failed statement to roll back.
    found = Sql(
        mark=m,
        begin="BEGIN IMMEDIATE" if dialect.name == "sqlite" else "",
        time=proc if proc is not None else (lambda v: v),
        select_act=f"SELECT id, state, last_seq FROM {a} WHERE id IN ({{ids}}){lock}",
        select_recovery=f"SELECT activation_id, task_id, recovery FROM {t} WHERE activation_id IN ({{ids}})",
        update_act=(f"UPDATE {a} SET state = {m}, last_seq = {m}, updated_at = {m}, owner = {m} "
                    f"WHERE id = {m} AND last_seq = {m}"),
        insert_events=(
            f"INSERT INTO {e} (activation_id, seq, time, task_id, phase, state, message, actor) VALUES ({marks(8)})"
        ),
        insert_act=f"INSERT INTO {a} ({act_cols}) VALUES ({marks(14)}) ON CONFLICT (idem_key) DO NOTHING",
        select_idem=f"SELECT id, fingerprint FROM {a} WHERE idem_key = {m}",
        insert_tasks=f"INSERT INTO {t} ({', '.join(TASK_COLUMNS)}) VALUES ({marks(len(TASK_COLUMNS))})",
        notify="" if dialect.name == "sqlite" else "SELECT pg_notify('agw_event', x) FROM unnest(%s::text[]) AS x",
        pools=pools.sql_for(dialect.name, dialect.paramstyle, proc if proc is not None else (lambda v: v)),
    )
    _SQL[dialect.name] = found
    return found


__all__ = ["Sql", "TASK_COLUMNS", "sql_for"]
