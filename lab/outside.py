"""Nothing of the lab reaches outside it: during a run no process of a lab listens on a
root-namespace address other than loopback, no route or address of the lab's ranges
appears in the root namespace, and every capture holds only lab addresses.

The lab's ranges are every topology's address plan (`PLAN`, and `PLAN6` where a topology is
dual-stack): its networks, plus any named address or VIP outside them. The root namespace
is PID 1's network namespace, read with `ss` and `ip -j` (through `nsenter` when this
process runs elsewhere). A listener is a lab's when its process is, or descends from, a
process a lab owns: a lab's owner (the test process), what the lab started, its nodes'
shells (`lab.records`); the Open vSwitch daemons listen as the lab configures them, so a
non-loopback listener of theirs that was not there before the lab counts too. A capture
holds lab addresses, the exceptions (multicast, link-local) and none of the root
namespace's own: the switches' ports are the lab's interfaces in the root namespace, and
with IPv6 on them its kernel would talk into the lab from their link-local addresses
(`seal_switch_ports` turns it off as the lab builds them).

Apart from `lab.isolation`, which keeps cases apart inside the lab (port blocks), this
keeps the lab apart from the machine. Parsing (`lab.root_tables`) and judging are pure
(tested offline, tests/test_outside_checks.py); `sample_root` and `RootSampler` read the
machine.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab.addresses import read_addressed_pcap
from lab.capture import Sampler
from lab.errors import ConfigError
from lab.procs import host_run
from lab.root_tables import (
    Listener,
    Network,
    RootSample,
    Route,
    parse_addresses,
    parse_listeners,
    parse_routes,
)

# Addresses a capture may hold beside the lab's: multicast (VRRP adverts, MLD), IPv6
# link-local (the hosts' neighbour discovery) and IPv6's unspecified source (duplicate
# address detection). Not 0.0.0.0: no DHCP here.
CAPTURE_EXCEPTIONS = ("224.0.0.0/4", "ff00::/8", "fe80::/10", "::/128")
OVS_DAEMONS = ("ovs-vswitchd", "ovsdb-server")  # listen where the lab configures them
MAX_SAMPLES = 600  # a sampler's bound: 5 minutes at its period


# --- the lab's ranges ------------------------------------------------------------------
def plan_ranges(plans: Iterable[Any]) -> tuple[Network, ...]:
    """The ranges of these address plans (`_sessionlab_nodes.Plan`): their networks, and
    each host, named address and VIP that none of them holds (as a /32 or /128), merged."""
    networks = [ipaddress.ip_network(n, strict=False) for p in plans for n in p.networks.values()]
    singles = [
        ipaddress.ip_network(a)
        for p in plans
        for a in (*(a for g in p.hosts.values() for a in g.values()), *p.addresses.values(), *p.vips.values())
    ]
    networks += [s for s in singles if not any(inside(s, n) for n in networks)]
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    return (*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6))


def inside(net: Network, outer: Network) -> bool:
    """Whether `net` lies in `outer` (equal included); never across families."""
    return net.version == outer.version and net.subnet_of(outer)  # type: ignore[arg-type]


def lab_ranges(directory: Path | None = None) -> tuple[Network, ...]:
    """Every topology's ranges (both families), from the address plans the files export."""
    from lab import topology

    folder = directory or topology.TOPOLOGY_DIR
    plans = []
    for name in topology.available(folder):
        for family in (4, 6):
            try:
                plans.append(topology.plan(name, folder, family))
            except ConfigError:  # IPv4 only, or a file without a plan: nothing to add
                continue
    return plan_ranges(plans)


def within(address: str, networks: Iterable[Network]) -> bool:
    """Whether `address` lies in one of `networks` (of its own family)."""
    ip = ipaddress.ip_address(address)
    return any(ip.version == n.version and ip in n for n in networks)


# --- judging -------------------------------------------------------------------------
def owner_in(pid: int, roots: Mapping[int, str], parent_of: Callable[[int], int | None]) -> str:
    """The root (lab process) `pid` is or descends from, as "<name> (pid N)"; "" if none."""
    seen: set[int] = set()
    current: int | None = pid
    while current and current not in seen and len(seen) < 64:
        if current in roots:
            return f"{roots[current]} (pid {current})"
        seen.add(current)
        current = parent_of(current)
    return ""


def attribute(
    listeners: Iterable[Listener], roots: Mapping[int, str], parent_of: Callable[[int], int | None]
) -> list[Listener]:
    """`listeners`, each marked with the lab process that holds it, where one does."""
    marked = []
    for listener in listeners:
        owners = [owner_in(pid, roots, parent_of) for _, pid in listener.processes]
        marked.append(replace(listener, lab=next((o for o in owners if o), "")))
    return marked


def violations(sample: RootSample, ranges: Sequence[Network], before: RootSample | None = None) -> list[str]:
    """What in `sample` reaches outside the lab: a lab's listener (or one the Open vSwitch
    daemons opened since `before`) on an address other than loopback, an address in the
    lab's ranges, a route to a prefix inside them (the default route and wider ones are
    the machine's own)."""
    found = []
    earlier = {x.key for x in before.listeners} if before is not None else set()
    for x in sample.listeners:
        ovs = any(name in OVS_DAEMONS for name, _ in x.processes) and x.key not in earlier
        if not x.loopback and (x.lab or ovs):
            found.append(f"listener {x}")
    found += [f"address {a}" for a in sample.addresses if within(a.address, ranges)]
    for route in sample.routes:
        net = route.network
        if net.prefixlen and any(inside(net, r) for r in ranges):
            found.append(f"route {route}")
    return found


def covering_routes(routes: Iterable[Route], ranges: Sequence[Network]) -> list[str]:
    """Routes wider than a lab range that hold it (not the default route): the machine's own
    network overlapping the lab's addresses."""
    found = []
    for route in routes:
        net = route.network
        for r in ranges:
            if net.prefixlen and inside(r, net) and net != r:
                found.append(f"{route} holds the lab's {r}")
                break
    return found


@dataclass
class CaptureCheck:
    """What the captures of a folder hold: packets read, and per file the distinct
    "kind src > dst" that have an address outside the lab's ranges and the exceptions."""

    files: int = 0
    packets: int = 0
    by_file: dict[str, int] = field(default_factory=dict)
    outside: dict[str, list[str]] = field(default_factory=dict)


def check_captures(
    folder: Path,
    ranges: Sequence[Network],
    exceptions: Iterable[str] = CAPTURE_EXCEPTIONS,
    root: Collection[str] = (),
) -> CaptureCheck:
    """Every packet of every pcap under `folder`: its source and destination in the lab's
    ranges or in `exceptions` (networks: a case may declare more), and neither one of the
    `root` namespace's own addresses (`root_addresses`: its switch ports' IPv6 link-local
    ones fall in the exceptions, yet are not the lab's)."""
    allowed = [*ranges, *(ipaddress.ip_network(e) for e in exceptions)]
    result = CaptureCheck()
    for path in sorted(folder.rglob("*.pcap")):
        if not path.is_file():
            continue
        packets = read_addressed_pcap(path)
        name = str(path.relative_to(folder))
        result.files += 1
        result.packets += len(packets)
        result.by_file[name] = len(packets)
        bad = set()
        for p in packets:
            shown = f"{p.kind}{' (inside VXLAN)' if p.inner else ''} {p.src} > {p.dst}"
            if p.src in root or p.dst in root:
                bad.add(f"{shown} (a root-namespace address)")
            elif not (within(p.src, allowed) and within(p.dst, allowed)):
                bad.add(shown)
        if bad:
            result.outside[name] = sorted(bad)
    return result


def root_addresses(samples: Iterable[RootSample]) -> set[str]:
    """Every address the root namespace's interfaces held in `samples`, loopback aside."""
    return {
        a.address for s in samples for a in s.addresses if not ipaddress.ip_address(a.address).is_loopback
    }


# --- sealing the lab's side of the root namespace ------------------------------------------
IPV6_CONF = Path("/proc/sys/net/ipv6/conf")


def seal_switch_ports(switches: Iterable[Any], conf: Path = IPV6_CONF) -> list[str]:
    """IPv6 off on the switches' ports, the lab's interfaces in the root namespace, once
    Mininet has built them (before the switches start): else the root namespace's kernel
    gives each a link-local address and sends router solicitations and MLD reports from
    it into the lab, where the hosts and the captures see them. The switch forwards as
    before (Open vSwitch reads the ports raw). Returns the ports sealed."""
    sealed = []
    for switch in switches:
        for intf in switch.intfList():
            knob = conf / intf.name / "disable_ipv6"
            if intf.name != "lo" and knob.exists():
                knob.write_text("1")
                sealed.append(intf.name)
    return sealed


# --- reading the machine ---------------------------------------------------------------
def _netns_inode(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def in_root(argv: list[str]) -> list[str]:
    """`argv` run in PID 1's network namespace: as it is where this process is there, or
    where PID 1's namespace cannot be read (a hardened init): this process's is taken."""
    own, init = _netns_inode("self"), _netns_inode("1")
    if init is None or own == init:
        return argv
    return ["nsenter", "--net=/proc/1/ns/net", *argv]


def parent_of(pid: int) -> int | None:
    """A process's parent (/proc/<pid>/stat field 4), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def lab_processes() -> dict[int, str]:
    """The roots of every lab's processes on this machine: this process, and of every lab
    record (`lab.records`) its owner and what it started (PID -> name)."""
    from lab.records import records

    roots = {os.getpid(): "this test process"}
    for record in records():
        roots.setdefault(record.owner, f"owner of lab {record.tag}")
        for pid, proc in record.processes.items():
            roots[pid] = f"{proc.get('name', '?')} of lab {record.tag}"
    return roots


def _root(argv: list[str]) -> str:
    return host_run(in_root(argv), timeout=10)


def sample_root(roots: Mapping[int, str] | None = None, listeners: bool = True) -> RootSample:
    """The root namespace now, its listeners attributed (`roots`: `lab_processes()`);
    without `listeners`, its addresses and routes only."""
    now = time.time()
    found: list[Listener] = []
    if listeners:
        found = parse_listeners(host_run(in_root(["ss", "-lntupH", "-p"]), timeout=10))
        found = attribute(found, roots if roots is not None else lab_processes(), parent_of)
    addresses = parse_addresses(host_run(in_root(["ip", "-j", "addr", "show"]), timeout=10))
    routes = parse_routes(
        host_run(in_root(["ip", "-j", "-4", "route", "show", "table", "all"]), timeout=10), 4
    )
    routes += parse_routes(
        host_run(in_root(["ip", "-j", "-6", "route", "show", "table", "all"]), timeout=10), 6
    )
    return RootSample(now, tuple(found), tuple(addresses), tuple(routes))


class RootSampler(Sampler):
    """Samples of the root namespace every `period` seconds while the block runs: one
    before it (the baseline: taken before a lab the block builds), then in a thread, and
    one at its end; at most `limit`."""

    def __init__(self, period: float = 0.5, limit: int = MAX_SAMPLES):
        super().__init__()
        self.period, self.limit = period, limit
        self.samples: list[RootSample] = []

    def sample(self) -> None:
        if len(self.samples) < self.limit:
            self.samples.append(sample_root())

    def __enter__(self) -> RootSampler:
        self.sample()
        return super().__enter__()

    def violations(self, ranges: Sequence[Network]) -> dict[str, list[float]]:
        """Each violation seen -> the times of the samples that showed it."""
        found: dict[str, list[float]] = {}
        before = self.samples[0] if self.samples else None
        for sample in self.samples:
            for text in violations(sample, ranges, before):
                times = found.setdefault(text, [])
                if not times or times[-1] != sample.time:
                    times.append(sample.time)
        return found

    def save(self, path: Path, ranges: Sequence[Network]) -> Path:
        """The samples, the ranges and what violated them, as JSON (the case's evidence)."""
        data = {
            "ranges": [str(r) for r in ranges],
            "violations": self.violations(ranges),
            "samples": [s.to_dict() for s in self.samples],
        }
        path.write_text(json.dumps(data, indent=1))
        return path
