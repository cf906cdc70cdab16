"""Captures dissected by scapy: tags, MPLS labels, VXLAN, frames cut by the snaplen, timestamps."""

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Padding, Raw
from scapy.utils import wrpcap, wrpcapng

from lab.apps import marker
from lab.errors import LabError
from lab.packets import (
    RedundancyFrame,
    TcpSegment,
    _dissect_tcp,
    _plain_tcp,
    read_fragments,
    read_pcap,
    read_redundancy_pcap,
    read_tcp_pcap,
)

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
T0 = Decimal("1700000000")


def stamped(pkt: Packet, time: Decimal) -> Packet:
    pkt.time = time
    return pkt


def cut(pkt: Packet, snaplen: int) -> Packet:
    """`pkt` as tcpdump -s `snaplen` stores it: the first bytes, the wire length kept."""
    wire = bytes(pkt)
    short = Ether(wire[:snaplen])
    short.wirelen = len(wire)
    return short


def tcp(flags: str, payload: bytes = b"", reply: bool = False) -> Packet:
    """A segment from the client 10.0.1.10:40000 to the server 10.0.2.10:8080, or back."""
    ends = [("10.0.1.10", 40000), ("10.0.2.10", 8080)]
    (src, sport), (dst, dport) = reversed(ends) if reply else ends
    return IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, seq=1000, ack=2000, flags=flags) / payload


def mixed_frames() -> list[Packet]:
    """Plain, tagged, labelled, tunnelled and cut TCP frames among others."""
    return [
        Ether(src=A, dst=B) / tcp("S"),
        cut(Ether(src=A, dst=B) / tcp("PA", b"x" * 100), 96),
        Ether(src=A, dst=B) / Dot1Q(vlan=20) / tcp("SA", reply=True),
        Ether(src=A, dst="02:00:00:00:01:01") / MPLS(label=101, s=1, ttl=64) / tcp("A"),
        Ether(src=A, dst=B) / MPLS(label=16, s=0, ttl=64) / MPLS(label=101, s=1, ttl=64) / tcp("FA"),
        Ether(src=A, dst=B)
        / IP(src="192.0.2.1", dst="192.0.2.2")
        / UDP(sport=51000, dport=4789)
        / VXLAN(vni=42)
        / Ether(src="02:00:00:00:02:01", dst="02:00:00:00:02:02")
        / tcp("R", reply=True),
        Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.1.10", pdst="10.0.1.1"),
        Ether(src=A, dst=B) / IP(src="10.0.1.10", dst="10.0.2.10") / UDP(sport=5000, dport=53) / b"q",
        Ether(marker.frame(bytes.fromhex("02000000000a"))),
        Ether(src=A, dst="ff:ff:ff:ff:ff:ff", type=marker.ETHERTYPE)
        / Raw(marker.PAYLOAD)
        / Padding(b"\0" * 21),
    ]


def capture(tmp_path: Path, nano: bool = False) -> list[TcpSegment]:
    frames = mixed_frames()
    fraction = Decimal("0.123456789") if nano else Decimal("0.123456")
    path = tmp_path / "x.pcap"
    wrpcap(str(path), [stamped(f, T0 + i + fraction) for i, f in enumerate(frames)], linktype=1, nano=nano)
    return read_tcp_pcap(path)


def test_plain_tagged_and_truncated_segments(tmp_path: Path):
    syn, pa, tagged, *_ = capture(tmp_path)
    assert (syn.key, syn.flags, syn.seq, syn.ack, syn.payload_len) == (
        ("10.0.1.10", 40000, "10.0.2.10", 8080),
        "S",
        1000,
        2000,
        0,
    )
    assert (syn.eth_src, syn.eth_dst, syn.mpls, syn.vxlan, syn.inner_eth_dst) == (A, B, (), None, "")
    assert pa.flags == "PA" and pa.payload_len == 100, pa  # from the IP header, not the 96 bytes kept
    assert tagged.flags == "SA" and tagged.key == ("10.0.2.10", 8080, "10.0.1.10", 40000)


def test_mpls_label_stacks(tmp_path: Path):
    one, two = capture(tmp_path)[3:5]
    assert (one.mpls, one.eth_dst, one.flags, one.key) == (
        (101,),
        "02:00:00:00:01:01",
        "A",
        ("10.0.1.10", 40000, "10.0.2.10", 8080),
    )
    assert two.mpls == (16, 101) and two.flags == "FA"


def test_vxlan_gives_the_inner_segment(tmp_path: Path):
    seg = capture(tmp_path)[5]
    assert (seg.vxlan, seg.inner_eth_dst, seg.eth_src, seg.eth_dst) == (42, "02:00:00:00:02:02", A, B)
    assert seg.key == ("10.0.2.10", 8080, "10.0.1.10", 40000) and seg.flags == "R"


def test_other_frames_are_skipped(tmp_path: Path):
    segments = capture(tmp_path)
    assert [s.flags for s in segments] == ["S", "PA", "SA", "A", "FA", "R"]  # no ARP, UDP, markers


@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
def test_timestamps(tmp_path: Path, nano: bool):
    segments = capture(tmp_path, nano)
    fraction = 0.123456789 if nano else 0.123456
    for i, seg in enumerate(segments[:3]):
        assert seg.time == pytest.approx(1700000000 + i + fraction, abs=1e-7), seg
    times = [t for t, _ in read_pcap(tmp_path / "x.pcap")]
    assert len(times) == 10 and times == sorted(times)


def test_raw_records_find_the_marker(tmp_path: Path):
    capture(tmp_path)
    frames = [frame for _, frame in read_pcap(tmp_path / "x.pcap")]
    assert sum(marker.PAYLOAD in frame for frame in frames) == 2  # as sent, and padded to 60 bytes
    assert len(frames[1]) == 96  # stored as cut


def test_files_tcpdump_has_not_written_yet_or_that_are_not_ethernet_pcaps(tmp_path: Path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    assert read_tcp_pcap(empty) == [] and list(read_pcap(empty)) == []
    raw_ip = tmp_path / "raw.pcap"
    wrpcap(str(raw_ip), [tcp("S")], linktype=101)
    with pytest.raises(LabError, match="link type 101"):
        read_tcp_pcap(raw_ip)
    ng = tmp_path / "x.pcapng"
    wrpcapng(str(ng), [Ether() / tcp("S")])
    with pytest.raises(LabError, match="pcapng"):
        read_tcp_pcap(ng)
    text = tmp_path / "text.pcap"
    text.write_bytes(b"not a capture, only some text" * 2)
    with pytest.raises(LabError, match="not a pcap"):
        read_tcp_pcap(text)


def test_importing_the_module_does_not_load_scapy():
    # The reset agent imports lab.packets inside a namespace and must start fast.
    code = "import sys, lab.packets; assert not any(m.startswith('scapy') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_frames_cut_inside_the_headers_and_a_record_still_being_written(tmp_path: Path):
    whole = Ether(src=A, dst=B) / tcp("PA", b"x" * 100)
    path = tmp_path / "x.pcap"
    wrpcap(str(path), [cut(whole, 40), cut(whole, 50), whole, whole], linktype=1)  # IP, TCP headers cut
    path.write_bytes(path.read_bytes()[:-60])  # tcpdump is midway through the last record
    segments = read_tcp_pcap(path)
    assert [(s.flags, s.payload_len) for s in segments] == [("PA", 100), ("PA", 100)]


def test_a_segment_as_json_data():
    import json

    seg = TcpSegment("10.0.2.10", "10.0.1.10", 13000, 2222, 1, 0, "A", 4, payload=b"PORT")
    assert json.loads(json.dumps(seg.to_dict()))["payload"] == b"PORT".hex()


def test_fragments_are_read_apart_from_segments(tmp_path: Path):
    """A SYN split in IP fragments: read_tcp_pcap skips them, read_fragments lists each."""
    from scapy.layers.inet import fragment

    syn = IP(src="10.0.2.77", dst="10.0.1.10", id=7) / TCP(sport=12000, dport=5001, flags="S") / (b"x" * 40)
    pieces = [Ether(src=A, dst=B) / p for p in fragment(syn, fragsize=16)]
    whole = Ether(src=A, dst=B) / tcp("A")
    path = tmp_path / "frag.pcap"
    wrpcap(str(path), [*pieces, whole], linktype=1)
    found = read_fragments(path)
    assert [(f.src, f.ident, f.offset, f.more) for f in found] == [
        ("10.0.2.77", 7, 16 * i, i < len(pieces) - 1) for i in range(len(pieces))
    ]
    assert [s.flags for s in read_tcp_pcap(path)] == ["A"]
    assert read_tcp_pcap(path)[0].ip_len == 40


def test_vrrp_advertisements_and_arp_claims_are_read_in_capture_order(tmp_path: Path):
    from scapy.layers.vrrp import VRRPv3

    advert = Ether(src=A, dst="01:00:5e:00:00:12") / IP(src="10.0.2.2", dst="224.0.0.18", ttl=255)
    advert = advert / VRRPv3(vrid=7, priority=200, addrlist=["10.0.2.100"])
    claim = Ether(src=B, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=B, psrc="10.0.2.100", pdst="10.0.2.100")
    path = tmp_path / "vrrp.pcap"
    wrpcap(str(path), [stamped(advert, T0), stamped(tcp("A"), T0 + 1), stamped(claim, T0 + 2)], linktype=1)
    assert read_redundancy_pcap(path) == [
        RedundancyFrame(1700000000.0, "vrrp", "10.0.2.2", {"vrid": 7, "priority": 200, "to": "224.0.0.18"}),
        RedundancyFrame(
            1700000002.0,
            "arp",
            "10.0.2.100",
            {"op": 2, "claims": "10.0.2.100", "mac": B, "asks": "10.0.2.100"},
        ),
    ]


def test_plain_frames_read_by_dpkt_give_what_scapy_gives(tmp_path: Path):
    """lab.packets reads plain Ethernet/IPv4/TCP frames with dpkt (about 6x faster) and every
    other kind with scapy: the segments are the same as scapy's alone."""
    syn = IP(src="10.0.2.77", dst="10.0.1.10", id=7) / TCP(sport=12000, dport=5001, flags="S") / (b"x" * 40)
    ip = IP(src="10.0.1.10", dst="10.0.2.10")
    frames = [
        *mixed_frames(),
        cut(Ether(src=A, dst=B) / tcp("PA", b"x" * 1000), 256),  # the snaplen cuts the data
        cut(Ether(src=A, dst=B) / tcp("PA", b"x" * 100), 50),  # ... or the TCP header
        Ether(src=A, dst=B) / tcp("A") / Padding(b"\0" * 6),  # a short frame's padding
        Ether(src=A, dst=B) / IP(src="10.0.1.10", dst="10.0.2.10", options=b"\x01" * 4) / TCP(flags="SEC"),
        Ether(src=A, dst=B) / ip / TCP(flags="S", seq=4_000_000_000, options=[("MSS", 1460)]),
        *[Ether(src=A, dst=B) / p for p in fragment(syn, fragsize=16)],
    ]
    path = tmp_path / "x.pcap"
    wrpcap(str(path), [stamped(f, T0 + i) for i, f in enumerate(frames)], linktype=1)
    fast = read_tcp_pcap(path)
    scapy = [s for s in (_dissect_tcp(frame, t) for t, frame in read_pcap(path)) if s is not None]
    assert fast == scapy and len(fast) == 10  # the frame cut inside its TCP header is none


def test_only_plain_whole_frames_take_the_fast_way():
    whole = bytes(Ether(src=A, dst=B) / tcp("PA", b"data"))
    segment = _plain_tcp(whole, 1.5)
    assert segment is not None and segment.payload == b"data" and segment.eth_src == A and segment.time == 1.5
    assert _plain_tcp(bytes(Ether(src=A, dst=B) / Dot1Q(vlan=20) / tcp("S")), 0) is None
    fragment_head = Ether(src=A, dst=B) / IP(src="10.0.1.10", dst="10.0.2.10", flags="MF") / TCP()
    assert _plain_tcp(bytes(fragment_head), 0) is None
    assert _plain_tcp(whole[:50], 0) is None  # the TCP header cut: scapy reads what is left
