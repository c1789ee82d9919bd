"""The pools file given to ``agw serve --pools FILE`` (YAML)::

    pools:
      customer-v4: {kind: ipv4, prefix: 10.64.0.0/16, description: customer links}
      lab-v6:      {kind: ipv6, prefix: "2001:db8:100::/48"}
      access-vlans: {kind: vlan, first: 100, last: 199}
      vpn-ids:     {kind: id, first: 1000, last: 1999}

Every problem is reported at once, naming the file and the pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.errors import ConfigurationError
from gateway.inventory._yaml import load_yaml_file
from gateway.resources.pools import PoolDef, PoolDefinitionError, parse_pool

MAX_POOLS = 10_000


def parse_pools(data: Any, *, source: str = "<pools>") -> list[PoolDef]:
    if not isinstance(data, dict) or set(data) != {"pools"} or not isinstance(data["pools"], dict):
        raise ConfigurationError(f"{source}: a pools file is a mapping with one key, pools (pool name -> definition)")
    raw = data["pools"]
    if len(raw) > MAX_POOLS:
        raise ConfigurationError(f"{source}: {len(raw)} pools, more than the limit of {MAX_POOLS}")
    problems: list[str] = []
    out: list[PoolDef] = []
    for name, spec in raw.items():
        try:
            out.append(parse_pool(name, spec))
        except PoolDefinitionError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigurationError(f"{source}: " + "; ".join(problems))
    return out


def load_pools_file(path: Path) -> list[PoolDef]:
    return parse_pools(load_yaml_file(Path(path)), source=str(path))


__all__ = ["MAX_POOLS", "load_pools_file", "parse_pools"]
