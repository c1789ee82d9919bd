"""SNMP driver lifecycle (GET snapshot, SET, GET verify) against a minimal pysnmp floor, same run.

Per activation both sides do the same three requests on the same agents: GET of sysContact,
sysName and sysLocation, one SET of all three, GET again. The floor drives pysnmp's command
generators on a pre-built engine and target with pre-built varbinds and checks nothing beyond
the error status; the driver side is ``SnmpDriver.read`` → ``load`` → ``verify`` on an open
session (the rendered YAML parsed, the snapshot text built, every value compared). Rounds
alternate floor and driver; the medians are printed with their ratio and the client CPU per
activation (this process's CPU time, both sides on the same event loop).

Devices: ``--target HOST[:PORT]`` (repeatable, v2c with ``--community``), else the running
lab's SNMP nodes (``--lab NAME``, default: the first running lab).

Usage: ``python -m bench snmp`` or ``python -m bench.bench_snmp --activations 20 --rounds 5 [--v3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Awaitable, Callable

import yaml

from bench.stats import Figures
from drivers.base import ChangeSet, DeviceProfile, Endpoint
from drivers.snmp import SnmpDriver
from drivers.snmp.session import build_auth, close_engines
from gateway.inventory.profiles import parse_profile
from gateway.model import Action
from gateway.secrets import Credential, Secret

log = logging.getLogger(__name__)

PROFILE = Path(__file__).resolve().parent.parent / "device_profiles" / "net-snmp.yaml"
OIDS = ("1.3.6.1.2.1.1.4.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.6.0")


@dataclass(frozen=True, kw_only=True)
class Device:
    name: str
    host: str
    port: int
    credential: Credential


def lab_devices(name: str | None, *, v3: bool) -> list[Device]:
    from lab.api import Lab

    names = [name] if name else Lab.running()
    if not names:
        return []
    lab = Lab.attach(names[0])
    out = []
    for node in lab.nodes.values():
        if "snmp" not in node.ports:
            continue
        c = node.credentials["snmp"]
        cred = (Credential(ref=f"{node.name}:v3", username=c["v3_user"], auth_key=Secret(c["v3_auth_key"]),
                           priv_key=Secret(c["v3_priv_key"]), auth_protocol="SHA", priv_protocol="AES")
                if v3 else Credential(ref=f"{node.name}:rw", community=Secret(c["community_rw"])))
        out.append(Device(name=node.name, host=node.address, port=node.ports["snmp"], credential=cred))
    return out


def profile(security: str) -> DeviceProfile:
    p = parse_profile(yaml.safe_load(PROFILE.read_text()), source=str(PROFILE), expected_platform="net-snmp")
    return replace(p, settings={**p.settings, "security": security})


def content(i: int) -> str:
    vals = (f"bench-contact-{i % 2}", f"bench-name-{i % 2}", f"bench-location-{i % 2}")
    return "".join(f'- {{"oid": "{o}", "type": "OctetString", "value": "{v}"}}\n' for o, v in zip(OIDS, vals))


# -- the floor: pysnmp command generators, pre-built engine, target and varbinds -----------------

async def floor_worker(dev: Device, timeout_s: float, *, v3: bool) -> Callable[[int], Awaitable[None]]:
    from pysnmp.entity.engine import SnmpEngine
    from pysnmp.entity.rfc3413 import cmdgen
    from pysnmp.hlapi.v3arch.asyncio import UdpTransportTarget
    from pysnmp.hlapi.v3arch.asyncio.lcd import CommandGeneratorLcdConfigurator
    from pysnmp.proto import rfc1902

    engine = SnmpEngine()
    auth, _, _ = build_auth(dev.credential, "v3" if v3 else "v2c")
    target = await UdpTransportTarget.create((dev.host, dev.port), timeout=timeout_s / 2, retries=1)
    addr, _ = CommandGeneratorLcdConfigurator().configure(engine, auth, target, b"")
    get_vbs = [(rfc1902.ObjectName(o), rfc1902.Null()) for o in OIDS]
    set_vbs = [[(rfc1902.ObjectName(o), rfc1902.OctetString(v)) for o, v in
                zip(OIDS, (f"bench-contact-{k}", f"bench-name-{k}", f"bench-location-{k}"))] for k in (0, 1)]
    get_gen, set_gen = cmdgen.GetCommandGenerator(), cmdgen.SetCommandGenerator()

    async def request(gen: Any, vbs: list[Any]) -> None:
        fut = asyncio.get_running_loop().create_future()

        def done(_e: Any, _h: Any, ind: Any, status: Any, _idx: Any, _vbs: Any, _ctx: Any) -> None:
            if not fut.done():
                fut.set_result((ind, status))

        gen.send_varbinds(engine, addr, None, b"", vbs, done, None)
        ind, status = await fut
        if ind or int(status):
            raise RuntimeError(f"floor request failed on {dev.name}: {ind or status}")

    async def work(i: int) -> None:
        await request(get_gen, get_vbs)
        await request(set_gen, set_vbs[i % 2])
        await request(get_gen, get_vbs)

    await work(0)  # warm
    return work


# -- the gateway side: the driver's lifecycle on an open session ----------------------------------

async def driver_worker(dev: Device, prof: DeviceProfile) -> tuple[SnmpDriver, Callable[[int], Awaitable[None]]]:
    driver = SnmpDriver(endpoint=Endpoint(device=dev.name, host=dev.host, port=dev.port, platform="net-snmp",
                                          credential=dev.credential), profile=prof)
    await driver.open()
    changes = [ChangeSet(service="system", action=Action.MODIFY, content=content(k)) for k in (0, 1)]

    async def work(i: int) -> None:
        ch = changes[i % 2]
        before = await driver.read(driver.scope_of(ch))
        await driver.load(ch)
        result = await driver.verify(ch, before)
        if not result.ok:
            raise RuntimeError(f"verification failed on {dev.name}: {result.detail}")

    await work(0)
    return driver, work


async def run_all(workers: list[Callable[[int], Awaitable[None]]], n: int) -> Figures:
    lat: list[float] = []

    async def one_device(work: Callable[[int], Awaitable[None]]) -> None:
        for i in range(n):
            t = time.perf_counter()
            await work(i)
            lat.append(time.perf_counter() - t)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one_device(w) for w in workers))
    return Figures(acts=n * len(workers), wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - cpu0,
                   latencies_s=tuple(lat))


async def bench(devices: list[Device], *, activations: int, rounds: int, v3: bool) -> dict[str, list[Figures]]:
    prof = profile("v3" if v3 else "v2c")
    floors = [await floor_worker(d, prof.timeouts.operation_s, v3=v3) for d in devices]
    pairs = [await driver_worker(d, prof) for d in devices]
    drivers_ = [w for _, w in pairs]
    out: dict[str, list[Figures]] = {"floor": [], "driver": []}
    try:
        for _ in range(rounds):
            out["floor"].append(await run_all(floors, activations))
            out["driver"].append(await run_all(drivers_, activations))
    finally:
        for driver, _ in pairs:
            await driver.close()
        close_engines()
    return out


def summary(figs: list[Figures]) -> tuple[float, float, float, float]:
    rate = statistics.median(f.rate for f in figs)
    cpu = statistics.median(f.cpu_ms_per_act for f in figs)
    p50 = statistics.median(f.pct_ms(0.50) for f in figs)
    p99 = statistics.median(f.pct_ms(0.99) for f in figs)
    return rate, cpu, p50, p99


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench_snmp", description=__doc__.splitlines()[0])
    ap.add_argument("--target", action="append", default=[], help="HOST[:PORT] of an agent (repeatable)")
    ap.add_argument("--community", default="private", help="read-write v2c community for --target agents")
    ap.add_argument("--v3-user", default="labv3", help="v3 user for --target agents (SHA/AES)")
    ap.add_argument("--v3-auth-key", default="labauthpass")
    ap.add_argument("--v3-priv-key", default="labprivpass")
    ap.add_argument("--lab", default=None, help="name of the running lab to use (default: the first one)")
    ap.add_argument("--v3", action="store_true", help="v3 authPriv (lab credentials) instead of v2c")
    ap.add_argument("--activations", type=int, default=20, help="activations per device per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.target:
        devices = []
        for i, t in enumerate(args.target):
            host, _, port = t.partition(":")
            cred = (Credential(ref=f"t{i}", username=args.v3_user, auth_key=Secret(args.v3_auth_key),
                               priv_key=Secret(args.v3_priv_key), auth_protocol="SHA", priv_protocol="AES")
                    if args.v3 else Credential(ref=f"t{i}", community=Secret(args.community)))
            devices.append(Device(name=f"t{i}", host=host, port=int(port or 161), credential=cred))
    else:
        try:
            devices = lab_devices(args.lab, v3=args.v3)
        except Exception as exc:  # noqa: BLE001 - reported, then a clear exit status
            log.error("bench_snmp: no lab usable (%s); start one (agw lab up) or pass --target", exc)
            return 2
    if not devices:
        log.error("bench_snmp: no SNMP devices: start a lab (agw lab up lab/topologies/basic.clab.yml) or pass --target")
        return 2

    figs = asyncio.run(bench(devices, activations=args.activations, rounds=args.rounds, v3=args.v3))
    f_rate, f_cpu, f_p50, f_p99 = summary(figs["floor"])
    d_rate, d_cpu, d_p50, d_p99 = summary(figs["driver"])
    mode = "v3 authPriv" if args.v3 else "v2c"
    log.info("SNMP %s, %d device(s) x %d activations (GET 3, SET 3, GET 3) x %d rounds, medians:",
             mode, len(devices), args.activations, args.rounds)
    log.info("  %-22s %8s %9s %9s %14s", "", "act/s", "p50 ms", "p99 ms", "CPU ms/act")
    log.info("  %-22s %8.1f %9.2f %9.2f %14.2f", "pysnmp floor", f_rate, f_p50, f_p99, f_cpu)
    log.info("  %-22s %8.1f %9.2f %9.2f %14.2f", "SnmpDriver lifecycle", d_rate, d_p50, d_p99, d_cpu)
    log.info("  ratio driver/floor: throughput %.2fx, CPU per activation %.2fx", d_rate / f_rate, d_cpu / f_cpu)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
