"""Resource pools: IPv4/IPv6 prefixes and addresses, VLAN ids, integer ids (docs/pools.md).

Pure logic only: pool definitions and values (:mod:`.pools`), the free-list arithmetic
(:mod:`.allocator`), allocation requests in task parameters (:mod:`.params`), the pools file
(:mod:`.file`). The journal keeps the pools and their allocations (:mod:`gateway.journal.pools`).
"""

from gateway.resources.allocator import fit, fits, free_ranges, merge, split
from gateway.resources.params import AllocationRequest, ReleaseRequest, find, substitute
from gateway.resources.pools import PoolDef, PoolDefinitionError, PoolKind, parse_pool

__all__ = ["AllocationRequest", "PoolDef", "PoolDefinitionError", "PoolKind", "ReleaseRequest", "find", "fit", "fits",
           "free_ranges", "merge", "parse_pool", "split", "substitute"]
