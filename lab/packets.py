"""IPv4/TCP packets as data: build them for raw sockets, parse them from frames and pcaps.

Small and dependency-free on purpose: the reset agent runs inside a firewall namespace
and the plots read captures, and neither needs more than Ethernet, IPv4 and TCP.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError

ETH_P_IP = 0x0800
_FLAG_NAMES = "FSRPAUEC"  # bit order of the TCP flags byte, lowest first


@dataclass(frozen=True)
class TcpSegment:
    """One TCP segment over IPv4, as seen on the wire."""

    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: str  # tcpdump-like letters, e.g. "S", "SA", "PA", "R"
    payload_len: int
    time: float = 0.0

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def flags_to_bits(flags: str) -> int:
    bits = 0
    for letter in flags:
        index = _FLAG_NAMES.find(letter)
        if index < 0:
            raise ValueError(f"unknown TCP flag {letter!r}")
        bits |= 1 << index
    return bits


def bits_to_flags(bits: int) -> str:
    # Order as tcpdump prints them (S, F, R, P, then A), so "SA" and "PA" read naturally.
    return "".join(f for f in "SFRPAUEC" if bits & (1 << _FLAG_NAMES.index(f)))


def build_tcp(seg: TcpSegment, payload: bytes = b"", ttl: int = 64) -> bytes:
    """An IPv4 packet carrying `seg`, checksums filled in, for an IPPROTO_RAW socket."""
    src = ipaddress.IPv4Address(seg.src).packed
    dst = ipaddress.IPv4Address(seg.dst).packed
    tcp = struct.pack(
        "!HHIIBBHHH",
        seg.sport,
        seg.dport,
        seg.seq & 0xFFFFFFFF,
        seg.ack & 0xFFFFFFFF,
        5 << 4,
        flags_to_bits(seg.flags),
        0xFFFF if "R" not in seg.flags else 0,
        0,
        0,
    )
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp) + len(payload))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp + payload)) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, ttl, socket.IPPROTO_TCP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp + payload


def parse_ipv4_tcp(packet: bytes, time: float = 0.0) -> TcpSegment | None:
    """The TCP segment in an IPv4 packet, or None for anything else (or a truncated one)."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_TCP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack("!H", packet[2:4])[0]
    tcp = packet[ihl:]
    if len(tcp) < 20:
        return None
    sport, dport, seq, ack, offset, bits = struct.unpack("!HHIIBB", tcp[:14])
    header = (offset >> 4) * 4
    return TcpSegment(
        src=socket.inet_ntoa(packet[12:16]),
        dst=socket.inet_ntoa(packet[16:20]),
        sport=sport,
        dport=dport,
        seq=seq,
        ack=ack,
        flags=bits_to_flags(bits),
        payload_len=max(0, total - ihl - header),
        time=time,
    )


def parse_ethernet_tcp(frame: bytes, time: float = 0.0) -> TcpSegment | None:
    """The TCP segment in an Ethernet frame (untagged or one 802.1Q tag)."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack("!H", frame[12:14])[0]
    offset = 14
    if ethertype == 0x8100 and len(frame) >= 18:
        ethertype = struct.unpack("!H", frame[16:18])[0]
        offset = 18
    if ethertype != ETH_P_IP:
        return None
    return parse_ipv4_tcp(frame[offset:], time)


def read_pcap(path: Path) -> Iterator[tuple[float, bytes]]:
    """(timestamp, frame) for each record of a classic pcap file (tcpdump -w)."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    formats = {
        b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
        b"\xa1\xb2\xc3\xd4": (">", 1e-6),
        b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
        b"\xa1\xb2\x3c\x4d": (">", 1e-9),
    }
    if magic not in formats:
        raise LabError(f"{path}: not a pcap file (magic {magic.hex()})")
    endian, unit = formats[magic]
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise LabError(f"{path}: link type {linktype} is not Ethernet")
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[pos : pos + 16])
        pos += 16
        yield sec + frac * unit, data[pos : pos + caplen]
        pos += caplen


def read_tcp_pcap(path: Path) -> list[TcpSegment]:
    """Every TCP segment of a pcap file, in capture order."""
    out = []
    for stamp, frame in read_pcap(path):
        seg = parse_ethernet_tcp(frame, stamp)
        if seg is not None:
            out.append(seg)
    return out
