"""Paired measurements: a figure of the lab against its baseline, both measured in the same
run, alternating which goes first in each repetition (a slow drift of the machine then
weighs on both alike). Pure: unit-tested in tests/test_bench.py."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figure:
    """One row of the table: the lab's samples and its baseline's, with a target on the
    ratio (lab / baseline) or on the lab's own median, whichever the benchmark states."""

    what: str
    unit: str
    samples: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    baseline_name: str = ""
    max_ratio: float | None = None  # met when ratio <= this (times: lower is better)
    min_ratio: float | None = None  # met when ratio >= this (rates: higher is better)
    max_value: float | None = None  # met when the lab's median <= this
    min_value: float | None = None  # met when the lab's median >= this

    @property
    def ratio(self) -> float | None:
        """The median of the pairs' ratios (each repetition's lab over its own baseline)."""
        pairs = [a / b for a, b in zip(self.samples, self.baseline, strict=False) if b]
        return statistics.median(pairs) if pairs else None

    @property
    def target(self) -> str:
        parts = []
        if self.max_ratio is not None:
            parts.append(f"<= {self.max_ratio:g}x")
        if self.min_ratio is not None:
            parts.append(f">= {self.min_ratio:g}x")
        if self.max_value is not None:
            parts.append(f"<= {self.max_value:g} {self.unit}")
        if self.min_value is not None:
            parts.append(f">= {self.min_value:g} {self.unit}")
        return ", ".join(parts)

    @property
    def met(self) -> bool | None:
        """Whether every stated target is met; None when there is none (a figure shown
        for where the time goes)."""
        if not self.target:
            return None
        ratio, value = self.ratio, statistics.median(self.samples) if self.samples else None
        checks = []
        if self.max_ratio is not None:
            checks.append(ratio is not None and ratio <= self.max_ratio)
        if self.min_ratio is not None:
            checks.append(ratio is not None and ratio >= self.min_ratio)
        if self.max_value is not None:
            checks.append(value is not None and value <= self.max_value)
        if self.min_value is not None:
            checks.append(value is not None and value >= self.min_value)
        return all(checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "unit": self.unit,
            "samples": self.samples,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "now": spread(self.samples),
            "base": spread(self.baseline),
            "ratio": None if self.ratio is None else round(self.ratio, 3),
            "target": self.target,
            "met": self.met,
        }


def spread(values: Sequence[float]) -> str:
    """`median (min-max)` with three significant figures, or '' for no values."""
    if not values:
        return ""
    return f"{_fmt(statistics.median(values))} ({_fmt(min(values))}-{_fmt(max(values))})"


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def paired(
    figure: Figure, lab: Callable[[], float], baseline: Callable[[], float] | None, repeat: int
) -> Figure:
    """Measure `lab` and `baseline` `repeat` times each, alternating which goes first."""
    for n in range(repeat):
        order = [("lab", lab), ("baseline", baseline)]
        if n % 2:
            order.reverse()
        for which, measure in order:
            if measure is None:
                continue
            (figure.samples if which == "lab" else figure.baseline).append(measure())
    return figure


def table(title: str, rows: Sequence[dict[str, Any]]) -> str:
    """Figures (as `Figure.to_dict` wrote them) as a Markdown table: the lab's median
    (min-max), its baseline's, the median of the pairs' ratios, the target, whether met."""
    lines = [
        f"### {title}",
        "",
        "| what | now | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        base = f"{r['base']} {r['baseline_name']}".strip()
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"| {r['what']} ({r['unit']}) | {r['now']} | {base} | {ratio} | {r['target']} | {met} |")
    return "\n".join(lines) + "\n"


def phases_table(phases: dict[str, dict[str, dict[str, float]]]) -> str:
    """Where the time goes: per topology, each phase's median (ms) for the lab and for its
    baseline (a phase only one of them has is blank for the other)."""
    lines = []
    for label, sides in phases.items():
        columns = list(sides)
        names = list(dict.fromkeys(n for side in sides.values() for n in side))
        lines += [f"#### {label}: where the time goes", "", f"| phase | {' | '.join(columns)} |"]
        lines.append("|---" * (len(columns) + 1) + "|")
        for name in names:
            cells = [f"{sides[c][name]:,.1f}" if name in sides[c] else "" for c in columns]
            lines.append(f"| {name} | {' | '.join(cells)} |")
        lines.append("")
    return "\n".join(lines)
