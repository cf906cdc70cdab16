"""Lab up+down against raw Mininet (issue 12): the same topology built, started and stopped
by `lab.net.Lab` and by Mininet alone with the same switches (Open vSwitch, userspace
datapath, standalone) and links, pairs alternating which goes first.

    s1          the S1 lab (client, firewall, server, two switches)
    linear N    N switches in a line, a host on each (Mininet's LinearTopo), N = 20, 50, 100

The lab does more than Mininet by design (TX checksum offload off on every host
interface, its record for `sessionlab clean`, the device nodes' start, a description of
the topology for the report's drawing): the ratio is what that costs. One lab build of
the largest topology also runs under cProfile, and its heaviest functions go into the JSON
(where the time goes).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.paired import Figure, paired

SIZES = (20, 50, 100)
REPEAT = {"s1": 5, 20: 3, 50: 3, 100: 3}
TARGET = 1.1  # lab up+down at most 1.1x raw Mininet's


def linear(n: int) -> Any:
    """Mininet's LinearTopo: switches s1..sN in a line, host hI on switch sI. (Switch names
    stay short: the lab prefixes them with its tag, and interface names have 15 bytes.)"""
    from mininet.topo import Topo

    topo = Topo()
    previous = None
    for i in range(1, n + 1):
        switch = topo.addSwitch(f"s{i}", dpid=f"{0xB000 + i:016x}")
        host = topo.addHost(f"h{i}", ip=f"10.9.{i // 250}.{i % 250 + 1}/16")
        topo.addLink(host, switch)
        if previous is not None:
            topo.addLink(previous, switch)
        previous = switch
    return topo


def raw_up_down(topo: Any, phases: list[dict[str, float]]) -> float:
    """Seconds for raw Mininet to build, start and stop `topo` (stopped whatever happens);
    its build, start and stop times appended to `phases`."""
    from mininet.link import TCLink
    from mininet.log import setLogLevel
    from mininet.net import Mininet
    from mininet.node import OVSSwitch

    from lab.errors import LabError
    from lab.procs import host_run

    # Raw Mininet's bridges carry the topology's names: refuse rather than touch another's.
    taken = set(host_run(["ovs-vsctl", "list-br"]).split()) & set(topo.switches())
    if taken:
        raise LabError(f"raw Mininet baseline: bridges {', '.join(sorted(taken))} exist already")
    setLogLevel("error")
    times: dict[str, float] = {}
    started = mark = time.monotonic()
    net = Mininet(
        topo=topo,
        switch=partial(OVSSwitch, datapath="user", failMode="standalone"),
        controller=None,
        link=TCLink,
        build=False,
    )
    try:
        net.build()
        times["mininet build"], mark = time.monotonic() - mark, time.monotonic()
        net.start()
        times["mininet start"], mark = time.monotonic() - mark, time.monotonic()
    finally:
        net.stop()
        times["mininet stop"] = time.monotonic() - mark
    phases.append(times)
    return time.monotonic() - started


def lab_up_down(topo: Any, folder: Path, phases: list[dict[str, float]] | None = None) -> float:
    """Seconds for the lab to come up and go down with `topo`; its phases appended."""
    from lab.net import Lab

    started = time.monotonic()
    lab = Lab(topo, folder)
    with lab:
        pass
    if phases is not None:
        phases.append(dict(lab.phases))
    return time.monotonic() - started


def profile_lab(topo: Any, folder: Path, top: int = 25) -> list[str]:
    """The heaviest functions (cumulative time) of one lab up+down."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        lab_up_down(topo, folder)
    finally:
        profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
    return [line for line in text.getvalue().splitlines() if line.strip()]


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each phase's median over the runs (ms), in the order the phases came."""
    names = list(dict.fromkeys(name for run in runs for name in run))
    return {n: round(1000 * statistics.median(r.get(n, 0.0) for r in runs), 1) for n in names}


def _figure(label: str, build: Any, folder: Path, repeat: int, phases: dict[str, Any]) -> Figure:
    """`repeat` pairs of lab and raw Mininet up+down of the topology `build()` makes; the
    median time of each phase of both into `phases[label]`."""
    figure = Figure(f"{label} up+down", "s", baseline_name="raw Mininet", max_ratio=TARGET)
    runs = iter(range(repeat))
    lab_phases: list[dict[str, float]] = []
    raw_phases: list[dict[str, float]] = []
    paired(
        figure,
        lambda: lab_up_down(build(), folder / f"lab-{next(runs)}", lab_phases),
        lambda: raw_up_down(build(), raw_phases),
        repeat,
    )
    phases[label] = {"lab (ms)": medians(lab_phases), "raw Mininet (ms)": medians(raw_phases)}
    return figure


def run(out: Path) -> dict[str, Any]:
    from lab import topology

    out.mkdir(parents=True, exist_ok=True)
    phases: dict[str, Any] = {}
    figures = [_figure("s1", lambda: topology.load("s1"), out / "s1", REPEAT["s1"], phases)]
    for n in SIZES:
        figures.append(
            _figure(f"linear {n} hosts", partial(linear, n), out / f"linear{n}", REPEAT[n], phases)
        )
    largest = max(SIZES)
    profile = profile_lab(linear(largest), out / f"profile-linear{largest}")
    return {
        "rows": [f.to_dict() for f in figures],
        "phases": phases,
        "profile": {f"linear {largest}": profile},
    }


def plot(data: dict[str, Any], path: Path) -> None:
    """Each topology's up+down times, the lab's beside raw Mininet's, every repetition."""
    from lab.plot import plt, save

    rows = data["rows"]
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, row in enumerate(rows):
        ax.scatter(
            [i - 0.1] * len(row["samples"]),
            row["samples"],
            color="tab:orange",
            label="lab" if i == 0 else None,
        )
        ax.scatter(
            [i + 0.1] * len(row["baseline"]),
            row["baseline"],
            color="tab:blue",
            label="raw Mininet" if i == 0 else None,
        )
    ax.set_xticks(range(len(rows)), [r["what"].removesuffix(" up+down") for r in rows])
    ax.set_ylabel("up+down (s)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("lab up+down against raw Mininet, each repetition")
    save(fig, path)
