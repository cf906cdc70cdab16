"""`sessionlab report --compare A B`: what changed between two runs, from their summary.json:
cases whose verdict changed (or that ran in one only), and figures that moved beyond a
relative tolerance (numbers) or changed in their words (an outcome; the numbers inside a
text, such as ports, vary from run to run and are not compared).

A case is named `<module>.<test>`. When a scenario's module is split or renamed between the
runs, a case found on one side only is paired with the case of the other side that has the
same test name in the same scenario (`test_s1_*`), where that name is unique in the scenario
on both sides.

Some figures differ by nature from run to run and are never compared: a figure whose own
name (the last part of its path) names a TCP sequence or acknowledgement number (seq, ISN,
RCV.NXT, SND.NXT, ack number, TSval), a port picked per run (source, client, ephemeral,
passive or data port, sport), a moment (timestamp, time of day, wall clock; times counted
from the case's start are compared) or a process id (PID). `BY_NATURE` is that rule;
`differs_by_nature` applies it.

A repeated run (`run --repeat`) compares by its summary: each case's worst verdict over its
repetitions, figures left out (they are per repetition: compare `RUN/rep-<i>` for them).

Only a changed verdict is a regression (`verdict_changed`): moved or changed figures and
cases found in one run only are listed, not failed."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.catalog import suite_of
from lab.errors import ConfigError


@dataclass(frozen=True)
class Change:
    case: str
    what: str  # "verdict" or the figure's path ("figure / key")
    a: Any
    b: Any
    kind: str  # verdict, only in A, only in B, moved, changed, figure only in A, figure only in B


def load_run(path: Path) -> dict[str, dict[str, Any]]:
    """A run's cases by name from its summary.json (`path`: the run folder or the file)."""
    summary = path / "summary.json" if path.is_dir() else path
    try:
        cases = json.loads(summary.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no summary.json (not a run folder, or a run that did not finish)"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{summary}: not a run summary ({exc})") from None
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "name" in c for c in cases):
        raise ConfigError(f"{summary}: not a run summary (expected a list of cases)")
    return {c["name"]: c for c in cases}


def flatten(value: Any, prefix: str) -> dict[str, Any]:
    """Nested figures as paths: {"a": {"b": 1}} -> {"a / b": 1}; lists by position."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix} / {key}"))
        return out
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for n, item in enumerate(value):
            out.update(flatten(item, f"{prefix} / {n + 1}"))
        return out
    return {prefix: value}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


BY_NATURE = re.compile(
    r"\b(seq|sequence numbers?|isn|initial sequence numbers?|rcv\.nxt|snd\.nxt|ack(nowledge?ment)? numbers?"
    r"|tsval|tsecr|timestamps?|time of day|wall clock|pids?"
    r"|(source|src|client|ephemeral|passive|data) ports?|sport)\b",
    re.IGNORECASE,
)


def differs_by_nature(path: str) -> bool:
    """Whether a figure (its path, `a / b / leaf`) holds a value that differs between any
    two runs by nature; decided by its own name, the path's last part."""
    leaf = path.rsplit(" / ", 1)[-1]
    return bool(BY_NATURE.search(leaf))


def verdict_changed(changes: list[Change]) -> bool:
    """Whether a case that ran in both runs changed its verdict: `report --compare`'s exit 1."""
    return any(c.kind == "verdict" for c in changes)


def same_run(a: Path, b: Path) -> bool:
    """Whether two paths name one run (the same folder, or one resolved path)."""
    try:
        return a.resolve() == b.resolve() or a.samefile(b)
    except OSError:
        return False


_NUMBERS = re.compile(r"\d+(?:\.\d+)?")


def _words(value: Any) -> Any:
    """Text with its numbers masked: ports, sequence numbers and addresses in a figure's
    text differ from run to run (each run has its own port blocks); its words do not."""
    if isinstance(value, str):
        return _NUMBERS.sub("#", value)
    if isinstance(value, list):
        return [_words(v) for v in value]
    return value


def moved(a: Any, b: Any, tolerance: float) -> str | None:
    """How a figure changed: "moved" (numbers, or lists of numbers element by element,
    apart by more than `tolerance` of the larger), "changed" (different words, or
    anything else different), None (the same within tolerance)."""
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return "moved" if abs(x - y) > tolerance * max(abs(x), abs(y)) else None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and a:
        pairs = [(_number(p), _number(q)) for p, q in zip(a, b, strict=True)]
        if all(p is not None and q is not None for p, q in pairs):
            return "moved" if any(moved(p, q, tolerance) for p, q in pairs) else None
    return None if _words(a) == _words(b) else "changed"


def _test_key(name: str) -> tuple[str, str] | None:
    """A case's scenario and test name (`test_s1_x.test_y[p]` -> ("s1", "test_y[p]")); None
    outside a scenario's modules or for a name without a module."""
    module, dot, test = name.partition(".")
    suite = suite_of(module)
    return (suite, test) if dot and suite != "harness" else None


def _unique_tests(names: list[str]) -> dict[tuple[str, str], str]:
    """Scenario and test name -> case name, for the test names that occur once per scenario."""
    seen: dict[tuple[str, str], list[str]] = {}
    for name in names:
        key = _test_key(name)
        if key is not None:
            seen.setdefault(key, []).append(name)
    return {key: found[0] for key, found in seen.items() if len(found) == 1}


def pair_cases(names_a: list[str], names_b: list[str]) -> dict[str, str]:
    """Each case of A -> its case in B: the same name, or, for a name on one side only, the
    case of the same test name in the same scenario when that name is unique there on both
    sides (a module split or renamed between the runs). Cases without a match are left out."""
    in_a, in_b = set(names_a), set(names_b)
    pairs = {name: name for name in names_a if name in in_b}
    unique_b = _unique_tests(names_b)
    for key, name in _unique_tests(names_a).items():
        other = unique_b.get(key)
        if name not in in_b and other is not None and other not in in_a:
            pairs[name] = other
    return dict(sorted(pairs.items(), key=lambda item: names_a.index(item[0])))


def compare(run_a: Path, run_b: Path, tolerance: float = 0.1) -> list[Change]:
    """Every change from run A to run B, case by case in A's order (then B's new cases).
    A case paired across a module split (see `pair_cases`) is named as in B, A's module
    after it."""
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance {tolerance}: expected a fraction from 0 to 1 (0.1 = 10 %)")
    a, b = load_run(run_a), load_run(run_b)
    pairs = pair_cases(list(a), list(b))
    changes: list[Change] = []
    for name_a, case in a.items():
        if name_a not in pairs:
            changes.append(Change(name_a, "verdict", case["verdict"], None, "only in A"))
            continue
        other = b[pairs[name_a]]
        name = name_a if pairs[name_a] == name_a else f"{pairs[name_a]} (A: {name_a.partition('.')[0]})"
        if case["verdict"] != other["verdict"]:
            changes.append(Change(name, "verdict", case["verdict"], other["verdict"], "verdict"))
        if "repetitions" in case or "repetitions" in other:
            continue  # a repeated run's case: its figures are in each repetition's summary
        figures_a = flatten(case.get("figures", {}), "").items()
        figures_b = flatten(other.get("figures", {}), "")
        for path, value in figures_a:
            if differs_by_nature(path):
                continue
            if path not in figures_b:
                changes.append(Change(name, path.removeprefix(" / "), value, None, "figure only in A"))
                continue
            kind = moved(value, figures_b[path], tolerance)
            if kind:
                changes.append(Change(name, path.removeprefix(" / "), value, figures_b[path], kind))
        for path in figures_b.keys() - dict(figures_a).keys():
            if not differs_by_nature(path):
                changes.append(
                    Change(name, path.removeprefix(" / "), None, figures_b[path], "figure only in B")
                )
    paired = set(pairs.values())
    for name, case in b.items():
        if name not in paired:
            changes.append(Change(name, "verdict", None, case["verdict"], "only in B"))
    return changes
