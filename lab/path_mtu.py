"""Path-MTU evidence from captures, both IP families: TCP segments with their size and MSS
option, and the ICMP errors that tell a sender a packet was too big (ICMP "fragmentation
needed", ICMPv6 "packet too big") with the MTU they name and the flow they quote.

`lab.packets` reads IPv4 TCP only (every other case's evidence); this reads IPv6 beside
it, and the ICMP errors, from the same classic pcap files (`lab.packets.read_pcap`).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from lab.packets import bits_to_flags, read_pcap

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
ICMP_UNREACH, ICMP_FRAG_NEEDED = 3, 4  # type and code of IPv4's "fragmentation needed"
ICMP6_PACKET_TOO_BIG = 2
TCP_OPT_MSS = 2


@dataclass(frozen=True)
class Flow:
    """A TCP flow's addresses and ports, one direction."""

    src: str
    sport: int
    dst: str
    dport: int


@dataclass(frozen=True)
class Segment:
    """A TCP segment over either family: `size` is the IP packet's length (IPv6: its
    40-byte header included), what a link's MTU must hold."""

    time: float
    family: int
    flow: Flow
    flags: str
    seq: int
    payload_len: int
    size: int
    mss: int | None  # the MSS option (SYN and SYN-ACK), None without one


@dataclass(frozen=True)
class TooBig:
    """An ICMP error saying a packet did not fit: who sent it (the router), to whom, the
    MTU it names and the flow of the packet it quotes."""

    time: float
    family: int
    src: str
    dst: str
    mtu: int
    quoted: Flow | None  # None when the capture cut the quote short


def _ip_text(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _mss(options: bytes) -> int | None:
    """The MSS option's value in a TCP header's options, or None."""
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            return None
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            return None
        length = options[i + 1]
        if kind == TCP_OPT_MSS and length == 4 and i + 4 <= len(options):
            return int(struct.unpack("!H", options[i + 2 : i + 4])[0])
        i += length
    return None


def _quoted(packet: bytes) -> Flow | None:
    """The TCP flow of the IP packet an ICMP error quotes (its start: headers and ports)."""
    if len(packet) >= 20 and packet[0] >> 4 == 4:
        ihl = (packet[0] & 0x0F) * 4
        if packet[9] != socket.IPPROTO_TCP or len(packet) < ihl + 4:
            return None
        sport, dport = struct.unpack("!HH", packet[ihl : ihl + 4])
        return Flow(_ip_text(packet[12:16]), sport, _ip_text(packet[16:20]), dport)
    if len(packet) >= 44 and packet[0] >> 4 == 6 and packet[6] == socket.IPPROTO_TCP:
        sport, dport = struct.unpack("!HH", packet[40:44])
        return Flow(_ip_text(packet[8:24]), sport, _ip_text(packet[24:40]), dport)
    return None


def _tcp(stamp: float, family: int, src: str, dst: str, size: int, tcp: bytes, length: int) -> Segment | None:
    """A segment from its TCP header (`length`: the TCP header and data, by the IP header)."""
    if len(tcp) < 20:
        return None
    sport, dport, seq, _, offset, bits = struct.unpack("!HHIIBB", tcp[:14])
    header = (offset >> 4) * 4
    mss = _mss(tcp[20:header]) if header > 20 else None
    flow = Flow(src, sport, dst, dport)
    return Segment(stamp, family, flow, bits_to_flags(bits), seq, max(0, length - header), size, mss)


def _frame(stamp: float, frame: bytes) -> Segment | TooBig | None:
    if len(frame) < 14:
        return None
    ethertype = struct.unpack("!H", frame[12:14])[0]
    ip = frame[14:]
    if ethertype == ETH_IPV4 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        size = struct.unpack("!H", ip[2:4])[0]
        fragment = struct.unpack("!H", ip[6:8])[0] & 0x1FFF
        src, dst, payload = _ip_text(ip[12:16]), _ip_text(ip[16:20]), ip[ihl:]
        if ip[9] == socket.IPPROTO_TCP and not fragment:
            return _tcp(stamp, 4, src, dst, size, payload, size - ihl)
        too_big = (ICMP_UNREACH, ICMP_FRAG_NEEDED)
        if ip[9] == socket.IPPROTO_ICMP and len(payload) >= 8 and (payload[0], payload[1]) == too_big:
            mtu = struct.unpack("!H", payload[6:8])[0]
            return TooBig(stamp, 4, src, dst, mtu, _quoted(payload[8:]))
        return None
    if ethertype == ETH_IPV6 and len(ip) >= 40:
        size = 40 + struct.unpack("!H", ip[4:6])[0]
        src, dst, payload = _ip_text(ip[8:24]), _ip_text(ip[24:40]), ip[40:]
        # The lab sends no extension headers: the next header is the transport's.
        if ip[6] == socket.IPPROTO_TCP:
            return _tcp(stamp, 6, src, dst, size, payload, size - 40)
        if ip[6] == socket.IPPROTO_ICMPV6 and len(payload) >= 8 and payload[0] == ICMP6_PACKET_TOO_BIG:
            mtu = struct.unpack("!I", payload[4:8])[0]
            return TooBig(stamp, 6, src, dst, mtu, _quoted(payload[8:]))
    return None


def read_path_mtu(path: Path) -> tuple[list[Segment], list[TooBig]]:
    """Every TCP segment (either family, not fragments) and every too-big ICMP error of a
    classic pcap file, in capture order. Untagged Ethernet (the lab's own links)."""
    segments: list[Segment] = []
    errors: list[TooBig] = []
    if not path.exists():
        return segments, errors
    for stamp, frame in read_pcap(path):
        found = _frame(stamp, frame)
        if isinstance(found, Segment):
            segments.append(found)
        elif isinstance(found, TooBig):
            errors.append(found)
    return segments, errors


def mss_for(mtu: int, family: int) -> int:
    """The MSS a link of `mtu` allows: the MTU less the IP and TCP headers (20 or 40 + 20)."""
    return mtu - (40 if family == 4 else 60)
