"""One firewall node's cost and capacity (issue 12), on the S1 lab (client - fw - server):

- TCP throughput (iperf3, 5 s) through the firewall with its stateful policy against the
  same node as a plain router (its ruleset flushed: no rule, nothing tracked), pairs
  alternating which goes first;
- new TCP sessions/s through it (2,000 short echo sessions, 32 at a time), the same pairs;
- the sessions it holds: 100,000 UDP flows from the client (hping3, source ports counted
  up, two server ports), counted in its table, and the kernel's memory for them from the
  nf_conntrack slab (exact after a shrink; machine-wide, so the benchmark runs alone).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

from bench.measure import iperf_tcp
from bench.paired import Figure, paired

REPEAT = 3
SECONDS = 5
IPERF_PORT = 5201
ECHO_PORT = 7000
SESSIONS, CONCURRENCY = 2000, 32
FLOWS_PER_PORT, FLOW_PORTS = 50_000, (9001, 9002)
FIRST_PORT = 10_000  # source ports of the session runs: blocks of SESSIONS from here
_RUNS = itertools.count()
THROUGHPUT_TARGET = 0.9  # the firewall path at least 0.9x a plain router's
HOLD_TARGET = 100_000  # sessions a firewall node holds


def iperf(lab: Any) -> float:
    out = lab.run(
        "client",
        ["iperf3", "-c", lab.ip("server"), "-p", str(IPERF_PORT), "-t", str(SECONDS), "-J"],
        timeout=SECONDS + 30,
    )
    return iperf_tcp(json.loads(out))


def sessions_per_second(lab: Any) -> float:
    """Short sessions that completed their echo, per second of the whole load."""
    from lab.traffic import SessionLoad, sessions_records

    # Each run its own block of source ports: with the kernel's choice, the client's
    # TIME_WAIT sockets of earlier runs slowed connect() (1,530/s, then 494/s, 284/s).
    first = FIRST_PORT + next(_RUNS) * SESSIONS
    load = SessionLoad(
        [f"{lab.ip('server')}:{ECHO_PORT}"], SESSIONS, concurrency=CONCURRENCY, first_port=first
    )
    started = time.monotonic()
    records = sessions_records(lab.run("client", load.argv(), timeout=load.budget()))
    elapsed = time.monotonic() - started
    return sum(bool(r.get("data_ok")) for r in records) / elapsed


def hold(lab: Any, fw: Any) -> dict[str, Any]:
    """FLOWS_PER_PORT x len(FLOW_PORTS) UDP flows through the firewall: entries in its
    table and the nf_conntrack slab's growth (objects, bytes each)."""
    from lab.attacks import hping3_argv, read_conntrack_slab, run_hping3

    fw.flush_sessions()
    before = read_conntrack_slab()
    sent = 0
    for port in FLOW_PORTS:
        argv = hping3_argv(
            lab.ip("server"),
            port,
            ("--udp",),
            FLOWS_PER_PORT,
            interval_us=20,
            source_port=1024,
            keep_port=False,
        )
        sent += run_hping3(lab, "client", argv)["sent"]
    entries = int(lab.run("fw", ["conntrack", "-C"]).strip())
    after = read_conntrack_slab()
    fw.flush_sessions()
    grew = after[0] - before[0] if before and after else None
    size = after[1] if after else None
    return {"sent": sent, "entries": entries, "slab objects added": grew, "bytes per object": size}


def run(out: Path) -> dict[str, Any]:
    from lab import topology
    from lab.config import FirewallPolicy
    from lab.net import Lab
    from lab.traffic import start_echo_server

    with Lab(topology.load("s1"), out / "lab") as lab:
        fw = lab.node("fw")
        lab.start(
            "server",
            ["iperf3", "-s", "-p", str(IPERF_PORT), "--forceflush"],
            "iperf3",
            ready="Server listening",
        )
        start_echo_server(lab, "server", [ECHO_PORT], "echo")

        def as_firewall(measure: Any) -> Any:
            def run_it() -> float:
                fw.apply_policy(FirewallPolicy())
                fw.reset()
                return float(measure(lab))

            return run_it

        def as_router(measure: Any) -> Any:
            def run_it() -> float:
                lab.run("fw", ["nft", "flush", "ruleset"])
                return float(measure(lab))

            return run_it

        throughput = Figure(
            "TCP throughput through the firewall, iperf3", "Gbit/s", baseline_name="plain router"
        )
        throughput.min_ratio = THROUGHPUT_TARGET
        paired(throughput, as_firewall(iperf), as_router(iperf), REPEAT)
        rate = Figure(
            f"new TCP sessions/s ({SESSIONS:,}, {CONCURRENCY} at a time)", "1/s", baseline_name="plain router"
        )
        paired(rate, as_firewall(sessions_per_second), as_router(sessions_per_second), REPEAT)
        fw.apply_policy(FirewallPolicy())
        held = hold(lab, fw)
    table = Figure("UDP flows held in the firewall's table", "sessions", min_value=HOLD_TARGET)
    table.samples.append(float(held["entries"]))
    rows = [throughput.to_dict(), rate.to_dict(), table.to_dict()]
    if held["bytes per object"]:
        memory = Figure(
            "kernel memory per session (nf_conntrack slab object)", "B", samples=[held["bytes per object"]]
        )
        rows.append(memory.to_dict())
    return {"rows": rows, "hold": held}


def plot(data: dict[str, Any], path: Path) -> None:
    """The paired figures, each repetition: the firewall's beside the plain router's."""
    from lab.plot import plt, save

    rows = [r for r in data["rows"] if r["baseline"]]
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3.5), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        ax.scatter([0] * len(row["samples"]), row["samples"], color="tab:orange")
        ax.scatter([1] * len(row["baseline"]), row["baseline"], color="tab:blue")
        ax.set_xticks([0, 1], ["firewall", row["baseline_name"]])
        ax.set_ylabel(row["unit"])
        ax.set_title(row["what"], fontsize=8)
        ax.set_xlim(-0.5, 1.5)
    save(fig, path)
