"""TCP over IPv6 in lab.packets: segments built for the reset agent's raw socket, parsed
from live frames and read from pcaps (dpkt and scapy alike), and IPv4 left as it was; and
the session table's lines of IPv6 sessions (lab.conntrack)."""

from decimal import Decimal
from pathlib import Path

from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Padding
from scapy.utils import wrpcap

from lab import conntrack
from lab.packets import (
    TcpSegment,
    _dissect_tcp,
    _plain_tcp,
    build_tcp,
    parse_ethernet_tcp,
    parse_ipv6_tcp,
    read_pcap,
    read_tcp_pcap,
)

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
CLIENT, SERVER = "fd00:1:1::10", "fd00:1:2::10"
T0 = Decimal("1700000000")


def tcp6(flags: str, payload: bytes = b"", reply: bool = False) -> Packet:
    """A segment from the client [fd00:1:1::10]:40000 to the server [fd00:1:2::10]:8080, or back."""
    ends = [(CLIENT, 40000), (SERVER, 8080)]
    (src, sport), (dst, dport) = reversed(ends) if reply else ends
    return IPv6(src=src, dst=dst) / TCP(sport=sport, dport=dport, seq=1000, ack=2000, flags=flags) / payload


def cut(pkt: Packet, snaplen: int) -> Packet:
    """`pkt` as tcpdump -s `snaplen` stores it."""
    wire = bytes(pkt)
    short = Ether(wire[:snaplen])
    short.wirelen = len(wire)
    return short


def test_ipv4_segments_are_built_byte_for_byte_as_before():
    # The bytes build_tcp gave before IPv6 was added (the reset agent's RST and a data segment).
    rst = build_tcp(TcpSegment("10.0.2.10", "10.0.1.10", 8080, 40000, 0xFFFFFFFF, 7, "R", 0))
    data = build_tcp(TcpSegment("10.0.1.10", "10.0.2.10", 40000, 8080, 123, 456, "PA", 0), b"hello\n")
    assert rst.hex() == "4500002800004000400623bd0a00020a0a00010a1f909c40ffffffff0000000750040000dcf50000"
    assert data.hex() == (
        "4500002e00004000400623b70a00010a0a00020a9c401f900000007b000001c85018ffff96c3000068656c6c6f0a"
    )


def test_an_ipv6_segment_built_for_a_raw_socket_has_valid_checksums():
    seg = TcpSegment(SERVER, CLIENT, 8080, 40000, 0xFFFFFFFF, 7, "R", 0)
    packet = build_tcp(seg, b"", ttl=33)
    wire = IPv6(packet)
    assert (wire.version, wire.nh, wire.hlim, wire.plen, wire.src, wire.dst) == (6, 6, 33, 20, SERVER, CLIENT)
    # scapy recomputes the checksum over the IPv6 pseudo-header when it is left unset.
    again = IPv6(src=SERVER, dst=CLIENT) / TCP(
        sport=8080, dport=40000, seq=0xFFFFFFFF, ack=7, flags="R", window=0
    )
    assert wire[TCP].chksum == IPv6(bytes(again))[TCP].chksum
    back = parse_ipv6_tcp(packet, 2.5)
    assert back == TcpSegment(SERVER, CLIENT, 8080, 40000, 0xFFFFFFFF, 7, "R", 0, time=2.5)
    with_data = parse_ipv6_tcp(build_tcp(TcpSegment(CLIENT, SERVER, 1, 2, 0, 0, "PA", 0), b"hello\n"))
    assert with_data is not None and with_data.payload_len == 6 and with_data.flags == "PA"


def test_live_frames_of_either_family_parse():
    """The reset agent's sniffer reads Ethernet frames: IPv6 as IPv4, tagged or not."""
    six = bytes(Ether(src=A, dst=B) / tcp6("A", reply=True))
    seg = parse_ethernet_tcp(six)
    assert seg is not None and seg.key == (SERVER, 8080, CLIENT, 40000) and (seg.seq, seg.ack) == (1000, 2000)
    tagged = parse_ethernet_tcp(bytes(Ether(src=A, dst=B) / Dot1Q(vlan=5) / tcp6("S")))
    assert tagged is not None and tagged.flags == "S"
    four = parse_ethernet_tcp(bytes(Ether(src=A, dst=B) / IP(src="10.0.1.10", dst="10.0.2.10") / TCP()))
    assert four is not None and four.src == "10.0.1.10"
    assert parse_ethernet_tcp(bytes(Ether() / IPv6(src=CLIENT, dst=SERVER) / UDP())) is None
    assert parse_ipv6_tcp(bytes(tcp6("S"))[:50]) is None  # cut inside the TCP header


def mixed_frames() -> list[Packet]:
    """IPv6 TCP plain, cut, tagged, labelled and tunnelled, and IPv6 that is not a segment."""
    return [
        Ether(src=A, dst=B) / tcp6("S"),
        cut(Ether(src=A, dst=B) / tcp6("PA", b"x" * 100), 100),  # the snaplen cuts the data
        Ether(src=A, dst=B) / Dot1Q(vlan=20) / tcp6("SA", reply=True),
        Ether(src=A, dst=B) / MPLS(label=101, s=1, ttl=64) / tcp6("A"),
        Ether(src=A, dst=B)
        / IP(src="192.0.2.1", dst="192.0.2.2")
        / UDP(sport=51000, dport=4789)
        / VXLAN(vni=42)
        / Ether(src="02:00:00:00:02:01", dst="02:00:00:00:02:02")
        / tcp6("R", reply=True),
        Ether(src=A, dst=B) / tcp6("A") / Padding(b"\0" * 6),
        Ether(src=A, dst=B) / IP(src="10.0.1.10", dst="10.0.2.10") / TCP(sport=40001, dport=8080, flags="S"),
        # not segments of their own: an extension header first, a TCP header quoted in an
        # ICMPv6 error, UDP, a TCP header cut by the snaplen
        Ether(src=A, dst=B) / IPv6(src=CLIENT, dst=SERVER) / IPv6ExtHdrHopByHop() / TCP(flags="S"),
        Ether(src=A, dst=B) / IPv6(src="fd00:1:2::1", dst=CLIENT) / ICMPv6PacketTooBig(mtu=1280) / tcp6("PA"),
        Ether(src=A, dst=B) / IPv6(src=CLIENT, dst=SERVER) / UDP(sport=5000, dport=53) / b"q",
        cut(Ether(src=A, dst=B) / tcp6("PA", b"x" * 100), 70),
    ]


def write(tmp_path: Path, frames: list[Packet]) -> Path:
    """`frames` as a pcap file, one a second from T0."""
    for i, frame in enumerate(frames):
        frame.time = T0 + i
    path = tmp_path / "six.pcap"
    wrpcap(str(path), frames, linktype=1)
    return path


def test_a_capture_with_ipv6_segments(tmp_path: Path):
    syn, cut_data, tagged, labelled, tunnelled, padded, four = read_tcp_pcap(write(tmp_path, mixed_frames()))
    assert (syn.key, syn.flags, syn.seq, syn.ack, syn.payload_len, syn.ip_len) == (
        (CLIENT, 40000, SERVER, 8080),
        "S",
        1000,
        2000,
        0,
        60,
    )
    assert (syn.eth_src, syn.eth_dst, syn.time) == (A, B, 1700000000.0)
    assert cut_data.payload_len == 100 and len(cut_data.payload) == 26  # the length from the IPv6 header
    assert cut_data.ip_len == 160
    assert tagged.key == (SERVER, 8080, CLIENT, 40000) and tagged.flags == "SA"
    assert labelled.mpls == (101,) and labelled.flags == "A"
    assert (tunnelled.vxlan, tunnelled.inner_eth_dst, tunnelled.flags) == (42, "02:00:00:00:02:02", "R")
    assert padded.payload == b"" and padded.payload_len == 0
    assert four.src == "10.0.1.10" and four.sport == 40001  # IPv4 beside it, as before


def test_ipv6_frames_read_by_dpkt_give_what_scapy_gives(tmp_path: Path):
    path = write(tmp_path, mixed_frames())
    fast = read_tcp_pcap(path)
    scapy = [s for s in (_dissect_tcp(frame, t) for t, frame in read_pcap(path)) if s is not None]
    assert fast == scapy and len(fast) == 7
    plain = bytes(Ether(src=A, dst=B) / tcp6("PA", b"data"))
    taken = _plain_tcp(plain, 1.5)
    assert taken is not None and taken.payload == b"data" and taken.src == CLIENT and taken.time == 1.5
    assert _plain_tcp(bytes(mixed_frames()[7]), 0) is None  # an extension header: scapy's, which skips it


def test_conntrack_lines_of_ipv6_sessions():
    """`conntrack -L` (conntrack-tools 1.4.7 lists both families) and `-E` lines of IPv6 sessions."""
    listed = conntrack.parse_line(
        "tcp      6 1 ESTABLISHED src=fd00:1:1::10 dst=fd00:1:2::10 sport=40000 dport=8080 "
        "src=fd00:1:2::10 dst=fd00:1:1::10 sport=8080 dport=40000 [ASSURED] mark=0 use=1"
    )
    assert listed is not None
    assert (listed.src, listed.sport, listed.dst, listed.dport, listed.state, listed.timeout) == (
        CLIENT,
        40000,
        SERVER,
        8080,
        "ESTABLISHED",
        1,
    )
    assert (listed.reply_src, listed.reply_dst, listed.flags) == (SERVER, CLIENT, ("ASSURED",))
    gone = conntrack.parse_line(
        "[1796213465.385387]\t[DESTROY] tcp      6 src=fd00:1:1::10 dst=fd00:1:2::10 sport=40000 dport=8080 "
        "src=fd00:1:2::10 dst=fd00:1:1::10 sport=8080 dport=40000 [ASSURED]"
    )
    assert gone is not None and gone.event == "DESTROY" and gone.key == listed.key
    assert gone.stamp == 1796213465.385387
