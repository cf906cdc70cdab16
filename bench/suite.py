"""The default lab suite's wall time per scenario (issue 12): `sessionlab run` of every suite,
one lab at a time, then where each scenario's time went, from its cases' case.json (a
scenario: its test_sN_*.py modules, each with its own lab; any other module on its own):

    lab start         the setup of each module's first case (its lab built and started)
    case bodies       the tests themselves: traffic, and the waits that are their subject
                      (idle timeouts, failovers, sync races)
    per-case harness  every other setup and teardown (devices reset, the case's processes
                      stopped, its sockets cut, logs kept)
    lab stop          the teardown of each module's last case (its lab removed)

and how close each scenario's client loads came to their timeouts (the smallest margin
any case reported). Beside each scenario, its time before (issue 24): the same parts read
from a stored run's cases of the same modules, `BENCH_SUITE_BEFORE` (a run folder with
summary.json); without it, the run of the previous `bench suite` in the same results
folder, if any. `BENCH_SUITE_MODULES` (space-separated case files) cuts the run down.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.errors import ConfigError, LabError
from lab.schedule import durations_from_cases

PARTS = ("lab start", "case bodies", "per-case harness", "lab stop")
_SCENARIO = re.compile(r"^(test_s\d+)_")


def scenario_of(module: str) -> str:
    """The scenario a case module belongs to: its `test_sN` prefix (a scenario's cases are
    split over modules: test_s1_keepalive, test_s1_over_wan, ...), else the module itself."""
    found = _SCENARIO.match(module)
    return found[1] if found else module


def scenario_times(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per scenario (cases in the order they ran): seconds of each part, summed over its
    modules (each builds and removes its own lab), and the smallest client timeout margin
    its cases reported (None without a client load)."""
    modules: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        modules.setdefault(case["name"].split(".", 1)[0], []).append(case)
    sums: dict[str, dict[str, Any]] = {}
    for module, mine in modules.items():
        phases = [c.get("phases", {}) for c in mine]
        start, stop = phases[0].get("setup", 0.0), phases[-1].get("teardown", 0.0)
        harness = sum(p.get("setup", 0.0) + p.get("teardown", 0.0) for p in phases) - start - stop
        total = sums.setdefault(scenario_of(module), {"cases": 0, "margins": [], **dict.fromkeys(PARTS, 0.0)})
        total["cases"] += len(mine)
        total["lab start"] += start
        total["case bodies"] += sum(p.get("call", 0.0) for p in phases)
        total["per-case harness"] += harness
        total["lab stop"] += stop
        total["margins"] += [
            m["margin (s)"] for c in mine for m in c.get("figures", {}).get("client timeout margins", [])
        ]
    return {
        scenario: {
            "cases": total["cases"],
            **{part: round(total[part], 1) for part in PARTS},
            "smallest client timeout margin (s)": min(total["margins"]) if total["margins"] else None,
        }
        for scenario, total in sums.items()
    }


def scenario_total(times: dict[str, Any]) -> float:
    """A scenario's seconds: every part summed."""
    return float(sum(times[p] for p in PARTS))


def before_run(out: Path, explicit: str | None) -> Path | None:
    """The run whose times count as before: `explicit` (a run folder, checked), else the
    run of the newest earlier `bench suite` beside `out` (results/bench/<stamp>/suite/)."""
    if explicit:
        path = Path(explicit)
        if not (path / "summary.json").exists():
            raise ConfigError(f"BENCH_SUITE_BEFORE={explicit}: not a run folder (no summary.json)")
        return path
    stamp = out.parent
    earlier = sorted(p for p in stamp.parent.glob("*/suite.json") if p.parent.name < stamp.name)
    for data in reversed(earlier):
        try:
            folder = Path(json.loads(data.read_text())["run"])
        except (ValueError, KeyError, TypeError):
            continue
        if (folder / "summary.json").exists():
            return folder
    return None


def same_modules(stored: list[dict[str, Any]], ran: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored run's cases of the modules this run ran (a cut-down run compares like
    with like)."""
    modules = {c["name"].split(".", 1)[0] for c in ran}
    return [c for c in stored if c["name"].split(".", 1)[0] in modules]


def compared_rows(after: dict[str, Any], before: dict[str, Any] | None, source: str) -> list[dict[str, Any]]:
    """A row per scenario: its time now, by part, and before (when the stored run has it)."""
    rows = []
    for name, t in after.items():
        was = before.get(name) if before else None
        margin = t["smallest client timeout margin (s)"]
        rows.append(
            {
                "what": f"{name} ({t['cases']} cases)",
                "configured": f"before: {scenario_total(was):,.0f} s ({source})" if was else "",
                "measured": f"{scenario_total(t):,.0f} s: "
                + ", ".join(f"{p} {t[p]:,.1f}" for p in PARTS)
                + (f"; smallest timeout margin {margin:g} s" if margin is not None else ""),
                "target": "margin at least 0.5 s" if margin is not None else "",
                "met": margin >= 0.5 if margin is not None else None,
            }
        )
    return rows


def run(out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    before_folder = before_run(out, os.environ.get("BENCH_SUITE_BEFORE"))
    stored = json.loads((before_folder / "summary.json").read_text()) if before_folder else []
    modules = shlex.split(os.environ.get("BENCH_SUITE_MODULES", ""))
    cli = Path(sys.executable).with_name("sessionlab")
    started = time.monotonic()
    done = subprocess.run([str(cli), "run", f"--results={out}", *modules], capture_output=True, text=True)
    wall = time.monotonic() - started
    (out / "run.log").write_text(done.stdout + done.stderr)
    runs = sorted(p for p in out.iterdir() if not p.is_symlink() and (p / "summary.json").exists())
    if not runs:
        raise LabError(f"the suite wrote no report (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    cases = json.loads((runs[-1] / "summary.json").read_text())
    times = scenario_times(cases)
    before = scenario_times(same_modules(stored, cases)) if before_folder else None
    rows = compared_rows(times, before, before_folder.name if before_folder else "")
    # seconds per case: what testcases/durations.json holds (lab/schedule.py), to copy there
    seconds = durations_from_cases([(c["name"], c["duration"]) for c in cases])
    measured = {"measured": f"bench suite, run {runs[-1].name}", "cases": seconds}
    (out / "durations.json").write_text(json.dumps(measured, indent=1) + "\n")
    verdicts = [c["verdict"] for c in cases]
    rows.append(
        {
            "what": "whole run",
            "configured": "",
            "measured": f"{wall:,.0f} s, {verdicts.count('passed')} of {len(verdicts)} cases passed",
            "target": "every case passes" + ("" if modules else "; at most 300 s (issue 24)"),
            "met": done.returncode == 0
            and all(v == "passed" for v in verdicts)
            and (bool(modules) or wall <= 300),
        }
    )
    return {
        "rows": rows,
        "scenarios": times,
        "before": before,
        "before_run": str(before_folder) if before_folder else None,
        "wall": wall,
        "exit": done.returncode,
        "run": str(runs[-1]),
    }


def plot(data: dict[str, Any], path: Path) -> None:
    """Each scenario's time, stacked by part; before it, its time in the stored run."""
    from lab.plot import plt, save

    before = data.get("before") or {}
    names = list(data["scenarios"])
    fig, ax = plt.subplots(figsize=(9, 4 + 0.3 * len(names)))
    left = [0.0] * len(names)
    for part in PARTS:
        widths = [data["scenarios"][n][part] for n in names]
        ax.barh(names, widths, left=left, label=part)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    was = [(n, scenario_total(before[n])) for n in names if n in before]
    if was:
        ax.scatter([w for _, w in was], [n for n, _ in was], marker="|", s=400, color="black", label="before")
    ax.set_xlabel("seconds")
    ax.legend(fontsize=8)
    ax.set_title("the default suite's time per scenario (| : before)")
    save(fig, path)
