"""Path-MTU evidence (lab/path_mtu.py) read from pcaps made here, both families, cut to
a capture's snaplen as the lab's are; and S5's dual-stack address plan (`plan(..., 6)`)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from lab import topology
from lab.errors import ConfigError
from lab.path_mtu import Flow, mss_for, read_path_mtu

SRV, FAR, RT = "10.0.1.10", "10.0.3.10", "10.0.2.254"
SRV6, FAR6, RT6 = "fd00:5:1::10", "fd00:5:3::10", "fd00:5:2::254"
SNAPLEN = 256  # lab.capture.Capture's default


def write(path: Path, frames: list, snaplen: int = SNAPLEN) -> Path:
    """A classic pcap of `frames` cut to `snaplen` bytes each, as tcpdump -s writes them."""
    wrpcap(str(path), [Ether(bytes(Ether() / f)[:snaplen]) for f in frames], linktype=1)
    return path


def test_segments_of_both_families_with_their_size_and_mss(tmp_path):
    frames = [
        IP(src=FAR, dst=SRV)
        / TCP(sport=10001, dport=80, flags="S", options=[("MSS", 1460), ("SAckOK", b"")]),
        IPv6(src=SRV6, dst=FAR6) / TCP(sport=80, dport=10001, flags="SA", options=[("MSS", 1220)]),
        IP(src=SRV, dst=FAR) / TCP(sport=80, dport=10001, flags="A") / (b"x" * 1448),
        IPv6(src=SRV6, dst=FAR6)
        / TCP(sport=80, dport=10001, flags="PA", options=[("NOP", None)] * 4)
        / (b"y" * 1000),
    ]
    segments, errors = read_path_mtu(write(tmp_path / "t.pcap", frames))
    assert not errors
    assert [(s.family, s.flags, s.mss, s.size, s.payload_len) for s in segments] == [
        (4, "S", 1460, 48, 0),
        (6, "SA", 1220, 64, 0),
        (4, "A", None, 1488, 1448),  # the size from the IP header: the capture kept 256 bytes
        (6, "PA", None, 1064, 1000),
    ]
    assert segments[0].flow == Flow(FAR, 10001, SRV, 80)


def test_too_big_errors_name_the_mtu_and_the_flow_they_quote(tmp_path):
    big = TCP(sport=80, dport=10001, flags="A") / (b"x" * 1448)
    frames = [
        IP(src=RT, dst=SRV) / ICMP(type=3, code=4, nexthopmtu=1280) / IP(src=SRV, dst=FAR, flags="DF") / big,
        IPv6(src=RT6, dst=SRV6) / ICMPv6PacketTooBig(mtu=1280) / IPv6(src=SRV6, dst=FAR6) / big,
        IP(src=RT, dst=SRV) / ICMP(type=3, code=3) / IP(src=SRV, dst=FAR) / big,  # port unreachable: not one
    ]
    segments, errors = read_path_mtu(write(tmp_path / "e.pcap", frames))
    assert not segments  # the quoted TCP is no segment on the wire
    assert [(e.family, e.src, e.mtu, e.quoted) for e in errors] == [
        (4, RT, 1280, Flow(SRV, 80, FAR, 10001)),
        (6, RT6, 1280, Flow(SRV6, 80, FAR6, 10001)),
    ]


def test_an_error_cut_inside_its_quote_still_counts(tmp_path):
    error = IPv6(src=RT6, dst=SRV6) / ICMPv6PacketTooBig(mtu=1280) / IPv6(src=SRV6, dst=FAR6) / TCP()
    _, errors = read_path_mtu(write(tmp_path / "cut.pcap", [error], snaplen=14 + 40 + 8 + 30))
    assert [(e.mtu, e.quoted) for e in errors] == [(1280, None)]
    assert read_path_mtu(tmp_path / "missing.pcap") == ([], [])


def test_mss_of_a_link():
    assert (mss_for(1500, 4), mss_for(1500, 6), mss_for(1280, 4), mss_for(1280, 6)) == (
        1460,
        1440,
        1240,
        1220,
    )


def test_s5_is_dual_stack_with_the_same_plan_in_ipv6():
    plan, plan6 = topology.plan("s5"), topology.plan("s5", family=6)
    for group, hosts in plan.hosts.items():
        assert set(plan6.hosts[group]) == set(hosts), group
    for name, prefix in plan6.networks.items():
        network = ipaddress.IPv6Network(prefix)
        assert network.prefixlen == 64 and network.subnet_of(ipaddress.IPv6Network("fd00::/8")), name
        ipv4 = ipaddress.IPv4Network(plan.networks[name])
        inside = [n for g in plan.hosts.values() for n, a in g.items() if ipaddress.IPv4Address(a) in ipv4]
        assert all(ipaddress.IPv6Address(plan6.address(n)) in network for n in inside), name
    assert plan6.address("srv") == SRV6 and plan6.address("rt-out") == RT6
    # The narrow link beyond the firewall: between two routers, not at either end host.
    topo = topology.load("s5")
    rt = topo.nodeInfo("rt")
    assert rt["mtus"] == {"rt-wan": 1280} and topo.nodeInfo("cpe")["mtus"] == {"cpe-wan": 1280}
    assert "mtus" not in topo.nodeInfo("far") and "mtus" not in topo.nodeInfo("fw")


@pytest.mark.parametrize(
    ("name", "family", "says"),
    [
        ("s5", 5, "address family 5 is not 4 or 6"),
        ("s6", 6, "has no `PLAN6` (its IPv6 address plan: the topology is IPv4 only)"),
    ],
)
def test_an_ipv6_plan_that_is_not_there_is_one_line(name, family, says):
    with pytest.raises(ConfigError) as err:
        topology.plan(name, family=family)
    assert len(err.value.problems) == 1 and says in err.value.problems[0]
