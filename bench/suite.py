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
any case reported).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.errors import LabError

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


def run(out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    cli = Path(sys.executable).with_name("sessionlab")
    started = time.monotonic()
    done = subprocess.run([str(cli), "run", f"--results={out}"], capture_output=True, text=True)
    wall = time.monotonic() - started
    (out / "run.log").write_text(done.stdout + done.stderr)
    runs = sorted(p for p in out.iterdir() if not p.is_symlink() and (p / "summary.json").exists())
    if not runs:
        raise LabError(f"the suite wrote no report (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    cases = json.loads((runs[-1] / "summary.json").read_text())
    times = scenario_times(cases)
    rows: list[dict[str, Any]] = []
    for module, t in times.items():
        total = sum(t[p] for p in PARTS)
        rows.append(
            {
                "what": f"{module} ({t['cases']} cases)",
                "configured": "",
                "measured": f"{total:,.0f} s: "
                + ", ".join(f"{p} {t[p]:,.1f}" for p in PARTS)
                + (
                    f"; smallest timeout margin {t['smallest client timeout margin (s)']:g} s"
                    if t["smallest client timeout margin (s)"] is not None
                    else ""
                ),
                "target": "",
                "met": None,
            }
        )
    verdicts = [c["verdict"] for c in cases]
    rows.append(
        {
            "what": "whole run",
            "configured": "",
            "measured": f"{wall:,.0f} s, {verdicts.count('passed')} of {len(verdicts)} cases passed",
            "target": "every case passes",
            "met": done.returncode == 0 and all(v == "passed" for v in verdicts),
        }
    )
    return {"rows": rows, "scenarios": times, "wall": wall, "exit": done.returncode, "run": str(runs[-1])}


def plot(data: dict[str, Any], path: Path) -> None:
    """Each scenario's time, stacked by part."""
    from lab.plot import plt, save

    names = list(data["scenarios"])
    fig, ax = plt.subplots(figsize=(9, 4))
    left = [0.0] * len(names)
    for part in PARTS:
        widths = [data["scenarios"][n][part] for n in names]
        ax.barh(names, widths, left=left, label=part)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlabel("seconds")
    ax.legend(fontsize=8)
    ax.set_title("the default suite's time per scenario")
    save(fig, path)
