"""lab/fuzz.py's pure parts: the frames a seed gives, their mix, what they claim, and how
a capture's frames are told apart (no lab: frames built and read here)."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from lab import fuzz, fuzz_read
from lab.addresses import read_addressed_pcap
from lab.errors import ConfigError
from lab.outside import lab_ranges, within
from lab.packets import read_tcp_pcap

AIM = fuzz.Aim(
    macs=("02:00:00:00:00:aa",),
    targets=("10.0.1.10", "fd00:5:1::10"),
    sources=("10.0.2.0/24", "fd00:5:2::/64"),
    services=(80,),
    ports=range(20000, 20500),
    ranges=tuple(str(r) for r in lab_ranges()),
    avoid_macs=frozenset({"02:00:00:00:00:bb"}),
)
COUNT = 160  # 20 of each kind: enough to see every kind and its checks, in about a second


@pytest.fixture(scope="module")
def frames() -> list[fuzz.Frame]:
    return fuzz.generate(7, COUNT, AIM)


def test_the_seed_gives_the_same_frames(frames):
    again = fuzz.generate(7, COUNT, AIM)
    other = fuzz.generate(8, COUNT, AIM)
    assert [f.data for f in again] == [f.data for f in frames]
    assert [f.data for f in other] != [f.data for f in frames]


def test_generating_leaves_scapys_layers_as_they_were(frames):
    # the layers are fuzzed in place (no copy of the whole packet): an unfuzzed layer
    # shares its class's defaults, which must not become random for every later packet
    from scapy.contrib.mpls import MPLS
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.volatile import VolatileValue

    for layer in (Ether, IP, IPv6, TCP, UDP, MPLS, VXLAN):
        fresh = layer()
        assert not [k for k, v in fresh.default_fields.items() if isinstance(v, VolatileValue)], layer
        assert bytes(fresh) == bytes(layer())


def test_the_mix_holds_each_kind_in_equal_shares(frames):
    counts = {k: sum(f.kind == k for f in frames) for k in fuzz.KINDS}
    assert counts == {k: COUNT // len(fuzz.KINDS) for k in fuzz.KINDS}
    assert [f.index for f in frames] == list(range(COUNT))


def test_truncated_frames_are_shorter_than_their_headers_claim(frames):
    for f in frames:
        if f.kind != "truncated":
            assert f.claimed == 0
            continue
        assert fuzz.MIN_FRAME <= len(f.data) < f.claimed, f.to_dict()
        ethertype = struct.unpack("!H", f.data[12:14])[0]
        if ethertype == 0x0800 and len(f.data) >= 18:
            assert struct.unpack("!H", f.data[16:18])[0] + 14 > len(f.data)  # IPv4 total length
        elif ethertype == 0x86DD and len(f.data) >= 20:
            assert struct.unpack("!H", f.data[18:20])[0] + 54 > len(f.data)  # IPv6 payload length


def test_every_frame_is_sendable_and_aimed(frames):
    for f in frames:
        assert fuzz.MIN_FRAME <= len(f.data) <= fuzz.MAX_FRAME
        assert fuzz_read.parse(f.data).eth_dst not in AIM.avoid_macs
    mpls = [f for f in frames if f.kind == "mpls"]
    assert all(f.data[12:14] == b"\x88\x47" for f in mpls)
    vxlan = [fuzz_read.parse(f.data) for f in frames if f.kind == "vxlan"]
    assert all(p.proto == 17 and p.dport == fuzz.VXLAN_PORT for p in vxlan)


def test_what_the_harness_reads_of_them_is_the_labs_and_the_cases(frames, tmp_path):
    path = fuzz.write_pcap(tmp_path / "frames.pcap", frames)
    nets = [ipaddress.ip_network(r) for r in AIM.ranges]
    addressed = read_addressed_pcap(path)
    assert addressed, "the frames carry addresses"
    assert all(within(p.src, nets) and within(p.dst, nets) for p in addressed)
    segments = read_tcp_pcap(path)
    assert segments and all(s.sport in AIM.ports or s.dport in AIM.ports for s in segments)
    assert fuzz.rejected(frames, AIM) == set()


def test_a_bad_aim_is_one_clear_error():
    bad = fuzz.Aim(macs=(), targets=("8.8.8.8",), sources=("10.0.2.0/24",), services=(80,),
                   ports=range(80, 81), ranges=("10.0.0.0/8",))  # fmt: skip
    with pytest.raises(ConfigError) as error:
        fuzz.generate(1, 100, bad)
    text = str(error.value)
    assert "macs: none" in text and "8.8.8.8 is outside" in text and "ports:" in text


def test_classify_tells_fuzz_from_the_labs_own(frames):
    tcp = [f for f in frames if f.kind == "tcp" and fuzz_read.parse(f.data).proto == 6]
    allowed_one, forbidden_one = tcp[0], tcp[1]
    session = fuzz_read.parse(frames[0].data)
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\x00" * 28
    captured = [(0.0, allowed_one.data), (1.0, forbidden_one.data), (2.0, arp), (3.0, b"\x01" * 60)]
    out = fuzz_read.classify(
        captured,
        frames,
        emitter=lambda p: True,
        session=lambda p: False,
        allowed=lambda got, sent: got == fuzz_read.parse(allowed_one.data),
    )
    assert [len(out[k]) for k in ("fuzz allowed", "fuzz forbidden", "housekeeping", "unexplained")] == [
        1,
        1,
        1,
        1,
    ]
    assert session.eth_dst  # parsed


def test_an_icmp_error_about_an_answer_to_a_fuzz_source_is_told_apart(frames):
    """The device's "host unreachable" to an inside host whose answer went to a fuzz
    frame's (spoofed, absent) source is its own error, not a fuzz frame."""
    from scapy.layers.inet import ICMP, IP, TCP
    from scapy.layers.l2 import Ether

    spoofed = next(
        fuzz_read.parse(f.data) for f in frames if f.kind == "tcp" and fuzz_read.parse(f.data).version == 4
    )
    answer = IP(src="10.0.1.11", dst=spoofed.src) / TCP(sport=80, dport=spoofed.sport, flags="RA")
    error = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.1.1", dst="10.0.1.11")
    error = error / ICMP(type=3, code=1) / answer
    other = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.1.1", dst="10.0.1.11")
    other = other / ICMP(type=3, code=1) / IP(src="10.0.1.11", dst="10.0.3.3") / TCP()
    parsed = fuzz_read.parse(bytes(error))
    assert (parsed.icmp_type, parsed.quoted_src, parsed.quoted_dst) == (3, "10.0.1.11", spoofed.src)
    out = fuzz_read.classify(
        [(0.0, bytes(error)), (1.0, bytes(other))],
        frames,
        emitter=lambda p: True,
        session=lambda p: False,
        allowed=lambda got, sent: True,
    )
    assert len(out["errors about fuzz"]) == 1 and len(out["unexplained"]) == 1
