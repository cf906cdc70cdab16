"""S5's readers for the IPv6 module (testcases/s5_common.py): neighbour tables, neighbour
discovery and echo replies in captures, and what nmap should report under the intent.
The samples come from a run of testcases/test_s5_ipv6.py."""

from pathlib import Path

from lab.config import Service
from testcases.s5_common import (
    ECHOES,
    INTENT,
    RESOLVED,
    nmap_expected,
    parse_neighbours,
    read_echo_replies,
    read_neighbour_discovery,
)

SAMPLES = Path(__file__).parent / "samples"


def test_neighbour_table_from_ip_json():
    fw = {n.address: n for n in parse_neighbours((SAMPLES / "s5-ipv6-neigh-fw.json").read_text())}
    assert set(fw) == {"fd00:5:1::11", "fd00:5:1::10", "fd00:5:2::20", "fd00:5:2::10"}
    c1 = fw["fd00:5:1::11"]
    assert (c1.dev, c1.mac, c1.state, c1.router) == ("fw-in", "fa:c1:83:15:c4:9c", "DELAY", False)
    assert all(n.state in RESOLVED for n in fw.values())
    host = '[{"dst":"fd00:5:1::1","dev":"c1-eth0","lladdr":"be:83:be:a4:5c:1b","router":null,'
    host += '"state":["REACHABLE"]}]'
    (gateway,) = parse_neighbours(host)
    assert gateway.router and gateway.state == "REACHABLE"
    (pending,) = parse_neighbours('[{"dst":"fd00:5:1::9","dev":"fw-in","state":["INCOMPLETE"]}]')
    assert pending.mac == "" and pending.state not in RESOLVED
    assert parse_neighbours("") == []


def test_neighbour_discovery_from_a_capture():
    nd = read_neighbour_discovery(SAMPLES / "s5-ipv6-nd-fw-in.pcap")
    assert [(p.kind, p.target) for p in nd] == [
        ("NS", "fd00:5:1::1"),  # c1 asks for its gateway
        ("NA", "fd00:5:1::1"),  # fw answers, as a router
        ("NS", "fd00:5:1::10"),  # fw asks for srv (from its link-local address)
        ("NA", "fd00:5:1::10"),
        ("NS", "fd00:5:1::1"),  # srv asks for its gateway
        ("NA", "fd00:5:1::1"),
    ]
    assert all(p.hop_limit == 255 for p in nd)
    assert [p.router for p in nd if p.kind == "NA"] == [True, False, True]
    assert nd[2].src.startswith("fe80:") and nd[2].dst == "ff02::1:ff00:10"  # srv's solicited-node group


def test_echo_replies_of_both_families():
    replies = read_echo_replies(SAMPLES / "s5-ping-both-fw-out.pcap")
    assert replies.count(("10.0.2.10", "10.0.1.11")) == 3
    assert replies.count(("fd00:5:2::10", "fd00:5:1::11")) == 3
    assert len(replies) == 6


def test_what_nmap_should_say_under_the_intent():
    echoes = {**ECHOES, "c1": (5001,)}
    assert nmap_expected("SYN scan", "srv", 80, echoes=echoes) == "open"
    assert nmap_expected("SYN scan", "c1", 80, echoes=echoes) == "closed"  # published port, nobody listens
    assert nmap_expected("SYN scan", "srv", 5001, echoes=echoes) == "filtered"
    assert nmap_expected("SYN scan", "c1", 5001, echoes=echoes) == "filtered"  # listens, not published
    assert nmap_expected("ACK scan", "srv", 80) == "filtered"
    assert {nmap_expected(s, "srv", 80) for s in ("FIN scan", "XMAS scan", "NULL scan")} == {"open|filtered"}
    ranged = INTENT.with_changes(allow_inbound=(Service(8000, port_end=8010),))
    assert nmap_expected("SYN scan", "srv", 8005, ranged) == "closed"
    assert nmap_expected("SYN scan", "srv", 8011, ranged) == "filtered"
