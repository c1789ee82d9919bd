"""Durable journal of activations, tasks and events: SQLite by default, PostgreSQL alike.

Use :func:`open_journal` with a SQLAlchemy URL (or a file path for SQLite), then
``await journal.start()`` (or ``async with``). See :mod:`gateway.journal.base` for the contract
and :mod:`gateway.journal.sql` for group commit.
"""

from gateway.journal.base import RECOVERY_FIELDS, TASK_FIELDS, Journal, TaskRecovery
from gateway.journal.sql import JournalOptions, SqlJournal, open_journal

__all__ = ["RECOVERY_FIELDS", "TASK_FIELDS", "Journal", "JournalOptions", "SqlJournal", "TaskRecovery", "open_journal"]
