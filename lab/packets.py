"""TCP packets over IPv4 and IPv6 as data: build them for raw sockets, parse them from
frames and pcaps.

Building and parsing live frames stays small and dependency-free: the reset agent runs
inside a firewall namespace and must start fast. Captures are dissected by scapy (802.1Q,
MPLS, VXLAN, ...), imported only when a pcap is read.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
_FLAG_NAMES = "FSRPAUEC"  # bit order of the TCP flags byte, lowest first


@dataclass(frozen=True)
class TcpSegment:
    """One TCP segment over IPv4 or IPv6 (its addresses say which), as seen on the wire."""

    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: str  # tcpdump-like letters, e.g. "S", "SA", "PA", "R"
    payload_len: int
    time: float = 0.0
    eth_src: str = ""  # the outermost Ethernet header, lower-case colon hex
    eth_dst: str = ""
    mpls: tuple[int, ...] = ()  # label stack, outermost first
    vxlan: int | None = None  # the VNI when the segment came inside VXLAN
    inner_eth_dst: str = ""  # the Ethernet destination inside VXLAN
    payload: bytes = b""  # what the capture kept of the data (its snaplen may cut it)
    ip_len: int = 0  # the IP packet's total length, IPv6's header too (what a firewall's byte counters count)

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)

    def to_dict(self) -> dict[str, object]:
        """As JSON-ready data (the payload in hex)."""
        return {**{k: v for k, v in self.__dict__.items() if k != "payload"}, "payload": self.payload.hex()}


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
    """An IP packet carrying `seg`, checksums filled in, for an IPPROTO_RAW socket of its
    family: IPv4, or IPv6 when its addresses are (`ttl`: then the hop limit)."""
    if ipaddress.ip_address(seg.src).version == 6:
        return _build_tcp6(seg, payload, ttl)
    src = ipaddress.IPv4Address(seg.src).packed
    dst = ipaddress.IPv4Address(seg.dst).packed
    tcp = _tcp_header(seg)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp) + len(payload))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp + payload)) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, ttl, socket.IPPROTO_TCP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp + payload


def send_tcp(seg: TcpSegment, payload: bytes = b"") -> None:
    """Send `seg` from a raw socket of its addresses' family (IPPROTO_RAW: the header is
    ours), in the namespace this process runs in: a hand-made segment, an out-of-state ACK."""
    family = socket.AF_INET6 if ipaddress.ip_address(seg.dst).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW) as tx:
        tx.sendto(build_tcp(seg, payload), (seg.dst, 0))


def _build_tcp6(seg: TcpSegment, payload: bytes, hop_limit: int) -> bytes:
    """An IPv6 packet carrying `seg` (no extension headers), its TCP checksum over the
    IPv6 pseudo-header (RFC 8200, 8.1)."""
    src = ipaddress.IPv6Address(seg.src).packed
    dst = ipaddress.IPv6Address(seg.dst).packed
    tcp = _tcp_header(seg)
    length = len(tcp) + len(payload)
    pseudo = src + dst + struct.pack("!I3xB", length, socket.IPPROTO_TCP)
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp + payload)) + tcp[18:]
    ip = struct.pack("!IHBB16s16s", 6 << 28, length, socket.IPPROTO_TCP, hop_limit, src, dst)
    return ip + tcp + payload


def _tcp_header(seg: TcpSegment) -> bytes:
    """`seg`'s TCP header, no options, its checksum zero (the caller's pseudo-header fills it)."""
    return struct.pack(
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


def parse_ipv6_tcp(packet: bytes, time: float = 0.0) -> TcpSegment | None:
    """The TCP segment in an IPv6 packet whose next header is TCP (no extension headers:
    the lab's hosts send none), or None for anything else (or a truncated one)."""
    if len(packet) < 60 or packet[0] >> 4 != 6 or packet[6] != socket.IPPROTO_TCP:
        return None
    length = struct.unpack("!H", packet[4:6])[0]
    sport, dport, seq, ack, offset, bits = struct.unpack("!HHIIBB", packet[40:54])
    return TcpSegment(
        src=socket.inet_ntop(socket.AF_INET6, packet[8:24]),
        dst=socket.inet_ntop(socket.AF_INET6, packet[24:40]),
        sport=sport,
        dport=dport,
        seq=seq,
        ack=ack,
        flags=bits_to_flags(bits),
        payload_len=max(0, length - (offset >> 4) * 4),
        time=time,
    )


def parse_ethernet_tcp(frame: bytes, time: float = 0.0) -> TcpSegment | None:
    """The TCP segment in an Ethernet frame (untagged or one 802.1Q tag), IPv4 or IPv6."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack("!H", frame[12:14])[0]
    offset = 14
    if ethertype == 0x8100 and len(frame) >= 18:
        ethertype = struct.unpack("!H", frame[16:18])[0]
        offset = 18
    if ethertype == ETH_P_IPV6:
        return parse_ipv6_tcp(frame[offset:], time)
    if ethertype != ETH_P_IP:
        return None
    return parse_ipv4_tcp(frame[offset:], time)


@functools.cache
def _scapy() -> None:
    """Import scapy's dissectors once, quietly: its warnings bypass our logging (own handler)."""
    # Set before the import: scapy keeps a level it finds set on its logger.
    logging.getLogger("scapy").setLevel(logging.ERROR)
    # Imported for their layer bindings: Ether type 0x8847 -> MPLS (IPv4 or IPv6 after the
    # bottom-of-stack label, told by its version nibble), UDP 4789 (and 8472) -> VXLAN,
    # Ether type 0x86DD -> IPv6.
    import scapy.contrib.mpls  # noqa: F401
    import scapy.layers.inet  # noqa: F401
    import scapy.layers.inet6  # noqa: F401
    import scapy.layers.l2  # noqa: F401
    import scapy.layers.vxlan  # noqa: F401


def read_pcap(path: Path) -> Iterator[tuple[float, bytes]]:
    """(timestamp, frame) for each record of a classic pcap file (tcpdump -w), Ethernet only.

    Nothing for a file shorter than its header: tcpdump may not have flushed it yet.
    """
    if path.stat().st_size < 24:
        return
    _scapy()
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapNgReader, RawPcapReader

    try:
        reader = RawPcapReader(str(path))
    except Scapy_Exception as exc:
        raise LabError(f"{path}: not a pcap file ({exc})") from exc
    with reader:
        if isinstance(reader, RawPcapNgReader):
            raise LabError(f"{path}: a pcapng file, not a classic pcap (tcpdump -w writes classic)")
        if reader.linktype != 1:
            raise LabError(f"{path}: link type {reader.linktype} is not Ethernet")
        unit = 1e-9 if reader.nano else 1e-6
        for frame, meta in reader:
            yield meta.sec + meta.usec * unit, frame


def read_frames(path: Path) -> Iterator[tuple[float, Any]]:
    """(timestamp, frame) for each record of a pcap file, the frame dissected by scapy
    from Ethernet up (the layers `_scapy` binds)."""
    _scapy()
    from scapy.layers.l2 import Ether

    for stamp, raw in read_pcap(path):
        yield stamp, Ether(raw)


def read_tcp_pcap(path: Path) -> list[TcpSegment]:
    """Every TCP segment (IPv4, and IPv6 without extension headers) of a pcap file, in
    capture order, through 802.1Q tags, MPLS labels and VXLAN; other frames (ARP, UDP,
    markers, fragments) are skipped.

    A case reads its captures several times (its assertions, then the isolation check)
    and dissecting is slow, so a file is dissected again only when it has changed."""
    stat = path.stat()
    return list(_read_tcp_pcap(path.resolve(), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=32)
def _read_tcp_pcap(path: Path, mtime_ns: int, size: int) -> tuple[TcpSegment, ...]:
    segments = (_plain_tcp(frame, stamp) or _dissect_tcp(frame, stamp) for stamp, frame in read_pcap(path))
    return tuple(seg for seg in segments if seg is not None)


def _plain_tcp(frame: bytes, time: float) -> TcpSegment | None:
    """The segment of an untagged Ethernet/IPv4/TCP frame with whole headers, not a
    fragment (or Ethernet/IPv6/TCP: `_plain_tcp6`), read by dpkt; None for any other frame
    (scapy reads those: `_dissect_tcp`).
    Nearly every frame the cases capture is plain, and scapy dissects about 3,000 frames a
    second here: a 5 MiB transfer's capture took 1.6 s (tests/test_packets.py: both
    readers give the same segments)."""
    import dpkt

    try:
        eth = dpkt.ethernet.Ethernet(frame)
    except (dpkt.UnpackError, ValueError):
        return None
    ip = eth.data
    if eth.type == ETH_P_IPV6 and not getattr(eth, "vlan_tags", None):
        return _plain_tcp6(eth, time)
    if eth.type != 0x0800 or getattr(eth, "vlan_tags", None) or getattr(eth, "mpls_labels", None):
        return None
    if type(ip) is not dpkt.ip.IP or ip.mf or ip.offset or type(ip.data) is not dpkt.tcp.TCP:
        return None  # not IPv4 (or cut inside its header), a fragment, not TCP (or cut inside its header)
    tcp = ip.data
    addresses = socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst)
    return _dpkt_segment(eth, tcp, addresses, max(0, ip.len - ip.hl * 4 - tcp.off * 4), ip.len, time)


def _dpkt_segment(
    eth: Any, tcp: Any, addresses: tuple[str, str], data_len: int, ip_len: int, time: float
) -> TcpSegment:
    """A TcpSegment of dpkt's Ethernet frame and TCP header, either family."""
    return TcpSegment(
        src=addresses[0],
        dst=addresses[1],
        sport=tcp.sport,
        dport=tcp.dport,
        seq=tcp.seq,
        ack=tcp.ack,
        flags=bits_to_flags(tcp.flags),
        payload_len=data_len,
        time=time,
        eth_src=eth.src.hex(":"),
        eth_dst=eth.dst.hex(":"),
        payload=bytes(tcp.data)[:data_len],
        ip_len=ip_len,
    )


def _plain_tcp6(eth: Any, time: float) -> TcpSegment | None:
    """The segment of an untagged Ethernet/IPv6 frame whose next header is TCP, its
    headers whole; None for any other (extension headers, cut headers: scapy's)."""
    import dpkt

    ip = eth.data
    if type(ip) is not dpkt.ip6.IP6 or ip.nxt != socket.IPPROTO_TCP or type(ip.data) is not dpkt.tcp.TCP:
        return None
    tcp = ip.data
    addresses = socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(socket.AF_INET6, ip.dst)
    return _dpkt_segment(eth, tcp, addresses, max(0, ip.plen - tcp.off * 4), 40 + ip.plen, time)


def _dissect_tcp(frame: bytes, time: float) -> TcpSegment | None:
    """The TCP segment in an Ethernet frame, cut by the snaplen or not (the payload length
    comes from the IP header), or None."""
    from scapy.contrib.mpls import MPLS
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    outer = Ether(frame)
    labels: list[int] = []
    vni: int | None = None
    inner_dst = ""
    layer = outer.payload
    while layer:  # scapy's NoPayload, past the last layer, is false
        if isinstance(layer, MPLS):
            labels.append(layer.label)
        elif isinstance(layer, VXLAN):
            vni = layer.vni
        elif isinstance(layer, Ether) and vni is not None and not inner_dst:
            inner_dst = layer.dst
        elif type(layer) is TCP:  # exactly TCP: not the TCPerror quoted in an ICMP error
            ip = layer.underlayer
            if ip is None or type(ip) not in (IP, IPv6):  # IPv6: no extension header between
                return None
            # IPv6's payload length counts what follows its 40-byte header.
            ip_len, header = (ip.len, ip.ihl * 4) if type(ip) is IP else (40 + ip.plen, 40)
            data_len = max(0, ip_len - header - layer.dataofs * 4)
            return TcpSegment(
                src=ip.src,
                dst=ip.dst,
                sport=layer.sport,
                dport=layer.dport,
                seq=layer.seq,
                ack=layer.ack,
                flags=bits_to_flags(int(layer.flags)),
                payload_len=data_len,
                time=time,
                eth_src=outer.src,
                eth_dst=outer.dst,
                mpls=tuple(labels),
                vxlan=vni,
                inner_eth_dst=inner_dst,
                # Ethernet padding of a short frame follows the data: cut by the IP length.
                payload=bytes(layer.payload)[:data_len],
                ip_len=ip_len,
            )
        layer = layer.payload
    return None


@dataclass(frozen=True)
class RedundancyFrame:
    """A frame of a redundancy protocol: a VRRP advertisement (its sender and priority) or
    an ARP announcement or reply (who says it has which address)."""

    time: float
    kind: str  # "vrrp" or "arp"
    src: str  # the sender's IP address
    detail: dict[str, object]


def read_redundancy_pcap(path: Path) -> list[RedundancyFrame]:
    """The VRRP advertisements and ARP packets of a pcap file, in capture order (scapy's
    dissectors: VRRPv3 is IP protocol 112)."""
    _scapy()
    import scapy.layers.vrrp  # noqa: F401  (binds IP protocol 112)
    from scapy.layers.inet import IP
    from scapy.layers.l2 import ARP
    from scapy.layers.vrrp import VRRPv3

    frames = []
    for stamp, frame in read_frames(path):
        if frame.haslayer(VRRPv3):
            vrrp = frame[VRRPv3]
            detail = {"vrid": int(vrrp.vrid), "priority": int(vrrp.priority), "to": frame[IP].dst}
            frames.append(RedundancyFrame(stamp, "vrrp", frame[IP].src, detail))
        elif frame.haslayer(ARP):
            arp = frame[ARP]
            detail = {"op": int(arp.op), "claims": arp.psrc, "mac": arp.hwsrc, "asks": arp.pdst}
            frames.append(RedundancyFrame(stamp, "arp", arp.psrc, detail))
    return frames


@dataclass(frozen=True)
class Fragment:
    """An IPv4 fragment: who sent it, its packet's ID, where it sits in the packet."""

    time: float
    src: str
    dst: str
    ident: int
    offset: int  # bytes into the packet's payload
    more: bool  # the MF flag: more fragments follow


def read_fragments(path: Path) -> list[Fragment]:
    """The IPv4 fragments of a pcap file (offset > 0 or MF set), in capture order (scapy)."""
    from scapy.layers.inet import IP

    found = []
    for stamp, frame in read_frames(path):
        ip = frame.getlayer(IP)
        if ip is not None and (ip.frag or int(ip.flags) & 1):
            found.append(
                Fragment(stamp, ip.src, ip.dst, int(ip.id), int(ip.frag) * 8, bool(int(ip.flags) & 1))
            )
    return found
