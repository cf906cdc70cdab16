"""Policy -> nftables text: pure, compared with golden files (UPDATE_GOLDEN=1 rewrites them)."""

import os
from pathlib import Path

import pytest

from lab.config import FirewallPolicy, Helper, L4Balancer, RealServer, Service, TimeoutRule
from lab.errors import ConfigError
from lab.render.balancer import render_balancer
from lab.render.nftables import render_ruleset, render_sysctls

GOLDEN = Path(__file__).parent / "golden"
POLICIES = {
    "strict": FirewallPolicy(tcp_timeout=2, allow_inbound=(Service(2222),)),
    "loose": FirewallPolicy(
        tcp_timeout=2, loose_pickup=True, allow_inbound=(Service(2222, address="10.0.1.10"),)
    ),
    "timeouts_reset": FirewallPolicy(
        tcp_timeout=2,
        timeouts=(TimeoutRule(20, port=9000), TimeoutRule(30, address="10.0.2.0/24", proto="udp")),
        reset_on_expiry=True,
    ),
    "handoff": FirewallPolicy(tcp_timeout=120, allow_inbound=(Service(8080),), peer_handoff="route"),
    "ftp_alg_nat": FirewallPolicy(
        tcp_timeout=30,
        allow_inbound=(Service(21), Service(30000, port_end=30009, address="10.0.4.10")),
        helpers=(Helper(21), Helper(2121)),
        snat=True,
        timeouts=(TimeoutRule(600, port=21),),
    ),
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_ruleset_matches_golden(name):
    text = render_ruleset(POLICIES[name], "fw-in", "fw-out", "fw-sync")
    path = GOLDEN / f"{name}.nft"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_strict_drops_non_syn_without_session_and_loose_does_not():
    strict = render_ruleset(POLICIES["strict"], "a", "b")
    loose = render_ruleset(POLICIES["loose"], "a", "b")
    assert "!= syn" in strict and "!= syn" not in loose
    assert render_sysctls(POLICIES["strict"])["net.netfilter.nf_conntrack_tcp_loose"] == "0"
    assert render_sysctls(POLICIES["loose"])["net.netfilter.nf_conntrack_tcp_loose"] == "1"


def test_handoff_marks_only_what_came_from_either_side_and_lets_it_out_to_the_peer():
    text = render_ruleset(POLICIES["handoff"], "a", "b", "sync")
    mark = next(line for line in text.splitlines() if "meta mark set" in line)
    assert 'iifname { "a", "b" }' in mark and "ct state invalid" in mark  # never from the peer: no loop
    forward = text.split("chain filter_forward")[1]
    assert forward.index('oifname "sync"') < forward.index('counter name "drop_invalid"')
    assert "meta mark set" not in render_ruleset(POLICIES["strict"], "a", "b")
    with pytest.raises(ValueError, match="interface to the peer"):
        render_ruleset(POLICIES["handoff"], "a", "b")


def test_first_timeout_rule_wins_and_default_comes_last():
    lines = render_ruleset(POLICIES["timeouts_reset"], "a", "b").splitlines()
    sets = [line for line in lines if "ct timeout set" in line]
    assert "tcp dport 9000" in sets[0] and sets[0].endswith("accept")
    assert '"timeout_default_tcp"' in sets[-1]


def test_conntrackd_config_matches_golden():
    from lab.render.conntrackd import SyncSettings, render_conntrackd

    text = render_conntrackd(SyncSettings("10.0.3.1", "10.0.3.2", "fw1-sync"), Path("/run/lab"), "fw1")
    path = GOLDEN / "conntrackd-fw1.conf"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()
    assert "DisableExternalCache on" in text
    cached = render_conntrackd(
        SyncSettings("10.0.3.1", "10.0.3.2", "fw1-sync", external_cache=True), Path("/x"), "a"
    )
    assert "DisableExternalCache off" in cached


def test_ftp_helpers_only_on_their_ports_and_nat_only_outwards():
    text = render_ruleset(POLICIES["ftp_alg_nat"], "fw-in", "fw-out")
    assert 'ct state new tcp dport 2121 ct helper set "ftp_2121"' in text
    assert 'type "ftp" protocol tcp' in text
    assert 'oifname "fw-out" masquerade' in text
    assert "tcp dport 30000-30009 tcp flags" in text
    plain = render_ruleset(FirewallPolicy(), "fw-in", "fw-out")
    assert "helper" not in plain and "masquerade" not in plain


def test_vsftpd_config_matches_golden():
    from lab.config import FtpServerConfig, ftp_server_problems
    from lab.render.vsftpd import render_vsftpd

    config = FtpServerConfig(root="/run/sessionlab/x/ftp", port=2121, pasv_min=30000, pasv_max=30004)
    assert ftp_server_problems(config) == []
    text = render_vsftpd(config, "/run/sessionlab/x/vsftpd.log", "/run/sessionlab/x/empty")
    path = GOLDEN / "vsftpd.conf"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()
    reversed_range = FtpServerConfig(root="/x", pasv_min=30009, pasv_max=30000)
    assert ftp_server_problems(reversed_range) == ["ftp_server: passive range 30009-30000 is reversed"]


BALANCERS = {
    "lb_round_robin": L4Balancer(
        "10.0.2.100", 80, (RealServer("10.0.3.11", 8080), RealServer("10.0.3.12", 8080))
    ),
    "lb_weighted_snat": L4Balancer(
        "10.0.2.100",
        80,
        (RealServer("10.0.3.11", 8080, weight=3), RealServer("10.0.3.12", 8080)),
        algorithm="weighted",
        snat=True,
    ),
    "lb_source_hash": L4Balancer(
        "10.0.2.100", 443, tuple(RealServer(f"10.0.3.{n}", 443) for n in (11, 12, 13)), "source-hash"
    ),
}


@pytest.mark.parametrize("name", sorted(BALANCERS))
def test_balancer_ruleset_matches_golden_and_nft_accepts_it(name):
    import shutil
    import subprocess

    text = render_balancer(BALANCERS[name], "lb-srv")
    path = GOLDEN / f"{name}.nft"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()
    if shutil.which("nft") is None or os.geteuid() != 0:
        pytest.skip("nft -c needs nft and root")
    check = subprocess.run(["nft", "-c", "-f", "-"], input=text, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_bad_balancers_are_refused_naming_each_problem():
    bad = L4Balancer(
        "10.0.2.300",
        80,
        (RealServer("10.0.3.11", 8080, weight=0), RealServer("10.0.3.11", 8080)),
        algorithm="fastest",
        snat=True,
    )
    with pytest.raises(ConfigError) as err:
        render_balancer(bad)
    problems = err.value.problems
    assert "balancer.vip: '10.0.2.300' is not an IPv4 address" in problems
    assert "balancer.algorithm: 'fastest' is not one of round-robin, weighted, source-hash" in problems
    assert "balancer.servers[0].weight: 0 is not a weight (1-100)" in problems
    assert "balancer.servers: 10.0.3.11:8080 is listed more than once" in problems
    assert "balancer.snat: needs the interface towards the servers" in problems
