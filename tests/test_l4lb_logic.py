"""The SDN L4 balancer's decisions, offline: each algorithm's choices and the session flows."""

from collections import Counter

import pytest

from controllers.l4lb.logic import (
    IN_SWITCH,
    SESSION_COOKIE,
    Backend,
    Balancer,
    LeastConnections,
    RoundRobin,
    SmoothWeighted,
    SourceHash,
)

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


def test_a_session_is_pinned_by_two_rewriting_flows_and_ends_when_removed():
    lb = Balancer(7, "10.0.2.100", "02:00:00:00:02:64", 80, (A, B), "least-connections", idle_timeout=5)
    inbound, outbound = lb.new_session(("10.0.1.10", 20001), client_port=1, now=0.0)
    assert dict(inbound.match)["ipv4_dst"] == "10.0.2.100" and dict(inbound.match)["tcp_src"] == 20001
    assert inbound.actions == (
        ("set_field", "eth_dst", A.mac),
        ("set_field", "ipv4_dst", A.ip),
        ("output", A.port),
    )
    assert dict(outbound.match)["ipv4_src"] == A.ip
    assert ("set_field", "ipv4_src", "10.0.2.100") in outbound.actions and ("output", 1) in outbound.actions
    assert inbound.cookie == outbound.cookie == SESSION_COOKIE
    assert inbound.notify_removed and inbound.idle_timeout == 5
    # The same session again (a retransmitted SYN) keeps its backend.
    assert lb.new_session(("10.0.1.10", 20001), 1, 0.1)[0].actions == inbound.actions
    lb.new_session(("10.0.1.11", 20002), 1, 0.2)
    assert lb.open_sessions() == {"srv1": 1, "srv2": 1}
    lb.session_removed(("10.0.1.10", 20001))
    assert lb.open_sessions() == {"srv1": 0, "srv2": 1}
    assert lb.new_session(("10.0.1.12", 20003), 1, 0.3)[0].actions[-1] == ("output", A.port)


def test_unknown_algorithm_and_no_backend_are_refused():
    with pytest.raises(ValueError, match="unknown algorithm 'fastest'"):
        Balancer(7, "10.0.2.100", "02:00:00:00:02:64", 80, (A,), "fastest")
    with pytest.raises(ValueError, match="no backend"):
        RoundRobin(())
    assert set(IN_SWITCH) == {"weighted", "source-hash"}


def test_in_switch_pipeline_needs_no_packet_in():
    from controllers.l4lb.logic import GROUP_ID, T_CHOOSE, in_switch_pipeline

    lb = Balancer(7, "10.0.2.100", "02:00:00:00:02:64", 80, (A, B), "weighted", idle_timeout=5)
    group, flows = in_switch_pipeline(lb)
    assert [w for w, _ in group.buckets] == [3, 1] and group.fields == ()
    first = group.buckets[0][1]
    assert first[0] == ("learn_session", 0, SESSION_COOKIE, 5, 0)  # pinned before it is sent
    assert first[-1] == ("output", A.port)
    assert not any(a[0] == "controller" for f in flows for a in f.actions)
    to_group = [f for f in flows if f.table == T_CHOOSE]
    assert to_group and to_group[0].actions == (("group", GROUP_ID),)
    replies = [f for f in flows if dict(f.match).get("ipv4_src") in (A.ip, B.ip)]
    assert len(replies) == 2 and all(("set_field", "ipv4_src", "10.0.2.100") in f.actions for f in replies)
    hashed, _ = in_switch_pipeline(Balancer(7, "10.0.2.100", "02:00:00:00:02:64", 80, (A, B), "source-hash"))
    assert hashed.fields == ("ip_src",) and [w for w, _ in hashed.buckets] == [1, 1]
    with pytest.raises(ValueError, match="round-robin is decided by the controller"):
        in_switch_pipeline(Balancer(7, "10.0.2.100", "02:00:00:00:02:64", 80, (A, B), "round-robin"))
