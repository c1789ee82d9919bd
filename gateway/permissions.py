"""Data at rest: the gateway's data directory and journal file are private to its user.

The journal holds snapshots of device configuration and every rendered change; the data
directory holds it and the inventory. :func:`private_dir` creates a directory with mode 0700,
or removes group/other access from an existing one with a warning; :func:`private_file` creates
an empty file with mode 0600 before anything else opens it (SQLite then gives its ``-wal`` and
``-shm`` files the database file's mode), or removes group/other access from an existing one
with a warning.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from gateway.errors import ConfigurationError

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
_GROUP_OTHER = 0o077


def private_dir(path: Path, *, what: str = "data directory") -> None:
    """Create ``path`` (and its parents) with mode 0700, or remove group/other access from an
    existing one (0755 becomes 0700).

    A directory owned by another user is refused (:class:`ConfigurationError`): the gateway
    would keep its journal where someone else decides who may read it.
    """
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)  # the mode applies to path itself
    except FileExistsError:
        raise ConfigurationError(f"{what} {path} is not a directory") from None
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigurationError(f"{what} {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise ConfigurationError(
            f"{what} {path} is owned by uid {st.st_uid}, not by the gateway's user (uid {os.geteuid()}); "
            f"use a directory of its own"
        )
    _tighten(path, st, what)


def private_file(path: Path, *, what: str = "journal file") -> None:
    """Create ``path`` empty with mode 0600 if it does not exist, else remove group/other access
    from it (0644 becomes 0600)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        _tighten(path, path.stat(), what)
        return
    os.close(fd)
    log.debug("created %s %s with mode %04o", what, path, FILE_MODE)


def tighten_file(path: Path, *, what: str = "journal file") -> None:
    """Remove group/other access from ``path`` if it exists (with a warning); never create it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    _tighten(path, st, what)


def _tighten(path: Path, st: os.stat_result, what: str) -> None:
    old = stat.S_IMODE(st.st_mode)
    if old & _GROUP_OTHER:
        new = old & ~_GROUP_OTHER
        os.chmod(path, new)
        log.warning("%s %s had mode %04o (group/other access); changed to %04o", what, path, old, new)


__all__ = ["DIR_MODE", "FILE_MODE", "private_dir", "private_file", "tighten_file"]
