"""The whole gateway (gRPC in, engine, journal, NETCONF driver) vs the NETCONF protocol floor.

Same run, same ten lab devices (``lab/topologies/netconf10.clab.yml``), same objects: both sides
modify interface ``bench0``'s description on each device, alternating two values, so the
configuration size stays steady.

- floor: ``bench.netconf_floor`` (raw asyncssh, six RPCs, sessions opened beforehand);
- gateway: a real engine + ``grpc.aio`` server in this process (``InProcessGateway``), a gRPC
  client submitting single-task atomic activations (service ``interface``, action ``modify``).

Both sides run one sequential stream per device, all devices at once. For the gateway the
default ``--mode sequential`` submits an activation, waits for its outcome and only then submits
the next one on that device: latency is submit -> final state and the offered load matches the
floor's one-in-flight-per-device. The outcome is read with ``Get`` and ``wait_ms`` (a long poll,
``--follow get``, default) or by following ``Watch`` to its end and then ``Get`` (``--follow
watch``). ``--mode burst`` submits all of a device's activations at once (the engine serializes
per device); its latency includes queueing.

CPU: ``time.process_time()`` over the timed section. For the gateway it is the whole process
(engine + gRPC server + the gRPC client); for the floor it is the client only (netconfd runs in
its own processes in both cases). Rounds alternate floor/gateway order; figures are medians.
One extra gateway round runs under cProfile (untimed) unless ``--no-profile``.

``python -m bench gateway [--no-lab-up] [--keep-lab] [--rounds 3] [--activations 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import io
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import stats
from bench.netconf_floor import (
    FloorError,
    FloorSession,
    floor_activation,
    open_floor_session,
)

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
TOPOLOGY = REPO / "lab" / "topologies" / "netconf10.clab.yml"
IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IFNAME = "bench0"
FILTER = f'<interfaces xmlns="{IF_NS}"><interface><name>{IFNAME}</name></interface></interfaces>'.encode()
VALUES = ("bench-even", "bench-odd-")  # same length: the configuration size stays steady


def description(i: int) -> str:
    return VALUES[i % 2]


def floor_config(desc: str) -> bytes:
    return (
        '<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
        f'<interfaces xmlns="{IF_NS}"><interface><name>{IFNAME}</name><description>{desc}</description>'
        '<type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">ianaift:ethernetCsmacd</type>'
        "<enabled>true</enabled></interface></interfaces></config>"
    ).encode()


@dataclass(frozen=True, kw_only=True)
class Target:
    name: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class Figures(stats.Figures):
    failures: int
    loop_cpu_s: float  # CPU of the event-loop thread alone (the rest: worker threads, gRPC C-core)
    box_cpu_s: float = 0.0  # the whole machine's busy CPU over the run (devices, client, gateway)


Work = Callable[[int], Awaitable[bool]]  # activation index on this device -> completed?


async def run_streams(workers: list[Work], *, n: int, start: int) -> Figures:
    """One sequential stream of ``n`` activations per worker, all workers at once."""
    lat: list[float] = []
    failures = 0

    async def stream(work: Work) -> None:
        nonlocal failures
        for i in range(start, start + n):
            t = time.perf_counter()
            ok = await work(i)
            lat.append(time.perf_counter() - t)
            failures += not ok

    cpu0, lcpu0, t0, box0 = time.process_time(), time.thread_time(), time.perf_counter(), stats.box_busy_s()
    await asyncio.gather(*(stream(w) for w in workers))
    return Figures(acts=len(lat), failures=failures, wall_s=time.perf_counter() - t0,
                   cpu_s=time.process_time() - cpu0, box_cpu_s=stats.box_busy_s() - box0,
                   loop_cpu_s=time.thread_time() - lcpu0, latencies_s=tuple(lat))


# --- floor ---------------------------------------------------------------------------------------
class Floor:
    def __init__(self, targets: list[Target]) -> None:
        self.targets = targets
        self.sessions: list[FloorSession] = []
        self.persist = iter(range(10**9))

    async def open(self) -> None:
        self.sessions = list(await asyncio.gather(
            *(open_floor_session(t.host, t.port, t.username, t.password) for t in self.targets)))

    async def close(self) -> None:
        for s in self.sessions:
            await s.close()

    def worker(self, s: FloorSession, name: str) -> Work:
        async def work(i: int) -> bool:
            desc = description(i)
            try:
                await floor_activation(s, config=floor_config(desc), filter_=FILTER,
                                       expect=[b"<description>%s</description>" % desc.encode()],
                                       persist_id=f"floor-{next(self.persist)}")
                return True
            except (TimeoutError, FloorError) as exc:
                log.warning("floor activation %d on %s failed: %s", i, name, exc)
                return False
        return work

    async def round(self, *, n: int, start: int) -> Figures:
        return await run_streams([self.worker(s, t.name) for s, t in zip(self.sessions, self.targets)], n=n, start=start)


# --- gateway -------------------------------------------------------------------------------------
class Gateway:
    def __init__(self, targets: list[Target], *, inventory: Path, root: Path, mode: str, follow: str) -> None:
        from tests.integration.gateway_harness import InProcessGateway, make_profiles

        self.targets, self.mode, self.follow = targets, mode, follow
        self.phases: dict[str, list[float]] = {}
        profiles = make_profiles(root / "profiles", {})
        self.gw = InProcessGateway(data_dir=root / "data", inventory=inventory, profiles=profiles)
        self.client: Any = None

    async def open(self) -> None:
        self.client = await self.gw.start()

    async def close(self) -> None:
        await self.gw.stop()

    def _task(self, device: str, i: int) -> list[dict[str, Any]]:
        return [{"id": "t", "device": device, "service": "interface", "action": "modify",
                 "parameters": {"name": IFNAME, "description": description(i), "type": "ethernetCsmacd",
                                "enabled": True}}]

    async def _check(self, aid: str, device: str, i: int, *, wait: bool) -> bool:
        from gateway.results import ActivationState

        if not wait:
            result = await self.client.get(aid)
        elif self.follow == "watch":
            result = await self.client.wait(aid, timeout_s=120)
        else:
            result = await self.client.outcome(aid, timeout_s=120)
        for task in result.tasks:  # the gateway's own per-phase timings, for the breakdown
            for t in task.timings:
                self.phases.setdefault(t.phase, []).append(t.duration_ms)
            if task.timings:
                end = max(t.started_at.timestamp() * 1000 + t.duration_ms for t in task.timings)
                self.phases.setdefault("(submit to first phase)", []).append(
                    task.timings[0].started_at.timestamp() * 1000 - result.created_at.timestamp() * 1000)
                self.phases.setdefault("(last phase to activation end)", []).append(
                    result.updated_at.timestamp() * 1000 - end)
        if result.state == ActivationState.COMPLETED:
            return True
        errs = [(t.id, t.state.value, t.error.kind if t.error else "", t.error.message if t.error else "")
                for t in result.tasks]
        log.warning("gateway activation %d on %s ended %s: %s", i, device, result.state.value, errs)
        return False

    def worker(self, device: str) -> Work:
        async def work(i: int) -> bool:
            aid = await self.client.submit(self._task(device, i), request_id=f"bench-{uuid.uuid4()}", atomic=True)
            return await self._check(aid, device, i, wait=True)
        return work

    async def round(self, *, n: int, start: int) -> Figures:
        if self.mode == "sequential":
            return await run_streams([self.worker(t.name) for t in self.targets], n=n, start=start)
        return await self._burst(n=n, start=start)

    async def _burst(self, *, n: int, start: int) -> Figures:
        """All of a device's activations submitted at once; latency = submit -> final (with queueing)."""
        lat: list[float] = []
        failures = 0

        async def one(device: str, i: int) -> None:
            nonlocal failures
            t = time.perf_counter()
            aid = await self.client.submit(self._task(device, i), request_id=f"bench-{uuid.uuid4()}", atomic=True)
            ok = await self._check(aid, device, i, wait=True)
            lat.append(time.perf_counter() - t)
            failures += not ok

        async def device_burst(device: str) -> None:
            # submitted in order, so the engine's per-device order matches the alternation
            for i in range(start, start + n):
                tasks.append(asyncio.create_task(one(device, i)))
                await asyncio.sleep(0)

        tasks: list[asyncio.Task[None]] = []
        cpu0, lcpu0, t0, box0 = time.process_time(), time.thread_time(), time.perf_counter(), stats.box_busy_s()
        await asyncio.gather(*(device_burst(t.name) for t in self.targets))
        await asyncio.gather(*tasks)
        return Figures(acts=len(lat), failures=failures, wall_s=time.perf_counter() - t0,
                       cpu_s=time.process_time() - cpu0, box_cpu_s=stats.box_busy_s() - box0,
                       loop_cpu_s=time.thread_time() - lcpu0, latencies_s=tuple(lat))


class ProcessGateway(Gateway):
    """``agw serve`` in its own process, as deployed; the client (the orchestrator) is this process.

    CPU is the server process's own (utime + stime from /proc), so it is the gateway's alone."""

    def __init__(self, targets: list[Target], *, inventory: Path, root: Path, mode: str, follow: str) -> None:
        from tests.integration.gateway_harness import SubprocessGateway, make_profiles

        self.targets, self.mode, self.follow = targets, mode, follow
        self.phases: dict[str, list[float]] = {}
        (root / "data").mkdir(mode=0o700, parents=True, exist_ok=True)
        profiles = make_profiles(root / "profiles", {})
        self.proc = SubprocessGateway(data_dir=root / "data", inventory=inventory, profiles=profiles)
        self.client: Any = None
        self.channel: Any = None

    async def open(self) -> None:
        await asyncio.to_thread(self.proc.start)
        self.channel, self.client = self.proc.client()

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        await asyncio.to_thread(self.proc.stop)

    def server_cpu_s(self) -> float:
        assert self.proc.proc is not None
        fields = Path(f"/proc/{self.proc.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def round(self, *, n: int, start: int) -> Figures:
        cpu0 = self.server_cpu_s()
        figs = await super().round(n=n, start=start)
        return dataclasses.replace(figs, cpu_s=self.server_cpu_s() - cpu0)


# --- driver --------------------------------------------------------------------------------------
def lab_targets(lab: Any) -> list[Target]:
    out = []
    for node in lab.nodes.values():
        if "netconf" in node.ports:
            cred = node.credentials["netconf"]
            out.append(Target(name=node.name, host=node.address, port=node.ports["netconf"],
                              username=cred["username"], password=cred["password"]))
    return sorted(out, key=lambda t: int("".join(c for c in t.name if c.isdigit()) or 0))


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds per thread of this process, Python threads by name (digits dropped), the others
    (gRPC C-core, ...) as ``other``. Linux /proc only."""
    import os
    import re
    import threading

    names = {t.native_id: re.sub(r"[_-]?\d+$", "", t.name) for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(tid), "other")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


@contextlib.contextmanager
def profiled_journal(prof: cProfile.Profile) -> Iterator[None]:
    """Profile the journal's writer thread too (cProfile sees one thread): wrap the SQL journal's
    batch apply for the duration, diagnostics only (the timed rounds run unwrapped)."""
    from gateway.journal.writer import Writer

    original = Writer._apply

    def wrapped(self: Any, batch: Any) -> Any:
        prof.enable()
        try:
            return original(self, batch)
        finally:
            prof.disable()

    Writer._apply = wrapped  # type: ignore[method-assign]
    try:
        yield
    finally:
        Writer._apply = original  # type: ignore[method-assign]


def top_functions(prof: cProfile.Profile, key: str, limit: int) -> str:
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(limit)
    return "\n".join(line for line in buf.getvalue().splitlines() if line.strip())


async def bench(targets: list[Target], *, inventory: Path, args: argparse.Namespace) -> int:
    n, rounds = args.activations, args.rounds
    with tempfile.TemporaryDirectory(prefix="agw-bench-gw-") as tmp:
        floor = Floor(targets)
        server_cls = ProcessGateway if args.server == "process" else Gateway
        gateway = server_cls(targets, inventory=inventory, root=Path(tmp), mode=args.mode, follow=args.follow)
        if args.profile and args.server == "process":
            log.info("--profile needs --server inprocess; not profiling")
            args.profile = False
        floor_figs: list[Figures] = []
        gw_figs: list[Figures] = []
        index = 0  # activation index per device, continues across rounds (keeps the alternation)
        await floor.open()
        await gateway.open()
        try:
            # warm-up: sessions open, first activation on each side (creates bench0, opens pooled sessions)
            sides: tuple[Floor | Gateway, ...] = (floor, gateway)
            for side in sides:
                w = await side.round(n=args.warmup, start=index)
                index += args.warmup
                if w.failures:
                    log.error("warm-up of %s: %d of %d activations failed", type(side).__name__, w.failures, w.acts)
                    return 1
            for r in range(rounds):
                order: list[tuple[str, Floor | Gateway]] = [("floor", floor), ("gateway", gateway)]
                if r % 2:
                    order.reverse()
                for kind, side in order:
                    figs = await side.round(n=n, start=index)
                    index += n
                    (floor_figs if kind == "floor" else gw_figs).append(figs)
                    log.info("round %d %-7s %7.1f act/s  p50 %6.1f ms  p99 %6.1f ms  cpu %5.2f ms/act"
                             " (loop thread %5.2f)  box %5.2f ms/act (%.2f cores)  failures %d", r + 1, kind,
                             figs.rate, figs.pct_ms(0.5), figs.pct_ms(0.99), figs.cpu_s / figs.acts * 1000,
                             figs.loop_cpu_s / figs.acts * 1000, figs.box_cpu_s / figs.acts * 1000,
                             figs.box_cpu_s / figs.wall_s, figs.failures)
            prof_figs = None
            if args.profile:
                threads0 = thread_cpu_s()
                prof, jprof = cProfile.Profile(), cProfile.Profile()
                prof.enable()
                with profiled_journal(jprof):
                    prof_figs = await gateway.round(n=n, start=index)
                prof.disable()
                threads1 = thread_cpu_s()
                per_thread = {k: threads1.get(k, 0.0) - threads0.get(k, 0.0) for k in threads1}
                log.info("CPU per thread over the profiled round (ms/activation): %s", ", ".join(
                    f"{k} {v / prof_figs.acts * 1000:.2f}" for k, v in sorted(per_thread.items(), key=lambda kv: -kv[1]) if v > 0))
                index += n
                log.info("profiled gateway round (untimed, cProfile on): %.1f act/s, failures %d",
                         prof_figs.rate, prof_figs.failures)
                if args.profile_out:
                    prof.dump_stats(args.profile_out)
                    log.info("profile written to %s (pstats format)", args.profile_out)
                log.info("top by cumulative time:\n%s", top_functions(prof, "cumulative", args.profile_top))
                log.info("top by self time:\n%s", top_functions(prof, "tottime", args.profile_top))
                log.info("journal thread, top by cumulative time:\n%s", top_functions(jprof, "cumulative", args.profile_top))
                log.info("journal thread, top by self time:\n%s", top_functions(jprof, "tottime", args.profile_top))
        finally:
            await floor.close()
            await gateway.close()

    failures_f = sum(f.failures for f in floor_figs)
    failures_g = sum(f.failures for f in gw_figs) + (prof_figs.failures if prof_figs else 0)
    f_rate, f_line = summary("floor", floor_figs)
    g_rate, g_line = summary("gateway", gw_figs)
    log.info("GATEWAY vs NETCONF floor: %d devices x %d activations x %d rounds, gateway mode %s, "
             "outcome by %s, medians", len(targets), n, rounds, args.mode,
             "Watch + Get" if args.follow == "watch" else "Get with wait_ms (long poll)")
    log.info(f_line + "  (client CPU)")
    log.info(g_line + ("  (the agw serve process)" if args.server == "process"
                       else "  (whole process: engine + gRPC server + client)"))
    log.info("ratio gateway/floor: %.3f", g_rate / f_rate)
    if gateway.phases:
        log.info("gateway phases, median ms (from Get's per-phase timings): %s", ", ".join(
            f"{k} {statistics.median(v):.1f}" for k, v in gateway.phases.items()))
    log.info("failures: floor %d, gateway %d (of %d each)", failures_f, failures_g, len(targets) * n * rounds)
    return 1 if failures_f or failures_g else 0


def summary(name: str, figs: list[Figures]) -> tuple[float, str]:
    rate = statistics.median(f.rate for f in figs)
    p50 = statistics.median(f.pct_ms(0.5) for f in figs)
    p99 = statistics.median(f.pct_ms(0.99) for f in figs)
    cpu = statistics.median(f.cpu_s / f.acts * 1000 for f in figs)
    return rate, f"{name:7s} {rate:7.1f} act/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   CPU {cpu:6.2f} ms/act"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench gateway", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--topology", type=Path, default=TOPOLOGY)
    ap.add_argument("--no-lab-up", action="store_true", help="use the running lab of --topology as it is")
    ap.add_argument("--keep-lab", action="store_true", help="leave the lab running at the end")
    ap.add_argument("--activations", type=int, default=10, help="per device per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed activations per device per side")
    ap.add_argument("--mode", choices=("sequential", "burst"), default="sequential")
    ap.add_argument("--follow", choices=("get", "watch"), default="get",
                    help="how the orchestrator learns the outcome: get = Get with wait_ms (a long poll, "
                         "default); watch = follow Watch to its end, then Get")
    ap.add_argument("--server", choices=("process", "inprocess"), default="process",
                    help="process: `agw serve` as deployed, the client here (default); inprocess: one "
                         "process for both (needed for --profile)")
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--profile-top", type=int, default=15)
    ap.add_argument("--profile-out", type=Path, default=None, help="also write the cProfile stats here")
    args = ap.parse_args(argv)
    # asyncssh logs every connection and channel at INFO: both sides use it; keep the output readable
    logging.getLogger("asyncssh").setLevel(logging.WARNING)

    from lab.api import Lab
    from lab.topology import load

    if args.no_lab_up:
        lab = Lab.attach(load(args.topology).name)
    else:
        t0 = time.perf_counter()
        lab = Lab.up(args.topology, timeout_s=120)
        log.info("lab %s up in %.1f s", lab.name, time.perf_counter() - t0)
    try:
        targets = lab_targets(lab)
        if not targets:
            log.error("lab %s has no NETCONF node", lab.name)
            return 2
        return asyncio.run(bench(targets, inventory=lab.inventory_path, args=args))
    finally:
        if not args.keep_lab:
            lab.down()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(sys.argv[1:]))
