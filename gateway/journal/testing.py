"""Pytest fixtures: a fresh journal store per test on each backend (SQLite file, PostgreSQL schema).

Only tests import this module (it needs pytest). Import the fixtures you use into the test module
(``from gateway.journal.testing import journal, journal_url, pg_admin``) — ``journal_url`` is
parametrized over both backends.

PostgreSQL comes from ``AGW_TEST_POSTGRES_URL`` (default: what ``scripts/start-postgres.sh``
prints). When it cannot be reached the PostgreSQL cases are skipped with the reason, or FAIL
when ``AGW_REQUIRE_POSTGRES=1`` (CI).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest
import sqlalchemy as sa

from gateway.journal import JournalOptions, SqlJournal

DEFAULT_PG_URL = "postgresql+psycopg://agw:agw@127.0.0.1:5432/agw_test"
BACKENDS = ("sqlite", "postgresql")


def postgres_base_url() -> str:
    return os.environ.get("AGW_TEST_POSTGRES_URL", DEFAULT_PG_URL)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine]:
    """An engine on the test database, or skip/fail with the reason it is unreachable."""
    url = postgres_base_url()
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3}, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("select 1")
    except Exception as exc:  # noqa: BLE001 - any reason it is unreachable
        engine.dispose()
        safe = sa.engine.make_url(url).render_as_string(hide_password=True)
        reason = f"PostgreSQL at {safe} is unreachable ({type(exc).__name__}); run scripts/start-postgres.sh"
        if os.environ.get("AGW_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"AGW_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    yield engine
    engine.dispose()


def pg_schema_url(schema: str) -> str:
    base = sa.engine.make_url(postgres_base_url())
    return base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


def _fresh_schema(admin: sa.Engine) -> Iterator[str]:
    """The URL of a new, empty schema of the test database, dropped after."""
    schema = f"agw_t_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f'create schema "{schema}"')
    try:
        yield pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'drop schema "{schema}" cascade')


@pytest.fixture(params=BACKENDS)
def journal_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty journal store on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'journal.db'}"
        return
    yield from _fresh_schema(request.getfixturevalue("pg_admin"))


@pytest.fixture
def pg_url(pg_admin: sa.Engine) -> Iterator[str]:
    """The URL of an empty journal store on PostgreSQL only (its own schema, dropped after)."""
    yield from _fresh_schema(pg_admin)


@pytest.fixture
async def journal(journal_url: str) -> AsyncIterator[SqlJournal]:
    j = SqlJournal(journal_url, options=JournalOptions(busy_timeout_ms=5_000, connect_timeout_s=3))
    await j.start()
    try:
        yield j
    finally:
        await j.close()


__all__ = ["BACKENDS", "DEFAULT_PG_URL", "journal", "journal_url", "pg_admin", "pg_schema_url", "pg_url",
           "postgres_base_url"]
