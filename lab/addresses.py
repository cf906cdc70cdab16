"""Who sent each packet of a capture to whom: the addresses of every IPv4, IPv6 and ARP
packet, through 802.1Q tags, MPLS labels and VXLAN (the outside check, lab/outside.py,
reads every capture of a run with it). lab.packets reads the frames; this reads only the
addresses, by dpkt, fast."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.packets import ETH_P_IP, ETH_P_IPV6, read_pcap


@dataclass(frozen=True)
class AddressedPacket:
    """The addresses of one IP header (IPv4 or IPv6) or ARP packet in a capture: who sent it
    to whom, as the wire says. `inner`: it came inside a VXLAN tunnel (whose own IP header
    is a packet of its own); `proto`: the IP protocol (next header), 0 for ARP."""

    time: float
    kind: str  # "ipv4", "ipv6" or "arp" (its sender and target protocol addresses)
    src: str
    dst: str
    proto: int = 0
    inner: bool = False


VXLAN_PORTS = (4789, 8472)  # IANA's and Linux's old default: scapy's bindings (`_scapy`)


def read_addressed_pcap(path: Path) -> list[AddressedPacket]:
    """The addresses of every IPv4, IPv6 and ARP packet of a pcap file, in capture order,
    through 802.1Q tags, MPLS labels and VXLAN (the tunnel's header and the one inside it
    both); frames of other kinds (the captures' markers, LLDP) are left out. Read by dpkt:
    a check of every packet of a run must be fast, and it needs no field above IP."""
    found: list[AddressedPacket] = []
    for stamp, frame in read_pcap(path):
        found += _addressed(frame, stamp, False)
    return found


def _addressed(frame: bytes, time: float, inner: bool) -> list[AddressedPacket]:
    """The addressed packets of one Ethernet frame (and of the frame a VXLAN header in it
    carries); a header cut by the snaplen is read as far as its addresses go."""
    import dpkt

    try:
        eth = dpkt.ethernet.Ethernet(frame)
    except (dpkt.UnpackError, ValueError):
        return []
    ip = eth.data
    kind = {dpkt.ip.IP: "ipv4", dpkt.ip6.IP6: "ipv6"}.get(type(ip))
    if kind is not None:
        family = socket.AF_INET if kind == "ipv4" else socket.AF_INET6
        proto = ip.p if kind == "ipv4" else ip.nxt
        found = [
            AddressedPacket(
                time, kind, socket.inet_ntop(family, ip.src), socket.inet_ntop(family, ip.dst), proto, inner
            )
        ]
        udp = ip.data
        whole = kind == "ipv6" or not (ip.mf or ip.offset)  # a fragment's payload is no UDP header
        if whole and type(udp) is dpkt.udp.UDP and udp.dport in VXLAN_PORTS and len(udp.data) > 8:
            found += _addressed(bytes(udp.data)[8:], time, True)
        return found
    if type(ip) is dpkt.arp.ARP:
        if ip.pro != ETH_P_IP or ip.pln != 4:
            return []
        return [AddressedPacket(time, "arp", socket.inet_ntoa(ip.spa), socket.inet_ntoa(ip.tpa), 0, inner)]
    return _raw_addressed(eth, time, inner)


def _raw_addressed(eth: Any, time: float, inner: bool) -> list[AddressedPacket]:
    """The addresses of an IP header dpkt left undecoded (a header cut short, options it
    refused): straight from its bytes, where they are there at all."""
    data = eth.data if isinstance(eth.data, bytes) else b""
    ethertype = getattr(eth, "_next_type", None) or eth.type  # past 802.1Q tags
    if ethertype == ETH_P_IP and len(data) >= 20 and data[0] >> 4 == 4:
        family, proto, src, dst = socket.AF_INET, data[9], data[12:16], data[16:20]
    elif ethertype == ETH_P_IPV6 and len(data) >= 40 and data[0] >> 4 == 6:
        family, proto, src, dst = socket.AF_INET6, data[6], data[8:24], data[24:40]
    else:
        return []
    kind = "ipv4" if family == socket.AF_INET else "ipv6"
    return [
        AddressedPacket(
            time, kind, socket.inet_ntop(family, src), socket.inet_ntop(family, dst), proto, inner
        )
    ]
