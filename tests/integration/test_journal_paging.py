"""Keyset paging, retention and ``agw journal prune`` against real stores (SQLite file and
PostgreSQL, each test on both)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, Sequence

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from gateway.cli import main
from gateway.engine import Engine
from gateway.errors import InputError, NotFoundError
from gateway.journal import JournalOptions, SqlJournal, TaskChanges, Transition
from gateway.journal.testing import journal, journal_url, pg_admin  # noqa: F401 - fixtures
from gateway.model import Action, TaskState
from gateway.results import ActivationState, Page, TaskResult

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
NOW = datetime.now(timezone.utc)
OLD = NOW - timedelta(days=40)


def task(tid: str = "t1", device: str = "nc1", state: TaskState = TaskState.ACKNOWLEDGED) -> TaskResult:
    return TaskResult(id=tid, device=device, service="interface", action=Action.CREATE, state=state)


async def create(j: SqlJournal, aid: str, *, created_at: datetime = T0, devices: Sequence[str] = ("nc1",)) -> None:
    await j.create_activation(activation_id=aid, request_id=f"req-{aid}", fingerprint="fp", order_ref="",
                              atomic=True, dry_run=False, created_at=created_at,
                              tasks=[task(f"t{i}", d) for i, d in enumerate(devices)])


async def every_page(read: Any, page_size: int, **filters: Any) -> list[Any]:
    out: list[Any] = []
    token = ""
    while True:
        page: Page[Any] = await read(page_size=page_size, page_token=token, **filters)
        assert len(page.items) <= page_size and len(page.resume) == len(page.items)
        out.extend(page.items)
        token = page.next_page_token
        if not token:
            return out


# -- list ------------------------------------------------------------------------------------------
async def test_pages_never_skip_nor_repeat_rows_with_equal_created_at(journal: SqlJournal) -> None:
    # 23 activations on 5 distinct times (ties of up to 7), ids not in time order
    ticks = (0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4, 4, 0, 0, 1, 2, 4, 4, 4, 0)
    times = [T0 + timedelta(microseconds=k) for k in ticks]
    for n, at in enumerate(times):
        await create(journal, f"a{(n * 7) % 23:02}", created_at=at, devices=("nc1",) if n % 3 else ("cli1",))
    everything = [a.id for a in await journal.list(limit=100)]
    assert len(everything) == 23
    expected = sorted(everything, key=lambda i: (times[[f"a{(n * 7) % 23:02}" for n in range(23)].index(i)], i),
                      reverse=True)
    assert everything == expected  # newest first, ties by id descending
    for size in (1, 2, 3, 5, 7, 22, 23, 50):
        assert [a.id for a in await every_page(journal.list_page, size)] == everything, size
    nc1 = [a.id for a in await journal.list(device="nc1", limit=100)]
    assert 0 < len(nc1) < 23
    for size in (1, 4):
        assert [a.id for a in await every_page(journal.list_page, size, device="nc1")] == nc1
    window = dict(since=T0 + timedelta(microseconds=1), until=T0 + timedelta(microseconds=4))
    inside = [a.id for a in await journal.list(limit=100, **window)]
    assert [a.id for a in await every_page(journal.list_page, 2, **window)] == inside and len(inside) == 14


async def test_times_on_a_whole_second_compare_equal_to_themselves(journal: SqlJournal, journal_url: str) -> None:
    whole = T0.replace(microsecond=0)  # SQLite stores these without a fraction
    for n in range(4):
        await create(journal, f"w{n}", created_at=whole + timedelta(seconds=n // 2))
    assert [a.id for a in await every_page(journal.list_page, 1)] == ["w3", "w2", "w1", "w0"]
    second = whole + timedelta(seconds=1)
    assert [a.id for a in await journal.list(since=second)] == ["w3", "w2"]  # since: inclusive
    assert [a.id for a in await journal.list(until=second)] == ["w1", "w0"]  # until: exclusive
    for aid in ("w0", "w1", "w2", "w3"):
        await journal.record(Transition(activation_id=aid, activation_state=ActivationState.COMPLETED))
    await _set_updated(journal_url, {f"w{n}": whole + timedelta(seconds=n) for n in range(4)})
    assert await journal.prune(whole + timedelta(seconds=2), dry_run=True) == 2  # updated_at < cutoff, not <=


async def test_rows_added_or_removed_between_pages_do_not_shift_the_others(journal: SqlJournal) -> None:
    for n in range(6):
        await create(journal, f"a{n}", created_at=T0)  # all at the same time
    first = await journal.list_page(page_size=2)
    assert [a.id for a in first.items] == ["a5", "a4"] and first.more
    await create(journal, "a9", created_at=T0)  # sorts before the cursor: not in the later pages
    await create(journal, "a0x", created_at=T0)  # sorts after it: in them
    rest: list[str] = []
    token = first.next_page_token
    while token:
        page = await journal.list_page(page_size=2, page_token=token)
        rest.extend(a.id for a in page.items)
        token = page.next_page_token
    assert rest == ["a3", "a2", "a1", "a0x", "a0"]


async def test_a_token_of_other_filters_or_a_garbled_one_is_refused(journal: SqlJournal) -> None:
    for n in range(3):
        await create(journal, f"a{n}", created_at=T0 + timedelta(seconds=n))
    token = (await journal.list_page(page_size=1, device="nc1")).next_page_token
    assert token
    assert [a.id for a in (await journal.list_page(page_size=5, device="nc1", page_token=token)).items] == ["a1", "a0"]
    for call in (journal.list_page(page_token=token), journal.list_page(page_token=token, device="nc2"),
                 journal.list_page(page_token=token, device="nc1", states=[ActivationState.COMPLETED]),
                 journal.fallout_page(page_token=token)):
        with pytest.raises(InputError) as err:
            await call
        assert [v.field for v in err.value.violations] == ["page_token"]
    for garbled in (token[:-3], token + "x", "!!", token[::-1]):
        with pytest.raises(InputError, match="page_token"):
            await journal.list_page(page_token=garbled, device="nc1")


# -- fallout ---------------------------------------------------------------------------------------
async def test_fallout_pages_in_order_without_gaps(journal: SqlJournal) -> None:
    for n in range(5):
        await create(journal, f"a{n}", created_at=T0 + timedelta(microseconds=n // 2), devices=("nc1", "r1", "cli1"))
    falls = [("a0", "t1"), ("a1", "t0"), ("a1", "t2"), ("a2", "t0"), ("a2", "t1"), ("a2", "t2"), ("a4", "t1")]
    for aid, tid in falls:
        await journal.record(Transition(activation_id=aid, task_id=tid, task=TaskChanges(state=TaskState.FALLOUT)))
    assert [(aid, t.id) for aid, t in await journal.fallout()] == falls
    for size in (1, 2, 3, 6, 7, 8):
        assert [(aid, t.id) for aid, t in await every_page(journal.fallout_page, size)] == falls, size


# -- retention -------------------------------------------------------------------------------------
async def _set_updated(journal_url: str, updated: dict[str, datetime]) -> None:
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            for aid, at in updated.items():
                conn.execute(sa.text("UPDATE agw_activations SET updated_at = :t WHERE id = :i"),
                             {"t": at.replace(tzinfo=None) if journal_url.startswith("sqlite") else at, "i": aid})
    finally:
        engine.dispose()


def _rows(journal_url: str, aid: str) -> tuple[int, int, int]:
    engine = sa.create_engine(journal_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return tuple(  # type: ignore[return-value]
                conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {col} = :i"), {"i": aid}).scalar_one()
                for table, col in (("agw_activations", "id"), ("agw_tasks", "activation_id"),
                                   ("agw_events", "activation_id")))
    finally:
        engine.dispose()


STATES = {
    "done-old": ActivationState.COMPLETED, "failed-old": ActivationState.FAILED,
    "cancelled-old": ActivationState.CANCELLED, "rolled-old": ActivationState.ROLLED_BACK,
    "partial-old": ActivationState.PARTIAL, "partial-fallout-old": ActivationState.PARTIAL,
    "fallout-old": ActivationState.FALLOUT, "running-old": ActivationState.IN_PROGRESS,
    "acked-old": ActivationState.ACKNOWLEDGED, "done-new": ActivationState.COMPLETED,
}
PRUNED = {"done-old", "failed-old", "cancelled-old", "rolled-old", "partial-old"}


async def _retention_data(journal: SqlJournal, journal_url: str) -> None:
    for aid, state in STATES.items():
        await create(journal, aid, created_at=OLD, devices=("nc1", "r1"))
        if state is not ActivationState.ACKNOWLEDGED:
            await journal.record(Transition(activation_id=aid, activation_state=state, message=f"now {state.value}"))
    await journal.record(Transition(activation_id="partial-fallout-old", task_id="t1",
                                    task=TaskChanges(state=TaskState.FALLOUT)))
    await _set_updated(journal_url, {aid: OLD for aid in STATES if aid != "done-new"})


async def test_prune_deletes_only_old_final_activations_with_their_tasks_and_events(
    journal: SqlJournal, journal_url: str
) -> None:
    await _retention_data(journal, journal_url)
    cutoff = NOW - timedelta(days=30)
    assert await journal.prune(cutoff, dry_run=True) == len(PRUNED)
    assert _rows(journal_url, "done-old") == (1, 2, 2)  # a dry run deletes nothing
    assert await journal.prune(cutoff) == len(PRUNED)
    for aid in STATES:
        assert _rows(journal_url, aid)[0] == (aid not in PRUNED), aid
        if aid in PRUNED:
            assert _rows(journal_url, aid) == (0, 0, 0)  # tasks and events too
            with pytest.raises(NotFoundError):
                await journal.get(aid)
    assert await journal.prune(cutoff) == 0
    # the writer forgot what it knew of the pruned ones, and still writes the others
    with pytest.raises(NotFoundError):
        await journal.record(Transition(activation_id="done-old", message="too late"))
    ev = await journal.record(Transition(activation_id="fallout-old", task_id="t0", message="still here"))
    assert ev.seq == 3
    assert await journal.prune(NOW + timedelta(days=1)) == 1  # done-new, now older than the cutoff
    assert sorted(a.id for a in await journal.list(limit=50)) == sorted(set(STATES) - PRUNED - {"done-new"})


async def test_prune_goes_in_short_steps_beside_other_writes(journal_url: str) -> None:
    j = SqlJournal(journal_url, options=JournalOptions(prune_max_activations=3, prune_max_tasks=4,
                                                       busy_timeout_ms=5_000, connect_timeout_s=3))
    await j.start()
    try:
        for n in range(10):
            await create(j, f"old{n}", created_at=OLD, devices=("nc1", "r1"))  # 2 tasks each: 2 per step
            await j.record(Transition(activation_id=f"old{n}", activation_state=ActivationState.COMPLETED))
        await _set_updated(journal_url, {f"old{n}": OLD for n in range(10)})
        await create(j, "busy", created_at=NOW)
        steps: list[int] = []
        original = j._writer._write_prune

        def counted(op: Any) -> list[Any]:
            out = original(op)
            steps.append(out[0])
            return out

        j._writer._write_prune = counted  # type: ignore[method-assign]
        prune = asyncio.ensure_future(j.prune(NOW - timedelta(days=1)))
        writes = [j.record(Transition(activation_id="busy", message=f"m{n}")) for n in range(20)]
        written = await asyncio.gather(*writes)
        assert await prune == 10
        assert steps == [2, 2, 2, 2, 2, 0]  # bounded steps (tasks budget 4 -> 2 activations)
        assert [e.seq for e in written] == list(range(2, 22))
    finally:
        await j.close()


async def test_automatic_retention_prunes_at_start_and_then_periodically(journal: SqlJournal, journal_url: str) -> None:
    for aid in ("done-old", "fallout-old", "done-new"):
        await create(journal, aid, created_at=OLD)
        state = ActivationState.FALLOUT if aid == "fallout-old" else ActivationState.COMPLETED
        await journal.record(Transition(activation_id=aid, activation_state=state))
    await _set_updated(journal_url, {"done-old": OLD, "fallout-old": OLD})
    engine = Engine(journal=journal, inventory=None, profiles=None, templates=None,
                    credentials=SimpleNamespace(resolve=None), registry=None,  # type: ignore[arg-type]
                    select_endpoint=None, retention=timedelta(days=30), retention_interval_s=0.05)
    await engine.start()
    try:
        for _ in range(200):
            if _rows(journal_url, "done-old")[0] == 0:
                break
            await asyncio.sleep(0.02)
        assert _rows(journal_url, "done-old") == (0, 0, 0)
        await _set_updated(journal_url, {"done-new": OLD})  # ages: the next round takes it
        for _ in range(200):
            if _rows(journal_url, "done-new")[0] == 0:
                break
            await asyncio.sleep(0.02)
        assert _rows(journal_url, "done-new")[0] == 0 and _rows(journal_url, "fallout-old")[0] == 1
    finally:
        await engine.stop(grace_s=1)
    assert engine._retainer is not None and engine._retainer.done()


async def test_agw_journal_prune_dry_run_then_for_real(journal: SqlJournal, journal_url: str) -> None:
    await _retention_data(journal, journal_url)

    def agw(*args: str) -> Any:
        return CliRunner().invoke(main, ["journal", "prune", *args, "--journal", journal_url], catch_exceptions=False)

    dry = await asyncio.to_thread(agw, "--older-than", "30d", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith(f"{len(PRUNED)} final activation(s) last updated before ")
    assert dry.stdout.rstrip().endswith("would be deleted")
    assert _rows(journal_url, "done-old")[0] == 1
    real = await asyncio.to_thread(agw, "--older-than", "4w")
    assert real.exit_code == 0 and real.stdout.startswith(f"{len(PRUNED)} ")
    assert real.stdout.rstrip().endswith(" deleted") and "would be" not in real.stdout
    assert all(_rows(journal_url, aid)[0] == (aid not in PRUNED) for aid in STATES)
    again = await asyncio.to_thread(agw, "--older-than", "30d")
    assert again.stdout.startswith("0 final activation(s)")
    bad = await asyncio.to_thread(agw, "--older-than", "30")
    assert bad.exit_code == 2 and "not a duration" in bad.output
    zero = await asyncio.to_thread(agw, "--older-than", "0")
    assert zero.exit_code == 2 and "more than 0" in zero.output


def test_agw_journal_prune_without_a_journal_says_so(tmp_path: Any) -> None:
    r = CliRunner().invoke(main, ["journal", "prune", "--older-than", "1d", "--data-dir", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no journal at" in r.stderr
    assert not (tmp_path / "none").exists()

