"""Durable journal of activations, tasks and events: SQLite by default, PostgreSQL alike.

Use :func:`open_journal` with a SQLAlchemy URL (or a file path for SQLite), then
``await journal.start()`` (or ``async with``), and write each step as a :class:`Transition`.
See :mod:`gateway.journal.base` for the contract and :mod:`gateway.journal.sql` for the map of
the package (setup, the group-commit writer, the reads).
"""

from gateway.journal.base import Journal
from gateway.journal.setup import JournalOptions
from gateway.journal.sql import SqlJournal, open_journal
from gateway.transitions import (
    RECOVERY_FIELDS,
    TASK_FIELDS,
    UNCHANGED,
    Pending,
    RecoveryChanges,
    TaskChanges,
    TaskRecovery,
    Transition,
)

__all__ = [
    "RECOVERY_FIELDS",
    "TASK_FIELDS",
    "UNCHANGED",
    "Journal",
    "JournalOptions",
    "Pending",
    "RecoveryChanges",
    "SqlJournal",
    "TaskChanges",
    "TaskRecovery",
    "Transition",
    "open_journal",
]
