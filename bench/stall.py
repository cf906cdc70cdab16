"""Forwarding stalls one lab's teardown causes in another lab (issue 26's S4 scale flake):
every lab's bridges share Open vSwitch's userspace datapath, whose main thread forwards
every lab's veth ports and also applies each bridge change.

A victim lab (Mininet's LinearTopo of 2: h1-s1-s2-h2) pings h1 -> h2 every 10 ms for the
whole benchmark. Meanwhile a churn lab (linear 6: 16 switch ports) is built and closed, in
pairs alternating which way its bridges go:

    one transaction    Mininet's own stop: `ovs-vsctl del-br` of every bridge at once
    a port at a time   the lab's close (lab.ovs.remove_bridges): a port per transaction

Each sample is the largest round-trip time of the victim's pings answered during one build
and close of the churn lab (a stalled datapath holds the pings, so the round trip is the
stall); a quiet window before the first cycle gives the floor.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.lifecycle import linear
from bench.paired import Figure, paired

PAIRS = 5
CHURN_SWITCHES = 6
QUIET_SECONDS = 5.0
TARGET_MS = 50.0  # a port at a time: the largest stall at most this
_REPLY = re.compile(r"^\[(\d+\.\d+)\].* time=([\d.]+) ms", re.MULTILINE)


def replies(text: str) -> list[tuple[float, float]]:
    """(wall time answered, round trip in ms) of each reply `ping -D` printed."""
    return [(float(t), float(rtt)) for t, rtt in _REPLY.findall(text)]


def largest_rtt(answered: list[tuple[float, float]], start: float, end: float) -> float:
    """The largest round trip (ms) of the replies answered in [start, end]; 0 when none."""
    return max((rtt for t, rtt in answered if start <= t <= end), default=0.0)


def _all_at_once(bridges: Iterable[str], timeout: float = 10) -> None:
    """Nothing: Mininet's stop, which comes next, deletes every bridge in one transaction."""


def _cycle(victim: Any, ping: Any, folder: Path, per_port: bool) -> float:
    """Build and close the churn lab once; the largest round trip of the victim's pings
    answered meanwhile, counted once a ping sent after the close has been answered (the
    pings pass in order, so every earlier one has come back or is lost)."""
    import lab.net
    from lab.net import Lab

    start = time.time()
    saved = lab.net.remove_bridges
    if not per_port:
        lab.net.remove_bridges = _all_at_once
    try:
        with Lab(linear(CHURN_SWITCHES), folder / f"churn-{start:.3f}"):
            pass
    finally:
        lab.net.remove_bridges = saved
    closed = time.time()
    victim.wait(
        lambda: any(t - rtt / 1000 > closed for t, rtt in replies(ping.output())),
        10,
        "a ping sent after the churn lab closed to be answered",
    )
    return largest_rtt(replies(ping.output()), start, time.time())


def run(out: Path) -> dict[str, Any]:
    from lab.net import Lab

    out.mkdir(parents=True, exist_ok=True)
    figure = Figure(
        f"largest ping round trip through another lab while a lab of {CHURN_SWITCHES} switches "
        "is built and closed, a port at a time",
        "ms",
        baseline_name="one transaction",
        max_value=TARGET_MS,
    )
    with Lab(linear(2), out / "victim") as victim:
        ping = victim.start(
            "h1", ["ping", "-D", "-i", "0.01", victim.ip("h2")], "bench-stall-ping", keep=True
        )
        victim.wait(lambda: replies(ping.output()), 10, "the victim's first ping reply")
        quiet_start = time.time()
        time.sleep(QUIET_SECONDS)
        quiet_end = time.time()
        paired(
            figure,
            lambda: _cycle(victim, ping, out, True),
            lambda: _cycle(victim, ping, out, False),
            PAIRS,
        )
        answered = replies(ping.output())
    quiet = largest_rtt(answered, quiet_start, quiet_end)
    return {"rows": [figure.to_dict()], "quiet_max_ms": quiet, "replies": len(answered)}


def plot(data: dict[str, Any], path: Path) -> None:
    """Each cycle's largest round trip, a port at a time beside one transaction."""
    from lab.plot import plt, save

    row = data["rows"][0]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([0] * len(row["samples"]), row["samples"], color="tab:orange")
    ax.scatter([1] * len(row["baseline"]), row["baseline"], color="tab:blue")
    ax.axhline(data["quiet_max_ms"], color="grey", linestyle=":", label="quiet (largest)")
    ax.set_xticks([0, 1], ["a port at a time", "one transaction"])
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylabel("largest ping round trip (ms)")
    ax.legend()
    ax.set_title("another lab's teardown: stall of this lab's forwarding")
    save(fig, path)
