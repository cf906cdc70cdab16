"""Crafted packets and floods from real tools (hping3, nmap from Debian), bounded and
aimed at lab addresses only, and their reports as data; the kernel's memory per session.

Every attack names its count (and pace): nothing here floods without an end. The tools'
own reports are what they sent; what passed a firewall is read from captures on both
of its sides, never from the tool.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import ConfigError, LabError
from lab.packets import flags_to_bits

if TYPE_CHECKING:
    from lab.net import Lab

LAB_NETWORK = ipaddress.ip_network("10.0.0.0/8")
# The lab's IPv6 plans (fd00:<scenario>:<net>::<host>, topologies' PLAN6): nmap's targets
# may be there too; hping3 speaks IPv4 only.
LAB_NETWORK6 = ipaddress.ip_network("fd00::/16")


@dataclass(frozen=True)
class Crafted:
    """A packet no stateful firewall should pass without a session: its TCP flags (as
    hping3 options and as tcpdump prints them) and why a scanner sends it."""

    name: str
    hping3: tuple[str, ...]
    flags: str  # the flags as lab.packets prints them (S, A, F, R, P, U)
    why: str
    data: int = 0  # bytes of payload (a mid-stream segment carries some)


CRAFTED = (
    Crafted("ACK scan", ("-A",), "A", "maps filters: a stateless filter passes ACKs as replies"),
    Crafted("FIN scan", ("-F",), "F", "closed ports answer RST, open ones stay silent (RFC 793)"),
    Crafted("XMAS scan", ("-F", "-P", "-U"), "FPU", "FIN, PSH and URG at once"),
    Crafted("NULL scan", (), "", "no flag at all"),
    Crafted("out-of-state RST", ("-R",), "R", "a reset for a session that does not exist"),
    Crafted("SYN-ACK without SYN", ("-S", "-A"), "SA", "an answer nobody asked for"),
    Crafted("fragmented SYN", ("-S", "-f"), "S", "a SYN split into IP fragments"),
)
# More segments that only make sense inside a session, beside CRAFTED's scans.
NO_SESSION = (
    Crafted("FIN-ACK without session", ("-F", "-A"), "FA", "a close for a session that does not exist"),
    Crafted("mid-stream data", ("-P", "-A", "-d", "20"), "PA", "data for a session that does not exist", 20),
)


def nmap_flags(flags: str) -> str:
    """TCP flags (lab.packets' letters) as nmap's --scanflags number: the flags byte, whose
    bits nmap sends as given ("" sends none, a NULL segment)."""
    return str(flags_to_bits(flags))


def _lab_target(target: str, ipv6: bool = False) -> None:
    """Refuse a target outside the lab's IPv4 range (and, with `ipv6`, its IPv6 one)."""
    networks = (LAB_NETWORK, LAB_NETWORK6) if ipv6 else (LAB_NETWORK,)
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        address = None
    # An address is never inside a network of the other family (`in` says False).
    if address is None or not any(address in network for network in networks):
        names = ", ".join(str(n) for n in networks)
        raise ConfigError(f"target {target!r}: attacks go only to lab addresses ({names})")


def hping3_argv(
    target: str,
    port: int,
    options: tuple[str, ...],
    count: int,
    interval_us: int = 1000,
    source_port: int | None = None,
    random_source: bool = False,
    keep_port: bool = True,
    spoof: str | None = None,
) -> list[str]:
    """hping3 sending `count` packets with `options` to `target`:`port`, one every
    `interval_us` microseconds; from `source_port` (kept for every packet, or with
    `keep_port` off counted up from it: source_port + 1 ... source_port + count) or
    hping3's incrementing ports; from the lab address `spoof` instead of the sender's
    own (answers go to whoever holds it: nobody, for a flood that leaves sessions
    half-open); with `random_source`, from random addresses."""
    _lab_target(target)
    if spoof is not None:
        _lab_target(spoof)
    if not 1 <= count <= 1_000_000:
        raise ConfigError(f"hping3: count {count} is not 1-1000000 (a flood here always ends)")
    argv = ["hping3", "-q", "-n", "-c", str(count), "-i", f"u{interval_us}", "-p", str(port), *options]
    if source_port is not None:
        argv += ["-s", str(source_port), *(["-k"] if keep_port else [])]
    if spoof is not None:
        argv += ["-a", spoof]
    if random_source:
        argv.append("--rand-source")
    return [*argv, target]


_HPING_STATS = re.compile(r"(\d+) packets tra?n?s?mitted, (\d+) packets received")


def parse_hping3(text: str) -> dict[str, int]:
    """hping3's closing statistics: packets sent and answers received ("tramitted": its
    own spelling)."""
    found = _HPING_STATS.search(text)
    if found is None:
        raise LabError(f"hping3 printed no statistics: {text.strip()[-200:]}")
    return {"sent": int(found[1]), "received": int(found[2])}


NMAP_SCANS = {"ACK scan": "-sA", "FIN scan": "-sF", "XMAS scan": "-sX", "NULL scan": "-sN", "SYN scan": "-sS"}


def nmap_argv(
    scan: str, target: str, ports: str, source_port: int, flags: str | None = None, data: int = 0
) -> list[str]:
    """nmap running one scan type against `ports` of `target` (IPv4, or IPv6: `-6`), from
    `source_port`, no host discovery, one try per probe, its report as XML on stdout; with
    `flags` its probes carry exactly those TCP flags (`--scanflags`, lab.packets' letters)
    and `data` bytes of random payload."""
    _lab_target(target, ipv6=True)
    if scan not in NMAP_SCANS:
        raise ConfigError(f"nmap: no scan {scan!r} (known: {', '.join(NMAP_SCANS)})")
    six = ["-6"] if ipaddress.ip_address(target).version == 6 else []
    crafted = ["--scanflags", nmap_flags(flags)] if flags is not None else []
    crafted += ["--data-length", str(data)] if data else []
    return ["nmap", *six, NMAP_SCANS[scan], *crafted, "-p", ports, "-g", str(source_port), "-n", "-Pn",
            "--max-retries", "0", "-oX", "-", target]  # fmt: skip


def crafted_nmap_argv(crafted: Crafted, target: str, port: int, source_port: int) -> list[str]:
    """nmap sending `crafted` once to `target`:`port` from `source_port`: hping3's job for
    an IPv6 target (hping3 speaks IPv4 only). Not for a fragmented kind."""
    if "-f" in crafted.hping3:
        raise ConfigError(f"nmap: {crafted.name}: fragments are hping3's (-f)")
    return nmap_argv("SYN scan", target, str(port), source_port, crafted.flags, crafted.data)


def parse_nmap_xml(text: str) -> dict[int, str]:
    """Port -> the state nmap concluded (open, closed, filtered, unfiltered, ...)."""
    try:
        root = ElementTree.fromstring(text[text.index("<?xml") :] if "<?xml" in text else text)
    except (ElementTree.ParseError, ValueError) as exc:
        raise LabError(f"nmap printed no XML report: {exc}") from None
    states = {}
    for port in root.iter("port"):
        state = port.find("state")
        if state is not None:
            states[int(port.get("portid", "0"))] = state.get("state", "")
    return states


def conntrack_slab(slabinfo: str) -> tuple[int, int] | None:
    """The kernel's nf_conntrack cache in /proc/slabinfo: objects in use (machine-wide) and
    the size of one, what each tracked session costs in memory on top of its hash bucket."""
    for line in slabinfo.splitlines():
        words = line.split()
        if words and words[0] == "nf_conntrack" and len(words) > 3:
            return int(words[1]), int(words[3])
    return None


SLAB_SHRINK = Path("/sys/kernel/slab/nf_conntrack/shrink")
SLABINFO = Path("/proc/slabinfo")


def read_conntrack_slab() -> tuple[int, int] | None:
    """`conntrack_slab` now, counted exactly. The slab allocator counts every object of the
    slabs each CPU holds (up to 14 x 16 here) as in use, free or not, so 1,000 new sessions
    showed as 784-958 more objects; shrinking the cache first hands those slabs back and
    the count becomes the objects in use (the root namespace's 2 sessions read as 2). The
    shrink only returns empty slabs to the kernel: it changes no limit and no session."""
    if SLAB_SHRINK.exists():
        SLAB_SHRINK.write_text("1")
    return conntrack_slab(SLABINFO.read_text())


def run_hping3(lab: Lab, node: str, argv: list[str]) -> dict[str, int]:
    """Run an hping3 command (`hping3_argv`) on `node` to its end; what it sent and
    received (its own count: what passed is read from captures)."""
    count = int(argv[argv.index("-c") + 1])
    interval_us = int(argv[argv.index("-i") + 1].lstrip("u"))
    budget = count * interval_us / 1e6 * 2 + 10
    # hping3 exits 1 when nothing answered: its statistics are the outcome, not its code.
    return parse_hping3(lab.run(node, argv, timeout=budget, check=False))
