"""Link impairments as typed data: what one direction of a link does to its frames, read
from Mininet-style link options (delay="25ms", loss=2) with every problem named at once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lab.config import checks

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(us|ms|s)\s*$")
IMPAIRMENT_OPTIONS = ("delay", "jitter", "loss", "reorder", "duplicate")


@dataclass(frozen=True)
class Impairment:
    """What one direction of a link does to its frames: delay with uniform jitter (s),
    and the percentages lost, duplicated, and sent at once ahead of delayed ones
    (reordered)."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0

    @property
    def active(self) -> bool:
        return any((self.delay, self.jitter, self.loss, self.reorder, self.duplicate))

    def describe(self) -> str:
        """In a report's words: "25 ms +/- 5 ms, loss 2 %", or "none"."""
        parts = []
        if self.delay:
            parts.append(
                f"{self.delay * 1000:g} ms" + (f" +/- {self.jitter * 1000:g} ms" if self.jitter else "")
            )
        parts += [f"{name} {value:g} %" for name, value in self._shares() if value]
        return ", ".join(parts) or "none"

    def _shares(self) -> tuple[tuple[str, float], ...]:
        return (("loss", self.loss), ("reorder", self.reorder), ("duplicate", self.duplicate))

    def problems(self) -> list[str]:
        """Every problem with an impairment built in code (`impairment_from` checks the
        options it reads): negative times, jitter beyond the delay, shares beyond 0-100 %."""
        problems = [
            f"{key}: {value!r} s is negative"
            for key, value in (("delay", self.delay), ("jitter", self.jitter))
            if value < 0
        ]
        if self.jitter > self.delay:
            problems.append(f"jitter: {self.jitter!r} s is larger than the delay {self.delay!r} s")
        problems += [
            f"{name}: {value!r} is not a percentage (0-100)"
            for name, value in self._shares()
            if not 0 <= value <= 100
        ]
        return problems


def _duration(value: object, key: str, problems: list[str]) -> float:
    """Seconds from a Mininet-style duration ("25ms", "1.5s", "200us")."""
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if match is None:
        problems.append(f"{key} {value!r} is not a duration with a unit (us, ms, s), e.g. '25ms'")
        return 0.0
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        problems.append(f"{key} {value!r} is negative")
    return max(seconds, 0.0)


def _percent(value: object, key: str, problems: list[str]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        problems.append(f"{key} {value!r} is not a percentage (0-100)")
        return 0.0
    return float(value)


def impairment_from(link: str, options: Mapping[str, Any]) -> Impairment:
    """An Impairment from Mininet-style link options (delay="25ms", jitter="5ms", loss=2,
    reorder=1, duplicate=1); every problem is reported at once, naming the link."""
    problems: list[str] = []
    delay, jitter = (
        _duration(options[k], k, problems) if options.get(k) not in (None, 0) else 0.0
        for k in ("delay", "jitter")
    )
    if jitter and not delay:
        problems.append("jitter needs a delay")
    elif jitter > delay:
        problems.append(f"jitter {options['jitter']!r} is larger than the delay {options['delay']!r}")
    percents = {k: _percent(options.get(k) or 0, k, problems) for k in ("loss", "reorder", "duplicate")}
    checks.refuse(problems, f"link {link}")
    return Impairment(delay=delay, jitter=jitter, **percents)
