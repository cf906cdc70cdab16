"""The SDN L4 balancer's decisions, offline: each algorithm's choices, the session flows,
what the controller does with each packet-in; and their OpenFlow messages."""

import hashlib
from collections import Counter

import pytest
from test_fwlb_logic import Datapath, wire

from controllers.l4lb.logic import (
    ALGORITHMS,
    FIN,
    IN_SWITCH,
    RST,
    SESSION_COOKIE,
    SYN,
    T_CHOOSE,
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
    return Balancer(7, "10.0.2.100", "02:00:00:00:02:64", 80, backends, algorithm, **kw)


def test_a_controller_decided_session_is_pinned_by_one_rewriting_flow():
    rr = lb("round-robin", idle_timeout=5)
    backend, flows = rr.new_session(("10.0.1.10", 20001), now=0.0)
    (inbound,) = flows
    assert backend is A
    assert dict(inbound.match)["ipv4_dst"] == "10.0.2.100" and dict(inbound.match)["tcp_src"] == 20001
    assert inbound.actions == (
        ("set_field", "eth_dst", A.mac),
        ("set_field", "ipv4_dst", A.ip),
        ("output", A.port),
    )
    assert inbound.cookie == SESSION_COOKIE and inbound.notify_removed and inbound.idle_timeout == 5
    # The same session again (a retransmitted SYN) keeps its backend.
    assert rr.new_session(("10.0.1.10", 20001), 0.1)[0] is A
    assert rr.new_session(("10.0.1.11", 20002), 0.2)[0] is B
    assert rr.open_sessions() == {"srv1": 1, "srv2": 1}
    assert rr.session_ended(("10.0.1.10", 20001)) is A and rr.session_ended(("10.0.1.10", 20001)) is None


def test_least_connections_hears_each_end_from_a_copy_sent_before_the_rewrite():
    lc = lb("least-connections")
    _, flows = lc.new_session(("10.0.1.10", 20001), 0.0)
    ends = [f for f in flows if f.priority > 100]
    assert sorted(dict(f.match)["tcp_flags"] for f in ends) == [(FIN, FIN), (RST, RST)]
    assert all(f.actions[0] == ("controller",) and f.actions[-1] == ("output", A.port) for f in ends)
    assert lc.new_session(("10.0.1.11", 20002), 0.1)[0] is B
    lc.session_ended(("10.0.1.10", 20001))
    assert lc.new_session(("10.0.1.12", 20003), 0.2)[0] is A  # A is free again


def test_static_flows_answer_arp_rewrite_replies_and_send_new_sessions_to_the_controller():
    flows = lb("round-robin").static_flows()
    arp = [f for f in flows if dict(f.match).get("arp_tpa") == "10.0.2.100"]
    assert arp and arp[0].actions == (("controller",),)
    replies = [f for f in flows if dict(f.match).get("ipv4_src") in (A.ip, B.ip)]
    assert len(replies) == 2 and all(("set_field", "ipv4_src", "10.0.2.100") in f.actions for f in replies)
    to_vip = [f for f in flows if dict(f.match).get("ipv4_dst") == "10.0.2.100"]
    assert [f.actions for f in to_vip] == [(("controller",),)]


def test_in_switch_algorithms_need_no_packet_in():
    weighted = lb("weighted", idle_timeout=5)
    flows = weighted.static_flows()
    assert not any(a == ("controller",) for f in flows if "arp_tpa" not in dict(f.match) for a in f.actions)
    (hashed,) = [f for f in flows if dict(f.match).get("ipv4_dst") == "10.0.2.100"]
    assert hashed.actions == (("multipath", "symmetric_l3l4", 0, 4, "reg0"), ("resubmit", T_CHOOSE))
    slots = [f for f in flows if f.table == T_CHOOSE and f.command == "add"]
    assert [dict(f.match)["reg0"] for f in slots] == [0, 1, 2, 3]  # A's weight 3, B's 1
    assert [f.actions[-1] for f in slots] == [("output", A.port)] * 3 + [("output", B.port)]
    learn = slots[0].actions[1]
    assert learn == ("learn_session", 0, SESSION_COOKIE, 5, A.mac, A.ip, "reg1")  # pinned before it is sent
    assert slots[0].actions[0] == ("set_field", "reg1", A.port)
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
    assert rr.set_in_service({"srv3"}) == []
    assert rr.new_session(("10.0.1.10", 1), 0.1)[0] is A  # an open session keeps its backend
    assert rr.new_session(("10.0.1.10", 2), 0.2)[0] is C
    assert rr.sessions_out_of_service() == {"srv1": ["10.0.1.10:1"]}
    rr.set_in_service(set())
    with pytest.raises(LookupError):
        rr.new_session(("10.0.1.10", 3), 0.3)


def test_unknown_algorithm_and_no_backend_are_refused():
    with pytest.raises(ValueError, match="unknown algorithm 'fastest'"):
        lb("fastest", backends=(A,))
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


def test_a_first_packet_is_pinned_sent_on_and_reported_once():
    rr = lb("round-robin", idle_timeout=5)
    first = rr.packet_in(("10.0.1.10", 20001), SYN, now=0.0)
    assert first.flows == tuple(lb("round-robin", idle_timeout=5).new_session(("10.0.1.10", 20001), 0.0)[1])
    assert first.packet == rr.rewrite(A)
    assert first.events == (
        ("session", {"client": "10.0.1.10:20001", "backend": "srv1", "open_before": {"srv1": 0, "srv2": 0}}),
    )
    again = rr.packet_in(("10.0.1.10", 20001), SYN, now=0.1)  # retransmitted: pinned, not reported
    assert again.packet == rr.rewrite(A) and again.flows and again.events == ()
    assert rr.packet_in(("10.0.1.11", 20002), 0x10, now=0.2) == Verdict()  # a late ACK: left alone


def test_a_copied_fin_or_rst_or_an_idle_removal_ends_the_session():
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
    lc.packet_in(("10.0.1.12", 20003), SYN, 2.0)
    assert lc.ended(("10.0.1.12", 20003), "idle").events[0][1]["why"] == "idle"


def test_no_backend_in_service_refuses_new_sessions_and_reports_the_change():
    rr = lb("round-robin")
    rr.packet_in(("10.0.1.10", 20001), SYN, 0.0)
    out = rr.service_changed({B.ip})
    assert out.flows == () and out.events == (
        ("in_service", {"backends": ["srv2"], "sessions_kept": {"srv1": ["10.0.1.10:20001"]}}),
    )
    none = rr.service_changed(set())
    assert none.flows == (rr._refuse(),) and none.events[0][1]["backends"] == []
    refused = rr.packet_in(("10.0.1.11", 20002), SYN, 1.0)
    assert refused == Verdict(
        events=(("session_refused", {"client": "10.0.1.11:20002", "why": "no backend in service"}),)
    )
    weighted = lb("weighted", backends=(A, B, C))
    assert weighted.service_changed({A.ip, C.ip}).flows == tuple(
        lb("weighted", backends=(A, B, C)).set_in_service({"srv1", "srv3"})
    )


# Every message below, as the app's own translator serialized them before the translation
# moved to controllers.ofp (checked byte for byte then).
BALANCER_MESSAGES, BALANCER_DIGEST = 70, "418912938adc100263aee701ae76b6a4d7fdde00f27ac1f4b232c10cc1a254b2"


def test_the_balancer_flows_reach_the_switch_as_they_did_before_one_translation():
    pytest.importorskip("os_ken")
    messages = []
    for algorithm in ALGORITHMS:
        balancer = lb(algorithm, backends=(A, B, C), idle_timeout=5)
        flows = balancer.static_flows() + balancer.new_session(("10.0.1.10", 20001), 0.0)[1]
        flows += balancer.set_in_service({"srv2", "srv3"}) + balancer.set_in_service(set())
        flows += balancer.set_in_service({"srv1"})
        messages += wire(flows)
        out = packet_out(Datapath(7), 1, balancer.rewrite(B), b"x")
        out.serialize()
        messages.append(bytes(out.buf).hex())
        messages += wire(balancer.flows(3))
    digest = hashlib.sha256("\n".join(messages).encode()).hexdigest()
    assert (len(messages), digest) == (BALANCER_MESSAGES, BALANCER_DIGEST)
    dp = Datapath(7)
    hashed = action(dp, ("multipath", "symmetric_l3", 0, 3, "reg0"))
    assert (hashed.fields, hashed.basis, hashed.max_link) == (6, 0, 2)
    learn = action(dp, ("learn_session", 0, SESSION_COOKIE, 5, A.mac, A.ip, "reg1"))
    assert (learn.priority, learn.cookie, learn.idle_timeout) == (100, SESSION_COOKIE, 5)
    assert learn.specs[-2].src == 0x0A00030B and learn.specs[-1].src == ("reg1", 0)
    assert action(dp, ("controller",)).port == dp.ofproto.OFPP_CONTROLLER
