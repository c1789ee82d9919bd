"""CLI benchmark: the CLI driver against the fastest minimal client (the floor), two comparisons.

Same lab FRR devices, same run, pre-opened sessions, nothing in between.

1. Full lifecycle with undo — what a rolled-back activation costs:

   * floors: "push 2 lines, read back, push the 2 undo lines": scrapli 2.x (async), netmiko
     (threads), and classic scrapli when it is installed beside scrapli 2.x (it cannot be: both
     are the ``scrapli`` distribution, so it is reported as skipped);
   * the driver: read (snapshot) → load → verify (read back) → restore (generated undo from
     snapshot vs current) → reread and compare with the snapshot. It reads 2 more times than
     the floor (snapshot, reread), by contract.

2. Activation path — what the engine runs on success: create (the 2 lines) and delete (the 2
   ``no`` lines) alternately, each one activation:

   * floor: scrapli 2.x "push, read back, check";
   * the driver: read (snapshot) → load → verify. One read more than the floor (the snapshot).

Prints activations/s, p50/p99 latency, client CPU per activation (the whole process: it
includes libscrapli's native I/O thread), and each ratio against its own floor.
``python -m bench.bench_cli [--rounds N] [--lab NAME] [--keep]`` (``python -m bench cli`` uses
the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import yaml

from bench.stats import percentile_ms

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
LINES = ["ip route 198.51.100.64/26 Null0", "ip prefix-list PL-BENCH seq 5 permit 198.51.100.64/26"]
UNDO = ["no ip route 198.51.100.64/26 Null0", "no ip prefix-list PL-BENCH seq 5"]


@dataclass(frozen=True)
class Device:
    name: str
    host: str
    port: int
    username: str
    password: str
    known_hosts: str = ""  # the lab's known_hosts file (the driver checks the node's host key)


@dataclass(frozen=True)
class Figures:
    name: str
    activations: int
    wall_s: float
    cpu_s: float
    latencies_s: tuple[float, ...]

    @property
    def rate(self) -> float:
        return self.activations / self.wall_s

    def line(self, floor: "Figures | None") -> str:
        p50 = statistics.median(self.latencies_s) * 1000
        p99 = percentile_ms(self.latencies_s, 0.99)
        ratio = f"{self.rate / floor.rate:5.2f}x floor" if floor else ""
        return (f"{self.name:<40} {self.rate:8.1f} act/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
                f"client CPU {self.cpu_s / self.activations * 1000:6.2f} ms/act  {ratio}")


def _check(text: str, present: bool) -> None:
    for line in LINES:
        if (line in text) != present:
            raise RuntimeError(f"read-back: {line!r} {'missing' if present else 'still there'}")


# -- floors ------------------------------------------------------------------------------------
async def scrapli2_floor(devices: list[Device], rounds: int, *, activation_path: bool = False) -> Figures:
    """Full lifecycle (push, read back, undo) or, with ``activation_path``, create and delete
    alternately (push, read back), each one activation."""
    from scrapli import AuthOptions, Cli, TransportSsh2Options

    clis = []
    for d in devices:
        cli = Cli(d.host, port=d.port, definition_file_or_name="cisco_iosxe",
                  auth_options=AuthOptions(username=d.username, password=d.password),
                  transport_options=TransportSsh2Options())
        await cli.open_async()
        clis.append(cli)

    async def one(cli: Any) -> None:
        await cli.send_inputs_async(inputs=LINES, requested_mode="configuration")
        await cli.enter_mode_async(requested_mode="privileged_exec")
        _check((await cli.send_input_async(input_="show running-config")).result, True)
        await cli.send_inputs_async(inputs=UNDO, requested_mode="configuration")
        await cli.enter_mode_async(requested_mode="privileged_exec")

    def push_and_check(lines: list[str], present: bool) -> Callable[[Any], Awaitable[None]]:
        async def step(cli: Any) -> None:
            await cli.send_inputs_async(inputs=lines, requested_mode="configuration")
            await cli.enter_mode_async(requested_mode="privileged_exec")
            _check((await cli.send_input_async(input_="show running-config")).result, present)
        return step

    try:
        if activation_path:
            return await _run_async("scrapli 2.x floor (push+read)", clis,
                                    (push_and_check(LINES, True), push_and_check(UNDO, False)), rounds)
        return await _run_async("scrapli 2.x floor", clis, (one,), rounds)
    finally:
        for cli in clis:
            await cli.close_async()


def netmiko_floor(devices: list[Device], rounds: int) -> Figures:
    from netmiko import ConnectHandler

    conns = [ConnectHandler(device_type="cisco_ios", host=d.host, port=d.port, username=d.username,
                            password=d.password, fast_cli=True) for d in devices]

    def one(conn: Any) -> None:
        conn.send_config_set(LINES)
        _check(conn.send_command("show running-config"), True)
        conn.send_config_set(UNDO)

    latencies: list[float] = []

    def worker(conn: Any) -> None:
        for _ in range(rounds):
            t = time.perf_counter()
            one(conn)
            latencies.append(time.perf_counter() - t)

    try:
        cpu, wall = time.process_time(), time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(conns)) as pool:
            list(pool.map(worker, conns))
        return Figures("netmiko floor", len(conns) * rounds, time.perf_counter() - wall,
                       time.process_time() - cpu, tuple(latencies))
    finally:
        for conn in conns:
            conn.disconnect()


def classic_scrapli_available() -> bool:
    try:
        import scrapli.driver  # noqa: F401  (classic API; gone in scrapli 2.x)
    except ImportError:
        return False
    return True


# -- the driver ----------------------------------------------------------------------------------
async def driver_lifecycle(devices: list[Device], rounds: int, *, activation_path: bool = False,
                           cold_cache: bool = False) -> Figures:
    """Full lifecycle with restore and reread or, with ``activation_path``, read → load → verify
    for a create and a delete change alternately, each one activation.

    The driver keeps its last parsed running configurations; here every activation sees one of
    two configurations again, which a real device's changing configuration does less often.
    ``cold_cache`` empties that cache before each activation (hits within one activation stay):
    the pessimistic bound."""
    from drivers.base import ChangeSet, Endpoint
    from drivers.cli import CliDriver
    from gateway.inventory.profiles import parse_profile
    from gateway.model import Action
    from gateway.secrets import Credential, Secret

    profile = parse_profile(yaml.safe_load((ROOT / "device_profiles" / "frr.yaml").read_text()), source="frr.yaml")
    drivers = []
    for d in devices:
        drv = CliDriver(endpoint=Endpoint(device=d.name, host=d.host, port=d.port, platform="frr",
                                          credential=Credential(ref=d.name, username=d.username,
                                                                password=Secret(d.password)),
                                          known_hosts=d.known_hosts),
                        profile=profile)
        await drv.open()
        drivers.append(drv)
    change = ChangeSet(service="bench", action=Action.CREATE, content="\n".join(LINES) + "\n")
    delete = ChangeSet(service="bench", action=Action.DELETE, content="\n".join(UNDO) + "\n")

    def activation(cs: ChangeSet) -> Callable[[Any], Awaitable[None]]:
        async def step(drv: Any) -> None:
            if cold_cache:
                drv.parse_cache.clear()
            before = await drv.read(drv.scope_of(cs))
            await drv.load(cs)
            verification = await drv.verify(cs, before)
            if not verification.ok:
                raise RuntimeError(f"verify failed: {verification.mismatches}")
        return step

    async def one(drv: Any) -> None:
        if cold_cache:
            drv.parse_cache.clear()
        snapshot = await drv.read(drv.scope_of(change))
        await drv.load(change)
        verification = await drv.verify(change, snapshot)
        if not verification.ok:
            raise RuntimeError(f"verify failed: {verification.mismatches}")
        await drv.restore(snapshot)
        if await drv.read(snapshot.scope) != snapshot:
            raise RuntimeError("restore did not give the snapshot back")

    try:
        cold = ", cold cache" if cold_cache else ""
        if activation_path:
            figures = await _run_async(f"CliDriver read+load+verify{cold}", drivers,
                                       (activation(change), activation(delete)), rounds)
        else:
            figures = await _run_async(f"CliDriver lifecycle{cold}", drivers, (one,), rounds)
        hits = sum(d.parse_cache.hits for d in drivers)
        misses = sum(d.parse_cache.misses for d in drivers)
        log.info("%s: running-config parses %d, parse-cache hits %d", figures.name, misses, hits)
        return figures
    finally:
        for drv in drivers:
            await drv.close()


async def _run_async(name: str, sessions: list[Any], steps: tuple[Callable[[Any], Awaitable[None]], ...],
                     rounds: int) -> Figures:
    """Each round runs every step in order on every session; each step is one activation (so a
    create/delete pair leaves the device as it found it)."""
    async def warm_up(session: Any) -> None:
        for step in steps:
            await step(session)

    await asyncio.gather(*(warm_up(s) for s in sessions))
    gc.collect()  # start each measurement with the same heap: no full collection left over from the last
    latencies: list[float] = []

    async def worker(session: Any) -> None:
        for _ in range(rounds):
            for step in steps:
                t = time.perf_counter()
                await step(session)
                latencies.append(time.perf_counter() - t)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(s) for s in sessions))
    return Figures(name, len(sessions) * rounds * len(steps), time.perf_counter() - wall,
                   time.process_time() - cpu, tuple(latencies))


# -- main ----------------------------------------------------------------------------------------
def lab_devices(lab: Any) -> list[Device]:
    out = []
    for name, node in sorted(lab.nodes.items()):
        if "cli" in node.ports:
            cred = node.credentials["cli"]
            out.append(Device(name, node.address, node.ports["cli"], cred["username"], cred["password"],
                              known_hosts=str(node.known_hosts)))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench cli")
    parser.add_argument("--rounds", type=int, default=20, help="activations per device per client")
    parser.add_argument("--lab", default="benchcli", help="lab name (brought up from basic.clab.yml if absent)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
    args = parser.parse_args(argv)
    logging.getLogger("scrapli").setLevel(logging.WARNING)
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    from lab.api import Lab

    started = args.lab not in Lab.running()
    lab = Lab.up(ROOT / "lab" / "topologies" / "basic.clab.yml", name=args.lab, timeout_s=60) if started \
        else Lab.attach(args.lab)
    try:
        devices = lab_devices(lab)
        log.info("CLI bench: %d FRR devices (%s), %d activations each per client",
                 len(devices), ", ".join(d.name for d in devices), args.rounds)
        floors = [asyncio.run(scrapli2_floor(devices, args.rounds)), netmiko_floor(devices, args.rounds)]
        if not classic_scrapli_available():
            log.info("classic scrapli floor: skipped (scrapli<2026 cannot be installed beside scrapli 2.x: "
                     "same distribution name)")
        driver = asyncio.run(driver_lifecycle(devices, args.rounds))
        driver_cold = asyncio.run(driver_lifecycle(devices, args.rounds, cold_cache=True))
        path_floor = asyncio.run(scrapli2_floor(devices, args.rounds, activation_path=True))
        path_driver = asyncio.run(driver_lifecycle(devices, args.rounds, activation_path=True))
        path_cold = asyncio.run(driver_lifecycle(devices, args.rounds, activation_path=True, cold_cache=True))
        floor = max(floors, key=lambda f: f.rate)
        log.info("-- full lifecycle with undo (floor: push, read back, undo push; driver: snapshot read, push, "
                 "verify read, generated undo + push, reread)")
        for fig in floors:
            log.info(fig.line(floor))
        log.info(driver.line(floor))
        log.info(driver_cold.line(floor))
        log.info("-- activation path on success, create and delete alternately (floor: push, read back; "
                 "driver: snapshot read, push, verify read)")
        log.info(path_floor.line(path_floor))
        log.info(path_driver.line(path_floor))
        log.info(path_cold.line(path_floor))
        log.info("driver/floor throughput, full lifecycle with undo: %.2f (driver 3 reads, floor 1; restore reuses "
                 "verify's read); cold parse cache: %.2f", driver.rate / floor.rate, driver_cold.rate / floor.rate)
        log.info("driver/floor throughput, activation path (success): %.2f (driver 2 reads, floor 1); "
                 "cold parse cache: %.2f", path_driver.rate / path_floor.rate, path_cold.rate / path_floor.rate)
    finally:
        if started and not args.keep:
            lab.down()
    return 0


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(sys.argv[1:]))
