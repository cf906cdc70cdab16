"""The S2 fabric (issue 12): new TCP sessions/s and iperf3 throughput through each fabric
mode, against the same topology with standalone switches (MAC learning, no controller),
both labs up at once and each repetition alternating which goes first; and the
controller's CPU while the sessions run.

The standalone baseline needs two changes to carry traffic at all: the hosts' gateway
neighbour is the virtual gateway MAC that only the fabric rewrites, so there it is fw1's
own MAC (every session crosses fw1); and the a2-si link is down (a1, a2 and si form a
loop, which standalone switches without spanning tree would flood round). The firewalls
run the same policy in both.

Modes: `symmetric`, `correction-mac` and `correction-mpls` carry every session through one
firewall both ways (the targets: at least 0.8x standalone's new sessions/s, and under 0.1
datapath misses per new session: the fabric pins sessions in conntrack and hashes them in
the datapath, so a new session runs in cached megaflows; see controllers/fwlb/logic.py). `sync` (the fabric
`independent`, conntrackd copying sessions) splits about half the sessions across the
firewalls and waits on the copy: a reply that outruns it is dropped and its session waits
for a retransmission (shown, no target). `sync-defer`: sync whose firewalls hold each new
session's SYN (and a split session's SYN-ACK) until the peer holds the entry; target at
least 0.5x standalone, the standalone lab deferring too. `independent` alone drops split sessions by
design and is left out.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.controller import cpu_seconds
from bench.measure import iperf_tcp
from bench.paired import Figure

REPEAT = 3
SESSIONS, CONCURRENCY, CLIENT_TIMEOUT = 2000, 32, 3.0
ECHO_PORT, IPERF_PORT = 7000, 5201
FIRST_PORT = 10_000  # source ports of the session runs: blocks of SESSIONS from here (per lab)
_RUNS: dict[str, Iterator[int]] = {}  # per lab
# Before each measured run, a few sessions warm the datapath's flow cache up (the figures
# are for a fabric in service, not one whose controller just started): their own ports,
# blocks of WARMUP from WARMUP_FIRST_PORT.
WARMUP, WARMUP_FIRST_PORT = 64, 2_000
_WARMUPS: dict[str, Iterator[int]] = {}  # per lab
IPERF_SECONDS = 5
TARGET = 0.8  # new sessions/s at least 0.8x standalone
MAX_MISSES = 0.1  # datapath misses per new session (each an upcall to the slow path)
TARGET_MODES = ("symmetric", "correction-mac", "correction-mpls")
SYNC_MODES = ("sync", "sync-defer")
MODES = (*TARGET_MODES, *SYNC_MODES)
DEFER_TARGET = 0.5  # sync-defer: new sessions/s at least 0.5x standalone (deferring too)
SERVERS = ("srv1", "srv2")
FIREWALLS = ("fw1", "fw2")


def prepare(lab: Any, sync: bool = False, defer: bool = False) -> None:
    """Both firewalls with the servers' subnet published on the echo and iperf3 ports,
    empty tables, zeroed counters; conntrackd sync on or off."""
    from lab.config import FirewallPolicy, Service

    intf = lab.node(SERVERS[0]).defaultIntf()
    inside = str(ipaddress.ip_interface(f"{intf.IP()}/{intf.prefixLen}").network)
    policy = FirewallPolicy(
        tcp_timeout=120,
        allow_inbound=(Service(ECHO_PORT, address=inside), Service(IPERF_PORT, address=inside)),
    )
    for name in FIREWALLS:
        fw = lab.node(name)
        fw.stop_sync()
        fw.apply_policy(policy)
        fw.reset()
    if sync:
        for name in FIREWALLS:
            lab.node(name).start_sync(defer=defer)


def start_servers(lab: Any) -> None:
    from lab.traffic import start_echo_server

    for name in SERVERS:
        start_echo_server(lab, name, [ECHO_PORT], f"echo-{name}")
    lab.start(
        "srv1", ["iperf3", "-s", "-p", str(IPERF_PORT), "--forceflush"], "iperf3", ready="Server listening"
    )


def standalone_paths(lab: Any) -> None:
    """The standalone lab's paths (see the module's text): gateways by fw1's MACs, a2-si down."""
    from lab.procs import host_run

    fw1 = lab.node("fw1")
    for hosts, switch in ((("h1", "h2", "h3"), "so"), (SERVERS, "a1")):
        _, intf = lab.link_intf("fw1", switch)
        gateway, mac = fw1.intf(intf).IP(), fw1.intf(intf).MAC()
        for name in hosts:
            dev = lab.node(name).defaultIntf().name
            lab.run(name, ["ip", "neigh", "replace", gateway, "lladdr", mac, "dev", dev, "nud", "permanent"])
    for a, b in (("a2", "si"), ("si", "a2")):
        _, intf = lab.link_intf(a, b)
        host_run(["ip", "link", "set", intf, "down"])


def datapath_misses() -> int:
    """Packets the userspace datapath found no flow for so far (each an upcall to the
    slow path: the OpenFlow tables), over every bridge on this machine (other labs
    running at the same time count too)."""
    from lab.procs import host_run

    found = re.search(r"missed:(\d+)", host_run(["ovs-appctl", "dpctl/show"]))
    return int(found[1]) if found else 0


def sessions(lab: Any, cpu_pid: int | None) -> dict[str, Any]:
    """SESSIONS short echo sessions from h1 to both servers (after WARMUP of them): completed
    per second of the whole load, how many failed, datapath misses per session, and the
    controller's CPU (cores) meanwhile."""
    from lab.traffic import SessionLoad, sessions_records

    servers = [f"{lab.ip(s)}:{ECHO_PORT}" for s in SERVERS]
    warm = WARMUP_FIRST_PORT + next(_WARMUPS.setdefault(str(lab.paths.root), itertools.count())) * WARMUP
    warmup = SessionLoad(servers, WARMUP, concurrency=CONCURRENCY, timeout=CLIENT_TIMEOUT, first_port=warm)
    lab.run("h1", warmup.argv(), timeout=warmup.budget())
    # Each run its own block of source ports (TIME_WAIT sockets of earlier runs slow the
    # kernel's own choice down: bench/firewall.py)
    first = FIRST_PORT + next(_RUNS.setdefault(str(lab.paths.root), itertools.count())) * SESSIONS
    load = SessionLoad(servers, SESSIONS, concurrency=CONCURRENCY, timeout=CLIENT_TIMEOUT, first_port=first)
    cpu = cpu_seconds(cpu_pid) if cpu_pid else 0.0
    misses = datapath_misses()
    started = time.monotonic()
    records = sessions_records(lab.run("h1", load.argv(), timeout=load.budget()))
    elapsed = time.monotonic() - started
    done = sum(bool(r.get("data_ok")) for r in records)
    return {
        "rate": done / elapsed,
        "failed": SESSIONS - done,
        "misses": (datapath_misses() - misses) / SESSIONS,
        "cores": (cpu_seconds(cpu_pid) - cpu) / elapsed if cpu_pid else None,
    }


def iperf(lab: Any) -> float:
    argv = ["iperf3", "-c", lab.ip("srv1"), "-p", str(IPERF_PORT), "-t", str(IPERF_SECONDS), "-J"]
    return iperf_tcp(json.loads(lab.run("h1", argv, timeout=IPERF_SECONDS + 30)))


def run(out: Path) -> dict[str, Any]:
    from lab import topology
    from lab.net import Lab

    out.mkdir(parents=True, exist_ok=True)

    def figures(what: str, unit: str, baseline: str = "standalone switches") -> dict[str, Figure]:
        return {m: Figure(f"{m}: {what}", unit, baseline_name=baseline) for m in MODES}

    rate = figures("new TCP sessions/s", "1/s")
    misses = figures("datapath misses (upcalls) per session", "packets")
    for m in TARGET_MODES:
        rate[m].min_ratio = TARGET
        misses[m].max_value = MAX_MISSES
    rate["sync-defer"].min_ratio = DEFER_TARGET
    bulk = figures("TCP throughput, iperf3", "Gbit/s")
    cpu = figures("controller CPU during the sessions", "cores", baseline="")
    failed: dict[str, list[int]] = {m: [] for m in (*MODES, "standalone")}
    fabric_lab = Lab(
        topology.load("s2"), out / "fabric", controller=topology.controller_for("s2", mode=MODES[0])
    )
    with fabric_lab as fabric, Lab(topology.load("s2"), out / "standalone") as alone:
        standalone_paths(alone)
        start_servers(fabric)
        start_servers(alone)
        for n in range(REPEAT):
            for mode in MODES:
                sync = mode in SYNC_MODES
                fabric.restart_controller(mode="independent" if sync else mode)
                assert fabric.controller is not None and fabric.controller.proc is not None
                pid = fabric.controller.proc.popen.pid
                sides = [(fabric, pid, "samples", mode), (alone, None, "baseline", "standalone")]
                for lab, cpu_pid, side, name in sides if n % 2 == 0 else sides[::-1]:
                    prepare(lab, sync, defer=mode == "sync-defer")
                    got = sessions(lab, cpu_pid)
                    getattr(rate[mode], side).append(got["rate"])
                    getattr(misses[mode], side).append(got["misses"])
                    failed[name].append(got["failed"])
                    getattr(bulk[mode], side).append(iperf(lab))
                    if got["cores"] is not None:
                        cpu[mode].samples.append(got["cores"])
    rows = [f.to_dict() for m in MODES for f in (rate[m], misses[m], bulk[m], cpu[m])]
    return {"rows": rows, "failed sessions": failed, "sessions": SESSIONS, "concurrency": CONCURRENCY}


def plot(data: dict[str, Any], path: Path) -> None:
    """New sessions/s per mode, each repetition, beside the standalone baseline."""
    from lab.plot import plt, save

    rows = [r for r in data["rows"] if r["unit"] == "1/s"]
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, row in enumerate(rows):
        ax.scatter([i - 0.1] * len(row["samples"]), row["samples"], color="tab:orange",
                   label="fabric" if i == 0 else None)  # fmt: skip
        ax.scatter([i + 0.1] * len(row["baseline"]), row["baseline"], color="tab:blue",
                   label="standalone switches" if i == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(rows)), [r["what"].split(":")[0] for r in rows], fontsize=8)
    ax.set_ylabel("new TCP sessions/s")
    ax.legend()
    ax.set_title(f"{data['sessions']:,} sessions, {data['concurrency']} at a time, per fabric mode")
    save(fig, path)
