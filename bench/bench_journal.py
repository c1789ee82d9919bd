"""Journal throughput: group commit against one transaction per record, same run, SQLite file on disk.

The workload is the engine's: many activations in flight at once, each created then recorded
``--records`` times in sequence (each record awaited before the next, as the engine does — it
writes a transition before the action it announces). Printed per mode: records/s, activations/s,
mean record latency, write transactions, process CPU per record and the journal thread's CPU per
record (``writer-CPU-us/record``); then the group-commit ratio. The ``N in flight`` mode keeps
batches small, as in the end-to-end gateway benchmark, where the per-transaction cost dominates.

``python -m bench journal`` or ``python -m bench.bench_journal [--activations N] ...``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from gateway.journal import JournalOptions, RecoveryChanges, SqlJournal, TaskChanges, Transition
from gateway.model import Action, TaskState
from gateway.results import ActivationState, TaskResult

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Figures:
    mode: str
    records: int
    activations: int
    wall_s: float
    cpu_s: float
    writer_cpu_s: float
    transactions: int
    latency_ms: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.wall_s

    def line(self) -> str:
        return (
            f"{self.mode:<34} {self.records_per_s:9.0f} records/s  {self.activations / self.wall_s:7.1f} activations/s"
            f"  mean record {self.latency_ms:6.2f} ms  {self.transactions:6d} transactions"
            f"  {1e6 * self.cpu_s / self.records:6.1f} CPU-us/record"
            f"  {self.writer_us_per_record:6.1f} writer-CPU-us/record"
        )

    @property
    def writer_us_per_record(self) -> float:
        """CPU of the journal thread per record (the part group commit and batch coalescing cut)."""
        return 1e6 * self.writer_cpu_s / self.records


async def _run(
    path: Path, mode: str, options: JournalOptions, *, activations: int, concurrency: int, records: int
) -> Figures:
    journal = SqlJournal(f"sqlite:///{path}", options=options)
    await journal.start()
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(n: int) -> None:
        async with gate:
            aid = f"{mode[:4]}-{n}"
            task = TaskResult(
                id="t1", device=f"r{n % 50}", service="interface", action=Action.CREATE, state=TaskState.ACKNOWLEDGED
            )
            await journal.create_activation(
                activation_id=aid,
                request_id=aid,
                fingerprint="f",
                order_ref="o",
                atomic=True,
                dry_run=False,
                tasks=(task,),
                created_at=datetime.now(timezone.utc),
            )
            for i in range(records):
                t0 = time.perf_counter()
                await journal.record(Transition(
                    activation_id=aid,
                    task_id="t1",
                    phase=f"phase-{i}",
                    state="inProgress",
                    message=f"step {i}",
                    task=TaskChanges(state=TaskState.IN_PROGRESS, diff=f"+ line {i}"),
                    activation_state=ActivationState.IN_PROGRESS if i == 0 else None,
                    recovery=RecoveryChanges(phase=f"phase-{i}", attempt=i),
                ))
                latencies.append(time.perf_counter() - t0)

    before_tx, writer_cpu0 = journal.batches, journal.writer_cpu_s
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(activations)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    figures = Figures(
        mode=mode,
        records=activations * records,
        activations=activations,
        wall_s=wall,
        cpu_s=cpu,
        writer_cpu_s=journal.writer_cpu_s - writer_cpu0,
        transactions=journal.batches - before_tx,
        latency_ms=1e3 * statistics.fmean(latencies),
    )
    await journal.close()
    return figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_journal", description=__doc__.splitlines()[0])
    parser.add_argument("--activations", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100, help="activations in flight at once")
    parser.add_argument(
        "--gateway-concurrency",
        type=int,
        default=2,
        help="activations in flight in the gateway-like mode (small batches, as in bench_gateway)",
    )
    parser.add_argument("--records", type=int, default=10, help="records per activation")
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite files go (default: a temp dir)")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("gateway.journal").setLevel(logging.WARNING)  # no open/close lines between figures

    gateway_like = f"group commit, {args.gateway_concurrency} in flight"
    modes = [
        ("group commit (NORMAL)", JournalOptions(), args.concurrency),
        ("one transaction per record (NORMAL)", JournalOptions(max_batch=1), args.concurrency),
        (gateway_like, JournalOptions(), args.gateway_concurrency),
        ("group commit (FULL, fsync)", JournalOptions(sqlite_synchronous="FULL"), args.concurrency),
        ("one transaction per record (FULL)", JournalOptions(max_batch=1, sqlite_synchronous="FULL"), args.concurrency),
    ]
    with tempfile.TemporaryDirectory(prefix="agw-bench-journal-", dir=args.dir) as tmp:
        results = {}
        for i, (mode, options, concurrency) in enumerate(modes):
            results[mode] = asyncio.run(
                _run(
                    Path(tmp) / f"journal-{i}.db",
                    mode,
                    options,
                    activations=args.activations,
                    concurrency=concurrency,
                    records=args.records,
                )
            )
            log.info("%s", results[mode].line())
    for sync in ("NORMAL", "FULL"):
        group = results[f"group commit ({sync}{', fsync' if sync == 'FULL' else ''})"]
        base = results[f"one transaction per record ({sync})"]
        log.info(
            "journal %s: group commit / one transaction per record = %.2fx records/s (%.2fx less CPU per record)",
            sync,
            group.records_per_s / base.records_per_s,
            base.cpu_s / group.cpu_s,
        )
    small = results[gateway_like]
    log.info(
        "journal writer CPU per record: %.1f us group commit, %.1f us with %d in flight, %.1f us one transaction"
        " per record (NORMAL)",
        results["group commit (NORMAL)"].writer_us_per_record,
        small.writer_us_per_record,
        args.gateway_concurrency,
        results["one transaction per record (NORMAL)"].writer_us_per_record,
    )
    target = 250 * (args.records + 1)
    log.info("journal: target for 250 activations/s with %d records each: %d writes/s", args.records, target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
