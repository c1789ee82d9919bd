"""Data at rest: the data directory is 0700, the SQLite journal and its -wal/-shm files are 0600."""

from __future__ import annotations

import logging
import os
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from gateway.app import GatewayConfig, build_engine
from gateway.errors import ConfigurationError
from gateway.journal import SqlJournal
from gateway.model import Action, TaskState
from gateway.permissions import private_dir, private_file
from gateway.results import TaskResult


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what a shell usually has: new files 0644, new directories 0755
    try:
        yield
    finally:
        os.umask(old)


def test_build_engine_creates_the_data_dir_0700(tmp_path: Path) -> None:
    data = tmp_path / "a" / "var"
    build_engine(GatewayConfig(data_dir=data))
    assert mode(data) == 0o700


def test_an_existing_open_data_dir_is_tightened_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    with caplog.at_level(logging.WARNING, logger="gateway.permissions"):
        build_engine(GatewayConfig(data_dir=data))
    assert mode(data) == 0o700
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "gateway.permissions"]
    assert str(data) in warning.getMessage() and "0755" in warning.getMessage()


def test_a_private_data_dir_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "var"
    data.mkdir(mode=0o700)
    with caplog.at_level(logging.WARNING, logger="gateway.permissions"):
        private_dir(data)
    assert mode(data) == 0o700 and not caplog.records


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another user")
def test_a_data_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir(mode=0o700)
    os.chown(data, 65534, 65534)
    with pytest.raises(ConfigurationError, match=str(data)):
        private_dir(data)


def test_a_file_where_the_data_dir_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("")
    with pytest.raises(ConfigurationError, match="not a directory"):
        private_dir(tmp_path / "var")


async def _write_one(path: Path) -> SqlJournal:
    journal = SqlJournal(f"sqlite:///{path}")
    await journal.start()
    task = TaskResult(id="t1", device="d1", service="s", action=Action.CREATE, state=TaskState.ACKNOWLEDGED)
    await journal.create_activation(activation_id="a1", request_id="r1", fingerprint="f", order_ref="o", atomic=True,
                                    dry_run=False, tasks=(task,), created_at=datetime.now(timezone.utc))
    return journal


async def test_journal_and_its_wal_and_shm_files_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / "journal.db"
    journal = await _write_one(path)
    try:
        wal, shm = path.with_name("journal.db-wal"), path.with_name("journal.db-shm")
        assert wal.exists() and shm.exists()  # WAL mode, written, not yet closed
        assert (mode(path), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
        assert mode(path.parent) == 0o700  # created by the journal for itself
    finally:
        await journal.close()


async def test_an_existing_open_journal_is_tightened_with_a_warning(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "journal.db"
    await (await _write_one(path)).close()
    for f in (path, path.with_name("journal.db-wal"), path.with_name("journal.db-shm")):
        if f.exists():
            os.chmod(f, 0o644)
    with caplog.at_level(logging.WARNING, logger="gateway.permissions"):
        journal = await _write_one(tmp_path / "journal.db")
    try:
        assert await journal.get("a1")
        assert all(mode(f) == 0o600 for f in tmp_path.iterdir() if f.name.startswith("journal.db"))
        assert any(str(path) in r.getMessage() and "0644" in r.getMessage() for r in caplog.records)
    finally:
        await journal.close()


def test_private_file_creates_0600_and_never_widens(tmp_path: Path) -> None:
    new = tmp_path / "new"
    private_file(new)
    assert mode(new) == 0o600 and new.read_bytes() == b""
    strict = tmp_path / "strict"
    strict.write_text("x")
    os.chmod(strict, 0o400)
    private_file(strict)
    assert mode(strict) == 0o400 and strict.read_text() == "x"
