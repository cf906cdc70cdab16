"""The balancers' renderers with an IPv6 VIP (S4 over IPv6): golden files (UPDATE_GOLDEN=1
rewrites them, as tests/test_render.py's), each checked by its daemon where installed;
and what cannot work refused in one line (the kernel balancer's NAT keeps the family)."""

from dataclasses import replace

import pytest

from lab.config import Adc, HealthCheck, L4Balancer, Pool, RealServer, VrrpInstance
from lab.devices.l4 import l4_problems
from lab.render.balancer import DsrPorts, render_balancer, render_clear
from lab.render.haproxy import render_haproxy
from lab.render.keepalived import render_keepalived
from lab.render.nginx import render_nginx
from tests.test_render import assert_golden, daemon_check, in_throwaway_namespace

VIP6 = "fd00:4:1::100"
SERVERS6 = tuple(RealServer(f"fd00:4:2::{n}", 80) for n in (11, 12, 13, 14))
BALANCERS6 = {
    "lb6_round_robin_snat": L4Balancer(VIP6, 80, SERVERS6, snat=True),
    "lb6_weighted": L4Balancer(
        VIP6, 80, (replace(SERVERS6[0], weight=3), *SERVERS6[1:]), algorithm="weighted"
    ),
    "lb6_source_hash": L4Balancer(VIP6, 80, SERVERS6, "source-hash"),
}
DSR6 = DsrPorts(
    "lb1-c", "lb1-s", "02:00:00:00:01:02", {s.address: f"02:00:00:00:02:{s.address[-2:]}" for s in SERVERS6}
)


@pytest.mark.parametrize("name", sorted(BALANCERS6))
def test_ipv6_balancer_ruleset_matches_golden_and_nft_accepts_it(tmp_path, name):
    text = render_balancer(BALANCERS6[name], "lb1-s")
    assert_golden(text, f"{name}.nft")
    assert "table ip6 sessionlab_lb {" in text and " ip daddr" not in text
    (tmp_path / "lb.nft").write_text(text)
    in_throwaway_namespace([], ["nft", "-c", "-f", str(tmp_path / "lb.nft")])


def test_ipv6_dsr_ruleset_matches_golden_and_nft_accepts_it(tmp_path):
    text = render_balancer(L4Balancer(VIP6, 80, SERVERS6, mode="dsr"), dsr=DSR6)
    assert_golden(text, "lb6_dsr.nft")
    (tmp_path / "dsr.nft").write_text(text)
    setup = [["link", "add", "lb1-c", "type", "veth", "peer", "name", "lb1-s"]]
    in_throwaway_namespace(setup, ["nft", "-c", "-f", str(tmp_path / "dsr.nft")])


def test_the_clearing_ruleset_removes_both_families_tables(tmp_path):
    text = render_clear()
    assert "delete table ip sessionlab_lb" in text and "delete table ip6 sessionlab_lb" in text
    (tmp_path / "clear.nft").write_text(text)
    in_throwaway_namespace([], ["nft", "-c", "-f", str(tmp_path / "clear.nft")])


ADC6 = Adc(
    VIP6,
    80,
    (Pool("web", SERVERS6, check=HealthCheck("http", "/health", interval_ms=200, rise=2, fall=2)),),
    persist_source=True,
    peers=(("lb1", "[fd00:4:2::2]:10000"), ("lb2", "[fd00:4:2::3]:10000")),
)


def test_haproxy_with_an_ipv6_vip_matches_golden_and_haproxy_accepts_it(tmp_path):
    assert ADC6.problems() == []  # the peers' bracketed IPv6 addresses read as addresses
    text = render_haproxy(ADC6, "/run/sessionlab/x/haproxy.sock")
    assert_golden(text, "haproxy6.cfg")
    assert "    bind [fd00:4:1::100]:80" in text and "server web1 [fd00:4:2::11]:80 check" in text
    assert "stick-table type ipv6" in text and "peer lb1 [fd00:4:2::2]:10000" in text
    (tmp_path / "haproxy.cfg").write_text(render_haproxy(ADC6, str(tmp_path / "s.sock")))
    daemon_check(["haproxy", "-c", "-q", "-f", str(tmp_path / "haproxy.cfg"), "-L", "lb1"])


def test_nginx_with_an_ipv6_vip_matches_golden_and_nginx_accepts_it(tmp_path):
    adc = replace(ADC6, peers=(), persist_source=False)
    text = render_nginx(adc, "/run/sessionlab/x/nginx")
    assert_golden(text, "nginx6.conf")
    assert "listen [fd00:4:1::100]:80;" in text and "server [fd00:4:2::11]:80 max_fails=2" in text
    (tmp_path / "nginx.conf").write_text(render_nginx(adc, str(tmp_path)))
    setup = [["link", "set", "lo", "up"], ["addr", "add", f"{VIP6}/128", "dev", "lo"]]
    in_throwaway_namespace(
        setup, ["nginx", "-t", "-q", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)]
    )


def test_keepalived_with_an_ipv6_vip_matches_golden_and_keepalived_accepts_it(tmp_path):
    vrrp = VrrpInstance("lb1-s", router_id=52, priority=150, vip="fd00:4:2::100/64", peer="fd00:4:2::3")
    assert vrrp.problems() == []
    text = render_keepalived(vrrp, "lb1")
    assert_golden(text, "keepalived6-lb1.conf")
    (tmp_path / "keepalived.conf").write_text(text)
    link = ["link", "add", "lb1-s", "type", "veth", "peer", "name", "peer0"]
    in_throwaway_namespace([link], ["keepalived", "-t", "-f", str(tmp_path / "keepalived.conf")])


def test_what_cannot_work_is_refused_in_one_line_each():
    mixed = L4Balancer(VIP6, 80, (SERVERS6[0], RealServer("10.0.2.12", 80)))
    assert l4_problems(mixed, "lb1-s", None) == [
        "balancer.servers: 10.0.2.12 is not IPv6 like the VIP fd00:4:1::100: the kernel balancer's NAT "
        "keeps the address family (no NAT64); use servers of the VIP's family, or a proxy (adc)"
    ]
    four = L4Balancer("10.0.1.100", 80, (*SERVERS6[:2], RealServer("10.0.2.11", 80)))
    assert l4_problems(four, "lb1-s", None) == [
        "balancer.servers: fd00:4:2::11, fd00:4:2::12 are not IPv4 like the VIP 10.0.1.100: the kernel "
        "balancer's NAT keeps the address family (no NAT64); use servers of the VIP's family, or a proxy "
        "(adc)"
    ]
    assert L4Balancer("fd00:4:1::1000:zz", 80, SERVERS6).problems()[0] == (
        "balancer.vip: 'fd00:4:1::1000:zz' is not an IPv4 or IPv6 address"
    )
    # A full proxy opens its own connections: an IPv6 VIP before IPv4 servers works.
    proxy = Adc(VIP6, 80, (Pool("web", (RealServer("10.0.2.11", 80), SERVERS6[1])),))
    assert proxy.problems() == []
    assert "server web1 10.0.2.11:80" in render_haproxy(proxy, "/s.sock")
    assert "server [fd00:4:2::12]:80;" in render_nginx(proxy, "/w")
    bad_peer = replace(ADC6, peers=(("lb1", "[fd00:4:2::zz]:10000"),))
    assert bad_peer.problems() == ["adc.peers[0]: 'fd00:4:2::zz' is not an IPv4 or IPv6 address"]
    vrrp = VrrpInstance("lb1-s", router_id=52, priority=150, vip="fd00:4:2::100/64", peer="10.0.2.3")
    assert vrrp.problems() == [
        "vrrp.peer: 10.0.2.3 and the VIP fd00:4:2::100/64 are of different families "
        "(an instance advertises in its VIP's family)"
    ]
