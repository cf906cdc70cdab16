"""New sessions/s after hostile traffic (issue 26, point 5): the speed claim that the lab
test testcases/test_hostile_traffic.py leaves to a benchmark. The same three targets, each
in its own lab prepared as the test prepares it: S5's firewall from outside, S4's SDN
balancer, S2's fabric in symmetric mode; the same 10,000 fuzzed and truncated frames (the
test's seed, aim and sender, RATE frames a second).

Per target, two measurements with identical timing, the control first: a warm-up burst,
ROUNDS rounds "before", each a burst of SESSIONS new sessions through the device (the
test's clients, servers and concurrency), then a gap, then ROUNDS rounds "after". In the
control's gap nothing is sent for as long as the frames take (FRAMES / RATE s); in the
hostile one the frames are sent. Each round's sessions use their own block of source ports
(TIME_WAIT sockets of earlier rounds slow the kernel's own choice: bench/firewall.py),
below the ephemeral range and apart from the frames' source ports (`port_plan`).

A round's rate is its completed sessions over the seconds its sessions spanned, from the
first one's start to the last one's end as the clients logged them: the clients' own
start-up (a Python process each) is no part of it; the rate over the whole command's wall
time is kept beside it.

Figures, per target: "new sessions/s after 10,000 hostile frames", each round after over
the same round before, the median of those ratios at least 0.9 (`TARGET`); the same for the
control's idle gap, shown without a target: the measurement's own noise, to read the first
against; the frames sent (all of them); the sessions failed per round after the frames
(shown: the test asserts none fail).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.paired import Figure

ROUNDS, SESSIONS = 5, 1000  # rounds each side of the gap; new sessions per round
CONCURRENCY = None  # per client: the test's (4 per HTTP client, 8 per echo client)
WARMUP, WARMUP_FIRST_PORT = 100, 2_000  # a burst before each measurement's first round
FIRST_PORT = 10_000  # the rounds' source ports: blocks of SESSIONS from here
FUZZ_PORTS = range(30_000, 30_500)  # the frames' source ports
PORTS_BELOW = 32_000  # the lab's client ports stay below Linux's ephemeral range (lab/isolation.py)
TARGET = 0.9  # new sessions/s after at least 0.9x before
MEASUREMENTS = ("control", "hostile")
SIDES = ("before", "after")


@dataclass(frozen=True)
class Ports:
    """One measurement's source ports: its warm-up's and each round's block."""

    warmup: range
    before: tuple[range, ...]
    after: tuple[range, ...]

    def blocks(self) -> list[range]:
        return [self.warmup, *self.before, *self.after]


def port_plan(rounds: int = ROUNDS, sessions: int = SESSIONS, warmup: int = WARMUP) -> dict[str, Ports]:
    """Each measurement's ports: warm-ups in blocks of `warmup` from WARMUP_FIRST_PORT, rounds
    in blocks of `sessions` from FIRST_PORT, the control's before the hostile one's."""
    plan = {}
    for n, name in enumerate(MEASUREMENTS):
        first = FIRST_PORT + n * 2 * rounds * sessions
        blocks = [range(first + i * sessions, first + (i + 1) * sessions) for i in range(2 * rounds)]
        warm = range(WARMUP_FIRST_PORT + n * warmup, WARMUP_FIRST_PORT + (n + 1) * warmup)
        plan[name] = Ports(warm, tuple(blocks[:rounds]), tuple(blocks[rounds:]))
    return plan


def port_problems(plan: dict[str, Ports], fuzz_ports: range = FUZZ_PORTS) -> list[str]:
    """Every block that overlaps another (the frames' among them) or lies outside the
    unprivileged ports below PORTS_BELOW, each named."""
    named = [(f"{m} block {i}", b) for m, p in plan.items() for i, b in enumerate(p.blocks())]
    named.append(("the frames' ports", fuzz_ports))
    found = [f"{n}: {b.start}-{b.stop - 1} is outside 1024-{PORTS_BELOW - 1}"
             for n, b in named if b.start < 1024 or b.stop > PORTS_BELOW]  # fmt: skip
    for i, (name, block) in enumerate(named):
        for other, theirs in named[i + 1 :]:
            if block.start < theirs.stop and theirs.start < block.stop:
                found.append(f"{name} ({block.start}-{block.stop - 1}) overlaps {other}")
    return found


def round_rate(records: Sequence[dict[str, Any]], ok: str) -> dict[str, Any]:
    """A burst's completed and failed sessions (`ok`: the record's field that says it
    completed), the seconds from its first session's start to its last one's end, and its
    rate: completed sessions a second of that span."""
    done = sum(bool(r.get(ok)) for r in records)
    if not records:
        return {"completed": 0, "failed": 0, "seconds": 0.0, "rate": 0.0}
    start = min(r["wall_start"] for r in records)
    span = max(r["wall_start"] + r["elapsed"] for r in records) - start
    return {
        "completed": done,
        "failed": len(records) - done,
        "seconds": round(span, 3),
        "rate": done / span if span > 0 else 0.0,
    }


def rates(measurement: dict[str, Any], side: str) -> list[float]:
    return [float(r["rate"]) for r in measurement[side]]


def figures(name: str, result: dict[str, Any], frames: int) -> list[Figure]:
    """One target's figures from its two measurements (`measure`'s results)."""
    control, hostile = result["control"], result["hostile"]
    after = Figure(
        f"{name}: new sessions/s after {frames:,} hostile frames",
        "1/s",
        samples=rates(hostile, "after"),
        baseline=rates(hostile, "before"),
        baseline_name="before the frames",
        min_ratio=TARGET,
    )
    noise = Figure(
        f"{name}: new sessions/s after an idle gap of the same length (control: the measurement's own noise)",
        "1/s",
        samples=rates(control, "after"),
        baseline=rates(control, "before"),
        baseline_name="before the gap",
    )
    sent = Figure(
        f"{name}: hostile frames sent", "frames", samples=[float(hostile["gap"]["sent"])], min_value=frames
    )
    failed = Figure(
        f"{name}: sessions failed per round after the frames",
        "sessions",
        samples=[float(r["failed"]) for r in hostile["after"]],
    )
    return [after, noise, sent, failed]


def one_round(lab: Any, target: Any, block: range) -> dict[str, Any]:
    """A burst of len(block) sessions from the block's ports: `round_rate` of it, the rate
    over the command's wall time, and the tightest timeout margin of its loads."""
    from testcases import test_hostile_traffic as scenario

    started = time.monotonic()
    records = scenario.burst(lab, target, block.start, len(block), CONCURRENCY)
    wall = time.monotonic() - started
    got = round_rate(records, scenario.ok_field(target))
    margin = records.margin
    return got | {
        "wall seconds": round(wall, 3),
        "wall rate": got["completed"] / wall,
        "margin (s)": None if margin is None else margin["margin (s)"],
    }


def measure(lab: Any, target: Any, ports: Ports, gap: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Warm-up, ROUNDS rounds before, the gap (what it returned, its seconds), ROUNDS rounds after."""
    from testcases import test_hostile_traffic as scenario

    scenario.burst(lab, target, ports.warmup.start, len(ports.warmup), CONCURRENCY)
    before = [one_round(lab, target, block) for block in ports.before]
    started = time.monotonic()
    happened = gap()
    happened["gap seconds"] = round(time.monotonic() - started, 3)  # beside the sender's own "seconds"
    after = [one_round(lab, target, block) for block in ports.after]
    return {"before": before, "gap": happened, "after": after}


def one_target(folder: Path, target: Any, plan: dict[str, Ports]) -> dict[str, Any]:
    """The target's own lab, prepared as the test prepares it, its frames made (before any
    round), then the control and the hostile measurement."""
    from lab import fuzz, topology
    from lab.net import Lab
    from testcases import test_hostile_traffic as scenario

    folder.mkdir(parents=True, exist_ok=True)
    idle = scenario.FRAMES / scenario.RATE

    def quiet() -> dict[str, Any]:
        time.sleep(idle)
        return {"sent": 0}

    controller = topology.controller_for(target.topology)
    with Lab(topology.load(target.topology), folder / "lab", controller=controller) as lab:
        scenario.prepare(lab, target)
        _, frames = scenario.hostile_frames(lab, target, FUZZ_PORTS)
        pcap = fuzz.write_pcap(folder / "fuzz-frames.pcap", frames)
        control = measure(lab, target, plan["control"], quiet)
        hostile = measure(lab, target, plan["hostile"], lambda: scenario.send_frames(lab, target, pcap))
    return {"control": control, "hostile": hostile}


def run(out: Path) -> dict[str, Any]:
    from lab.errors import ConfigError
    from testcases import test_hostile_traffic as scenario

    plan = port_plan()
    problems = port_problems(plan)
    if problems:
        raise ConfigError([f"bench hostile's ports: {p}" for p in problems])
    results = {name: one_target(out / name, target, plan) for name, target in scenario.TARGETS.items()}
    rows = [f.to_dict() for name, r in results.items() for f in figures(name, r, scenario.FRAMES)]
    return {
        "rows": rows,
        "targets": results,
        "rounds": ROUNDS,
        "sessions": SESSIONS,
        "concurrency": "the test's: 4 per HTTP client, 8 per echo client",
        "frames": scenario.FRAMES,
        "seed": scenario.SEED,
        "frame rate": scenario.RATE,
        "ports": {m: [[b.start, b.stop - 1] for b in p.blocks()] for m, p in plan.items()}
        | {"frames": [FUZZ_PORTS.start, FUZZ_PORTS.stop - 1]},
    }


def plot(data: dict[str, Any], path: Path) -> None:
    """Each target's rounds in order, the gap between the sides: the control's beside the
    hostile measurement's."""
    from lab.plot import plt, save

    targets = data["targets"]
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.5), squeeze=False)
    rounds = data["rounds"]
    for ax, (name, result) in zip(axes[0], targets.items(), strict=True):
        for measurement, color in zip(MEASUREMENTS, ("tab:blue", "tab:orange"), strict=True):
            got = result[measurement]
            ax.plot(range(rounds), rates(got, "before"), "o-", color=color, label=measurement)
            ax.plot(range(rounds + 1, 2 * rounds + 1), rates(got, "after"), "o-", color=color)
            ax.axhline(statistics.median(rates(got, "before")), color=color, lw=0.5, ls=":")
        ax.axvspan(rounds - 0.5, rounds + 0.5, color="0.9")
        ax.set_xticks([rounds], [f"gap ({data['frames']:,} frames)"], fontsize=8)
        ax.set_ylabel("new sessions/s")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(f"{data['sessions']:,} sessions a round, {rounds} rounds each side", fontsize=9)
    save(fig, path)
