"""What every benchmark measures about a run: count, wall time, CPU, latencies."""

from __future__ import annotations

import os
from dataclasses import dataclass


def box_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, every process: the lab's daemons
    too), from /proc/stat; the difference over a run is the run's total CPU cost."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def percentile_ms(latencies_s: tuple[float, ...] | list[float], q: float) -> float:
    """The q-quantile (0..1) of latencies given in seconds, in milliseconds (nan when empty)."""
    lat = sorted(latencies_s)
    return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")


@dataclass(frozen=True, kw_only=True)
class Figures:
    acts: int
    wall_s: float
    cpu_s: float
    latencies_s: tuple[float, ...]

    @property
    def rate(self) -> float:
        return self.acts / self.wall_s

    @property
    def cpu_ms_per_act(self) -> float:
        return self.cpu_s / self.acts * 1000

    def pct_ms(self, q: float) -> float:
        return percentile_ms(self.latencies_s, q)


__all__ = ["Figures", "box_busy_s", "percentile_ms"]
