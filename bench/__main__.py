"""Run benchmarks: `python -m bench [NAME ...]` (all when none is named), as root.

Each writes `results/bench/<stamp>/<name>.json` (rows and raw samples) and a plot, and
the run prints a table of figures against their targets (also `table.md`)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.paired import phases_table
from bench.paired import table as paired_table
from lab.errors import LabError

BENCHMARKS = {
    "lifecycle": "lab up+down against raw Mininet (s1, linear 20/50/100 hosts)",
    "controller": "controller start to every switch configured, per S2 mode; controller CPU idle",
    "firewall": "one firewall node: throughput and new sessions/s against a plain router; sessions held",
    "fabric": "the S2 fabric per mode against standalone switches: new sessions/s, iperf3, controller CPU",
    "impairment": "link impairments without netem: accuracy and cost of the element",
    "suite": "the default lab suite's wall time per scenario: lab start/stop, case bodies, harness",
    "balancers": "the S4 balancers' ceilings: requests/s and new connections/s",
    "hostile": "new sessions/s after 10,000 hostile frames over before, relative to an idle-gap control",
    "stall": "another lab's teardown: the largest stall of a lab's forwarding, per port vs one transaction",
}
ROOT = Path(__file__).resolve().parent.parent


def table(name: str, rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = [f"### {name}", "", "| what | configured | measured | target | met |", "|---|---|---|---|---|"]
    for r in rows:
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        lines.append(f"| {r['what']} | {r['configured']} | {r['measured']} | {r['target']} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "bench", help="where runs go")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
    out = args.results / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    text = []
    for name in args.names or list(BENCHMARKS):
        module = importlib.import_module(f"bench.{name}")
        started = time.monotonic()
        try:
            data = module.run(out / name)
        except LabError as exc:
            print(f"bench {name}: {exc}", file=sys.stderr)
            return 2
        data["seconds"] = round(time.monotonic() - started, 1)
        (out / f"{name}.json").write_text(json.dumps(data, indent=1))
        module.plot(data, out / f"{name}.png")
        title = f"{name} ({BENCHMARKS[name]}; {data['seconds']:g} s)"
        paired_rows = bool(data["rows"]) and "ratio" in data["rows"][0]  # a lab against its baseline
        text.append(paired_table(title, data["rows"]) if paired_rows else table(title, data["rows"]))
        if data.get("phases"):
            text.append(phases_table(data["phases"]))
    (out / "table.md").write_text("\n".join(text))
    print("\n".join(text))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
