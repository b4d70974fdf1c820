"""How much of the machine other processes used while a benchmark ran, measured rather than guessed.

The busy time of all CPUs (/proc/stat) minus this process's own CPU time and its reaped children's
(servers a suite starts and stops) is the work of everything else: a figure measured beside it is noisy
by about that share.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CpuSample:
    busy_s: float  # all CPUs, since boot
    total_s: float
    own_s: float  # this process and its reaped children, user + system


def sample() -> CpuSample | None:
    """None where /proc/stat is missing (not Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    own = sum(
        r.ru_utime + r.ru_stime
        for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    return CpuSample(busy_s=(sum(fields) - idle) / ticks, total_s=sum(fields) / ticks, own_s=own)


def others_share(start: CpuSample | None, end: CpuSample | None) -> float | None:
    """Fraction (0..1) of the machine's CPU capacity other processes used between two samples."""
    if start is None or end is None or end.total_s <= start.total_s:
        return None
    others = (end.busy_s - start.busy_s) - (end.own_s - start.own_s)
    return min(1.0, max(0.0, others / (end.total_s - start.total_s)))


def contention_note(share: float | None) -> str:
    if share is None:
        return ""
    if share < 0.05:
        return f"Other processes used {100 * share:.0f}% of the CPUs during this run: a quiet machine."
    return (
        f"Other processes used {100 * share:.0f}% of the CPUs during this run: absolute figures are "
        "inflated by about that much; ratios measured in the same run are steadier."
    )
