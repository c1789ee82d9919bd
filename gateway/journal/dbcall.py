"""How the journal calls its database: on a journal thread, with errors translated in ONE place.

Every database call runs on one of the journal's threads through :func:`call` (the writer's
thread runs the group-commit batches itself, see :mod:`gateway.journal.writer`). Whatever a call
raises — a SQLAlchemy error, an error of the DB-API driver underneath (the writer and the hot
reads use the DB-API cursor directly), an ``OSError`` — leaves the journal as a
:class:`~gateway.errors.JournalError` through :func:`translated`, chained to the original: lost
connections, locks and timeouts are retryable, a constraint or SQL error is not. A DB-API error is
classified as the SQLAlchemy error it would have been (:func:`sqlalchemy_error`, also used by the
writer, which needs that error to decide whether to reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Executor
from typing import Any, Callable, Iterator, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.pool import PoolProxiedConnection

from gateway.errors import AgwError, JournalError, Phase

T = TypeVar("T")


def sqlalchemy_error(exc: BaseException, dialect: Dialect, *, invalidated: bool = False) -> sa_exc.DBAPIError:
    """The SQLAlchemy error a DB-API error ``exc`` would have been raised as (parameters hidden)."""
    error = sa_exc.DBAPIError.instance(
        None, None, exc,  # a DB-API error, checked by the callers
        dialect.loaded_dbapi.Error, hide_parameters=True, connection_invalidated=invalidated, dialect=dialect,
    )
    assert isinstance(error, sa_exc.DBAPIError)
    return error


def invalidate_if_lost(raw: PoolProxiedConnection, exc: BaseException, cursor: Any, dialect: Dialect) -> bool:
    """True (and the pooled connection invalidated: never handed out again) when the DB-API error
    ``exc`` says the connection is gone."""
    if not dialect.is_disconnect(exc, raw.dbapi_connection, cursor):  # type: ignore[arg-type]
        return False
    raw.invalidate(exc)
    return True


def _journal_error(what: str, exc: sa_exc.SQLAlchemyError) -> JournalError:
    orig = getattr(exc, "orig", None)
    detail = f"{type(orig).__name__}: {orig}" if orig is not None else f"{type(exc).__name__}: {exc}"
    detail = detail.strip().splitlines()[0] if detail.strip() else type(exc).__name__
    # lost connections, locks and timeouts may pass; a constraint or SQL error will not
    retryable = isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError))
    return JournalError(f"journal {what} failed: {detail}", phase=Phase.JOURNAL, retryable=retryable)


@contextlib.contextmanager
def translated(what: str, dialect: Dialect | None = None) -> Iterator[None]:
    """THE place where database errors become gateway errors. ``dialect``: the store's, when the
    block may raise the DB-API driver's own errors."""
    try:
        yield
    except AgwError:
        raise
    except sa_exc.SQLAlchemyError as exc:
        raise _journal_error(what, exc) from exc
    except OSError as exc:
        raise JournalError(f"journal {what} failed: {exc}", phase=Phase.JOURNAL) from exc
    except Exception as exc:
        if dialect is not None and isinstance(exc, dialect.loaded_dbapi.Error):
            raise _journal_error(what, sqlalchemy_error(exc, dialect)) from exc
        raise


async def call(executor: Executor | None, what: str, fn: Callable[..., T], *args: Any,
               dialect: Dialect | None = None) -> T:
    """``fn(*args)`` on ``executor`` (a journal thread), its database errors translated."""
    if executor is None:
        raise JournalError("journal is not started", phase=Phase.JOURNAL, retryable=False)

    def run() -> T:
        with translated(what, dialect):
            return fn(*args)

    return await asyncio.get_running_loop().run_in_executor(executor, run)


__all__ = ["call", "invalidate_if_lost", "sqlalchemy_error", "translated"]
