"""Which lab module goes first when labs run side by side (pytest-xdist, `--dist
loadscope`): the longest first, so that the last module to start is a short one and the
workers end close together (longest-processing-time-first scheduling).

A module's expected seconds come from `testcases/durations.json` (measured: a default
run's case times per module; `python -m bench suite` writes one as
`results/bench/<stamp>/suite/durations.json`); a module it does not
name counts as one minute. The order is the same on every worker (xdist compares their
collections), and the cases keep their order within a module. Pure: no lab imports.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
UNKNOWN_SECONDS = 60.0
DURATIONS = Path(__file__).resolve().parent.parent / "testcases" / "durations.json"


def expected_seconds(path: Path = DURATIONS) -> dict[str, float]:
    """Module file name (test_s2_sync.py) -> seconds; empty when the file is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
        return {str(k): float(v) for k, v in data["modules"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def longest_first(items: Sequence[T], module_of: Callable[[T], str], seconds: dict[str, float]) -> list[T]:
    """`items` with whole modules reordered by expected seconds, longest first (ties: as
    collected); the items of one module stay together and in their order."""
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        first_seen.setdefault(module_of(item), index)

    def key(item: T) -> tuple[float, int]:
        module = module_of(item)
        return (-seconds.get(module, UNKNOWN_SECONDS), first_seen[module])

    return sorted(items, key=key)  # stable: a module's items keep their order


def durations_from_cases(cases: Sequence[tuple[str, float]]) -> dict[str, float]:
    """(module file name, case seconds) pairs -> seconds per module, rounded."""
    total: dict[str, float] = {}
    for module, seconds in cases:
        total[module] = total.get(module, 0.0) + seconds
    return {m: round(s, 1) for m, s in sorted(total.items(), key=lambda kv: -kv[1])}
