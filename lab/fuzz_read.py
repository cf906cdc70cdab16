"""Hostile frames read back (issue 26, point 5): what a frame's outer headers say, and a
capture's frames sorted into the device's own, the case's sessions, the fuzz frames the
policy let through, those it should not have, and what nothing explains.

Apart from `lab.fuzz`, which makes and sends the frames: this reads them back, from the
frames made and from the captures of what the device let through.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lab.fuzz import MIN_FRAME, Frame


@dataclass(frozen=True)
class Parsed:
    """What a frame's outer headers say, as far as they are whole: its Ethernet addresses
    and type, its IP version, addresses and protocol, and its L4 ports."""

    eth_src: str
    eth_dst: str
    ethertype: int
    version: int = 0
    src: str = ""
    dst: str = ""
    proto: int = -1
    ident: int = -1  # IPv4 identification, IPv6 flow label
    sport: int = -1
    dport: int = -1
    icmp_type: int = -1
    quoted_src: str = ""  # an ICMP error's: the packet it is about
    quoted_dst: str = ""

    def key(self) -> tuple[int, str, int, int, int, int]:
        """What forwarding keeps of a packet: not its MACs, TTL or checksum, nor its
        destination (a balancer rewrites it)."""
        return (self.version, self.src, self.proto, self.ident, self.sport, self.dport)

    def flow(self) -> tuple[int, str, int, int, int]:
        """The flow's direction from its source, the destination left out as in `key`."""
        return (self.version, self.src, self.proto, self.sport, self.dport)


def parse(frame: bytes) -> Parsed:
    """`Parsed` of an Ethernet frame, read at the headers' fixed places (no parser that
    gives up on a malformed one: a fuzz frame is read the same whether sent or captured);
    a header cut short leaves its fields unset."""

    def mac(b: bytes) -> str:
        return ":".join(f"{x:02x}" for x in b)

    if len(frame) < MIN_FRAME:
        return Parsed("", "", -1)
    ethertype = int.from_bytes(frame[12:14], "big")
    base = Parsed(mac(frame[6:12]), mac(frame[0:6]), ethertype)
    ip = frame[14:]
    if ethertype == 0x0800 and len(ip) >= 20 and ip[0] >> 4 == 4:
        version, family, proto = 4, socket.AF_INET, ip[9]
        ident = int.from_bytes(ip[4:6], "big")
        src, dst = ip[12:16], ip[16:20]
        first = int.from_bytes(ip[6:8], "big") & 0x1FFF == 0  # not a later fragment
        l4 = ip[(ip[0] & 0x0F) * 4 :] if first else b""
    elif ethertype == 0x86DD and len(ip) >= 40 and ip[0] >> 4 == 6:
        version, family, proto = 6, socket.AF_INET6, ip[6]
        ident = int.from_bytes(ip[1:4], "big") & 0xFFFFF
        src, dst = ip[8:24], ip[24:40]
        l4 = ip[40:]
    else:
        return base
    ports = proto in (6, 17) and len(l4) >= 4
    icmp = l4[0] if proto in (1, 58) and l4 else -1
    quoted = _quoted(l4[8:], version) if icmp in ICMP_ERRORS[version] else ("", "")
    return Parsed(
        base.eth_src,
        base.eth_dst,
        ethertype,
        version,
        socket.inet_ntop(family, src),
        socket.inet_ntop(family, dst),
        proto,
        ident,
        int.from_bytes(l4[0:2], "big") if ports else -1,
        int.from_bytes(l4[2:4], "big") if ports else -1,
        icmp,
        *quoted,
    )


ICMP_ERRORS = {4: {3, 4, 5, 11, 12}, 6: {1, 2, 3, 4}}  # the types that quote a packet


def _quoted(data: bytes, version: int) -> tuple[str, str]:
    """The source and destination of the packet an ICMP error quotes (after its 8 bytes)."""
    if version == 4 and len(data) >= 20:
        return socket.inet_ntop(socket.AF_INET, data[12:16]), socket.inet_ntop(socket.AF_INET, data[16:20])
    if version == 6 and len(data) >= 40:
        return socket.inet_ntop(socket.AF_INET6, data[8:24]), socket.inet_ntop(socket.AF_INET6, data[24:40])
    return "", ""


CLASSES = (
    "sessions",
    "housekeeping",
    "fuzz allowed",
    "fuzz flows",
    "fuzz forbidden",
    "errors about fuzz",
    "unexplained",
)
HOUSEKEEPING_ICMP6 = {130, 131, 132, 133, 134, 135, 136, 143}  # MLD, router and neighbour discovery


def classify(
    captured: Iterable[tuple[float, bytes]],
    sent: Iterable[Frame],
    emitter: Callable[[Parsed], bool],
    session: Callable[[Parsed], bool],
    allowed: Callable[[Parsed, Parsed], bool],
) -> dict[str, list[Parsed]]:
    """Each frame a capture holds that `emitter` says the device sent towards the inside:
    "sessions" (the case's own sessions, `session`), "housekeeping" (ARP, neighbour
    discovery, MLD, the captures' markers), "fuzz allowed" (a fuzz frame, matched by its
    `Parsed.key`, that `allowed(captured, sent)` lets through: the policy's), "fuzz flows"
    (another frame of an allowed fuzz frame's flow: the spoofed host's own reset), "fuzz
    forbidden" (a fuzz frame, or its flow, the policy should have stopped), "errors about fuzz" (an ICMP
    error to an inside host about its own answer to a fuzz frame's source, which had no
    neighbour to take it), and "unexplained"."""
    from lab.apps.marker import ETHERTYPE as MARKER

    by_key: dict[tuple[int, str, int, int, int, int], list[Parsed]] = {}
    for frame in sent:
        p = parse(frame.data)
        if p.version:
            by_key.setdefault(p.key(), []).append(p)
    sources = {p.src for ps in by_key.values() for p in ps}
    by_flow: dict[tuple[int, str, int, int, int], list[Parsed]] = {}
    for ps in by_key.values():
        for p in ps:
            if p.sport >= 0:
                by_flow.setdefault(p.flow(), []).append(p)
    out: dict[str, list[Parsed]] = {k: [] for k in CLASSES}
    for _stamp, raw in captured:
        p = parse(raw)
        if not emitter(p):
            continue
        if p.ethertype in (0x0806, MARKER) or (p.proto == 58 and p.icmp_type in HOUSEKEEPING_ICMP6):
            out["housekeeping"].append(p)
        elif session(p):
            out["sessions"].append(p)
        elif p.version and p.key() in by_key:
            # frames may share a key: a captured one is allowed when one of them would be
            ok = any(allowed(p, origin) for origin in by_key[p.key()])
            out["fuzz allowed" if ok else "fuzz forbidden"].append(p)
        elif p.sport >= 0 and p.flow() in by_flow:
            # the flow a fuzz frame began, sent by another: the kernel of a real host whose
            # address the frame spoofed, answering the server's reply with a reset
            ok = any(allowed(p, origin) for origin in by_flow[p.flow()])
            out["fuzz flows" if ok else "fuzz forbidden"].append(p)
        elif p.quoted_dst in sources and p.quoted_src == p.dst:
            out["errors about fuzz"].append(p)
        else:
            out["unexplained"].append(p)
    return out
