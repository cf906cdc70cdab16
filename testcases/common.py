"""What the lab suites share: case ids, and the closing figures' collections.

A scenario split over several modules closes with a figure of every variant (S1's outcome
against idle time, S5's success rate against attack rate). Its cases put what they
measured into the scenario's collection (the `collected` fixture of testcases/conftest.py,
one per scenario for the whole run); the closing case reads it. One rule for a partial
selection (`-k`, a case by name): the closing case runs the variants the selection left
out itself (`rerun_missing`), so its figure always has every variant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# Two labs side by side for the harness's own tests (`run -n 2`, `--host` twice): test_links'
# module and S5's stateful-vs-stateless case. Not the rate case (test_links_rate, a module
# of its own since 2026-12-04): the impairment element spins out its delays on a core, so
# beside another lab its TCP rate falls short (it runs alone: testcases/scheduling.py).
TWO_LABS = "(links and not rate_limit) or same_intent"

# S6's idle-time searches in the lab (timeouts of 1-10 s): 24 probes a round place every
# timeout in that range within the resolution (1 s or 2 %) in the first round, 13.5 s at
# worst (IdleSearch.estimate_seconds); 8 needed a second round for most (20-26 s).
S6_PARALLEL = 24


def dashed(value: str) -> str:
    """A case id without spaces, so that `-k` and node ids select it as typed."""
    return value.replace(" ", "-")


class Collections:
    """The run's closing-figure collections, one per scenario (`s1`, `s5`...): variant
    name -> what its case measured, whichever module the case is in."""

    def __init__(self) -> None:
        self._by_scenario: dict[str, dict[str, Any]] = {}

    def of(self, scenario: str) -> dict[str, Any]:
        """The scenario's collection (empty until one of its cases adds to it)."""
        return self._by_scenario.setdefault(scenario, {})


def rerun_missing(
    collected: dict[str, Any], variants: Iterable[str], run: Callable[[str], object]
) -> list[str]:
    """The closing figure's rule for a partial selection: `run(name)` (which adds the
    variant to `collected`) for every variant no case of this run has collected yet, in
    order; their names, for the closing case's figures."""
    missing = [name for name in variants if name not in collected]
    for name in missing:
        run(name)
    return missing
