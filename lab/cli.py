"""``agw lab``: up, down, status, fault, inventory."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click

from lab.api import Lab, fleet_timeout_s
from lab.errors import LabError


def _pick(name: str | None) -> Lab:
    if name:
        return Lab.attach(name)
    labs = Lab.running()
    if len(labs) == 1:
        return Lab.attach(labs[0])
    if not labs:
        raise click.ClickException("no lab is running (start one with `agw lab up TOPOLOGY`)")
    raise click.ClickException(f"several labs are running ({', '.join(labs)}): name one with --lab")


def _fail(exc: LabError) -> None:
    raise click.ClickException(str(exc)) from exc


@click.group()
def lab() -> None:
    """A containerlab-style lab of real device daemons in network namespaces (needs root)."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("asyncssh").setLevel(logging.WARNING)  # one line per probe otherwise


@lab.command()
@click.argument("topology", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fleet", type=click.IntRange(1, 2000), help="Instead of TOPOLOGY: a fleet of N routers r1..rN.")
@click.option("--netconf-only", is_flag=True,
              help="With --fleet: NETCONF devices only (netconfd behind sshd; no FRR, no snmpd): ~4 MB each.")
@click.option("--name", default="fleet", show_default=True, help="Lab name of a --fleet lab.")
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True,
              help="Readiness timeout (s); a --fleet lab waits at least 120 s plus 0.2 s per node.")
def up(topology: Path | None, fleet: int | None, netconf_only: bool, name: str, timeout_s: float) -> None:
    """Bring TOPOLOGY up (idempotent) and wait until every node answers."""
    if (topology is None) == (fleet is None):
        raise click.UsageError("give either TOPOLOGY or --fleet N")
    if netconf_only and fleet is None:
        raise click.UsageError("--netconf-only goes with --fleet N")
    t0 = time.monotonic()
    try:
        if fleet:
            lb = Lab.up_fleet(fleet, name=name, timeout_s=max(timeout_s, fleet_timeout_s(fleet)),
                              netconf_only=netconf_only)
        else:
            lb = Lab.up(topology, timeout_s=timeout_s)  # type: ignore[arg-type]
    except LabError as exc:
        _fail(exc)
    click.echo(f"lab {lb.name} up: {len(lb.nodes)} nodes in {time.monotonic() - t0:.1f} s; inventory: {lb.inventory_path}")
    for n in lb.nodes.values():
        click.echo(f"  {n.name:<12} {n.kind:<8} {n.address:<16} {' '.join(f'{p}:{port}' for p, port in n.ports.items())}")


@lab.command()
@click.argument("name", required=False)
@click.option("--all", "all_", is_flag=True, help="Bring every lab down.")
def down(name: str | None, all_: bool) -> None:
    """Remove every namespace, process, veth, mount and route of lab NAME."""
    try:
        labs = [Lab.attach(n) for n in Lab.running()] if all_ else [_pick(name)]
        for lb in labs:
            lb.down()
            click.echo(f"lab {lb.name} down")
    except LabError as exc:
        _fail(exc)


@lab.command()
@click.option("--lab", "name", help="Lab name (default: the only running lab).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(name: str | None, as_json: bool) -> None:
    """Node, kind, address and readiness per protocol."""
    try:
        lb = _pick(name)
        rows = lb.status()
    except LabError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"lab": lb.name, "nodes": [r.to_json() for r in rows]}, indent=2))
        return
    click.echo(f"lab {lb.name}")
    for r in rows:
        ready = " ".join(f"{p}:{'ok' if ok else 'DOWN'}" for p, ok in r.ready.items())
        bad = [f"{d}:{s}" for d, s in r.daemons.items() if s != "running"]
        faults = " ".join(f"{k}={v}" if v is not True else k for k, v in r.faults.items())
        extra = "  " + " ".join(bad + ([f"faults[{faults}]"] if faults else [])) if bad or faults else ""
        click.echo(f"  {r.node:<12} {r.kind:<8} {r.address:<16} {ready}{extra}")
    if not all(all(r.ready.values()) for r in rows):
        sys.exit(1)


@lab.command()
@click.argument("node")
@click.argument("action", type=click.Choice(["cut", "restore", "loss", "delay", "rate", "kill", "restart", "stop", "cont",
                                             "rekey"]))
@click.argument("arg", required=False)
@click.option("--lab", "name", help="Lab name (default: the only running lab).")
def fault(node: str, action: str, arg: str | None, name: str | None) -> None:
    """Inject a fault: cut | restore | loss PCT | delay MS | rate KBIT | kill|restart|stop|cont DAEMON | rekey.

    rekey gives NODE a new SSH host key (its sshd restarted): the lab's known_hosts still holds the
    old one, so the gateway refuses the node as "host key changed". restore puts the original back."""
    value: float | None = None
    daemon: str | None = None
    if action in ("loss", "delay", "rate"):
        if arg is None:
            raise click.UsageError(f"{action} needs a number")
        try:
            value = float(arg)
        except ValueError:
            raise click.UsageError(f"{action} needs a number, got {arg!r}") from None
    elif action in ("kill", "restart", "stop", "cont"):
        daemon = arg
    elif arg is not None:
        raise click.UsageError(f"{action} takes no argument")
    try:
        _pick(name).fault(node, action, value, daemon)
    except LabError as exc:
        _fail(exc)
    click.echo(f"{node}: {action}{' ' + arg if arg else ''}")


@lab.command()
@click.option("--lab", "name", help="Lab name (default: the only running lab).")
def inventory(name: str | None) -> None:
    """Print the gateway inventory of the running lab (YAML, usable as-is).

    Also (re)writes the lab's known_hosts file (every node's current SSH host key, beside its
    credentials file), which the inventory names; after a rekey this accepts the new key."""
    try:
        lb = _pick(name)
        lb.write_known_hosts()
        click.echo(lb.inventory_yaml(), nl=False)
    except LabError as exc:
        _fail(exc)
    except OSError as exc:
        raise click.ClickException(f"writing the lab's known_hosts file: {exc}") from exc


__all__ = ["lab"]
