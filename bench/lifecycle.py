"""Lab up+down against raw Mininet (issue 12): the same topology built, started and stopped
by `lab.net.Lab` and by Mininet alone with the same switches (Open vSwitch, userspace
datapath, standalone) and links, pairs alternating which goes first.

    s1          the S1 lab (client, firewall, server, two switches)
    linear N    N switches in a line, a host on each (Mininet's LinearTopo), N = 20, 50, 100

The lab does more than Mininet by design (TX checksum offload off on every host
interface, its record for `sessionlab clean`, the device nodes' start, a drawing of the
topology): the ratio is what that costs. One lab build of the largest topology also runs
under cProfile, and its heaviest functions go into the JSON (where the time goes).
"""

from __future__ import annotations

import cProfile
import io
import pstats
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


def raw_up_down(topo: Any) -> float:
    """Seconds for raw Mininet to build, start and stop `topo` (stopped whatever happens)."""
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
    started = time.monotonic()
    net = Mininet(
        topo=topo,
        switch=partial(OVSSwitch, datapath="user", failMode="standalone"),
        controller=None,
        link=TCLink,
        build=False,
    )
    try:
        net.build()
        net.start()
    finally:
        net.stop()
    return time.monotonic() - started


def lab_up_down(topo: Any, folder: Path) -> float:
    """Seconds for the lab to come up and go down with `topo`."""
    from lab.net import Lab

    started = time.monotonic()
    with Lab(topo, folder):
        pass
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


def _figure(label: str, build: Any, folder: Path, repeat: int) -> Figure:
    """`repeat` pairs of lab and raw Mininet up+down of the topology `build()` makes."""
    figure = Figure(f"{label} up+down", "s", baseline_name="raw Mininet", max_ratio=TARGET)
    runs = iter(range(repeat))
    return paired(
        figure,
        lambda: lab_up_down(build(), folder / f"lab-{next(runs)}"),
        lambda: raw_up_down(build()),
        repeat,
    )


def run(out: Path) -> dict[str, Any]:
    from lab import topology

    out.mkdir(parents=True, exist_ok=True)
    figures = [_figure("s1", lambda: topology.load("s1"), out / "s1", REPEAT["s1"])]
    for n in SIZES:
        figures.append(_figure(f"linear {n} hosts", partial(linear, n), out / f"linear{n}", REPEAT[n]))
    largest = max(SIZES)
    profile = profile_lab(linear(largest), out / f"profile-linear{largest}")
    return {"rows": [f.to_dict() for f in figures], "profile": {f"linear {largest}": profile}}


def plot(data: dict[str, Any], path: Path) -> None:
    """Each topology's up+down times, the lab's beside raw Mininet's, every repetition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
