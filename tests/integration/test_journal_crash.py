"""Crash test: a process records, reports each record once record() returned, and is SIGKILLed.
Every reported record must be in the journal when it is reopened, consistent with its task row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from gateway.journal import open_journal
from gateway.journal.testing import journal_url, pg_admin  # noqa: F401 - fixtures
from gateway.results import ActivationState

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, sys
from datetime import datetime, timezone
from gateway.journal import RecoveryChanges, TaskChanges, Transition, open_journal
from gateway.model import Action, TaskState
from gateway.results import ActivationState, TaskResult

async def main(url):
    j = open_journal(url)
    await j.start()
    tasks = [TaskResult(id=f"t{w}", device="nc1", service="s", action=Action.CREATE, state=TaskState.ACKNOWLEDGED)
             for w in range(8)]
    await j.create_activation(activation_id="a1", request_id="r1", fingerprint="f", order_ref="o", atomic=True,
                              dry_run=False, tasks=tasks, created_at=datetime.now(timezone.utc))
    sys.stdout.write("ready\n"); sys.stdout.flush()

    async def worker(w):
        i = 0
        while True:
            ev = await j.record(Transition(activation_id="a1", task_id=f"t{w}", phase="push", message=f"t{w}-{i}",
                                           task=TaskChanges(note=f"t{w}-{i}", state=TaskState.IN_PROGRESS),
                                           activation_state=ActivationState.IN_PROGRESS,
                                           recovery=RecoveryChanges(attempt=i)))
            sys.stdout.write(f"{ev.seq} t{w}-{i}\n"); sys.stdout.flush()  # record() returned: committed
            i += 1

    await asyncio.gather(*(worker(w) for w in range(8)))

asyncio.run(main(sys.argv[1]))
"""


async def test_records_acknowledged_before_sigkill_survive(journal_url: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, journal_url], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        confirmed: list[tuple[int, str]] = []
        while len(confirmed) < 400:
            line = child.stdout.readline()
            assert line, f"child ended early: {child.stderr.read() if child.stderr else ''}"
            seq, msg = line.split()
            confirmed.append((int(seq), msg))
        os.kill(child.pid, signal.SIGKILL)  # no close(), no flush, no atexit
        rest, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    for line in rest.splitlines():  # written before the kill: confirmed too
        if line.strip():
            seq, msg = line.split()
            confirmed.append((int(seq), msg))

    async with open_journal(journal_url) as j:
        stored = {e.seq: e for e in await j.events("a1")}
        for seq, msg in confirmed:
            assert seq in stored and stored[seq].message == msg, (seq, msg)
        # no gap: records may have committed without being reported, never half-committed
        assert sorted(stored) == list(range(1, max(stored) + 1))
        got = await j.get("a1")
        assert got.state is ActivationState.IN_PROGRESS
        assert await j.unfinished() == ["a1"]
        for t in got.tasks:  # each task row holds the change of its own last stored event
            last = max((e for e in stored.values() if e.task_id == t.id), key=lambda e: e.seq)
            assert t.note == last.message
            assert (await j.recovery("a1", t.id)).attempt == int(last.message.split("-")[1])
