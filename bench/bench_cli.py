"""CLI benchmark: the CLI driver's verified lifecycle against the fastest minimal client (the floor).

Same lab FRR devices, same run. The work per activation is "push 2 lines, read back, undo":

* floors, on a pre-opened session with nothing in between: scrapli 2.x (async), netmiko
  (threads), and classic scrapli when it is installed beside scrapli 2.x (it cannot be: both are
  the ``scrapli`` distribution, so it is reported as skipped);
* the driver: read (snapshot) → load → verify (read back) → restore (generated undo) → reread
  and compare with the snapshot, on a pre-opened driver session.

Prints activations/s, p50/p99 latency, client CPU per activation, and each ratio against the
fastest floor. ``python -m bench cli [--devices-from-lab NAME] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import yaml

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
        lat = sorted(self.latencies_s)
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        ratio = f"{self.rate / floor.rate:5.2f}x floor" if floor else ""
        return (f"{self.name:<28} {self.rate:8.1f} act/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
                f"client CPU {self.cpu_s / self.activations * 1000:6.2f} ms/act  {ratio}")


def _check(text: str, present: bool) -> None:
    for line in LINES:
        if (line in text) != present:
            raise RuntimeError(f"read-back: {line!r} {'missing' if present else 'still there'}")


# -- floors ------------------------------------------------------------------------------------
async def scrapli2_floor(devices: list[Device], rounds: int) -> Figures:
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

    try:
        return await _run_async("scrapli 2.x floor", clis, one, rounds)
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
async def driver_lifecycle(devices: list[Device], rounds: int) -> Figures:
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
                                                                password=Secret(d.password))),
                        profile=profile)
        await drv.open()
        drivers.append(drv)
    change = ChangeSet(service="bench", action=Action.CREATE, content="\n".join(LINES) + "\n")

    async def one(drv: Any) -> None:
        snapshot = await drv.read(change)
        await drv.load(change)
        verification = await drv.verify(change)
        if not verification.ok:
            raise RuntimeError(f"verify failed: {verification.mismatches}")
        await drv.restore(snapshot)
        if await drv.reread(snapshot) != snapshot:
            raise RuntimeError("restore did not give the snapshot back")

    try:
        return await _run_async("CliDriver lifecycle", drivers, one, rounds)
    finally:
        for drv in drivers:
            await drv.close()


async def _run_async(name: str, sessions: list[Any], one: Callable[[Any], Awaitable[None]], rounds: int) -> Figures:
    await asyncio.gather(*(one(s) for s in sessions))  # warm-up
    latencies: list[float] = []

    async def worker(session: Any) -> None:
        for _ in range(rounds):
            t = time.perf_counter()
            await one(session)
            latencies.append(time.perf_counter() - t)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(s) for s in sessions))
    return Figures(name, len(sessions) * rounds, time.perf_counter() - wall, time.process_time() - cpu,
                   tuple(latencies))


# -- main ----------------------------------------------------------------------------------------
def lab_devices(lab: Any) -> list[Device]:
    out = []
    for name, node in sorted(lab.nodes.items()):
        if "cli" in node.ports:
            cred = node.credentials["cli"]
            out.append(Device(name, node.address, node.ports["cli"], cred["username"], cred["password"]))
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
        floor = max(floors, key=lambda f: f.rate)
        for fig in floors:
            log.info(fig.line(floor))
        log.info(driver.line(floor))
        log.info("driver/floor throughput: %.2f (the driver does 3 reads per activation: snapshot, verify, "
                 "reread, and restore reuses verify's read while nothing was pushed; the floor does 1)", driver.rate / floor.rate)
    finally:
        if started and not args.keep:
            lab.down()
    return 0


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(sys.argv[1:]))
