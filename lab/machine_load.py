"""How punctual this machine is right now: timer lateness, CPU steal and how busy the CPUs
already are, measured over about a second (`sessionlab doctor`).

The suites' timing claims rest on margins: a client load whose slowest wait came within
MIN_MARGIN (0.5 s) of its timeout fails its case, and S1-S6 time idle periods and
timeouts in whole or half seconds. A VM whose timers fire late, whose hypervisor steals
CPU time, or whose CPUs another process keeps busy, eats into those margins: the checks
say so before a run does, with the numbers.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from lab.traffic import MIN_MARGIN

TICK = 0.01  # s: the sleeps whose lateness is measured
# Beyond these the margins are at risk: a timer late by a fifth of the margin at its 99th
# percentile, or by half of it once, leaves too little for the work the wait covers.
LATE_P99_LIMIT = MIN_MARGIN / 5
LATE_MAX_LIMIT = MIN_MARGIN / 2
STEAL_LIMIT = 0.05  # of the CPU time: a hypervisor taking more slows every timer-driven case
BUSY_LIMIT = 0.5  # of all CPUs busy before a run starts: labs side by side then share too little


@dataclass(frozen=True)
class CpuTimes:
    """/proc/stat's first line: total, idle (idle + iowait) and steal jiffies."""

    total: int
    idle: int
    steal: int

    @classmethod
    def read(cls, path: Path = Path("/proc/stat")) -> CpuTimes:
        return cls.parse(path.read_text())

    @classmethod
    def parse(cls, text: str) -> CpuTimes:
        fields = [int(x) for x in text.splitlines()[0].split()[1:]]
        # user nice system idle iowait irq softirq steal guest guest_nice: guests are in user
        total = sum(fields[:8])
        return cls(total, fields[3] + fields[4], fields[7] if len(fields) > 7 else 0)


@dataclass(frozen=True)
class Punctuality:
    """One measurement: timer lateness (s) and the CPU shares over its time."""

    sleeps: int
    late_median: float
    late_p99: float
    late_max: float
    steal: float  # share of CPU time stolen by the hypervisor
    busy: float  # share of all CPUs' time spent busy (this measurement's own share is tiny)

    def problems(self) -> list[str]:
        """What is beyond what the suites' margins allow, each with its number and limit."""
        found = []
        if self.late_p99 > LATE_P99_LIMIT:
            found.append(
                f"timers late {1000 * self.late_p99:.0f} ms at p99 (limit {1000 * LATE_P99_LIMIT:.0f})"
            )
        if self.late_max > LATE_MAX_LIMIT:
            found.append(f"a timer late {1000 * self.late_max:.0f} ms (limit {1000 * LATE_MAX_LIMIT:.0f})")
        if self.steal > STEAL_LIMIT:
            found.append(f"CPU steal {100 * self.steal:.0f} % (limit {100 * STEAL_LIMIT:.0f} %)")
        if self.busy > BUSY_LIMIT:
            found.append(f"CPUs {100 * self.busy:.0f} % busy already (limit {100 * BUSY_LIMIT:.0f} %)")
        return found

    def summary(self) -> str:
        return (
            f"timers late {1000 * self.late_median:.2f} ms median, {1000 * self.late_p99:.1f} p99, "
            f"{1000 * self.late_max:.1f} max ({self.sleeps} sleeps of {1000 * TICK:.0f} ms); "
            f"CPU steal {100 * self.steal:.1f} %, CPUs busy {100 * self.busy:.0f} %"
        )


def shares(before: CpuTimes, after: CpuTimes) -> tuple[float, float]:
    """(steal, busy) shares of the CPU time between two readings."""
    total = max(1, after.total - before.total)
    steal = (after.steal - before.steal) / total
    busy = 1 - (after.idle - before.idle) / total - steal
    return max(0.0, steal), max(0.0, busy)


def lateness(late: list[float]) -> tuple[float, float, float]:
    """(median, p99, max) of timer lateness values (s)."""
    ordered = sorted(late)
    rank = max(0, math.ceil(0.99 * len(ordered)) - 1)  # nearest rank
    return statistics.median(ordered), ordered[rank], ordered[-1]


def measure(seconds: float = 1.0) -> Punctuality:
    """Sleep TICK again and again for `seconds`, noting how late each wake-up was, and read
    the CPU times around it."""
    before = CpuTimes.read()
    late = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        time.sleep(TICK)
        late.append(max(0.0, time.monotonic() - start - TICK))
    after = CpuTimes.read()
    steal, busy = shares(before, after)
    median, p99, worst = lateness(late)
    return Punctuality(len(late), median, p99, worst, steal, busy)
