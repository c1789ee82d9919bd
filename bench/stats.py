"""What every benchmark measures about a run: count, wall time, CPU, latencies."""

from __future__ import annotations

from dataclasses import dataclass


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


__all__ = ["Figures", "percentile_ms"]
