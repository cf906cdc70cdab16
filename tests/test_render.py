"""Configs -> daemon text: pure renderers compared with golden files (UPDATE_GOLDEN=1
rewrites them), checked by the daemons where installed; and each config's problems."""

import os
from dataclasses import replace
from pathlib import Path

import pytest

from lab.config import (
    Adc,
    FirewallPolicy,
    HealthCheck,
    Helper,
    L4Balancer,
    Pool,
    RealServer,
    Route,
    Service,
    TimeoutRule,
    VrrpInstance,
    validate_policy,
    vrrp_group_problems,
)
from lab.devices.l4 import l4_problems
from lab.errors import ConfigError
from lab.render.balancer import DsrPorts, render_balancer
from lab.render.haproxy import render_haproxy
from lab.render.keepalived import render_keepalived
from lab.render.nftables import render_ruleset, render_sysctls
from lab.render.nginx import nginx_problems, render_nginx

GOLDEN = Path(__file__).parent / "golden"


def assert_golden(text: str, name: str) -> None:
    """`text` is the golden file `name` to the byte (UPDATE_GOLDEN=1 rewrites it)."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


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
    "table_defences": FirewallPolicy(
        tcp_timeout=300,
        allow_inbound=(Service(80, address="10.0.1.10"),),
        max_sessions=200,
        per_source_limit=20,
        half_open_timeout=5,
        closed_timeout=2,
        synproxy=True,
        early_drop=True,
    ),
    # S6's known configurations: UDP lifetimes, and an endpoint-independent NAT.
    "udp_timeouts": FirewallPolicy(
        tcp_timeout=30,
        udp_timeout=5,
        udp_stream_timeout=40,
        timeouts=(TimeoutRule(300, port=3478, proto="udp"),),
    ),
    "full_cone": FirewallPolicy(tcp_timeout=30, snat=True, full_cone="10.0.1.10"),
    # S5's path MTU (issue 25): ICMP errors dropped (the black hole), and the MSS clamp.
    "pmtu_drop": FirewallPolicy(allow_inbound=(Service(80),), icmp_errors="drop"),
    "mss_clamp": FirewallPolicy(allow_inbound=(Service(80),), icmp_errors="drop", clamp_mss=True),
    # Both families (issue 25): a service and a timeout per family, the FTP helper for both,
    # per-source limits counted per family, NAT66 by the same masquerade.
    "dual_stack": FirewallPolicy(
        tcp_timeout=30,
        allow_inbound=(Service(21, address="10.0.3.10"), Service(21, address="fd00:3:3::10")),
        timeouts=(TimeoutRule(600, port=21, address="fd00:3:3::/64"),),
        helpers=(Helper(21),),
        per_source_limit=20,
        snat=True,
    ),
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_ruleset_matches_golden(name):
    text = render_ruleset(POLICIES[name], "fw-in", "fw-out", "fw-sync")
    assert_golden(text, f"{name}.nft")


def test_table_defences_are_accepted_by_nft():
    import shutil
    import subprocess

    if shutil.which("nft") is None or os.geteuid() != 0:
        pytest.skip("nft -c needs nft and root")
    text = render_ruleset(POLICIES["table_defences"], "fw-in", "fw-out")
    check = subprocess.run(["nft", "-c", "-f", "-"], input=text, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr
    # The proxy answers before the invalid-state drop would see its untracked SYN.
    lines = text.splitlines()
    proxy = next(i for i, line in enumerate(lines) if " synproxy " in line)
    assert proxy < next(i for i, line in enumerate(lines) if '"drop_invalid" drop' in line)
    assert "syn_sent : 5, syn_recv : 5, time_wait : 2, close : 2" in text


def test_the_same_intent_stateless_needs_no_state_and_is_checked_by_nft():
    import shutil
    import subprocess

    from lab.render.nftables import render_stateless, rule_count

    intent = FirewallPolicy(allow_inbound=(Service(80, address="10.0.1.10"),))
    text = render_stateless(intent, "fw-in", "fw-out")
    assert_golden(text, "stateless.nft")
    assert "ct state" not in text and "notrack" in text
    stateful = render_ruleset(intent, "fw-in", "fw-out")
    assert (rule_count(stateful), rule_count(text)) == (6, 6)
    if shutil.which("nft") is None or os.geteuid() != 0:
        pytest.skip("nft -c needs nft and root")
    check = subprocess.run(["nft", "-c", "-f", "-"], input=text, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_bad_table_defences_are_refused_naming_each():
    bad = FirewallPolicy(max_sessions=0, per_source_limit=-3, half_open_timeout=0, synproxy=True)
    with pytest.raises(ConfigError) as err:
        render_ruleset(validate_policy(bad), "a", "b")
    assert err.value.problems == [
        "max_sessions: 0 is not a positive whole number",
        "per_source_limit: -3 is not a positive whole number",
        "half_open_timeout: 0 is not a timeout in whole seconds (1-2000000)",
        "synproxy: no inbound TCP service to protect (allow_inbound)",
    ]


def test_early_drop_needs_a_capacity():
    with pytest.raises(ConfigError) as err:
        validate_policy(FirewallPolicy(early_drop=True, closed_timeout=-1))
    assert err.value.problems == [
        "closed_timeout: -1 is not a timeout in whole seconds (1-2000000)",
        "early_drop: needs max_sessions (the capacity it makes room in)",
    ]


def test_path_mtu_rules_come_before_established_and_the_default_has_none():
    """The clamp must see the SYN-ACK (already established) and the drop must come before
    related packets are accepted; a policy that sets neither renders as before."""
    forward = render_ruleset(POLICIES["mss_clamp"], "a", "b").split("chain filter_forward")[1]
    rules = [line.strip() for line in forward.splitlines()[2:5]]
    assert rules == [
        "tcp flags syn tcp option maxseg size set rt mtu",
        'meta l4proto { icmp, ipv6-icmp } ct state related counter name "drop_icmp_error" drop',
        "ct state established,related accept",
    ]
    assert "counter drop_icmp_error { }" in render_ruleset(POLICIES["pmtu_drop"], "a", "b")
    plain = render_ruleset(FirewallPolicy(allow_inbound=(Service(80),)), "a", "b")
    assert "icmp" not in plain and "maxseg" not in plain
    # Neighbour discovery reaches the firewall itself: nothing filters its input or output.
    assert "hook input" not in plain and "hook output" not in plain


def test_bad_path_mtu_options_are_one_line_each():
    bad = FirewallPolicy(icmp_errors="block", clamp_mss="yes")
    with pytest.raises(ConfigError) as err:
        validate_policy(bad)
    assert err.value.problems == [
        "icmp_errors: 'block' is not one of related, drop",
        "clamp_mss: 'yes' is not true or false",
    ]


def test_an_ipv6_address_or_a_bad_prefix_in_an_ipv4_field_is_one_line():
    policy = FirewallPolicy(
        allow_inbound=(Service(80, address="fd00:5:1::10/129"), Service(81, address="10.0.1.0/33")),
        full_cone="fd00:5:1::10",
        snat=True,
    )
    problems = policy.problems()
    assert len(problems) == 3 and all("\n" not in p for p in problems), problems
    assert problems[0].startswith(
        "allow_inbound[0].address: 'fd00:5:1::10/129' is not an IPv4 or IPv6 address or prefix"
    )
    assert problems[1].startswith(
        "allow_inbound[1].address: '10.0.1.0/33' is not an IPv4 or IPv6 address or prefix"
    )
    assert problems[2] == "full_cone: 'fd00:5:1::10' is not an IPv4 address"


def test_ipv6_services_and_timeouts_match_ipv6_sessions_only():
    policy = FirewallPolicy(
        allow_inbound=(Service(80, address="fd00:5:1::10"), Service(80, address="10.0.1.10")),
        timeouts=(TimeoutRule(5, port=9000, address="fd00:1:2::/64"),),
        per_source_limit=4,
    )
    assert policy.problems() == []
    text = render_ruleset(policy, "fw-in", "fw-out")
    assert "ip6 daddr fd00:5:1::10 meta l4proto tcp tcp dport 80" in text
    assert "ip daddr 10.0.1.10 meta l4proto tcp tcp dport 80" in text
    assert "ct state new ip6 daddr fd00:1:2::/64 meta l4proto tcp tcp dport 9000" in text
    # one per-source set per family, each counted against the same limit
    assert "add @per_source { ip saddr ct count over 4 }" in text
    assert "add @per_source6 { ip6 saddr ct count over 4 }" in text


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


@pytest.mark.parametrize("name", ["udp_timeouts", "full_cone", "dual_stack"])
def test_s6_and_dual_stack_policies_are_accepted_by_nft(name):
    import shutil
    import subprocess

    if shutil.which("nft") is None or os.geteuid() != 0:
        pytest.skip("nft -c needs nft and root")
    text = render_ruleset(POLICIES[name], "fw-in", "fw-out")
    check = subprocess.run(["nft", "-c", "-f", "-"], input=text, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_udp_timeouts_write_both_states_and_come_after_the_rules():
    lines = render_ruleset(POLICIES["udp_timeouts"], "a", "b").splitlines()
    assert "\t\tpolicy = { unreplied : 5, replied : 40 }" in lines
    sets = [line for line in lines if "ct timeout set" in line]
    assert "udp dport 3478" in sets[0] and sets[-1].endswith(
        'meta l4proto udp ct timeout set "timeout_default_udp"'
    )
    # One of the two set: the other is Linux's own, written out (nft's own table differs by version).
    only = render_ruleset(FirewallPolicy(udp_stream_timeout=600), "a", "b")
    assert "policy = { unreplied : 30, replied : 600 }" in only
    assert "udp" not in render_ruleset(FirewallPolicy(), "a", "b")


def test_full_cone_sends_new_outside_udp_to_the_host_and_only_it_is_let_in():
    text = render_ruleset(POLICIES["full_cone"], "fw-in", "fw-out")
    cone = text.split("chain full_cone {")[1].split("}")[0]
    assert "type nat hook prerouting priority dstnat" in cone
    assert 'iifname "fw-out" meta l4proto udp udp dport 1024-65535 fib daddr . iif type local' in cone
    assert cone.strip().endswith("dnat ip to 10.0.1.10")
    forward = text.split("chain filter_forward")[1].split("}")[0]
    accept = 'oifname "fw-in" ip daddr 10.0.1.10 meta l4proto udp ct status dnat ct state new accept'
    assert forward.index(accept) < forward.index('"drop_denied"')
    assert "masquerade random" not in text and "fully-random" not in text  # ports kept where free
    assert "full_cone" not in render_ruleset(POLICIES["ftp_alg_nat"], "fw-in", "fw-out")


def test_conntrackd_config_matches_golden():
    from lab.render.conntrackd import SyncSettings, render_conntrackd

    text = render_conntrackd(SyncSettings("10.0.3.1", "10.0.3.2", "fw1-sync"), Path("/run/lab"), "fw1")
    assert_golden(text, "conntrackd-fw1.conf")
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
    assert_golden(text, "vsftpd.conf")
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
    assert_golden(text, f"{name}.nft")
    if shutil.which("nft") is None or os.geteuid() != 0:
        pytest.skip("nft -c needs nft and root")
    check = subprocess.run(["nft", "-c", "-f", "-"], input=text, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


DSR = DsrPorts(
    "lb1-c",
    "lb1-s",
    "02:00:00:00:01:02",
    {"10.0.2.11": "02:00:00:00:02:11", "10.0.2.12": "02:00:00:00:02:12"},
)


def test_dsr_ruleset_matches_golden_and_nft_accepts_it(tmp_path):
    servers = (RealServer("10.0.2.11", 80, weight=2), RealServer("10.0.2.12", 80))
    text = render_balancer(L4Balancer("10.0.1.100", 80, servers, "weighted", mode="dsr"), dsr=DSR)
    assert_golden(text, "lb_dsr_weighted.nft")
    # A netdev chain names its device: nft -c wants it to exist.
    (tmp_path / "dsr.nft").write_text(text)
    setup = [["link", "add", "lb1-c", "type", "veth", "peer", "name", "lb1-s"]]
    in_throwaway_namespace(setup, ["nft", "-c", "-f", str(tmp_path / "dsr.nft")])


def test_dsr_keeps_ports_and_needs_each_servers_mac():
    servers = (RealServer("10.0.2.11", 8080), RealServer("10.0.2.13", 80))
    assert l4_problems(L4Balancer("10.0.1.100", 80, servers, mode="dsr", snat=True), "lb1-s", DSR) == [
        "balancer.snat: direct server return rewrites no address (mode dsr)",
        "balancer.servers[0].port: 8080 is not the VIP's port 80 (direct server return keeps the port)",
        "balancer.servers[1]: no MAC known for 10.0.2.13",
    ]
    direct = L4Balancer("10.0.1.100", 80, servers[1:], mode="direct")
    assert l4_problems(direct, None, None) == ["balancer.mode: 'direct' is not one of nat, dsr"]


def test_bad_balancers_are_refused_naming_each_problem():
    bad = L4Balancer(
        "10.0.2.300",
        80,
        (RealServer("10.0.3.11", 8080, weight=0), RealServer("10.0.3.11", 8080)),
        algorithm="fastest",
        snat=True,
    )
    problems = l4_problems(bad, None, None)
    assert "balancer.vip: '10.0.2.300' is not an IPv4 address" in problems
    assert "balancer.algorithm: 'fastest' is not one of round-robin, weighted, source-hash" in problems
    assert "balancer.servers[0].weight: 0 is not a weight (1-100)" in problems
    assert "balancer.servers: 10.0.3.11:8080 is listed more than once" in problems
    assert "balancer.snat: needs the interface towards the servers" in problems


ADC = Adc(
    vip="10.0.2.100",
    port=443,
    certificate="/run/sessionlab/x/adc.pem",
    pools=(
        Pool(
            "web",
            (RealServer("10.0.3.11", 80), RealServer("10.0.3.12", 80, weight=3)),  # 1 in 4, 3 in 4
            check=HealthCheck("http", "/health", interval_ms=200, rise=2, fall=2),
            cookie=True,
        ),
        Pool("api", (RealServer("10.0.3.13", 443),), algorithm="leastconn", check=HealthCheck(), tls=True),
        Pool("beta", (RealServer("10.0.3.14", 80),), algorithm="source"),
    ),
    routes=(Route("api", path_prefix="/api/"), Route("beta", header="X-Beta", value="1")),
    compression=True,
    deny_pattern=r"\.\./",
    redirects=(("/old/", "/new/"),),
    cache_pattern=r"^/static/",
)
VRRP = VrrpInstance("lb1-out", router_id=51, priority=150, vip="10.0.2.100/24", advert_s=0.1, peer="10.0.2.3")


def daemon_check(argv: list[str]) -> None:
    """Let the daemon itself check the file (skipped where it is not installed)."""
    import shutil
    import subprocess

    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed (scripts/bootstrap.sh)")
    check = subprocess.run(argv, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def throwaway_certificate(folder: Path) -> Path:
    """A self-signed certificate with its key in one PEM file, for the daemons' checks."""
    import subprocess

    key, cert, pem = folder / "key.pem", folder / "cert.pem", folder / "adc.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=lab",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    pem.write_text(key.read_text() + cert.read_text())
    return pem


def test_haproxy_config_matches_golden_and_haproxy_accepts_it(tmp_path):
    text = render_haproxy(ADC, "/run/sessionlab/x/haproxy.sock")
    assert_golden(text, "haproxy.cfg")
    pem = throwaway_certificate(tmp_path)  # haproxy -c loads the certificate
    checked = tmp_path / "haproxy.cfg"
    checked.write_text(render_haproxy(replace(ADC, certificate=str(pem)), str(tmp_path / "haproxy.sock")))
    daemon_check(["haproxy", "-c", "-q", "-f", str(checked)])


def test_haproxy_peers_share_a_stick_table_golden_and_checked(tmp_path):
    shared = Adc(
        "10.0.1.100",
        80,
        (Pool("web", (RealServer("10.0.2.11", 80), RealServer("10.0.2.12", 80))),),
        persist_source=True,
        peers=(("lb1", "10.0.2.2:10000"), ("lb2", "10.0.2.3:10000")),
    )
    text = render_haproxy(shared, "/run/sessionlab/x/haproxy.sock")
    assert_golden(text, "haproxy-peers.cfg")
    (tmp_path / "haproxy.cfg").write_text(render_haproxy(shared, str(tmp_path / "s.sock")))
    daemon_check(["haproxy", "-c", "-q", "-f", str(tmp_path / "haproxy.cfg"), "-L", "lb1"])
    assert replace(shared, persist_source=False, peers=(("1x", "10.0.2.999:port"),)).problems() == [
        "adc.peers: peers share a stick table; set persist_source",
        "adc.peers[0]: '1x' is not a name",
        "adc.peers[0]: '10.0.2.999' is not an IPv4 address",
        "adc.peers[0].port: 'port' is not a port number (1-65535)",
    ]
    assert any("zone_sync" in p for p in nginx_problems(shared))


def test_keepalived_config_matches_golden_and_keepalived_accepts_it(tmp_path):
    text = render_keepalived(VRRP, "lb1")
    assert_golden(text, "keepalived-lb1.conf")
    # keepalived -t also wants the interface to exist (and not be loopback).
    (tmp_path / "keepalived.conf").write_text(text)
    link = ["link", "add", VRRP.interface, "type", "veth", "peer", "name", "peer0"]
    in_throwaway_namespace([link], ["keepalived", "-t", "-f", str(tmp_path / "keepalived.conf")])


def test_a_sync_group_of_two_instances_matches_golden_and_keepalived_accepts_it(tmp_path):
    pair = (
        VrrpInstance("lb1-c", router_id=51, priority=150, vip="10.0.1.100/24", peer="10.0.1.3"),
        VrrpInstance("lb1-s", router_id=52, priority=150, vip="10.0.2.100/24", peer="10.0.2.3"),
    )
    text = render_keepalived(pair, "lb1")
    assert_golden(text, "keepalived-pair-lb1.conf")
    (tmp_path / "keepalived.conf").write_text(text)
    links = [["link", "add", "lb1-c", "type", "veth", "peer", "name", "lb1-s"]]
    in_throwaway_namespace(links, ["keepalived", "-t", "-f", str(tmp_path / "keepalived.conf")])
    assert vrrp_group_problems((pair[0], replace(pair[1], router_id=51))) == [
        "vrrp.router_id: 51 is used twice"
    ]


def in_throwaway_namespace(setup: list[list[str]], argv: list[str]) -> None:
    """Run a daemon's check in a network namespace of its own, prepared by `ip` commands
    (`setup`), and removed after: checks that bind the VIP or want an interface."""
    import secrets
    import shutil
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("the check needs a network namespace (root)")
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed (scripts/bootstrap.sh)")
    ns = f"slcheck{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for command in setup:
            subprocess.run(["ip", "-n", ns, *command], check=True)
        check = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


NGINX_ADC = replace(
    ADC, pools=tuple(replace(p, cookie=False) for p in ADC.pools), cache_pattern=r"\.(css|js|png)$"
)


def test_nginx_config_matches_golden_and_nginx_accepts_it(tmp_path):
    text = render_nginx(NGINX_ADC, "/run/sessionlab/x/nginx")
    assert_golden(text, "nginx.conf")
    pem = throwaway_certificate(tmp_path)
    (tmp_path / "nginx.conf").write_text(
        render_nginx(replace(NGINX_ADC, certificate=str(pem)), str(tmp_path))
    )
    # nginx -t binds the VIP: in a namespace where loopback has it.
    setup = [["link", "set", "lo", "up"], ["addr", "add", f"{ADC.vip}/32", "dev", "lo"]]
    in_throwaway_namespace(
        setup, ["nginx", "-t", "-q", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)]
    )


def test_nginx_refuses_what_nginx_oss_cannot_do():
    assert nginx_problems(ADC) == ["adc.pools: 'web' asks for cookie persistence, which nginx OSS has not"]


def test_bad_adc_and_vrrp_values_are_refused_naming_each():
    bad = replace(
        ADC,
        pools=(Pool("web", ()), Pool("web", (RealServer("10.0.3.11", 80),), algorithm="random")),
        routes=(Route("nowhere", path_prefix="/x"), Route("web")),
        deny_pattern="(",
    )
    problems = bad.problems()
    assert "adc.pools: 'web' is defined more than once" in problems
    assert "adc.pools[0].servers: no real server" in problems
    assert "adc.pools[1].algorithm: 'random' is not one of roundrobin, leastconn, source" in problems
    assert "adc.routes[0].pool: no pool 'nowhere' (pools: web, web)" in problems
    assert "adc.routes[1]: matches nothing (give path_prefix and/or header)" in problems
    assert any(p.startswith("adc.deny_pattern: '(' is not a regex") for p in problems)
    assert replace(VRRP, priority=255, vip="10.0.2.100", advert_s=0.001).problems() == [
        "vrrp.priority: 255 is not 1-254",
        "vrrp.vip: '10.0.2.100' is not an address with its prefix (10.0.2.100/24)",
        "vrrp.advert_s: 0.001 is not 0.01-40 s (VRRPv3 centiseconds)",
    ]
