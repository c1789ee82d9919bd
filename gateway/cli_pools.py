"""``agw pools``: the resource pools of a running gateway, through its PoolService (docs/pools.md).

``agw pools list`` shows every pool and how much of it is in use; ``agw pools show NAME`` one
pool and its allocations in use; ``agw pools create NAME --kind ipv4 --prefix 10.64.0.0/16`` (or
``--kind vlan --first 100 --last 199``) defines one, ``agw pools create --file pools.yaml`` every
pool of a pools file. Calls need the permissions pools:read / pools:admin when the gateway runs
with a policy.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from gateway.cli import _json, _table, client_command
from gateway.terminal import shown


@click.group()
def pools() -> None:
    """Resource pools: IPv4/IPv6 prefixes and addresses, VLAN ids, integer ids."""


def _plain(p: Any, *, with_allocations: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "kind": p.kind, "description": p.description,
                           "allocated": p.allocated, "free": int(p.free or 0)}
    if p.kind in ("ipv4", "ipv6"):
        out["prefix"] = p.prefix
    else:
        out["first"], out["last"] = p.first, p.last
    if with_allocations:
        out["allocations"] = [{"value": a.value, "activation_id": a.activation_id, "task_id": a.task_id,
                               "param": a.param, "allocated_at": a.allocated_at.ToDatetime().isoformat() + "Z",
                               "release_activation_id": a.release_activation_id, "release_task_id": a.release_task_id}
                              for a in p.allocations]
    return out


def _range(p: Any) -> str:
    return p.prefix if p.kind in ("ipv4", "ipv6") else f"{p.first}-{p.last}"


@pools.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@client_command
def list_(client: Any, as_json: bool) -> None:
    """List the pools: kind, range, allocations in use, values free."""
    found = client.list_pools()
    if as_json:
        _json([_plain(p) for p in found])
        return
    _table([[p.name, p.kind, _range(p), str(p.allocated), p.free, p.description] for p in found],
           ["POOL", "KIND", "RANGE", "IN USE", "FREE", "DESCRIPTION"])


@pools.command()
@click.argument("name")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Most allocations shown (lowest first).")
@click.option("--json", "as_json", is_flag=True)
@client_command
def show(client: Any, name: str, limit: int, as_json: bool) -> None:
    """Show a pool and its allocations in use."""
    p = client.get_pool(name, limit=limit)
    if as_json:
        _json(_plain(p, with_allocations=True))
        return
    click.echo(shown(f"pool {p.name}: {p.kind} {_range(p)}, {p.allocated} in use, {p.free} free"
                     + (f" ({p.description})" if p.description else "")))
    if p.allocations:
        _table([[a.value, a.activation_id, a.task_id, a.param,
                 f"{a.release_activation_id}/{a.release_task_id}" if a.release_activation_id else ""]
                for a in p.allocations], ["VALUE", "ACTIVATION", "TASK", "PARAMETER", "RELEASED BY (WHEN DONE)"])
        if p.allocated > len(p.allocations):
            click.echo(f"... and {p.allocated - len(p.allocations)} more (--limit)")


@pools.command()
@click.argument("name", required=False, default="")
@click.option("--kind", type=click.Choice(["ipv4", "ipv6", "vlan", "id"]), help="What the pool hands out.")
@click.option("--prefix", default="", help="ipv4/ipv6: the pool's network (10.64.0.0/16).")
@click.option("--first", type=int, default=0, help="vlan/id: the first value.")
@click.option("--last", type=int, default=0, help="vlan/id: the last value.")
@click.option("--description", default="")
@click.option("--file", "file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Every pool of this pools file (YAML, as agw serve --pools reads it) instead of NAME.")
@click.option("--replace", is_flag=True, help="Change an existing pool's definition (refused if it would orphan "
                                              "an allocation in use).")
@click.option("--json", "as_json", is_flag=True)
@client_command
def create(client: Any, name: str, kind: str | None, prefix: str, first: int, last: int, description: str,
           file: Path | None, replace: bool, as_json: bool) -> None:
    """Define a pool (NAME with --kind and --prefix or --first/--last), or the pools of --file."""
    from gateway.api.generated.activation.v1 import pools_pb2 as ppb

    if file is not None:
        if name or kind:
            raise click.UsageError("give NAME with --kind, or --file (not both)")
        from gateway.resources.file import load_pools_file

        wanted = [ppb.Pool(name=d.name, kind=d.kind.value, prefix=d.prefix, first=d.first, last=d.last,
                           description=d.description) for d in load_pools_file(file)]
    else:
        if not name or not kind:
            raise click.UsageError("give NAME and --kind (or --file)")
        wanted = [ppb.Pool(name=name, kind=kind, prefix=prefix, first=first, last=last, description=description)]
    results = [client.create_pool(p, replace=replace) for p in wanted]
    if as_json:
        _json([{**_plain(r.pool), "outcome": r.outcome} for r in results])
        return
    for r in results:
        click.echo(shown(f"pool {r.pool.name}: {r.outcome} ({r.pool.kind} {_range(r.pool)}, "
                         f"{r.pool.allocated} in use)"))
    if not results:
        sys.exit(1)


__all__ = ["pools"]
