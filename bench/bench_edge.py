"""The event loop under large requests: health ``Check`` latency while 1000-task Submits are planned.

A real gateway in this process (``InProcessGateway``: engine, grpc.aio server, SQLite journal)
with an inventory of devices that cannot be reached (127.0.0.1, a closed port: tasks fail at
connect; planning — validating and rendering every task — is what is measured). Two child
processes talk to it over loopback gRPC: a *prober* calls ``grpc.health.v1.Health/Check`` every
10 ms and records each latency; a *loader* builds the Submits beforehand, then sends them all at
once on a signal. Per phase:

- ``idle``: the prober alone;
- ``on loop`` (the baseline): ``--submits`` concurrent Submits of ``--tasks`` tasks each, with the
  whole request path on the event loop (``EngineSettings(plan_off_loop=False)``, and the
  servicer's and the journal's off-loop thresholds out of reach), as before this change;
- ``off loop`` (now): the same Submits with the default settings.

The load window runs from the signal to the last Submit's answer (the first activations already
run while later ones are planned). Figures: Check p50/p99/max per phase, the ratio of the
baseline's to now's, the window, the process's CPU over the window per Submit (with the runs of
the activations that started meanwhile) and the event-loop thread's share of it, and the CPU of
one Submit sent alone (send to answer: planning, journaling, the edge). Both load phases run
with what ``agw serve`` sets once started (:func:`gateway.offload.tune_serving_process`).
Phases alternate over ``--rounds``; medians are printed. The aim: health answers within 50 ms
under this load. ``--stalls`` samples where the event loop's thread is when it stalls.

``python -m bench edge [--submits 8] [--tasks 1000] [--devices 50] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
PROBE_INTERVAL_S = 0.01
ALONE = 2
"""Submits sent one at a time after each load phase, for the CPU of one Submit."""
CRED_PREFIX = "AGW_BENCH_EDGE"


@dataclass(frozen=True, kw_only=True)
class Phase:
    name: str
    checks_ms: tuple[float, ...]
    window_s: float = 0.0
    cpu_s: float = 0.0
    loop_cpu_s: float = 0.0
    submits: int = 0
    failures: int = 0
    alone_cpu_s: float = 0.0
    """The process's CPU for one Submit sent alone, from sending it to its answer."""

    def pct(self, q: float) -> float:
        lat = sorted(self.checks_ms)
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    @property
    def max_ms(self) -> float:
        return max(self.checks_ms) if self.checks_ms else float("nan")


# --- the child processes --------------------------------------------------------------------------
def child_probe(port: int) -> int:
    """Check every PROBE_INTERVAL_S until stdin says stop; print the latencies (ms) as JSON."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = health_pb2_grpc.HealthStub(channel)
    stub.Check(health_pb2.HealthCheckRequest(), timeout=10)  # connected before "ready"
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    out: list[float] = []
    failures = 0
    while not stop.is_set():
        t = time.perf_counter()
        try:
            stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            out.append((time.perf_counter() - t) * 1000)
        except grpc.RpcError:
            failures += 1
        stop.wait(max(0.0, PROBE_INTERVAL_S - (time.perf_counter() - t)))
    print(json.dumps({"checks_ms": out, "failures": failures}), flush=True)
    channel.close()
    return 0


def child_load(port: int, submits: int, tasks: int, devices: int, tag: str) -> int:
    """Build ``submits`` requests, say ready, send them all at once on a line from stdin; print
    the answers' latencies and failures as JSON."""
    import grpc

    from gateway.api.generated.activation.v1 import activation_pb2_grpc as pb_grpc
    from tests.integration.gateway_harness import submit_request

    requests = [submit_request(task_list(tasks, devices), request_id=f"bench-edge-{tag}-{k}") for k in range(submits)]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)])
    stub = pb_grpc.ActivationServiceStub(channel)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    calls = [stub.Submit.future(r, timeout=300) for r in requests]
    latencies: list[float] = []
    errors: list[str] = []
    for call in calls:
        try:
            call.result()
            latencies.append(time.perf_counter() - t0)
        except grpc.RpcError as exc:
            errors.append(f"{exc.code().name}: {exc.details()}"[:300])
    print(json.dumps({"latencies_s": latencies, "errors": errors}), flush=True)
    channel.close()
    return 0


def task_list(n: int, devices: int) -> list[dict[str, Any]]:
    return [{"id": f"t{i}", "device": f"d{i % devices}", "service": "interface", "action": "create",
             "parameters": {"name": f"ge-0/0/{i}", "description": f"customer circuit {i} (bench)", "enabled": True,
                            "ipv4": {"address": f"192.0.2.{i % 250 + 1}", "prefix_length": 31}}}
            for i in range(n)]


class Child:
    """A child process of this module, line-driven over stdin/stdout."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.bench_edge", "--child", *args], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})

    async def line(self) -> str:
        assert self.proc.stdout is not None
        return (await asyncio.to_thread(self.proc.stdout.readline)).strip()

    def say(self, text: str = "go") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    async def result(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(await self.line())
        await asyncio.to_thread(self.proc.wait, 30)
        return data


# --- where the loop stalls (--stalls) --------------------------------------------------------------
class StallSampler:
    """Diagnostics: a coroutine notes every turn of the event loop; a thread samples the loop
    thread's stack whenever it has not turned for ``after_s``. :meth:`top` lists the places."""

    def __init__(self, *, after_s: float = 0.03) -> None:
        self.after_s = after_s
        self.samples: collections.Counter[str] = collections.Counter()
        self._last = time.perf_counter()
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()

    async def run(self) -> None:
        threading.Thread(target=self._watch, daemon=True, name="stall-sampler").start()
        try:
            while True:
                self._last = time.perf_counter()
                await asyncio.sleep(0.001)
        finally:
            self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            if time.perf_counter() - self._last > self.after_s:
                frame = sys._current_frames().get(self._loop_thread)  # noqa: SLF001
                stack = traceback.extract_stack(frame)[-10:]
                self.samples[" <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack))] += 1

    def top(self, n: int = 12) -> str:
        return "\n".join(f"{count:5d}  {where}" for where, count in self.samples.most_common(n))


# --- the gateway ------------------------------------------------------------------------------------
def write_inventory(root: Path, devices: int) -> Path:
    with socket.socket() as s:  # a port nobody listens on: connects are refused at once
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    known_hosts = root / "known_hosts"
    known_hosts.write_text("")
    inventory = {"known_hosts": str(known_hosts), "devices": {
        f"d{i}": {"address": "127.0.0.1",
                  "endpoints": [{"platform": "netconfd", "port": closed_port, "credentials": f"env:{CRED_PREFIX}"}]}
        for i in range(devices)}}
    path = root / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory))
    os.environ[f"{CRED_PREFIX}_USERNAME"] = "bench"
    os.environ[f"{CRED_PREFIX}_PASSWORD"] = "bench-edge-password"
    return path


def on_loop(baseline: bool) -> None:
    """Switch the thresholds of the servicer and the journal: everything on the loop for the
    baseline (the engine's switch is ``EngineSettings.plan_off_loop``)."""
    from gateway.api import servicer
    from gateway.journal import sql

    defaults = on_loop.__dict__.setdefault("defaults", (servicer.LARGE_TASKS, sql.ENCODE_INLINE_MAX))
    servicer.LARGE_TASKS, sql.ENCODE_INLINE_MAX = (10**9, 10**9) if baseline else defaults


async def phase(gw: Any, port: int, *, name: str, args: argparse.Namespace, tag: str) -> Phase:
    from gateway.engine.limits import EngineSettings

    baseline = name == "on loop"
    if name != "idle":
        gw.engine.settings = EngineSettings(plan_off_loop=not baseline, plan_workers=args.plan_workers)
        on_loop(baseline)
        loader = Child("load", str(port), str(args.submits), str(args.tasks), str(args.devices), tag)
        assert await loader.line() == "ready"
    prober = Child("probe", str(port))
    assert await prober.line() == "ready"
    await asyncio.sleep(0.2)  # a few checks before the load
    t0, cpu0, loop0 = time.perf_counter(), time.process_time(), time.thread_time()
    window = cpu = loop_cpu = 0.0
    failures = 0
    if name == "idle":
        await asyncio.sleep(args.idle_s)
    else:
        loader.say()
        answer = await loader.result()
        window, cpu, loop_cpu = time.perf_counter() - t0, time.process_time() - cpu0, time.thread_time() - loop0
        failures = len(answer["errors"])
        for err in answer["errors"][:3]:
            log.warning("%s: a Submit failed: %s", name, err)
    prober.say("stop")
    probed = await prober.result()
    await gw.engine.wait_idle()  # the activations fail at connect; let them end before the next phase
    alone = 0.0
    if name != "idle":  # CPU of one Submit alone, send to answer (the window's CPU includes runs)
        for k in range(ALONE):
            loader = Child("load", str(port), "1", str(args.tasks), str(args.devices), f"{tag}-alone-{k}")
            assert await loader.line() == "ready"
            cpu0 = time.process_time()
            loader.say()
            answer = await loader.result()
            alone += (time.process_time() - cpu0) / ALONE
            failures += len(answer["errors"])
            await gw.engine.wait_idle()
    on_loop(False)
    return Phase(name=name, checks_ms=tuple(probed["checks_ms"]), window_s=window, cpu_s=cpu,
                 loop_cpu_s=loop_cpu, submits=0 if name == "idle" else args.submits,
                 failures=failures + probed["failures"], alone_cpu_s=alone)


def line(p: Phase) -> str:
    text = (f"{p.name:8s} Check p50 {p.pct(0.5):6.1f} ms  p99 {p.pct(0.99):7.1f} ms  max {p.max_ms:7.1f} ms"
            f"  ({len(p.checks_ms)} checks)")
    if p.submits:
        text += (f"  window {p.window_s:5.2f} s  window CPU/Submit {p.cpu_s / p.submits * 1000:6.1f} ms"
                 f" (loop thread {p.loop_cpu_s / p.submits * 1000:5.1f} ms)  CPU of a Submit alone"
                 f" {p.alone_cpu_s * 1000:6.1f} ms")
    return text


async def bench(args: argparse.Namespace) -> int:
    from gateway import offload
    from gateway.api import servicer  # noqa: F401 - imported before on_loop reads its defaults
    from gateway.journal import sql  # noqa: F401
    from tests.integration.gateway_harness import InProcessGateway

    with tempfile.TemporaryDirectory(prefix="agw-bench-edge-") as tmp:
        root = Path(tmp)
        gw = InProcessGateway(data_dir=root / "data", inventory=write_inventory(root, args.devices),
                              profiles=REPO / "device_profiles")
        offload.configure(args.plan_workers)  # before the pool is first used (the engine set its default)
        await gw.start()
        port = gw.port
        offload.tune_serving_process()  # as agw serve does once started (gc.freeze, switch interval)
        if args.switch_interval_ms:
            sys.setswitchinterval(args.switch_interval_ms / 1000)
        results: dict[str, list[Phase]] = {"idle": [], "on loop": [], "off loop": []}
        sampler = StallSampler() if args.stalls else None
        sampling = asyncio.create_task(sampler.run()) if sampler else None
        try:
            results["idle"].append(await phase(gw, port, name="idle", args=args, tag="idle"))
            log.info(line(results["idle"][-1]))
            for r in range(args.rounds):
                order = ["on loop", "off loop"] if r % 2 == 0 else ["off loop", "on loop"]
                for name in order:
                    p = await phase(gw, port, name=name, args=args, tag=f"{r}-{name.replace(' ', '-')}")
                    results[name].append(p)
                    log.info("round %d %s", r + 1, line(p))
                    if sampler:
                        log.info("where the loop thread was when it stalled (samples every 5 ms):\n%s", sampler.top())
                        sampler.samples.clear()
        finally:
            if sampling:
                sampling.cancel()
            await gw.stop()
    med: dict[str, tuple[float, float, float]] = {}  # phase -> Check p50, p99, max
    log.info("EDGE: health Check latency while %d concurrent %d-task Submits are planned (%d devices, "
             "tasks fail at connect), %d round(s), medians over rounds:", args.submits, args.tasks, args.devices,
             args.rounds)
    for name, phases in results.items():
        p50 = statistics.median(p.pct(0.5) for p in phases)
        p99 = statistics.median(p.pct(0.99) for p in phases)
        mx = statistics.median(p.max_ms for p in phases)
        text = f"{name:8s} Check p50 {p50:6.1f} ms  p99 {p99:7.1f} ms  max {mx:7.1f} ms"
        if name != "idle":
            cpu = statistics.median(p.cpu_s / p.submits * 1000 for p in phases)
            loop_cpu = statistics.median(p.loop_cpu_s / p.submits * 1000 for p in phases)
            window = statistics.median(p.window_s for p in phases)
            alone = statistics.median(p.alone_cpu_s * 1000 for p in phases)
            text += (f"  window {window:5.2f} s  window CPU/Submit {cpu:6.1f} ms (loop thread {loop_cpu:5.1f} ms)"
                     f"  CPU of a Submit alone {alone:6.1f} ms")
        log.info(text)
        med[name] = (p50, p99, mx)
    base, now = med["on loop"], med["off loop"]
    log.info("ratio on-loop / off-loop: Check p99 %.1fx, max %.1fx; aim: p99 and max within 50 ms -> %s",
             base[1] / now[1], base[2] / now[2], "met" if now[1] <= 50 and now[2] <= 50 else "NOT met")
    failures = sum(p.failures for phases in results.values() for p in phases)
    if failures:
        log.error("%d failed call(s)", failures)
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    from gateway.engine.limits import EngineSettings

    ap = argparse.ArgumentParser(prog="bench edge", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--submits", type=int, default=8)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--idle-s", type=float, default=2.0)
    ap.add_argument("--plan-workers", type=int, default=EngineSettings.plan_workers,
                    help="planning threads (EngineSettings.plan_workers)")
    ap.add_argument("--switch-interval-ms", type=float, default=0.0,
                    help="override the GIL switch interval agw serve sets (gateway.offload.SWITCH_INTERVAL_S)")
    ap.add_argument("--stalls", action="store_true",
                    help="diagnostics: sample the event loop thread's stack whenever it stalls over 30 ms")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "probe":
            return child_probe(int(rest[0]))
        return child_load(int(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]), rest[4])
    for noisy in ("asyncssh", "gateway.api.interceptors", "gateway.api.tls", "gateway.engine.runner"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return asyncio.run(bench(args))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(sys.argv[1:]))
