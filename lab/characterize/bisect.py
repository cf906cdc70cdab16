"""The idle-time search: find how long a session may stay idle, from rounds of parallel probes.

A probe opens a session, leaves it idle for t seconds, then sends: it answers **alive** (the
session survived t) or **dead**. Every probe of a round runs at once, so a round lasts about
its largest idle time; the search spends few rounds:

1. a geometric grid of `parallel` idle times from `first` up to `maximum` (both included);
2. then, while the bracket (largest alive, smallest dead) is wider than the resolution,
   up to `parallel` probes evenly inside it (no more than the resolution needs).

The resolution at a bracket is max(`resolution_s`, `resolution_rel` x its low end): 1 s or
2 %, whichever is wider (issue 22). Outcomes:

- every probe alive: the timeout is beyond the maximum; bracket (maximum, None);
- every probe dead: the timeout is below the first probe; bracket (0, first), narrowed
  further if that is wider than the resolution;
- **not monotone** (a dead below an alive): counted as noise and kept in `anomalies`.
  The rule: *an alive wins*. A session that answered after idle t proves the device kept it
  for t, whereas a death has innocent causes (a probe's packet lost, a probe that failed to
  start), so the low end is the largest alive time and the high end the smallest dead time
  above it; a dead below the low end changes nothing but the record.

Pure: no lab imports, no clock; `lab.characterize.run` drives it with real probes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Bracket = tuple[float, float | None]

MAX_ROUNDS = 40  # a guard against a search that cannot narrow (floats, a caller's bad results)


@dataclass(frozen=True)
class Round:
    """One round: what it probed and saw, and the bracket after it."""

    index: int  # 1-based
    probes: tuple[tuple[float, bool], ...]  # (idle s, alive), by idle time
    low: float
    high: float | None

    @property
    def longest(self) -> float:
        """The largest idle time probed: how long the round took, less setup."""
        return max((t for t, _ in self.probes), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (profile.json's probe details)."""
        return {
            "round": self.index,
            "probes": [[t, alive] for t, alive in self.probes],
            "bracket": [self.low, self.high],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Round:
        """The inverse of `to_dict`."""
        low, high = data["bracket"]
        probes = tuple((float(t), bool(alive)) for t, alive in data["probes"])
        return cls(int(data["round"]), probes, float(low), None if high is None else float(high))


@dataclass
class IdleSearch:
    """The idle-time search; call `next_round()`, run its probes, `record()` the outcomes, repeat
    until `next_round()` is empty; then read `bracket`."""

    maximum: float
    parallel: int = 8
    first: float = 1.0
    resolution_s: float = 1.0
    resolution_rel: float = 0.02
    rounds: list[Round] = field(default_factory=list, init=False)
    anomalies: list[str] = field(default_factory=list, init=False)
    _seen: dict[float, list[bool]] = field(default_factory=dict, init=False, repr=False)
    _pending: list[float] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        problems = []
        if self.parallel < 1:
            problems.append(f"parallel must be at least 1, not {self.parallel}")
        if self.first <= 0:
            problems.append(f"the first idle time must be above 0 s, not {self.first}")
        if self.maximum < self.first:
            problems.append(f"the maximum ({self.maximum} s) is below the first idle time ({self.first} s)")
        if self.resolution_s <= 0 and self.resolution_rel <= 0:
            problems.append("the resolution must be above 0 (seconds or relative)")
        if problems:
            raise ValueError("; ".join(problems))

    # -- the state ---------------------------------------------------------------------------

    @property
    def bracket(self) -> Bracket:
        """(low, high): alive after `low` s idle, dead after `high` s; high None: alive at the
        maximum. Before any result: (0, None)."""
        alive = [t for t, outcomes in self._seen.items() if any(outcomes)]
        low = max(alive, default=0.0)
        dead = [t for t, outcomes in self._seen.items() if not any(outcomes) and t > low]
        return low, min(dead, default=None)

    def resolution(self, low: float) -> float:
        """The bracket width the search stops at: 1 s or 2 % of the low end, the wider."""
        return max(self.resolution_s, self.resolution_rel * low)

    @property
    def done(self) -> bool:
        """True once the bracket is narrow enough, the timeout is beyond the maximum, or the
        round guard is reached."""
        if not self.rounds:
            return False
        if len(self.rounds) >= MAX_ROUNDS:
            return True
        low, high = self.bracket
        if high is None:
            return low >= self.maximum
        return high - low <= self.resolution(low)

    # -- the protocol ------------------------------------------------------------------------

    def next_round(self) -> list[float]:
        """The idle times to probe next, ascending; [] when the search is done. Asked again
        before `record`, it answers the same round."""
        if self._pending:
            return list(self._pending)
        if self.done:
            return []
        if not self.rounds:
            times = self._grid()
        else:
            low, high = self.bracket
            times = self._inside(low, self.maximum if high is None else high)
            if high is None and self.maximum not in self._seen:  # its probe did not run: again
                times = [*times[: self.parallel - 1], self.maximum]
        self._pending = times
        return list(times)

    def record(self, results: Mapping[float, bool]) -> Round:
        """Take one round's outcomes (idle time -> alive); a probe that did not run may be left
        out. Notes every death below a survival as an anomaly."""
        if not results:
            raise ValueError("a round needs at least one probe's result")
        for t, alive in results.items():
            self._seen.setdefault(float(t), []).append(bool(alive))
        low, high = self.bracket
        for t, outcomes in sorted(self._seen.items()):
            head = f"dead after {t:g} s idle"
            if t <= low and not all(outcomes) and not any(a.startswith(head) for a in self.anomalies):
                self.anomalies.append(f"{head} although alive after {low:g} s: counted as noise")
        probes = tuple(sorted((float(t), bool(a)) for t, a in results.items()))
        done = Round(len(self.rounds) + 1, probes, low, high)
        self.rounds.append(done)
        self._pending = []
        return done

    # -- the plan ----------------------------------------------------------------------------

    def _grid(self) -> list[float]:
        """Round 1: `parallel` idle times, geometric from `first` to `maximum`."""
        n = self.parallel
        if n == 1 or self.maximum == self.first:
            return [self.maximum]
        ratio = (self.maximum / self.first) ** (1 / (n - 1))
        times = [_tidy(self.first * ratio**i) for i in range(n - 1)]
        return sorted({*times, self.maximum})

    def _inside(self, low: float, high: float) -> list[float]:
        """Probes evenly inside (low, high): as many as reach the resolution in one round, at
        most `parallel`."""
        width = high - low
        needed = max(1, math.ceil(width / self.resolution(low)) - 1)
        n = min(self.parallel, needed)
        times = {_tidy(low + width * i / (n + 1)) for i in range(1, n + 1)}
        return sorted(t for t in times if low < t < high)

    # -- what it will cost -------------------------------------------------------------------

    def estimate_seconds(self, app_timeout: float, setup_s: float = 2.0) -> float:
        """The worst-case wall time of the whole search (s): each round lasts its largest idle
        time + `app_timeout` (a probe's answer) + `setup_s` (opening the sessions). Worst over
        a timeout in each gap of the first grid, beyond the maximum and below the first probe."""
        grid = self._grid()
        candidates = [self.first / 2, self.maximum * 2]
        candidates += [(a + b) / 2 for a, b in zip([0.0, *grid], grid, strict=False)]
        candidates += [b - self.resolution(b) / 4 for b in grid]  # just below a probe: the most rounds
        return max(self._simulated(c, app_timeout, setup_s) for c in candidates)

    def _simulated(self, timeout: float, app_timeout: float, setup_s: float) -> float:
        """The wall time of this search against an ideal device whose sessions live `timeout` s."""
        twin = IdleSearch(self.maximum, self.parallel, self.first, self.resolution_s, self.resolution_rel)
        total = 0.0
        while times := twin.next_round():
            twin.record({t: t < timeout for t in times})
            total += max(times) + app_timeout + setup_s
        return total


def _tidy(t: float) -> float:
    """An idle time a person can read in a log: milliseconds."""
    return round(t, 3)


def duration_words(seconds: float) -> str:
    """'1 h 30 min' for a wall time the CLI announces before it starts."""
    s = int(round(seconds))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"
