"""Link impairment without netem: the decisions of the relay element, free of sockets.

The element (`lab/agents/impair_relay.py`) sits in a namespace of its own between the two
ends of a link and forwards every frame, whatever its protocol, from one interface to the
other. For each frame the `Direction` here decides when to send it and how many copies: none
(lost), one, or two (duplicated); at once (reordered ahead of the delayed ones) or after the
delay plus a uniform jitter. A heap of send times is the timing wheel.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from lab.config import Impairment

T = TypeVar("T")


@dataclass
class Direction:
    """One direction of an impaired link."""

    impairment: Impairment = field(default_factory=Impairment)
    rng: random.Random = field(default_factory=random.Random)

    def plan(self, now: float) -> list[float]:
        """When to send the copies of a frame that arrived at `now` ([] if it is lost)."""
        imp = self.impairment
        if imp.loss and self.rng.random() * 100 < imp.loss:
            return []
        copies = 2 if imp.duplicate and self.rng.random() * 100 < imp.duplicate else 1
        if imp.reorder and self.rng.random() * 100 < imp.reorder:
            return [now] * copies
        delay = imp.delay + (self.rng.uniform(-imp.jitter, imp.jitter) if imp.jitter else 0.0)
        return [now + max(0.0, delay)] * copies


class Wheel(Generic[T]):
    """Frames waiting to be sent, earliest first (ties keep their arrival order)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._count = 0

    def add(self, when: float, item: T) -> None:
        self._count += 1
        heapq.heappush(self._heap, (when, self._count, item))

    def due(self, now: float) -> list[T]:
        """Everything whose time has come, in send order."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)


@dataclass
class Alarm:
    """When to wake up for the next frame. A sleeping process wakes late (a VM's timers:
    0.3-0.6 ms here), which would add to every delay; so it sleeps shorter by the lateness
    it measured (a moving average, at most `max_early`) and spins the rest."""

    max_early: float = 0.002
    early: float = 0.0
    _target: float | None = None

    def timeout(self, due: float | None, now: float) -> float | None:
        """How long to sleep for a frame due at `due` (None: nothing waiting)."""
        if due is None:
            self._target = None
            return None
        timeout = max(0.0, due - now - self.early)
        self._target = now + timeout if timeout > 0 else None
        return timeout

    def woke(self, now: float, by_timer: bool) -> None:
        """After the sleep: learn how late the timer woke us (only a real sleep counts)."""
        if by_timer and self._target is not None:
            late = max(0.0, now - self._target)
            self.early = min(self.max_early, 0.9 * self.early + 0.1 * late)
        self._target = None
