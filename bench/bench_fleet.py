"""A fleet of NETCONF devices (default 1,000): gateway replicas on one PostgreSQL journal vs Nornir.

Same run, same devices (``Lab.up_fleet(n, netconf_only=True)``: netconfd behind sshd, each in its
network namespace), same change: every round modifies interface ``bench0``'s description on every
device, alternating two values of one length so the configuration size stays steady.

- gateway: K ``agw serve`` processes (``--replicas 1,2``), each with its own ``--listen`` port, all
  on one fresh PostgreSQL schema; the client (this process, grpc.aio) submits one single-task
  activation per device, all at once under a semaphore (``--concurrency``), round-robin across the
  replicas, and learns each outcome with ``Get`` + ``wait_ms`` (latency = Submit -> outcome).
  Round 1 opens the device sessions ("cold"), round 2 on the same gateways reuses them ("warm").
- peer: Nornir 3, threaded runner (``--workers``, default the same concurrency), ncclient doing the
  gateway's seven RPCs per device (:mod:`bench.fleet_nornir`); ``--nornir-rounds`` (default
  closed,cold,warm): cold closing each session after its activation, cold keeping them, warm.
- ten devices (``--ten-device``, on by default): r1..r10, one sequential stream per device
  (``--ten-activations`` each) after a warm-up, 1 replica vs 2 replicas on PostgreSQL.

Per round: completed and errors, act/s, p50/p99 latency, the replicas' CPU (utime + stime) and RSS
(VmRSS, VmHWM), the client's CPU, and the whole machine's busy CPU per activation (/proc/stat:
devices, client, gateways), with the box ceiling = cores / machine CPU per activation.

Before active-active replicas, a second ``agw serve`` on the same PostgreSQL journal is a standby
that does not listen (docs/replicas.md): when replicas 2..K do not listen within
``--standby-wait-s`` the rows say "skipped (second replica standby)". The fleet lab is brought down
at the end, also on an error or Ctrl-C (which, during a Nornir round, waits for that round's hosts).

``python -m bench fleet [--devices 1000] [--replicas 1,2] [--journal URL] [--json PATH]`` (root)
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench import stats
from bench.bench_gateway import IFNAME, Target, lab_targets, run_streams
from bench.fleet_gateway import STANDBY, Replicas, activate, base_url, fresh_schema

log = logging.getLogger(__name__)

VALUES = ("fleet-even", "fleet-odd-")  # same length: the configuration size stays steady
LAB_NAME = "benchfleet"
CLOSED = "nornir cold, each session closed after"


@dataclass(frozen=True, kw_only=True)
class Row:
    """One measured round."""

    label: str
    side: str  # gateway | nornir
    replicas: int = 0
    devices: int = 0
    completed: int = 0
    errors: int = 0
    wall_s: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    box_cpu_s: float = 0.0
    server_cpu_s: float = 0.0  # the agw serve processes (gateway rows)
    client_cpu_s: float = 0.0  # this process: the gRPC client, or Nornir + ncclient
    rss_mb: tuple[float, ...] = ()  # per replica, after the round
    hwm_mb: tuple[float, ...] = ()  # per replica, peak so far
    skipped: str = ""
    first_errors: tuple[str, ...] = field(default=(), repr=False)

    @property
    def rate(self) -> float:
        return self.completed / self.wall_s if self.wall_s else 0.0

    def per_act_ms(self, cpu_s: float) -> float:
        return cpu_s / max(1, self.completed) * 1000

    @property
    def ceiling(self) -> float:
        """Activations per second the whole machine could do at this round's CPU per activation."""
        box = self.per_act_ms(self.box_cpu_s)
        return (os.cpu_count() or 1) * 1000 / box if box else 0.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(rate=self.rate, box_cpu_ms_per_act=self.per_act_ms(self.box_cpu_s),
                 server_cpu_ms_per_act=self.per_act_ms(self.server_cpu_s),
                 client_cpu_ms_per_act=self.per_act_ms(self.client_cpu_s), box_ceiling=self.ceiling)
        return d


async def gateway_round(reps: Replicas, devices: list[str], *, desc: str, concurrency: int, label: str) -> Row:
    """One activation per device, all submitted at once under a semaphore, round-robin over replicas."""
    sem = asyncio.Semaphore(concurrency)
    stubs = itertools.cycle(reps.stubs)
    lat: list[float] = []
    errors: list[str] = []

    async def one(device: str) -> None:
        stub = next(stubs)
        async with sem:
            t = time.perf_counter()
            try:
                why = await activate(stub, device, desc)
            except Exception as exc:  # noqa: BLE001 - a failed call is a failed activation here
                why = f"{device}: {type(exc).__name__}: {exc}"[:300]
            if why:
                errors.append(why)
            else:
                lat.append(time.perf_counter() - t)

    box0, srv0, cpu0, t0 = stats.box_busy_s(), reps.cpu_s(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(d) for d in devices))
    wall = time.perf_counter() - t0
    rss, hwm = reps.memory()
    return Row(label=label, side="gateway", replicas=reps.k, devices=len(devices), completed=len(lat),
               errors=len(errors), wall_s=wall, p50_ms=stats.percentile_ms(lat, 0.5),
               p99_ms=stats.percentile_ms(lat, 0.99), box_cpu_s=stats.box_busy_s() - box0,
               server_cpu_s=reps.cpu_s() - srv0, client_cpu_s=time.process_time() - cpu0, rss_mb=rss, hwm_mb=hwm,
               first_errors=tuple(errors[:5]))


async def ten_device_run(reps: Replicas, targets: list[Target], *, n: int, start: int, label: str) -> Row:
    """One sequential stream of ``n`` activations per device (as ``bench gateway``), round-robin."""
    stubs = itertools.cycle(reps.stubs)
    errors: list[str] = []

    def worker(device: str) -> Any:
        async def work(i: int) -> bool:
            try:
                why = await activate(next(stubs), device, VALUES[i % 2])
            except Exception as exc:  # noqa: BLE001 - a failed call is a failed activation here
                why = f"{device}: {type(exc).__name__}: {exc}"[:300]
            if why:
                errors.append(why)
            return not why
        return work

    srv0 = reps.cpu_s()
    figs = await run_streams([worker(t.name) for t in targets], n=n, start=start)
    rss, hwm = reps.memory()
    return Row(label=label, side="gateway", replicas=reps.k, devices=len(targets), completed=figs.acts - figs.failures,
               errors=figs.failures, wall_s=figs.wall_s, p50_ms=figs.pct_ms(0.5), p99_ms=figs.pct_ms(0.99),
               box_cpu_s=figs.box_cpu_s, server_cpu_s=reps.cpu_s() - srv0, client_cpu_s=figs.cpu_s, rss_mb=rss,
               hwm_mb=hwm, first_errors=tuple(errors[:5]))


def nornir_rows(targets: list[Target], *, workers: int, turn: int, rows: list[Row], rounds: list[str]) -> int:
    """The Nornir ``rounds`` (closed, cold, warm), each row appended to ``rows`` as soon as it is
    measured. Returns the number of rounds run."""
    from bench.fleet_nornir import Device, NornirPeer

    peer = NornirPeer([Device(name=t.name, host=t.host, port=t.port, username=t.username, password=t.password)
                       for t in targets], workers=workers)
    names = {"closed": CLOSED.removeprefix("nornir "), "cold": "cold", "warm": "warm"}
    phases = [names[r] for r in rounds]
    try:
        for r, phase in enumerate(phases):
            box0, cpu0, t0 = stats.box_busy_s(), time.process_time(), time.perf_counter()
            res = peer.round(ifname=IFNAME, description=VALUES[(turn + r) % 2], tag=f"{turn + r}",
                             close_after=phase.startswith("cold,"))
            rows.append(Row(label=f"nornir {phase}", side="nornir", devices=len(targets),
                            completed=len(res.latencies_s), errors=res.errors, wall_s=time.perf_counter() - t0,
                            p50_ms=stats.percentile_ms(res.latencies_s, 0.5),
                            p99_ms=stats.percentile_ms(res.latencies_s, 0.99), box_cpu_s=stats.box_busy_s() - box0,
                            client_cpu_s=time.process_time() - cpu0, first_errors=res.first_errors))
            log_row(rows[-1])
    finally:
        t0 = time.perf_counter()
        peer.close()
        log.info("nornir: sessions closed in %.1f s", time.perf_counter() - t0)
    return len(phases)


# --- the run -------------------------------------------------------------------------------------
class Run:
    def __init__(self, targets: list[Target], *, inventory: Path, args: argparse.Namespace, root: Path) -> None:
        self.targets, self.inventory, self.args, self.root = targets, inventory, args, root
        self.turn = 0  # rounds so far: picks the description (alternating)
        self.rows: list[Row] = []
        self.deployments = itertools.count()

    def profiles(self, root: Path) -> Path:
        """The repository's device profiles, with the NETCONF profile's pre-push retry policy set to
        ``--retry-attempts`` (a connect that times out while a hundred SSH handshakes share two cores
        with the devices is tried again; nothing was sent to the device yet)."""
        from tests.integration.gateway_harness import make_profiles

        return make_profiles(root / "profiles", {"netconfd": {"retry": {"attempts": self.args.retry_attempts}}})

    def desc(self) -> str:
        self.turn += 1
        return VALUES[self.turn % 2]

    async def deploy(self, k: int, journal_url: str) -> tuple[Replicas | None, str]:
        root = self.root / f"gw{next(self.deployments)}-x{k}"
        reps = Replicas(k, journal_url=journal_url, inventory=self.inventory, max_per_caller=max(200, len(self.targets)),
                        root=root, lease_s=self.args.journal_lease_s, profiles=self.profiles(root))
        reps.start()
        why = await asyncio.to_thread(reps.wait_listening, first_s=120, others_s=self.args.standby_wait_s)
        if why:
            await asyncio.to_thread(reps.stop)
            return None, why
        reps.open_clients()
        return reps, ""

    async def fleet(self, k: int) -> None:
        names = [t.name for t in self.targets]
        with fresh_schema(self.args.journal) as url:
            reps, why = await self.deploy(k, url)
            if reps is None:
                self.skip(f"gateway x{k}", k, len(names), why)
                return
            try:
                for phase in ("cold", "warm"):
                    row = await gateway_round(reps, names, desc=self.desc(), concurrency=self.args.concurrency,
                                              label=f"gateway x{k} {phase}")
                    self.rows.append(row)
                    log_row(row)
            finally:
                await reps.close_clients()
                await asyncio.to_thread(reps.stop)

    async def ten(self, k: int) -> None:
        targets = self.targets[:10]
        with fresh_schema(self.args.journal) as url:
            reps, why = await self.deploy(k, url)
            if reps is None:
                self.skip(f"ten devices x{k}", k, len(targets), why)
                return
            try:  # warm-up: every replica opens its session to every device
                for stub in list(reps.stubs):
                    desc = self.desc()
                    await asyncio.gather(*(activate(stub, t.name, desc) for t in targets))
                n = self.args.ten_activations
                row = await ten_device_run(reps, targets, n=n, start=self.turn + 1,
                                           label=f"ten devices x{k} ({len(targets)}x{n} sequential, warm)")
                self.turn += n
                self.rows.append(row)
                log_row(row)
            finally:
                await reps.close_clients()
                await asyncio.to_thread(reps.stop)

    def skip(self, label: str, k: int, devices: int, why: str) -> None:
        reason = f"{why}" if why == STANDBY else f"failed to start: {why}"
        log.warning("replicas=%d: skipped (%s)", k, reason)
        self.rows.append(Row(label=label, side="gateway", replicas=k, devices=devices, skipped=reason))

    def all(self) -> None:
        """Gateway replicas on the fleet, the Nornir peer, then the ten-device comparison. Nornir
        runs in this (the main) thread: Ctrl-C in one of its rounds ends the run once that round's
        submitted hosts are done (Nornir's thread pool waits for them), then cleans up."""
        for k in self.args.replicas:
            asyncio.run(self.fleet(k))
        if self.args.nornir:
            self.turn += nornir_rows(self.targets, workers=self.args.workers or self.args.concurrency,
                                     turn=self.turn + 1, rows=self.rows, rounds=self.args.nornir_rounds)
        if self.args.ten_device:
            for k in (1, 2):
                asyncio.run(self.ten(k))


# --- report --------------------------------------------------------------------------------------
HEADER = (f"{'run':<44} {'done':>5} {'err':>4} {'act/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'box ms/act':>10} "
          f"{'gw ms/act':>9} {'client ms/act':>13} {'box ceiling':>11}  RSS MB per replica (peak)")


def row_line(r: Row) -> str:
    if r.skipped:
        return f"{r.label:<44} skipped ({r.skipped})"
    gw = f"{r.per_act_ms(r.server_cpu_s):9.2f}" if r.side == "gateway" else f"{'-':>9}"
    mem = ", ".join(f"{a:.0f} ({b:.0f})" for a, b in zip(r.rss_mb, r.hwm_mb)) or "-"
    return (f"{r.label:<44} {r.completed:>5} {r.errors:>4} {r.rate:7.1f} {r.p50_ms:8.1f} {r.p99_ms:8.1f} "
            f"{r.per_act_ms(r.box_cpu_s):10.2f} {gw} {r.per_act_ms(r.client_cpu_s):13.2f} {r.ceiling:11.0f}  {mem}")


def log_row(r: Row) -> None:
    log.info("%s", row_line(r))
    for e in r.first_errors:
        log.warning("  %s", e)


def ratios(rows: list[Row]) -> list[tuple[str, float | None, str]]:
    by = {r.label.split(" (")[0]: r for r in rows}

    def find(label: str) -> Row | None:  # a skipped deployment has one row for its rounds
        return by.get(label) or next((r for r in rows if r.skipped and label.startswith(r.label)), None)

    def ratio(a: str, b: str, what: str) -> tuple[str, float | None, str]:
        ra, rb = find(a), find(b)
        if ra is None or rb is None or ra.skipped or rb.skipped or not rb.rate:
            why = next((f"{x.label}: {x.skipped}" for x in (ra, rb) if x is not None and x.skipped),
                       f"{a if ra is None else b}: not run")
            return what, None, f"pending ({why})"
        return what, ra.rate / rb.rate, (f"{ra.rate:.1f} vs {rb.rate:.1f} act/s; box CPU "
                                         f"{ra.per_act_ms(ra.box_cpu_s):.2f} vs {rb.per_act_ms(rb.box_cpu_s):.2f} ms/act")

    out = []
    for k in sorted({r.replicas for r in rows if r.side == "gateway" and not r.label.startswith("ten")}):
        out += [ratio(f"gateway x{k} warm", "nornir warm", f"gateway x{k} warm / nornir warm"),
                ratio(f"gateway x{k} cold", "nornir cold", f"gateway x{k} cold / nornir cold")]
        if CLOSED in by:
            out.append(ratio(f"gateway x{k} cold", CLOSED, f"gateway x{k} cold / {CLOSED}"))
    out += [ratio("gateway x2 warm", "gateway x1 warm", "fleet warm: 2 replicas / 1 replica"),
            ratio("gateway x2 cold", "gateway x1 cold", "fleet cold: 2 replicas / 1 replica"),
            ratio("ten devices x2", "ten devices x1", "ten devices: 2 replicas / 1 replica (aim >= 1.25x)")]
    return out


def report(rows: list[Row], args: argparse.Namespace, extra: dict[str, Any]) -> None:
    log.info("FLEET: %d NETCONF devices, one activation per device per round, client concurrency %d, "
             "Nornir workers %d, journal PostgreSQL (a fresh schema per gateway deployment), %d cores",
             args.devices, args.concurrency, args.workers or args.concurrency, os.cpu_count() or 1)
    log.info("%s", HEADER)
    for r in rows:
        log.info("%s", row_line(r))
    log.info("box ceiling = %d cores / box CPU per activation (the whole machine: devices, client, gateways)",
             os.cpu_count() or 1)
    rat = ratios(rows)
    for what, value, detail in rat:
        log.info("ratio %-60s %s  (%s)", what, f"{value:.2f}x" if value is not None else "-", detail)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
            | {"journal": sa.engine.make_url(args.journal).render_as_string(hide_password=True)},
            **extra, "rows": [r.to_json() for r in rows],
            "ratios": [{"what": w, "ratio": v, "detail": d} for w, v, d in rat]}, indent=2, default=str))
        log.info("figures written to %s", args.json)


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench fleet", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--replicas", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 2],
                    help="gateway replica counts to run, comma-separated (default 1,2)")
    ap.add_argument("--journal", default="", help="base PostgreSQL URL (default $AGW_BENCH_POSTGRES_URL, "
                    "$AGW_TEST_POSTGRES_URL or scripts/start-postgres.sh's); each deployment gets a fresh schema")
    ap.add_argument("--journal-lease-s", type=float, default=None, help="passed to agw serve")
    ap.add_argument("--concurrency", type=int, default=100, help="activations the client keeps in flight")
    ap.add_argument("--workers", type=int, default=0, help="Nornir's num_workers (default: --concurrency)")
    ap.add_argument("--ten-device", action=argparse.BooleanOptionalAction, default=True,
                    help="also 1 vs 2 replicas on the first 10 devices")
    ap.add_argument("--ten-activations", type=int, default=20, help="per device, sequential, ten-device run")
    ap.add_argument("--retry-attempts", type=int, default=3,
                    help="the gateway's pre-push retry policy (device profile `retry.attempts`; 1: none)")
    ap.add_argument("--nornir", action=argparse.BooleanOptionalAction, default=True, help="run the Nornir peer")
    ap.add_argument("--nornir-rounds", type=lambda s: [x for x in s.split(",") if x], default=["closed", "cold", "warm"],
                    help="Nornir rounds, in this order (default closed,cold,warm): closed = cold, each session "
                         "closed after its activation; cold = sessions opened and kept; warm = on the kept sessions")
    ap.add_argument("--standby-wait-s", type=float, default=20.0,
                    help="how long replicas 2..K may take to listen before the row is skipped")
    ap.add_argument("--lab-name", default=LAB_NAME)
    ap.add_argument("--keep-lab", action="store_true", help="leave the fleet running at the end")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = ap.parse_args(argv)
    if bad := set(args.nornir_rounds) - {"closed", "cold", "warm"}:
        ap.error(f"--nornir-rounds: unknown {', '.join(sorted(bad))} (closed, cold, warm)")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    for noisy in ("ncclient", "paramiko"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    logging.getLogger("nornir").setLevel(logging.CRITICAL)  # a traceback per failed host: counted in the row
    if os.geteuid() != 0:
        log.error("bench fleet needs root (the lab's network namespaces)")
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a socket per device session, here and in agw serve
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    from lab.api import Lab

    args.journal = base_url(args.journal)
    mem0, t0 = mem_available_mb(), time.perf_counter()
    lab = Lab.up_fleet(args.devices, name=args.lab_name, netconf_only=True)
    up_s, lab_mb = time.perf_counter() - t0, mem0 - mem_available_mb()
    log.info("fleet %s up: %d NETCONF devices in %.1f s, %.0f MB of memory (%.1f MB per device)",
             lab.name, len(lab.nodes), up_s, lab_mb, lab_mb / max(1, len(lab.nodes)))
    try:
        targets = lab_targets(lab)
        with tempfile.TemporaryDirectory(prefix="agw-bench-fleet-") as tmp:
            run = Run(targets, inventory=lab.inventory_path, args=args, root=Path(tmp))
            try:
                run.all()
            finally:
                report(run.rows, args, {"lab_up_s": up_s, "lab_memory_mb": lab_mb})
        done = [r for r in run.rows if not r.skipped]
        return 1 if any(r.errors for r in done) or not done else 0
    finally:
        if not args.keep_lab:
            t0 = time.perf_counter()
            lab.down()
            log.info("fleet %s down in %.1f s", lab.name, time.perf_counter() - t0)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(sys.argv[1:]))
