"""Nothing of the lab reaches outside it (lab/outside.py), judged offline: `ss` and `ip -j`
output as the root namespace gives it, and captures written here, each with and without
something outside the lab."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.utils import wrpcap

from lab.addresses import AddressedPacket, read_addressed_pcap
from lab.apps import marker
from lab.outside import (
    CAPTURE_EXCEPTIONS,
    RootSampler,
    attribute,
    check_captures,
    covering_routes,
    lab_ranges,
    owner_in,
    plan_ranges,
    violations,
)
from lab.packets import read_tcp_pcap
from lab.root_tables import (
    Listener,
    RootSample,
    parse_addresses,
    parse_listeners,
    parse_routes,
    split_endpoint,
)

RANGES = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/22", "10.0.4.0/24", "fd00:5:1::/64", "fd00:5:2::/64")
)

SS = """\
udp   UNCONN 0      0          127.0.0.53%lo:53        0.0.0.0:*    users:(("systemd-resolve",pid=310,fd=13))
udp   UNCONN 0      0            0.0.0.0%eth0:68       0.0.0.0:*    users:(("dhclient",pid=400,fd=6))
tcp   LISTEN 0      4              127.0.0.1:40111     0.0.0.0:*    users:(("python",pid=2001,fd=7))
tcp   LISTEN 0      5                0.0.0.0:12001     0.0.0.0:*    users:(("python3",pid=2002,fd=3))
tcp   LISTEN 0      128              0.0.0.0:2024      0.0.0.0:*
tcp   LISTEN 0      128              [::]:22      [::]:* users:(("sshd",pid=500,fd=4),("sshd",pid=501,fd=4))
tcp   LISTEN 0      10                     *:6654            *:*    users:(("ovs-vswitchd",pid=600,fd=30))
tcp   LISTEN 0      4     [::ffff:127.0.0.1]:8000            *:*    users:(("python",pid=2003,fd=5))
"""
# this test process 1000 -> controller 2001, a stray server 2002; 2003 a child of the controller
PARENTS = {2001: 1000, 2002: 1000, 2003: 2001, 1000: 1, 310: 1, 400: 1, 500: 1, 501: 500, 600: 1}
ROOTS = {1000: "this test process"}

ADDR = json.dumps(
    [
        {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
        {
            "ifname": "eth0",
            "addr_info": [
                {"family": "inet", "local": "192.0.2.2", "prefixlen": 24},
                {"family": "inet6", "local": "fd00::2", "prefixlen": 64},
                {"family": "inet6", "local": "fe80::fc:ff:fe00:1", "prefixlen": 64},
            ],
        },
        {"ifname": "sl1234s1-eth1", "addr_info": [{"family": "inet6", "local": "fe80::1", "prefixlen": 64}]},
        {"ifname": "sl1234x0", "addr_info": [{"family": "inet", "local": "10.0.1.250", "prefixlen": 32}]},
        {"ifname": "sl1234x1", "addr_info": [{"family": "inet6", "local": "fd00:5:1::99", "prefixlen": 64}]},
    ]
)
ROUTES4 = json.dumps(
    [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "flags": []},
        {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link"},
        {"dst": "10.0.2.0/24", "gateway": "192.0.2.9", "dev": "eth0", "table": "100"},
        {"type": "local", "dst": "10.0.1.250", "dev": "sl1234x0", "table": "local"},
        {"type": "local", "dst": "127.0.0.1", "dev": "lo", "table": "local"},
        {"dst": "10.0.0.0/8", "dev": "eth0"},
    ]
)
ROUTES6 = json.dumps(
    [
        {"dst": "fd00::/64", "dev": "eth0"},
        {"dst": "fe80::/64", "dev": "sl1234s1-eth1"},
        {"dst": "fd00:5:1::/64", "dev": "sl1234x1"},
        {"dst": "default", "gateway": "fd00::1", "dev": "eth0"},
        {"type": "multicast", "dst": "ff00::/8", "dev": "eth0", "table": "local"},
    ]
)


def sample(ss: str = SS, addr: str = ADDR, routes4: str = ROUTES4, routes6: str = ROUTES6) -> RootSample:
    listeners = attribute(parse_listeners(ss), ROOTS, PARENTS.get)
    routes = parse_routes(routes4, 4) + parse_routes(routes6, 6)
    return RootSample(1.0, tuple(listeners), tuple(parse_addresses(addr)), tuple(routes))


# --- root namespace --------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("0.0.0.0:22", ("0.0.0.0", 22)),
        ("[::]:22", ("::", 22)),
        ("127.0.0.53%lo:53", ("127.0.0.53", 53)),
        ("*:68", ("*", 68)),
        ("[fe80::1]%eth0:546", ("fe80::1", 546)),
        ("[::ffff:127.0.0.1]:8000", ("::ffff:127.0.0.1", 8000)),
    ],
)
def test_ss_endpoints(text, expected):
    assert split_endpoint(text) == expected


def test_listeners_are_read_with_their_processes():
    listeners = parse_listeners(SS + "Netid State\nsomething else entirely\n")
    assert len(listeners) == 8
    assert listeners[0] == Listener("udp", "127.0.0.53", 53, (("systemd-resolve", 310),))
    assert listeners[4].processes == ()  # a process of another PID namespace: not shown
    assert listeners[5].processes == (("sshd", 500), ("sshd", 501))
    loopback = {f"{x.address}:{x.port}" for x in listeners if x.loopback}
    assert loopback == {"127.0.0.53:53", "127.0.0.1:40111", "::ffff:127.0.0.1:8000"}


def test_a_listener_is_the_labs_when_its_process_descends_from_a_lab_process():
    assert owner_in(2003, ROOTS, PARENTS.get) == "this test process (pid 1000)"
    assert owner_in(500, ROOTS, PARENTS.get) == ""
    assert owner_in(7, {}, {7: 8, 8: 7}.get) == ""  # a loop in a stale table ends
    marked = {x.port: x.lab for x in attribute(parse_listeners(SS), ROOTS, PARENTS.get)}
    assert marked[40111] == marked[12001] == marked[8000] == "this test process (pid 1000)"
    assert marked[22] == marked[6654] == marked[2024] == ""


def test_the_root_namespace_violations_are_named():
    found = violations(sample(), RANGES)
    assert found == [
        "listener tcp 0.0.0.0:12001 held by python3 (pid 2002), of this test process (pid 1000)",
        "listener tcp *:6654 held by ovs-vswitchd (pid 600)",
        "address 10.0.1.250/32 on sl1234x0",
        "address fd00:5:1::99/64 on sl1234x1",
        "route unicast 10.0.2.0/24 dev eth0 table 100",
        "route local 10.0.1.250 dev sl1234x0 table local",
        "route unicast fd00:5:1::/64 dev sl1234x1 table main",
    ]


def test_a_clean_root_namespace_has_none():
    ss = "".join(line + "\n" for line in SS.splitlines() if ":12001" not in line and ":6654" not in line)
    addr = json.dumps([a for a in json.loads(ADDR) if not a["ifname"].startswith("sl1234x")])
    routes4 = json.dumps(
        [r for r in json.loads(ROUTES4) if r.get("dev") != "sl1234x0" and r.get("table") != "100"]
    )
    routes6 = json.dumps([r for r in json.loads(ROUTES6) if r.get("dev") != "sl1234x1"])
    assert violations(sample(ss, addr, routes4, routes6), RANGES) == []


def test_open_vswitch_listeners_count_only_when_new():
    before = sample()
    assert not any("ovs-vswitchd" in v for v in violations(sample(), RANGES, before))


def test_routes_wider_than_a_lab_range_are_the_machines_not_the_labs():
    routes = parse_routes(ROUTES4, 4) + parse_routes(ROUTES6, 6)
    assert covering_routes(routes, RANGES) == [
        "unicast 10.0.0.0/8 dev eth0 table main holds the lab's 10.0.0.0/22",
    ]


def test_samples_as_json_and_back():
    one = sample()
    assert RootSample.from_dict(json.loads(json.dumps(one.to_dict()))) == one


def test_a_sampler_names_each_violation_with_the_samples_that_showed_it(tmp_path: Path):
    sampler = RootSampler()
    clean = RootSample(0.5, (), (), ())
    sampler.samples = [clean, sample(), RootSample(2.0, (), tuple(parse_addresses(ADDR)), ())]
    found = sampler.violations(RANGES)
    assert found["address 10.0.1.250/32 on sl1234x0"] == [1.0, 2.0]
    assert found["listener tcp *:6654 held by ovs-vswitchd (pid 600)"] == [1.0]
    saved = json.loads(sampler.save(tmp_path / "root.json", RANGES).read_text())
    assert saved["ranges"] == [str(r) for r in RANGES] and len(saved["samples"]) == 3


# --- the lab's ranges ----------------------------------------------------------------------
def test_ranges_of_plans_merge_networks_and_keep_addresses_outside_them():
    plan = SimpleNamespace(
        networks={"a": "10.0.0.0/24", "b": "10.0.1.0/24"},
        hosts={"x": {"h": "10.0.0.5"}},
        addresses={"gw": "10.0.1.1"},
        vips={"web": "10.9.0.100"},
    )
    six = SimpleNamespace(networks={"a": "fd00:5:1::/64"}, hosts={}, addresses={"far": "fd00:9::1"}, vips={})
    assert [str(r) for r in plan_ranges([plan, six])] == [
        "10.0.0.0/23",
        "10.9.0.100/32",
        "fd00:5:1::/64",
        "fd00:9::1/128",
    ]


def test_every_topologys_plan_is_in_the_lab_ranges():
    from lab import topology

    ranges = lab_ranges()
    for name in topology.available():
        plan = topology.plan(name)
        for address in [a for g in plan.hosts.values() for a in g.values()] + list(plan.vips.values()):
            assert any(ipaddress.ip_address(address) in r for r in ranges), (name, address)
    assert ipaddress.ip_network("fd00:5:1::/64") in ranges  # S5's IPv6 plan
    assert not any(ipaddress.ip_address("192.0.2.2") in r for r in ranges if r.version == 4)


# --- captures ------------------------------------------------------------------------------
A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def frames(outside: bool = False) -> list:
    """Every kind of frame the lab's captures hold; with `outside`, two with an address
    outside the lab (a TCP segment, and inside a VXLAN tunnel)."""
    seg = IP(src="10.0.1.10", dst="10.0.2.10") / TCP(sport=12001, dport=8080, flags="S")
    inner_dst = "192.0.2.55" if outside else "10.0.1.11"
    tunnelled = Ether(src=A, dst=B) / IP(src="10.0.4.1", dst="10.0.4.2") / UDP(sport=40000, dport=4789)
    tunnelled = tunnelled / VXLAN(vni=7) / Ether(src=A, dst=B) / IP(src="10.0.0.11", dst=inner_dst) / TCP()
    found = [
        Ether(src=A, dst=B) / seg,
        Ether(src=A, dst=B) / Dot1Q(vlan=20) / seg,
        Ether(src=A, dst=B) / MPLS(label=101, s=1, ttl=64) / seg,
        Ether(src=A, dst=B) / IP(src="10.0.3.1", dst="10.0.3.2") / UDP(sport=3780, dport=3780) / b"sync",
        Ether(src=A, dst="01:00:5e:00:00:12") / IP(src="10.0.2.2", dst="224.0.0.18", proto=112) / b"vrrp",
        Ether(src=A, dst=B) / IP(src="10.0.2.1", dst="10.0.1.10") / ICMP(type=3, code=4) / bytes(seg)[:28],
        Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.1.10", pdst="10.0.1.1"),
        Ether(src=A, dst="33:33:ff:00:00:01") / IPv6(src="fe80::1", dst="ff02::1:ff00:1") / ICMPv6ND_NS(),
        Ether(src=A, dst=B) / IPv6(src="fd00:5:1::10", dst="fd00:5:2::10") / TCP(),
        Ether(src=A, dst="ff:ff:ff:ff:ff:ff", type=marker.ETHERTYPE) / Raw(marker.PAYLOAD),
        Ether(bytes(Ether(src=A, dst=B) / seg)[:30]),  # cut inside the IP header: unreadable
        tunnelled,
    ]
    if outside:
        found.append(
            Ether(src=A, dst=B) / IP(src="10.0.1.10", dst="192.0.2.55") / TCP(sport=12002, dport=443)
        )
    return found


def test_every_ip_and_arp_packet_is_read_with_its_addresses(tmp_path: Path):
    path = tmp_path / "all.pcap"
    wrpcap(str(path), frames(), linktype=1)
    got = [(p.kind, p.src, p.dst, p.proto, p.inner) for p in read_addressed_pcap(path)]
    assert got == [
        ("ipv4", "10.0.1.10", "10.0.2.10", 6, False),
        ("ipv4", "10.0.1.10", "10.0.2.10", 6, False),  # 802.1Q
        ("ipv4", "10.0.1.10", "10.0.2.10", 6, False),  # MPLS
        ("ipv4", "10.0.3.1", "10.0.3.2", 17, False),
        ("ipv4", "10.0.2.2", "224.0.0.18", 112, False),
        ("ipv4", "10.0.2.1", "10.0.1.10", 1, False),
        ("arp", "10.0.1.10", "10.0.1.1", 0, False),
        ("ipv6", "fe80::1", "ff02::1:ff00:1", 58, False),
        ("ipv6", "fd00:5:1::10", "fd00:5:2::10", 6, False),
        ("ipv4", "10.0.4.1", "10.0.4.2", 17, False),
        ("ipv4", "10.0.0.11", "10.0.1.11", 6, True),
    ]
    assert isinstance(read_addressed_pcap(path)[0], AddressedPacket)
    assert len(read_tcp_pcap(path)) == 5  # the TCP reader: IPv4 and IPv6 TCP, none quoted in ICMP


def test_a_header_dpkt_leaves_undecoded_is_read_from_its_bytes(tmp_path: Path):
    whole = bytes(Ether(src=A, dst=B) / IP(src="10.0.1.10", dst="10.0.2.10", ihl=4) / TCP())  # a bad IHL
    path = tmp_path / "odd.pcap"
    wrpcap(str(path), [Ether(whole)], linktype=1)
    assert [(p.kind, p.src, p.dst) for p in read_addressed_pcap(path)] == [("ipv4", "10.0.1.10", "10.0.2.10")]


def test_captures_holding_only_lab_addresses_pass(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    wrpcap(str(tmp_path / "sub" / "clean.pcap"), frames(), linktype=1)
    result = check_captures(tmp_path, RANGES)
    assert (result.files, result.packets, result.outside) == (1, 11, {})
    assert result.by_file == {"sub/clean.pcap": 11}


def test_a_capture_holding_an_outside_address_is_named(tmp_path: Path):
    wrpcap(str(tmp_path / "leak.pcap"), frames(outside=True), linktype=1)
    result = check_captures(tmp_path, RANGES)
    assert result.outside == {
        "leak.pcap": ["ipv4 (inside VXLAN) 10.0.0.11 > 192.0.2.55", "ipv4 10.0.1.10 > 192.0.2.55"]
    }
    # without the default exceptions, multicast and link-local are outside too
    strict = check_captures(tmp_path, RANGES, exceptions=())
    assert "ipv4 10.0.2.2 > 224.0.0.18" in strict.outside["leak.pcap"]
    assert "ipv6 fe80::1 > ff02::1:ff00:1" in strict.outside["leak.pcap"]
    # a case's own exception (declared) lets its address through
    declared = check_captures(tmp_path, RANGES, exceptions=(*CAPTURE_EXCEPTIONS, "192.0.2.55/32"))
    assert declared.outside == {}


def test_switch_ports_are_sealed_against_the_root_namespaces_ipv6(tmp_path: Path):
    from lab.outside import seal_switch_ports

    for name in ("s1-eth1", "s1-eth2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "disable_ipv6").write_text("0")
    ports = [SimpleNamespace(name=n) for n in ("lo", "s1-eth1", "s1-eth2", "gone-eth9")]
    switch = SimpleNamespace(intfList=lambda: ports)
    assert seal_switch_ports([switch], tmp_path) == ["s1-eth1", "s1-eth2"]
    assert (tmp_path / "s1-eth2" / "disable_ipv6").read_text() == "1"


def test_doctor_names_lab_addresses_and_overlapping_routes_in_the_root_namespace(monkeypatch):
    from lab import outside
    from lab.doctor import outside_check

    monkeypatch.setattr(outside, "lab_ranges", lambda: RANGES)
    monkeypatch.setattr(outside, "sample_root", lambda listeners=True: replace(sample(), listeners=()))
    check = outside_check()
    assert (check.ok, check.status, check.optional) == (False, "leftover", True)
    assert check.detail.startswith("address 10.0.1.250/32 on sl1234x0; address fd00:5:1::99/64 on sl1234x1;")
    assert "sessionlab clean" in check.fix
    wide = RootSample(1.0, (), (), tuple(parse_routes(ROUTES4, 4)[:2] + parse_routes(ROUTES4, 4)[-1:]))
    monkeypatch.setattr(outside, "sample_root", lambda listeners=True: wide)
    check = outside_check()
    assert (check.ok, check.status) == (False, "overlap")
    assert check.detail == "unicast 10.0.0.0/8 dev eth0 table main holds the lab's 10.0.0.0/22"
    monkeypatch.setattr(outside, "sample_root", lambda listeners=True: RootSample(1.0, (), (), ()))
    assert outside_check().ok
