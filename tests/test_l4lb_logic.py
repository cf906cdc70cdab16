"""The SDN L4 balancer's decisions, offline: each algorithm's choices, the flows (sessions
in conntrack, none per session), what the controller does with each packet-in and each
read of its conntrack zone; and their OpenFlow messages."""

from collections import Counter

import pytest
from test_fwlb_logic import Datapath, wire

from controllers.conntrack import parse_conntrack
from controllers.l4lb.logic import (
    ALGORITHMS,
    ESTABLISHED_TIMEOUT,
    FIN,
    FIRST_PACKET,
    IN_SWITCH,
    KNOWN,
    REPLY,
    RST,
    SYN,
    T_BACK,
    T_CHOOSE,
    T_DELIVER,
    T_IN,
    T_TOWARD,
    Backend,
    Balancer,
    LeastConnections,
    RoundRobin,
    SmoothWeighted,
    SourceHash,
)
from controllers.ofp import Verdict, action, packet_out

A = Backend("srv1", "10.0.3.11", "02:00:00:00:03:11", 2, weight=3)
B = Backend("srv2", "10.0.3.12", "02:00:00:00:03:12", 3)
C = Backend("srv3", "10.0.3.13", "02:00:00:00:03:13", 4)


def names(chooser, count, clients=None):
    return [
        chooser.choose(clients[i] if clients else ("10.0.1.10", 20000 + i), 0.0).name for i in range(count)
    ]


def test_round_robin_cycles():
    assert names(RoundRobin((A, B, C)), 6) == ["srv1", "srv2", "srv3"] * 2


def test_weighted_interleaves_by_weight():
    assert names(SmoothWeighted((A, B)), 8) == ["srv1", "srv1", "srv2", "srv1"] * 2


def test_least_connections_follows_open_sessions():
    chooser = LeastConnections((A, B))
    assert names(chooser, 3) == ["srv1", "srv2", "srv1"]
    chooser.closed(A)
    chooser.closed(A)
    assert chooser.open == {"srv1": 0, "srv2": 1}
    assert names(chooser, 1) == ["srv1"]
    chooser.closed(B)
    chooser.closed(B)  # more ends than opens never go below zero
    assert chooser.open["srv2"] == 0


def test_source_hash_keeps_a_client_and_spreads_clients():
    chooser = SourceHash((A, B, C))
    same = {chooser.choose(("10.0.1.10", port), 0.0).name for port in range(20000, 20050)}
    assert len(same) == 1
    spread = Counter(chooser.choose((f"10.0.1.{n}", 20000), 0.0).name for n in range(1, 241))
    assert set(spread) == {"srv1", "srv2", "srv3"} and min(spread.values()) > 40


def lb(algorithm, backends=(A, B), **kw):
    return Balancer(7, "10.0.2.100", "02:00:00:00:02:64", 80, backends, algorithm, **{"zone": 40001, **kw})


def test_a_controller_decided_session_is_pinned_by_a_commit_not_a_flow():
    rr = lb("round-robin")
    first = rr.packet_in(("10.0.1.10", 20001), SYN, now=0.0)
    assert first.flows == ()
    assert first.packet == (("ct_pin", 40001, 1, A.ip, T_DELIVER),)  # NAT to A, mark 1
    assert first.events == (
        ("session", {"client": "10.0.1.10:20001", "backend": "srv1", "open_before": {"srv1": 0, "srv2": 0}}),
    )
    again = rr.packet_in(("10.0.1.10", 20001), SYN, now=0.1)  # retransmitted: pinned, not reported
    assert again.packet == first.packet and again.events == ()
    assert rr.packet_in(("10.0.1.11", 20002), SYN, 0.2).packet == (("ct_pin", 40001, 2, B.ip, T_DELIVER),)
    assert rr.open_sessions() == {"srv1": 1, "srv2": 1}
    assert rr.packet_in(("10.0.1.12", 20003), 0x10, now=0.3) == Verdict()  # a late ACK: left alone
    assert rr.session_ended(("10.0.1.10", 20001)) is A and rr.session_ended(("10.0.1.10", 20001)) is None


def test_every_packet_to_the_vip_and_every_reply_goes_through_the_zone():
    flows = lb("round-robin").static_flows()
    by = {(f.table, f.priority, f.match): f.actions for f in flows}
    arp = [f for f in flows if dict(f.match).get("arp_tpa") == "10.0.2.100"]
    assert arp and arp[0].actions == (("controller",),)
    to_vip = [f for f in flows if dict(f.match).get("ipv4_dst") == "10.0.2.100"]
    assert [f.actions for f in to_vip] == [(("ct_nat", 40001, T_TOWARD),)]
    replies = [f for f in flows if dict(f.match).get("ipv4_src") in (A.ip, B.ip)]
    assert [f.actions for f in replies] == [(("ct_nat", 40001, T_BACK),)] * 2
    first = (("ct_state", FIRST_PACKET), ("eth_type", 0x0800), ("ip_proto", 6), ("tcp_flags", (SYN, 0x12)))
    assert by[(T_TOWARD, 20, first)] == (("controller",),)  # a SYN new to conntrack, nothing else
    assert by[(T_TOWARD, 10, (("ct_state", KNOWN),))] == (("resubmit", T_DELIVER),)
    assert by[(T_BACK, 10, (("ct_state", REPLY),))] == (
        ("set_field", "eth_src", "02:00:00:00:02:64"),
        ("normal",),
    )
    assert by[(T_BACK, 0, ())] == (("normal",),)  # not a session's reply: untouched
    assert by[(T_DELIVER, 10, (("ct_mark", 2),))] == (("set_field", "eth_dst", B.mac), ("output", B.port))
    invalid = [f for f in flows if f.table == T_TOWARD and f.priority == 30]
    assert [f.actions for f in invalid] == [()]  # a packet conntrack calls invalid is dropped
    assert not [f for f in flows if f.idle_timeout or f.cookie]


def test_least_connections_hears_each_end_from_a_copy_sent_before_conntrack():
    lc = lb("least-connections")
    ends = [f for f in lc.static_flows() if f.table == T_IN and f.priority == 20]
    assert sorted(dict(f.match)["tcp_flags"] for f in ends) == [(FIN, FIN), (RST, RST)]
    assert all(f.actions == (("controller",), ("ct_nat", 40001, T_TOWARD)) for f in ends)
    assert not [f for f in lb("round-robin").static_flows() if f.table == T_IN and f.priority == 20]
    lc.packet_in(("10.0.1.10", 20001), SYN, 0.0)
    assert lc.packet_in(("10.0.1.11", 20002), SYN, 0.1).packet[0][3] == B.ip
    lc.packet_in(("10.0.1.10", 20001), FIN | 0x10, 0.5)
    assert lc.packet_in(("10.0.1.12", 20003), SYN, 0.2).packet[0][3] == A.ip  # A is free again


def test_in_switch_algorithms_need_no_packet_in():
    flows = lb("weighted").static_flows()
    assert not any(a == ("controller",) for f in flows if "arp_tpa" not in dict(f.match) for a in f.actions)
    (hashed,) = [f for f in flows if f.table == T_TOWARD and f.priority == 20]
    assert hashed.actions == (("multipath", "symmetric_l3l4", 0, 4, "reg0"), ("resubmit", T_CHOOSE))
    slots = [f for f in flows if f.table == T_CHOOSE and f.command == "add"]
    assert [dict(f.match)["reg0"] for f in slots] == [0, 1, 2, 3]  # A's weight 3, B's 1
    assert [f.actions for f in slots] == [(("ct_pin", 40001, 1, A.ip, T_DELIVER),)] * 3 + [
        (("ct_pin", 40001, 2, B.ip, T_DELIVER),)
    ]
    source = lb("source-hash").static_flows()
    assert any(a[:2] == ("multipath", "symmetric_l3") for f in source for a in f.actions)


def test_health_changes_only_new_sessions():
    weighted = lb("weighted", backends=(A, B, C))
    flows = weighted.set_in_service({"srv2", "srv3"})
    assert flows[0].command == "delete" and flows[0].table == T_CHOOSE
    assert len([f for f in flows if f.table == T_CHOOSE and f.command == "add"]) == 2
    assert weighted.set_in_service(set())[-1].actions == ()  # none in service: refused
    rr = lb("round-robin", backends=(A, B, C))
    rr.new_session(("10.0.1.10", 1), 0.0)
    assert [f.actions for f in rr.set_in_service({"srv3"})] == [(("controller",),)]
    assert rr.new_session(("10.0.1.10", 1), 0.1) is A  # an open session keeps its backend
    assert rr.new_session(("10.0.1.10", 2), 0.2) is C
    assert rr.sessions_out_of_service() == {"srv1": ["10.0.1.10:1"]}
    rr.set_in_service(set())
    with pytest.raises(LookupError):
        rr.new_session(("10.0.1.10", 3), 0.3)


def test_unknown_algorithm_a_bad_zone_and_no_backend_are_refused():
    with pytest.raises(ValueError, match="unknown algorithm 'fastest'"):
        lb("fastest", backends=(A,))
    with pytest.raises(ValueError, match="zone 0 is not 1-65535"):
        Balancer(7, "10.0.2.100", "02:00:00:00:02:64", 80, (A,), zone=0)
    with pytest.raises(ValueError, match="no backend"):
        RoundRobin(())
    assert set(IN_SWITCH) == {"weighted", "source-hash"}


def test_other_switches_learn_on_their_own():
    (plain,) = lb("round-robin").flows(3)
    assert (plain.dpid, plain.table, plain.priority, plain.match, plain.actions) == (
        3,
        0,
        0,
        (),
        (("normal",),),
    )
    assert lb("round-robin").flows(7) == lb("round-robin").static_flows()


def test_a_copied_fin_or_rst_ends_the_session():
    lc = lb("least-connections")
    lc.packet_in(("10.0.1.10", 20001), SYN, 0.0)
    lc.packet_in(("10.0.1.11", 20002), SYN, 0.1)
    fin = lc.packet_in(("10.0.1.10", 20001), FIN | 0x10, 1.0)
    assert fin.flows == () and fin.packet is None  # the switch forwarded it already
    assert fin.events == (
        (
            "session_end",
            {"client": "10.0.1.10:20001", "backend": "srv1", "why": "FIN", "open": {"srv1": 0, "srv2": 1}},
        ),
    )
    assert lc.packet_in(("10.0.1.11", 20002), RST, 1.1).events[0][1]["why"] == "RST"
    assert lc.packet_in(("10.0.1.11", 20002), RST, 1.2) == Verdict()  # ended already


# As `ovs-appctl dpctl/dump-conntrack -s` prints them (Open vSwitch 3.1, userspace datapath).
DUMP = """\
tcp,orig=(src=10.0.1.10,dst=10.0.2.100,sport=20001,dport=80),reply=(src=10.0.3.11,dst=10.0.1.10,sport=80,dport=20001),zone=40001,timeout=86399,mark=1,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.0.1.11,dst=10.0.2.100,sport=20002,dport=80),reply=(src=10.0.3.12,dst=10.0.1.11,sport=80,dport=20002),zone=40001,timeout=86385,mark=2,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.0.1.12,dst=10.0.2.100,sport=20003,dport=80),reply=(src=10.0.3.11,dst=10.0.1.12,sport=80,dport=20003),zone=40001,timeout=25,mark=1,protoinfo=(state=TIME_WAIT)
tcp,orig=(src=10.0.1.16,dst=10.0.2.100,sport=20007,dport=80),reply=(src=10.0.3.11,dst=10.0.1.16,sport=80,dport=20007),zone=40001,timeout=899,mark=1,protoinfo=(state_orig=ESTABLISHED,state_reply=FIN_WAIT_1)
tcp,orig=(src=10.0.1.17,dst=10.0.2.100,sport=20008,dport=80),reply=(src=10.0.3.12,dst=10.0.1.17,sport=80,dport=20009),zone=40001,timeout=29,mark=2,protoinfo=(state=ESTABLISHED)
"""


def test_a_read_of_the_zone_removes_idle_sessions_and_ends_closed_or_gone_ones():
    rr = lb("round-robin", idle_timeout=10)
    for n, port in enumerate((20001, 20002, 20003, 20004, 20005)):
        rr.packet_in((f"10.0.1.1{n}", port), SYN, 0.0)
    rr.packet_in(("10.0.1.15", 20006), SYN, 9.5)  # pinned half a second ago, not read yet
    connections = parse_conntrack(DUMP)
    assert connections[0]["reply_src"] == A.ip and connections[1]["timeout"] == 86385
    assert connections[2]["state"] == "TIME_WAIT"
    assert connections[3]["state"] == "ESTABLISHED/FIN_WAIT_1"  # closing: 899 s left, not idle
    assert connections[4]["timeout"] == 29  # established on a short timeout: ends on its own
    verdict, idle = rr.connections_read(connections, now=10.0)
    assert [(c["src"], c["sport"]) for c in idle] == [("10.0.1.11", 20002)]  # 15 s without a packet
    assert ESTABLISHED_TIMEOUT - idle[0]["timeout"] == 15
    ends = {e[1]["client"]: e[1]["why"] for e in verdict.events}
    assert ends == {
        "10.0.1.11:20002": "idle",
        "10.0.1.12:20003": "closed",
        "10.0.1.13:20004": "closed",  # no longer in the zone: closed, or removed
        "10.0.1.14:20005": "closed",
    }
    assert rr.open_sessions() == {"srv1": 1, "srv2": 1}  # 10.0.1.10 (srv1) and 10.0.1.15 (srv2)
    # The closed connections need not be parsed: the read ends those sessions all the same.
    assert [c["sport"] for c in parse_conntrack(DUMP, skip=("TIME_WAIT", "CLOSED"))] == [
        20001,
        20002,
        20007,
        20008,
    ]
    assert set(rr.sessions) == {("10.0.1.10", 20001), ("10.0.1.15", 20006)}
    # The in-switch algorithms keep no table: only the idle connections are removed.
    verdict, idle = lb("weighted").connections_read(connections, now=10.0)
    assert verdict == Verdict() and len(idle) == 1
    assert lb("weighted", zone=7).connections_read(connections, 10.0)[1] == []  # another zone's


def test_the_balancer_flows_translate_to_openflow():
    pytest.importorskip("os_ken")
    for algorithm in ALGORITHMS:
        balancer = lb(algorithm, backends=(A, B, C))
        flows = balancer.static_flows() + balancer.set_in_service({"srv2", "srv3"})
        flows += balancer.set_in_service(set()) + balancer.set_in_service({"srv1"})
        assert all(wire(flows)) and wire(balancer.flows(3))
        out = packet_out(Datapath(7), 1, balancer.pin(B), b"x")
        out.serialize()
    dp = Datapath(7)
    hashed = action(dp, ("multipath", "symmetric_l3", 0, 3, "reg0"))
    assert (hashed.fields, hashed.basis, hashed.max_link) == (6, 0, 2)
    pin = action(dp, ("ct_pin", 40001, 2, B.ip, T_DELIVER))
    assert (pin.flags, pin.zone_ofs_nbits, pin.recirc_table) == (1, 40001, T_DELIVER)  # commit
    nat, mark = pin.actions
    assert (nat.flags, nat.range_ipv4_min, nat.range_ipv4_max) == (2, B.ip, B.ip)  # destination NAT
    assert mark.key == "ct_mark" and mark.value == 2
    tracked = action(dp, ("ct_nat", 40001, T_TOWARD))
    assert (tracked.flags, tracked.recirc_table, tracked.actions[0].flags) == (0, T_TOWARD, 0)
    assert action(dp, ("controller",)).port == dp.ofproto.OFPP_CONTROLLER
