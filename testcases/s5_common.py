"""S5's shared parts (SCENARIOS.md, a stateful firewall and its session table): the
services, the intent every S5 module starts from, what the echo servers accepted, what
nmap should conclude under the intent, and (IPv6) neighbour tables and discovery as data.

   inside: srv 10.0.1.10 (echo servers on 80, published, and 5001, not), c1 10.0.1.11
   outside: ext 10.0.2.10 (echo server on 8080), legit .20, attacker .66 (spoofing .166), scanner .77
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import conntrack
from lab.capture import Capture
from lab.config import FirewallPolicy, Service
from lab.packets import read_frames
from lab.results import Case
from lab.traffic import curl, server_events

PUBLISHED, UNPUBLISHED, OUTBOUND = 80, 5001, 8080  # srv's published and other service, ext's
INTENT = FirewallPolicy(allow_inbound=(Service(PUBLISHED),))
# The echo servers of every S5 case, node -> ports (the shared `servers` fixture).
ECHOES = {"srv": (PUBLISHED, UNPUBLISHED), "ext": (OUTBOUND,)}


def accepted_from(servers, name: str, client: str, port: int) -> set[int]:
    """Source ports of `client` whose sessions the server `name` accepted on `port`."""
    return {
        int(e["peer"].rsplit(":", 1)[1])
        for e in server_events(servers[name])
        if e["event"] == "accept" and e["port"] == port and e["peer"].startswith(f"{client}:")
    }


def fw_captures(lab, folder: Path, bpf: str = "tcp") -> tuple[Capture, Capture]:
    """Captures on both sides of fw: inside (fw-in) and outside (fw-out)."""
    return (
        Capture(lab, "fw", "fw-in", folder, "inside-fw-in", bpf=bpf),
        Capture(lab, "fw", "fw-out", folder, "outside-fw-out", bpf=bpf),
    )


def keep_captures(case: Case, inside: Capture, outside: Capture, suffix: str = "") -> None:
    """`fw_captures`' files listed as the case's evidence."""
    case.keep(inside.path, f"capture, inside (fw-in){suffix}")
    case.keep(outside.path, f"capture, outside (fw-out){suffix}")


def ipv6_table(lab, case: Case | None = None, name: str = "conntrack-ipv6") -> list[conntrack.Session]:
    """fw's IPv6 sessions now (`conntrack -L -f ipv6`), kept as the case's evidence `name`."""
    text = lab.run("fw", ["conntrack", "-L", "-f", "ipv6"], merge=False)
    if case is not None:
        path = case.path / f"{name}.txt"
        path.write_text(text)
        case.keep(path, f"fw's IPv6 session table ({name})")
    return conntrack.parse_table(text)


def attempt(lab, node: str, url: str, sport: int, timeout: float) -> dict[str, Any]:
    """One connection attempt with curl from `node`'s port `sport`: curl's report and the
    port (its report names the local port only once connected). A dropped SYN: exit 28,
    time_connect 0."""
    return {**curl(lab, node, url, range(sport, sport + 1), timeout=timeout), "sport": sport}


def assert_crafted_verdicts(table: Mapping[str, Mapping[str, str]], crafted, nmap_rows) -> None:
    """Each crafted segment without a session (`table`: name -> filter -> verdict from the
    captures) as each filter must treat it: the stateful policy drops it; a stateless ACL
    lets in what looks like a reply (TCP with ACK or RST set, to a high port) and drops the
    rest; nmap's ACK scan says filtered through the first and unfiltered through the second."""
    for c in crafted:
        looks_like_reply = bool({"A", "R"} & set(c.flags))
        expected = {"stateful": "dropped", "stateless": "passed" if looks_like_reply else "dropped"}
        assert table[c.name] == expected, f"{c.name}: {table[c.name]}, expected {expected} (captures)"
    for row, states in nmap_rows.items():
        assert states == {"stateful": "filtered", "stateless": "unfiltered"}, f"{row}: {states}"


def load_filter(fw, case: Case, kind: str, policy: FirewallPolicy = INTENT) -> Path:
    """Load `policy` on fw as the stateful policy ("stateful") or as a stateless filter
    ("stateless"); the ruleset kept as the case's evidence."""
    path = fw.apply_policy(policy) if kind == "stateful" else fw.apply_stateless(policy)
    return case.keep(path, f"ruleset, {kind}")


def nmap_expected(
    scan: str,
    node: str,
    port: int,
    policy: FirewallPolicy = INTENT,
    echoes: Mapping[str, tuple[int, ...]] = ECHOES,
) -> str:
    """The state nmap should report for `node`:`port` behind the stateful `policy`: a SYN
    to a published port crosses (open if a server listens, else the host's RST: closed),
    any other is dropped (filtered); a probe that is no SYN has no session and is dropped
    (ACK scan: filtered; FIN, XMAS, NULL: nmap cannot tell open from filtered)."""
    published = any(
        s.proto == "tcp" and s.port <= port <= (s.port_end or s.port) for s in policy.allow_inbound
    )
    if scan == "SYN scan":
        return ("open" if port in echoes.get(node, ()) else "closed") if published else "filtered"
    return "filtered" if scan == "ACK scan" else "open|filtered"


# Neighbour states that hold a link-layer address learnt on the link: confirmed (REACHABLE)
# or awaiting confirmation (RFC 4861, 7.3.2); not INCOMPLETE or FAILED.
RESOLVED = ("REACHABLE", "STALE", "DELAY", "PROBE")


@dataclass(frozen=True)
class Neighbour:
    """One entry of a node's IPv6 neighbour table (`ip -j -6 neigh`)."""

    address: str
    dev: str
    mac: str  # "" while unresolved
    state: str  # REACHABLE, STALE, DELAY, PROBE, INCOMPLETE, FAILED, ...
    router: bool  # the neighbour said it is a router (NA's R flag)


def parse_neighbours(text: str) -> list[Neighbour]:
    """`ip -j -6 neigh show`'s JSON as Neighbour entries."""
    return [
        Neighbour(
            e["dst"], e.get("dev", ""), e.get("lladdr", ""), ",".join(e.get("state", [])), "router" in e
        )
        for e in json.loads(text or "[]")
    ]


@dataclass(frozen=True)
class NdPacket:
    """A neighbour solicitation ("NS") or advertisement ("NA") seen on a link."""

    time: float
    kind: str
    src: str
    dst: str
    target: str  # the address asked about (NS) or advertised (NA)
    hop_limit: int  # 255: sent on this link, never forwarded (RFC 4861, 7.1.1)
    eth_src: str
    router: bool = False  # NA: the R flag


def read_neighbour_discovery(path: Path) -> list[NdPacket]:
    """The NS and NA packets of a pcap file, in capture order (scapy)."""
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, IPv6

    found = []
    for stamp, frame in read_frames(path):
        ip = frame.getlayer(IPv6)
        for kind, layer in (("NS", ICMPv6ND_NS), ("NA", ICMPv6ND_NA)):
            nd = frame.getlayer(layer)
            if ip is not None and nd is not None:
                router = bool(nd.R) if kind == "NA" else False
                found.append(NdPacket(stamp, kind, ip.src, ip.dst, nd.tgt, int(ip.hlim), frame.src, router))
    return found


def read_echo_replies(path: Path) -> list[tuple[str, str]]:
    """(source, destination) of every ICMP or ICMPv6 echo reply in a pcap file (scapy)."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.inet6 import ICMPv6EchoReply, IPv6

    found = []
    for _, frame in read_frames(path):
        if frame.haslayer(ICMPv6EchoReply) and frame.haslayer(IPv6):
            found.append((frame[IPv6].src, frame[IPv6].dst))
        elif frame.haslayer(ICMP) and frame.haslayer(IP) and frame[ICMP].type == 0:
            found.append((frame[IP].src, frame[IP].dst))
    return found
