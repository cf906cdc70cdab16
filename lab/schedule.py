"""Which scope goes first when labs run side by side (pytest-xdist, `--dist loadscope`: a
scope, usually a module, runs whole on one worker with its lab): the longest first, so
that the last scope to start is a short one and the workers end close together
(longest-processing-time-first scheduling).

A scope's expected seconds are the sum of its cases' in `testcases/durations.json`
(measured: the case times of a run; `python -m bench suite` writes one as
`results/bench/<stamp>/suite/durations.json`); a case it does not name counts
UNKNOWN_CASE_SECONDS. The unit tests (`tests/`: many, most well under a second) are
named there by module: a module's seconds spread over its collected cases
(`spread_modules`), so that they are short scopes that go last and fill the workers'
ends, not a guess of 2 s a case that put them first. The order is the same on every
worker (xdist compares their collections), and the cases keep their order within a
scope. Pure: no lab imports.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
UNKNOWN_CASE_SECONDS = 2.0
DURATIONS = Path(__file__).resolve().parent.parent / "testcases" / "durations.json"


def _seconds(path: Path, section: str) -> dict[str, float]:
    """One section of the durations file, name -> seconds; empty when the file is missing
    or unreadable or has no such section."""
    try:
        data = json.loads(path.read_text())
        return {str(k): float(v) for k, v in data[section].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def expected_seconds(path: Path = DURATIONS) -> dict[str, float]:
    """Case name (test_s2_sync.test_sync_defer_race) -> seconds."""
    return _seconds(path, "cases")


def module_seconds(path: Path = DURATIONS) -> dict[str, float]:
    """Module path (tests/test_cli.py) -> seconds for the whole module."""
    return _seconds(path, "modules")


def spread_modules(
    items: Sequence[T], module_of: Callable[[T], str], case_of: Callable[[T], str], modules: dict[str, float]
) -> dict[str, float]:
    """Case name -> seconds for the items of the modules `modules` names: each module's
    seconds spread evenly over its items collected here."""
    counts = Counter(module_of(item) for item in items)
    return {
        case_of(item): modules[module] / counts[module]
        for item in items
        if (module := module_of(item)) in modules
    }


def longest_first(
    items: Sequence[T], scope_of: Callable[[T], str], case_of: Callable[[T], str], seconds: dict[str, float]
) -> list[T]:
    """`items` with whole scopes reordered by expected seconds, longest first (ties: as
    collected); the items of one scope keep their order."""
    first_seen: dict[str, int] = {}
    total: dict[str, float] = {}
    for index, item in enumerate(items):
        scope = scope_of(item)
        first_seen.setdefault(scope, index)
        total[scope] = total.get(scope, 0.0) + seconds.get(case_of(item), UNKNOWN_CASE_SECONDS)

    def key(item: T) -> tuple[float, int]:
        scope = scope_of(item)
        return (-total[scope], first_seen[scope])

    return sorted(items, key=key)  # stable: a scope's items keep their order


def durations_from_cases(cases: Sequence[tuple[str, float]]) -> dict[str, float]:
    """(case name, seconds) pairs -> seconds per case, rounded, longest first."""
    return {name: round(s, 1) for name, s in sorted(cases, key=lambda kv: -kv[1])}
