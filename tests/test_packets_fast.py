"""lab.packets reads plain Ethernet/IPv4/TCP frames with dpkt and every other kind with
scapy: both give the same segments as scapy alone."""

from decimal import Decimal
from pathlib import Path

from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Padding
from scapy.utils import wrpcap

from lab.apps import marker
from lab.packets import _dissect_tcp, _plain_tcp, read_pcap, read_tcp_pcap

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def tcp(flags: str, payload: bytes = b"", **options) -> Packet:
    return (
        IP(src="10.0.1.10", dst="10.0.2.10", **options)
        / TCP(sport=40000, dport=8080, seq=4_000_000_000, ack=2000, flags=flags)
        / payload
    )


def cut(pkt: Packet, snaplen: int) -> Packet:
    wire = bytes(pkt)
    short = Ether(wire[:snaplen])
    short.wirelen = len(wire)
    return short


def frames() -> list[Packet]:
    syn = IP(src="10.0.2.77", dst="10.0.1.10", id=7) / TCP(sport=12000, dport=5001, flags="S") / (b"x" * 40)
    return [
        Ether(src=A, dst=B) / tcp("S"),
        Ether(src=A, dst=B) / tcp("PA", b"RETR file.bin\r\n"),
        cut(Ether(src=A, dst=B) / tcp("PA", b"x" * 1000), 256),  # the snaplen cuts the data
        cut(Ether(src=A, dst=B) / tcp("PA", b"x" * 100), 50),  # ... or the TCP header
        Ether(src=A, dst=B) / tcp("A") / Padding(b"\0" * 6),  # a short frame's padding
        Ether(src=A, dst=B) / IP(src="10.0.1.10", dst="10.0.2.10", options=b"\x01" * 4) / TCP(flags="SEC"),
        Ether(src=A, dst=B) / IP(src="10.0.1.10", dst="10.0.2.10") / TCP(flags="S", options=[("MSS", 1460)]),
        Ether(src=A, dst=B) / Dot1Q(vlan=20) / tcp("SA"),
        Ether(src=A, dst=B) / MPLS(label=16, s=0, ttl=64) / MPLS(label=101, s=1, ttl=64) / tcp("FA"),
        Ether(src=A, dst=B)
        / IP(src="192.0.2.1", dst="192.0.2.2")
        / UDP(sport=51000, dport=4789)
        / VXLAN(vni=42)
        / Ether(src="02:00:00:00:02:01", dst="02:00:00:00:02:02")
        / tcp("R"),
        *[Ether(src=A, dst=B) / p for p in fragment(syn, fragsize=16)],
        Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.1.10", pdst="10.0.1.1"),
        Ether(src=A, dst=B) / IP(src="10.0.1.10", dst="10.0.2.10") / UDP(sport=5000, dport=53) / b"q",
        Ether(marker.frame(bytes.fromhex("02000000000a"))),
    ]


def test_the_same_segments_as_scapy_reads(tmp_path: Path):
    path = tmp_path / "x.pcap"
    wrpcap(str(path), [_stamped(f, i) for i, f in enumerate(frames())], linktype=1)
    fast = read_tcp_pcap(path)
    scapy = [s for s in (_dissect_tcp(frame, t) for t, frame in read_pcap(path)) if s is not None]
    assert fast == scapy
    # the frame cut inside its TCP header is no segment to either reader
    assert [s.flags for s in fast] == ["S", "PA", "PA", "A", "SEC", "S", "SA", "FA", "R"]


def test_only_plain_whole_frames_take_the_fast_way():
    whole = bytes(Ether(src=A, dst=B) / tcp("PA", b"data"))
    segment = _plain_tcp(whole, 1.5)
    assert segment is not None and segment.payload == b"data" and segment.eth_src == A
    assert segment.seq == 4_000_000_000 and segment.time == 1.5
    assert _plain_tcp(bytes(Ether(src=A, dst=B) / Dot1Q(vlan=20) / tcp("S")), 0) is None
    fragment_head = Ether(src=A, dst=B) / IP(src="10.0.1.10", dst="10.0.2.10", flags="MF") / TCP()
    assert _plain_tcp(bytes(fragment_head), 0) is None
    assert _plain_tcp(whole[:50], 0) is None  # the TCP header cut: scapy reads what is left


def _stamped(pkt: Packet, n: int) -> Packet:
    pkt.time = Decimal("1700000000.123456") + n
    return pkt
