"""The allocator's arithmetic on free lists. Pure.

A pool's free space is kept as a list of disjoint free ranges ``[lo, hi]`` (inclusive integers),
ordered by ``lo``: one range for a new pool, split by each allocation, merged back by each
release. Allocating a value of size ``2**k`` takes the lowest block aligned on its size that fits
in a free range (:func:`fit`), reading the free ranges in order and stopping at the first fit; a
single address or VLAN takes the start of the first free range. The journal
(:mod:`gateway.journal.pools`) stores the ranges and reads them through an index, so an
allocation costs a few indexed rows, however many values the pool has handed out.
"""

from __future__ import annotations

from typing import Iterable, Iterator


def aligned_start(lo: int, size: int) -> int:
    """The lowest multiple of ``size`` (a power of two) at or above ``lo``."""
    return (lo + size - 1) // size * size


def fits(lo: int, hi: int, size: int) -> int | None:
    """The start of the lowest block of ``size`` (a power of two) aligned on its size inside
    ``[lo, hi]``, or None."""
    if hi - lo + 1 < size:
        return None
    start = aligned_start(lo, size)
    return start if start + size - 1 <= hi else None


def fit(free: Iterable[tuple[int, int]], size: int) -> tuple[int, int, int] | None:
    """The first fit in free ranges read in order: ``(start, lo, hi)`` (the block's start and the
    free range it is cut from), or None when no range holds an aligned block of ``size``."""
    for lo, hi in free:
        start = fits(lo, hi, size)
        if start is not None:
            return start, lo, hi
    return None


def split(lo: int, hi: int, start: int, size: int) -> list[tuple[int, int]]:
    """What is left of the free range ``[lo, hi]`` once ``[start, start + size)`` is taken: zero,
    one or two ranges."""
    end = start + size - 1
    if not (lo <= start and end <= hi):
        raise ValueError(f"block [{start}, {end}] is not inside the free range [{lo}, {hi}]")
    out = []
    if start > lo:
        out.append((lo, start - 1))
    if end < hi:
        out.append((end + 1, hi))
    return out


def merge(start: int, end: int, before: tuple[int, int] | None, after: tuple[int, int] | None) -> tuple[int, int]:
    """The free range ``[start, end]`` given back, joined with the free range that ends right
    before it and the one that starts right after it (either may be None)."""
    if before is not None:
        if before[1] != start - 1:
            raise ValueError(f"free range {before} does not end right before {start}")
        start = before[0]
    if after is not None:
        if after[0] != end + 1:
            raise ValueError(f"free range {after} does not start right after {end}")
        end = after[1]
    return start, end


def free_ranges(lo: int, hi: int, taken: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """The free ranges of ``[lo, hi]`` around the ``taken`` blocks (sorted by start, disjoint,
    inside ``[lo, hi]``): what a pool's free list is rebuilt from when its definition changes."""
    at = lo
    for start, end in taken:
        if start < at or end > hi:
            raise ValueError(f"block [{start}, {end}] overlaps another or leaves [{lo}, {hi}]")
        if start > at:
            yield at, start - 1
        at = end + 1
    if at <= hi:
        yield at, hi


def span_bits(lo: int, hi: int) -> int:
    """``floor(log2(hi - lo + 1))``: a free range can hold a block of ``2**k`` only if this is >= k
    (stored beside each range, so a search for a large block skips the small ranges)."""
    return (hi - lo + 1).bit_length() - 1


__all__ = ["aligned_start", "fit", "fits", "free_ranges", "merge", "span_bits", "split"]
