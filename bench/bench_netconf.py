"""NETCONF driver vs the protocol floor, same devices, same run, same configuration size.

Each device gets its sessions opened beforehand (one floor session, one driver), then every
device runs ``--activations`` verified six-RPC activations in sequence, all devices at once:
lock, edit-config, confirmed commit (persist), get-config read-back, confirming commit, unlock.
Both clients modify the same objects (interface ``bench0``'s description), so the device's
configuration size stays steady. Rounds alternate floor/driver order; figures are medians.

``python -m bench netconf`` or ``python -m bench.bench_netconf --host 127.0.10.1 --host ...``.
Default devices: the running lab's netconfd nodes, else the development devices 127.0.10.1-2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from bench.netconf_floor import FloorSession, floor_activation, open_floor_session
from bench.stats import Figures
from drivers.base import Capabilities, ChangeSet, DeviceProfile, Endpoint, Snapshot, Timeouts
from drivers.netconf import NetconfDriver
from gateway.model import Action
from gateway.secrets import Credential, Secret

log = logging.getLogger(__name__)

IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
FILTER = f'<interfaces xmlns="{IF_NS}"><interface><name>bench0</name></interface></interfaces>'.encode()
DEV_HOSTS = ("127.0.10.1", "127.0.10.2")


def config(i: int) -> str:
    return (
        '<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
        f'<interfaces xmlns="{IF_NS}"><interface><name>bench0</name><description>run-{i}</description>'
        '<type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">ianaift:ethernetCsmacd</type>'
        "<enabled>true</enabled></interface></interfaces></config>"
    )


@dataclass(frozen=True)
class Target:
    name: str
    host: str
    port: int
    username: str
    password: str
    known_hosts: str = ""
    """The lab's known_hosts file; empty (--host, development devices): the key is not checked."""


def lab_targets() -> list[Target]:
    """The NETCONF nodes of the running labs (``lab.api.Lab.attach``), if any."""
    try:
        from lab.api import Lab

        out = []
        for lab_name in Lab.running():
            for node in Lab.attach(lab_name).nodes.values():
                if "netconf" in node.ports:
                    cred = node.credentials["netconf"]
                    out.append(Target(node.name, node.address, node.ports["netconf"], cred["username"], cred["password"],
                                      known_hosts=str(node.known_hosts)))
        return out
    except Exception as exc:  # noqa: BLE001 - no lab: fall back to the development devices
        log.info("no running lab usable (%s)", exc)
        return []


def profile() -> DeviceProfile:
    from pathlib import Path

    import yaml

    d = yaml.safe_load((Path(__file__).parent.parent / "device_profiles" / "netconfd.yaml").read_text())
    return DeviceProfile(
        platform=d["platform"], driver=d["driver"], capabilities=Capabilities(**d["capabilities"]),
        timeouts=Timeouts(**d["timeouts"]), confirm_timeout_s=d["confirm_timeout_s"],
        quirks=d["quirks"], settings=d["settings"],
    )


async def run_all(workers: list[Callable[[int], Awaitable[None]]], n: int) -> Figures:
    lat: list[float] = []

    async def device(work: Callable[[int], Awaitable[None]], base: int) -> None:
        for i in range(n):
            t = time.perf_counter()
            await work(base + i)
            lat.append(time.perf_counter() - t)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(device(w, k * 100000) for k, w in enumerate(workers)))
    return Figures(acts=len(lat), wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - cpu0,
                   latencies_s=tuple(lat))


async def bench(targets: list[Target], *, activations: int, rounds: int) -> tuple[list[Figures], list[Figures]]:
    prof = profile()
    floors: list[FloorSession] = []
    drivers: list[NetconfDriver] = []
    for t in targets:
        floors.append(await open_floor_session(t.host, t.port, t.username, t.password))
        d = NetconfDriver(
            endpoint=Endpoint(device=t.name, host=t.host, port=t.port, platform="netconfd",
                              credential=Credential(ref="bench", username=t.username, password=Secret(t.password)),
                              known_hosts=t.known_hosts, host_key_check=bool(t.known_hosts)),
            profile=prof,
        )
        await d.open()
        drivers.append(d)
    counter = iter(range(10**9))

    def floor_worker(s: FloorSession) -> Callable[[int], Awaitable[None]]:
        async def work(i: int) -> None:
            n = next(counter)
            await floor_activation(s, config=config(n).encode(), filter_=FILTER,
                                   expect=[b"<description>run-%d</description>" % n], persist_id=f"f{n}")
        return work

    def driver_worker(d: NetconfDriver) -> Callable[[int], Awaitable[None]]:
        # exact verification needs the state before the change: the previous activation's
        # read-back (this bench is the device's only writer), so the driver stays at six RPCs
        state: dict[str, Snapshot] = {}

        async def work(i: int) -> None:
            n = next(counter)
            change = ChangeSet(service="interface", action=Action.MODIFY, content=config(n))
            if "before" not in state:
                state["before"] = await d.read(d.scope_of(change))
            await d.lock()
            try:
                await d.load(change)
                await d.commit(confirm_timeout_s=120, persist_id=f"d{n}")
                v = await d.verify(change, state["before"])
                if not v.ok or v.readback is None:
                    await d.cancel_commit(persist_id=f"d{n}")
                    raise RuntimeError(f"verification failed: {v.mismatches}")
                state["before"] = v.readback
                await d.confirm(persist_id=f"d{n}")
            finally:
                await d.unlock()
        return work

    floor_figs: list[Figures] = []
    driver_figs: list[Figures] = []
    try:
        # warm-up (creates bench0 on every device, warms both code paths)
        await run_all([floor_worker(s) for s in floors], 2)
        await run_all([driver_worker(d) for d in drivers], 2)
        for r in range(rounds):
            order = [("floor", floors), ("driver", drivers)] if r % 2 == 0 else [("driver", drivers), ("floor", floors)]
            for kind, _ in order:
                if kind == "floor":
                    floor_figs.append(await run_all([floor_worker(s) for s in floors], activations))
                else:
                    driver_figs.append(await run_all([driver_worker(d) for d in drivers], activations))
    finally:
        for s in floors:
            await s.close()
        for d in drivers:
            await d.close()
    return floor_figs, driver_figs


def summary(name: str, figs: list[Figures]) -> tuple[float, str]:
    rate = statistics.median(f.rate for f in figs)
    p50 = statistics.median(f.pct_ms(0.5) for f in figs)
    p99 = statistics.median(f.pct_ms(0.99) for f in figs)
    cpu = statistics.median(f.cpu_s / f.acts * 1000 for f in figs)
    return rate, f"{name:7s} {rate:8.1f} act/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   client CPU {cpu:5.2f} ms/act"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench_netconf", description=__doc__.splitlines()[0])
    ap.add_argument("--host", action="append", default=[], help="device address[:port] (repeat)")
    ap.add_argument("--username", default="labadmin")
    ap.add_argument("--password", default="labpass")
    ap.add_argument("--activations", type=int, default=10, help="per device per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--devices", type=int, default=10, help="at most this many lab devices")
    args = ap.parse_args(argv)
    if args.host:
        targets = []
        for h in args.host:
            host, _, port = h.partition(":")
            targets.append(Target(host, host, int(port or 830), args.username, args.password))
    else:
        targets = lab_targets()[: args.devices] or [
            Target(h, h, 830, args.username, args.password) for h in DEV_HOSTS
        ]
    floor_figs, driver_figs = asyncio.run(bench(targets, activations=args.activations, rounds=args.rounds))
    f_rate, f_line = summary("floor", floor_figs)
    d_rate, d_line = summary("driver", driver_figs)
    log.info("NETCONF: %d devices x %d activations x %d rounds (six-RPC verified activation)",
             len(targets), args.activations, args.rounds)
    log.info(f_line)
    log.info(d_line)
    log.info("ratio driver/floor: %.3f (aim >= 0.9)", d_rate / f_rate)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(sys.argv[1:]))
