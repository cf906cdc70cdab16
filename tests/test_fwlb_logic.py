"""The firewall fabric's decisions, offline: flows and groups per mode, failover, the
session table, IPv6's twins of the IPv4 flows; and their OpenFlow messages
(controllers.ofp's translation)."""

import pytest

from controllers.conntrack import parse_conntrack
from controllers.fwlb.logic import (
    FIRST_PACKET,
    GROUP_CHOOSE,
    KNOWN,
    MODES,
    MPLS_LABEL_BASE,
    MPLS_LABEL_BASE6,
    ND_TYPES,
    T_CLASSIFY,
    T_COMMIT,
    T_FROM,
    T_TOWARD,
    Fabric,
    FabricConfig,
)
from controllers.fwlb.sessions import SessionTable
from controllers.ofp import Flow, Group, Verdict, action, message

ZONES = {"so": 40001, "si": 7233}


def config(mode: str, zones: dict[str, int] = ZONES) -> FabricConfig:
    return FabricConfig.from_dict(
        {
            "mode": mode,
            "vgw_out_mac": "02:00:00:00:00:01",
            "vgw_in_mac": "02:00:00:00:00:02",
            "firewalls": [
                {"number": 1, "out_mac": "02:00:00:00:01:01", "in_mac": "02:00:00:00:01:02"},
                {"number": 2, "out_mac": "02:00:00:00:02:01", "in_mac": "02:00:00:00:02:02"},
            ],
            "switches": {
                "so": {"dpid": 1, "ports": {"h1-eth0": 1, "fw1-out": 4, "fw2-out": 5}},
                "si": {"dpid": 2, "ports": {"srv1-eth0": 1, "a1": 3, "a2": 4}},
                "a1": {"dpid": 11, "ports": {"fw1-in": 1, "fw1-sync": 2, "si": 3, "a2": 4}},
                "a2": {"dpid": 12, "ports": {"fw2-in": 1, "fw2-sync": 2, "si": 3, "a1": 4}},
            },
            "zones": zones,
        }
    )


def group(messages) -> Group:
    (g,) = [m for m in messages if isinstance(m, Group)]
    return g


def chosen(g: Group) -> list[int]:
    """The firewall each bucket of a select group names (reg0), in bucket order."""
    return [dict((a[1], a[2]) for a in b if a[0] == "set_field")["reg0"] for b in g.buckets]


def table(messages, number: int, **fields) -> dict:
    """Flows of one table by match (as a dict), to their actions."""
    out = {}
    for f in messages:
        if isinstance(f, Flow) and f.table == number:
            match = dict(f.match)
            if all(match.get(k) == v for k, v in fields.items()):
                out[tuple(sorted(match.items()))] = f.actions
    return out


def pinned(messages, eth_type: int = 0x0800) -> dict[int, tuple]:
    """Table 1's known sessions of one family: ct_mark -> actions."""
    return {
        dict(m)["ct_mark"]: a
        for m, a in table(messages, T_TOWARD, eth_type=eth_type).items()
        if "ct_mark" in dict(m)
    }


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown mode 'sideways'"):
        config("sideways")


def test_the_fabric_switches_need_their_own_zones():
    with pytest.raises(ValueError, match="two distinct conntrack zones"):
        config("symmetric", {"so": 5, "si": 5})
    with pytest.raises(ValueError, match="two distinct conntrack zones"):
        config("symmetric", {"so": 5, "si": 0})


@pytest.mark.parametrize(
    ("mode", "inside"),
    [
        ("independent", [1, 1, 2, 2]),  # the hash's second bit: half the sessions split
        ("symmetric", [1, 2]),  # the outside switch's own: no session splits
        ("sync", [1, 1, 2, 2]),
        ("correction-mac", [1, 1, 2, 2]),
    ],
)
def test_which_hash_bits_each_fabric_switch_uses(mode, inside):
    fabric = Fabric(config(mode))
    assert chosen(group(fabric.flows(1))) == [1, 2]
    assert chosen(group(fabric.flows(2))) == inside


def test_the_group_comes_before_the_flows_that_name_it():
    for dpid in (1, 2):
        flows = Fabric(config("symmetric")).flows(dpid)
        assert isinstance(flows[0], Group) and flows[0].group_id == GROUP_CHOOSE
        assert all(isinstance(f, Flow) for f in flows[1:])


def test_every_ip_packet_through_a_fabric_switch_is_tracked_in_its_zone():
    flows = Fabric(config("symmetric")).flows(1)
    classify = table(flows, T_CLASSIFY)
    to_gateway = classify[(("eth_dst", "02:00:00:00:00:01"), ("eth_type", 0x0800))]
    assert to_gateway == (("ct", ZONES["so"], T_TOWARD),)
    for port in (4, 5):  # from either firewall
        assert classify[(("eth_type", 0x0800), ("in_port", port))] == (("ct", ZONES["so"], T_FROM),)
    inside = table(Fabric(config("symmetric")).flows(2), T_CLASSIFY)
    assert inside[(("eth_type", 0x0800), ("in_port", 3))] == (("ct", ZONES["si"], T_FROM),)


def test_a_new_session_is_committed_with_its_firewall_and_delivered():
    flows = Fabric(config("symmetric")).flows(1)
    commit = table(flows, T_COMMIT, reg0=2, ct_state=FIRST_PACKET)
    toward = next(a for m, a in commit.items() if "reg1" not in dict(m))
    assert toward == (
        ("ct_commit", ZONES["so"], 2),
        ("set_field", "eth_dst", "02:00:00:00:02:01"),
        ("output", 5),
    )
    opened_from_the_firewall = next(a for m, a in commit.items() if "reg1" in dict(m))
    assert opened_from_the_firewall == (("ct_commit", ZONES["so"], 2), ("normal",))
    # Unknown to conntrack (invalid): the hash alone, nothing committed.
    assert table(flows, T_TOWARD)[()] == (("group", GROUP_CHOOSE),)
    assert table(flows, T_COMMIT)[(("reg0", 2),)] == (
        ("set_field", "eth_dst", "02:00:00:00:02:01"),
        ("output", 5),
    )


def test_a_known_session_goes_to_its_marked_firewall():
    flows = Fabric(config("symmetric")).flows(2)
    assert pinned(flows) == {
        1: (("set_field", "eth_dst", "02:00:00:00:01:02"), ("output", 3)),
        2: (("set_field", "eth_dst", "02:00:00:00:02:02"), ("output", 4)),
    }
    matches = [dict(m) for m in table(flows, T_TOWARD) if "ct_mark" in dict(m)]
    assert all(m["ct_state"] == KNOWN for m in matches)
    assert sorted(m["eth_type"] for m in matches) == [0x0800, 0x0800, 0x86DD, 0x86DD]


def test_no_correction_outside_correction_modes():
    for mode in ("independent", "symmetric", "sync"):
        flows = Fabric(config(mode)).flows(12)
        assert not [f for f in flows if isinstance(f, Group)] and not table(flows, T_TOWARD)


def test_the_access_switch_recomputes_the_outside_switchs_choice():
    flows = Fabric(config("correction-mac")).flows(12)  # FW2's access switch
    classify = table(flows, T_CLASSIFY, in_port=3)
    assert classify[(("eth_dst", "02:00:00:00:02:02"), ("eth_type", 0x0800), ("in_port", 3))] == (
        ("group", 1),
    )
    # No session state of its own, none read from another switch: the outside switch's
    # hash recomputed with its group's layout.
    assert not [a for f in flows if isinstance(f, Flow) for a in f.actions if a[0] in ("ct", "ct_commit")]
    assert chosen(group(flows)) == [1, 2]


def corrected(flows: list, eth_type: int = 0x0800) -> dict:
    """Table 3 of an access switch: the owner in reg0 -> what a return packet of one
    family gets."""
    return {dict(k)["reg0"]: v for k, v in table(flows, T_COMMIT, eth_type=eth_type).items()}


def test_mac_correction_sends_the_other_firewalls_sessions_over_the_link():
    flows = Fabric(config("correction-mac")).flows(12)  # FW2's access switch
    assert corrected(flows) == {
        1: (("set_field", "eth_dst", "02:00:00:00:01:02"), ("output", 4)),  # FW1's: to a1
        2: (("output", 1),),  # FW2's own sessions: to FW2
    }


def test_mpls_correction_pushes_a_label_the_owner_side_pops():
    fabric = Fabric(config("correction-mpls"))
    assert corrected(fabric.flows(12))[1] == (
        ("push_mpls", 0x8847),
        ("set_field", "mpls_label", MPLS_LABEL_BASE + 1),
        ("output", 4),
    )
    pops = [
        f
        for f in fabric.flows(11)
        if isinstance(f, Flow) and dict(f.match).get("mpls_label") == MPLS_LABEL_BASE + 1
    ]
    assert pops and pops[0].actions[0] == ("pop_mpls", 0x0800) and pops[0].actions[-1] == ("output", 1)


def test_a_failed_firewall_hands_its_buckets_and_sessions_to_the_other():
    fabric = Fabric(config("correction-mac"))
    changes = fabric.port_changed(1, 4, up=False)  # so's port to fw1-out
    assert fabric.alive == {1: False, 2: True}
    outside = [c for c in changes if c.dpid == 1]
    assert group(outside).command == "modify" and chosen(group(outside)) == [2, 2]
    assert chosen(group([c for c in changes if c.dpid == 2])) == [2, 2, 2, 2]
    # FW1's sessions: to FW2, and marked as FW2's (they stay there when FW1 comes back).
    assert pinned(outside)[1] == (
        ("ct_commit", ZONES["so"], 2),
        ("set_field", "eth_dst", "02:00:00:00:02:01"),
        ("output", 5),
    )
    assert pinned(outside)[2] == (("set_field", "eth_dst", "02:00:00:00:02:01"), ("output", 5))
    # FW2's access switch: its recomputed owner is FW2 for every bucket (no correction to a dead FW1).
    assert chosen(group([c for c in changes if c.dpid == 12])) == [2, 2]
    assert fabric.port_changed(1, 4, up=False) == []  # already down: nothing to change
    assert fabric.port_changed(1, 1, up=False) == []  # a host port: not a firewall
    fabric.port_changed(11, 1, up=True)
    assert fabric.alive == {1: False, 2: True}  # fw1-out is still down


def test_a_recovered_firewall_gets_its_buckets_back_with_the_same_layout():
    fabric = Fabric(config("symmetric"))
    before = {dpid: group(fabric.flows(dpid)).buckets for dpid in (1, 2)}
    fabric.port_changed(1, 4, up=False, now=10.0)
    back = fabric.port_changed(1, 4, up=True, now=12.0)
    assert fabric.alive[1] is True
    assert {dpid: group([c for c in back if c.dpid == dpid]).buckets for dpid in (1, 2)} == before
    assert pinned([c for c in back if c.dpid == 1])[1] == (
        ("set_field", "eth_dst", "02:00:00:00:01:01"),
        ("output", 4),
    )


def test_a_flapping_port_is_held_down():
    fabric = Fabric(config("symmetric"))
    assert fabric.port_changed(1, 4, up=False, now=10.0)  # down: the buckets move
    assert fabric.port_changed(11, 1, up=False, now=10.01) == []  # its other port: already down
    assert fabric.port_changed(1, 4, up=True, now=10.02) == []  # the flap OVS reports
    assert fabric.port_changed(1, 4, up=False, now=10.03) == []
    assert fabric.alive[1] is False
    fabric.port_changed(1, 4, up=True, now=12.0)
    assert fabric.alive[1] is False  # fw1-in (11, 1) is still down
    fabric.port_changed(11, 1, up=True, now=12.1)
    assert fabric.alive[1] is True  # both up, after the hold-down


def test_each_liveness_change_is_reported_once_with_its_flows():
    fabric = Fabric(config("symmetric"))
    down = fabric.report(fabric.port_changed(1, 4, up=False, now=10.0))
    assert down.flows and down.packet is None
    assert down.events == (("firewall_down", {"firewall": 1, "flows_changed": len(down.flows)}),)
    assert fabric.report(fabric.port_changed(11, 1, up=False, now=10.1)).events == ()  # down already
    assert fabric.report(fabric.tick(10.5)) == Verdict()
    fabric.port_changed(1, 4, up=True, now=12.0)
    up = fabric.report(fabric.port_changed(11, 1, up=True, now=12.1))
    assert up.events == (("firewall_up", {"firewall": 1, "flows_changed": len(up.flows)}),)


def test_coming_back_within_the_hold_down_waits_for_a_tick():
    fabric = Fabric(config("symmetric"))
    fabric.port_changed(1, 4, up=False, now=10.0)
    assert fabric.port_changed(1, 4, up=True, now=10.5) == []
    assert fabric.tick(10.9) == [] and fabric.alive[1] is False
    assert fabric.tick(11.1) and fabric.alive[1] is True


# --- IPv6: the twin of every IPv4 flow ----------------------------------------------------
def every_message(fabric: Fabric) -> list:
    """Every switch's flows and groups, then what a failure and a recovery change."""
    messages = [m for dpid in (1, 2, 11, 12) for m in fabric.flows(dpid)]
    return messages + fabric.port_changed(1, 4, False, 0.0) + fabric.port_changed(1, 4, True, 5.0)


def as_ipv6(flow: Flow) -> Flow:
    """What an IPv4 flow's IPv6 twin should be: the same match for ethertype 0x86dd, the same
    actions but for an MPLS label (the IPv6 ones) and the ethertype a pop restores."""

    def action(a: tuple) -> tuple:
        if a[:2] == ("set_field", "mpls_label"):
            return (*a[:2], a[2] - MPLS_LABEL_BASE + MPLS_LABEL_BASE6)
        return ("pop_mpls", 0x86DD) if a == ("pop_mpls", 0x0800) else a

    fields = dict(flow.match)
    if fields.get("eth_type") == 0x0800:
        fields["eth_type"] = 0x86DD
    elif "mpls_label" in fields:
        fields["mpls_label"] += MPLS_LABEL_BASE6 - MPLS_LABEL_BASE
    return Flow(
        flow.dpid, flow.table, flow.priority, tuple(sorted(fields.items())), tuple(map(action, flow.actions))
    )


def ipv4_flow(flow) -> bool:
    """A flow that matches IPv4 packets or IPv4's MPLS labels."""
    fields = dict(flow.match) if isinstance(flow, Flow) else {}
    return (
        fields.get("eth_type") == 0x0800 or MPLS_LABEL_BASE <= fields.get("mpls_label", 0) < MPLS_LABEL_BASE6
    )


@pytest.mark.parametrize("mode", MODES)
def test_every_ipv4_flow_has_its_ipv6_twin(mode):
    """Same table, priority, match and actions (zone, group, mark, delivery) but the family:
    IPv6 sessions are tracked, hashed, marked and pinned as IPv4's are, in every mode and
    after a failover."""
    messages = every_message(Fabric(config(mode)))
    ipv4 = [f for f in messages if ipv4_flow(f)]
    assert len(ipv4) >= 10
    missing = [f for f in ipv4 if as_ipv6(f) not in messages]
    assert not missing, missing[:3]
    # ...and nothing of IPv6 that IPv4 lacks, but neighbour discovery.
    ipv6 = [f for f in messages if isinstance(f, Flow) and dict(f.match).get("eth_type") == 0x86DD]
    extra = [f for f in ipv6 if "icmpv6_type" not in dict(f.match) and f not in map(as_ipv6, ipv4)]
    assert not extra, extra[:3]


def test_ipv6_sessions_are_tracked_in_the_fabric_switches_zones():
    classify = table(Fabric(config("symmetric")).flows(1), T_CLASSIFY, eth_type=0x86DD)
    assert classify[(("eth_dst", "02:00:00:00:00:01"), ("eth_type", 0x86DD))] == (
        ("ct", ZONES["so"], T_TOWARD),
    )
    for port in (4, 5):
        assert classify[(("eth_type", 0x86DD), ("in_port", port))] == (("ct", ZONES["so"], T_FROM),)
    commit = table(Fabric(config("symmetric")).flows(2), T_COMMIT, eth_type=0x86DD, ct_state=FIRST_PACKET)
    assert commit[(("ct_state", FIRST_PACKET), ("eth_type", 0x86DD), ("reg0", 1))] == (
        ("ct_commit", ZONES["si"], 1),
        ("set_field", "eth_dst", "02:00:00:00:01:02"),
        ("output", 3),
    )
    assert pinned(Fabric(config("symmetric")).flows(2), 0x86DD) == pinned(
        Fabric(config("symmetric")).flows(2)
    )


def test_ipv6_mpls_correction_has_labels_of_its_own():
    """A label names its payload's family: the pop must restore IPv6's ethertype."""
    fabric = Fabric(config("correction-mpls"))
    assert corrected(fabric.flows(12), 0x86DD)[1] == (
        ("push_mpls", 0x8847),
        ("set_field", "mpls_label", MPLS_LABEL_BASE6 + 1),
        ("output", 4),
    )
    pops = {
        dict(f.match)["mpls_label"]: f.actions
        for f in fabric.flows(11)
        if isinstance(f, Flow) and "mpls_label" in dict(f.match)
    }
    assert pops[MPLS_LABEL_BASE6 + 1] == (
        ("pop_mpls", 0x86DD),
        ("set_field", "eth_dst", "02:00:00:00:01:02"),
        ("output", 1),
    )
    assert pops[MPLS_LABEL_BASE + 1][0] == ("pop_mpls", 0x0800)


@pytest.mark.parametrize("dpid", [1, 2])
def test_neighbour_discovery_skips_conntrack_and_the_hash(dpid):
    """ND (ICMPv6 133-137) goes the switch's normal way, ahead of the flows that track."""
    flows = [f for f in Fabric(config("independent")).flows(dpid) if isinstance(f, Flow)]
    nd = {dict(f.match)["icmpv6_type"]: f for f in flows if "icmpv6_type" in dict(f.match)}
    assert sorted(nd) == list(ND_TYPES)
    tracking = max(f.priority for f in flows if f.table == T_CLASSIFY and f.actions[0][0] == "ct")
    for f in nd.values():
        assert f.table == T_CLASSIFY and f.priority > tracking and f.actions == (("normal",),)
        assert dict(f.match)["ip_proto"] == 58 and dict(f.match)["eth_type"] == 0x86DD


def test_neighbour_discovery_to_a_firewall_is_not_corrected():
    flows = [f for f in Fabric(config("correction-mac")).flows(12) if isinstance(f, Flow)]
    nd = [f for f in flows if "icmpv6_type" in dict(f.match)]
    hashed = max(f.priority for f in flows if f.actions == (("group", GROUP_CHOOSE),))
    assert len(nd) == len(ND_TYPES)
    assert all(
        f.priority > hashed and dict(f.match)["in_port"] == 3 and f.actions == (("output", 1),) for f in nd
    )
    assert not [f for f in Fabric(config("symmetric")).flows(12) if "icmpv6_type" in dict(f.match)]


# As `ovs-appctl dpctl/dump-conntrack` prints them (Open vSwitch 3.1, userspace datapath).
DUMP_OUTSIDE = """\
tcp,orig=(src=10.0.0.11,dst=10.0.1.11,sport=40000,dport=8080),reply=(src=10.0.1.11,dst=10.0.0.11,sport=8080,dport=40000),zone=40001,mark=1,protoinfo=(state=ESTABLISHED)
tcp,orig=(src=10.0.0.12,dst=10.0.1.12,sport=40001,dport=8080),reply=(src=10.0.1.12,dst=10.0.0.12,sport=8080,dport=40001),zone=40001,protoinfo=(state=SYN_SENT)
icmp,orig=(src=10.0.0.11,dst=10.0.1.11,id=7,type=8,code=0),reply=(src=10.0.1.11,dst=10.0.0.11,id=7,type=0,code=0),zone=40001,mark=2
"""
DUMP_INSIDE = """\
tcp,orig=(src=10.0.0.11,dst=10.0.1.11,sport=40000,dport=8080),reply=(src=10.0.1.11,dst=10.0.0.11,sport=8080,dport=40000),zone=7233,mark=2,protoinfo=(state=ESTABLISHED)
"""


def test_conntrack_dump_is_parsed():
    first, unmarked, icmp = parse_conntrack(DUMP_OUTSIDE)
    assert first == {
        "proto": "tcp",
        "src": "10.0.0.11",
        "dst": "10.0.1.11",
        "sport": 40000,
        "dport": 8080,
        "reply_src": "10.0.1.11",
        "zone": 40001,
        "mark": 1,
        "timeout": None,
        "state": "ESTABLISHED",
    }
    assert unmarked["mark"] is None and icmp["sport"] is None and icmp["mark"] == 2
    assert parse_conntrack("no connections\n") == []


DUMP6 = """\
tcp,orig=(src=fd00:2::11,dst=fd00:2:1::11,sport=41000,dport=8080),reply=(src=fd00:2:1::11,dst=fd00:2::11,sport=8080,dport=41000),zone=40001,mark=2,protoinfo=(state=ESTABLISHED)
icmpv6,orig=(src=fd00:2::11,dst=fd00:2:1::11,id=9,type=128,code=0),reply=(src=fd00:2:1::11,dst=fd00:2::11,id=9,type=129,code=0),zone=40001,mark=1
"""


def test_ipv6_sessions_in_the_table_split_at_the_last_colon():
    sessions = SessionTable()
    sessions.update("outside", parse_conntrack(DUMP6), now=1.0)
    sessions.update("inside", [dict(e, zone=7233, mark=1) for e in parse_conntrack(DUMP6)], now=1.5)
    (session,) = sessions.to_list()  # ICMPv6 has no ports: not a session here
    assert session["client"] == "fd00:2::11:41000" and session["server"] == "fd00:2:1::11:8080"
    assert session["client"].rsplit(":", 1) == ["fd00:2::11", "41000"]  # as lab.controller reads it
    assert (session["inbound_fw"], session["return_fw"]) == (2, 1)


def test_session_table_joins_both_switches():
    sessions = SessionTable()
    sessions.update("outside", parse_conntrack(DUMP_OUTSIDE), now=100.0)
    sessions.update("inside", parse_conntrack(DUMP_INSIDE), now=100.5)
    (session,) = sessions.to_list()  # unmarked and portless connections are not sessions here
    assert session["client"] == "10.0.0.11:40000" and session["server"] == "10.0.1.11:8080"
    assert (session["inbound_fw"], session["return_fw"]) == (1, 2)
    assert session["first_seen"] == 100.0


class Datapath:
    """What the translation needs of an os-ken datapath: its OpenFlow 1.3 modules."""

    def __init__(self, dpid: int):
        from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

        self.id, self.ofproto, self.ofproto_parser = dpid, ofproto_v1_3, ofproto_v1_3_parser


def wire(flows: list[Flow | Group]) -> list[str]:
    """Each flow's flow-mod as the bytes sent to the switch (hex; tests/test_l4lb_logic.py)."""
    messages = []
    for flow in flows:
        msg = message(Datapath(flow.dpid), flow)
        msg.serialize()
        messages.append(bytes(msg.buf).hex())
    return messages


def test_every_mode_translates_to_openflow():
    pytest.importorskip("os_ken")
    for mode in ("independent", "symmetric", "correction-mac", "correction-mpls", "sync"):
        fabric = Fabric(config(mode))
        messages = [f for dpid in (1, 2, 11, 12) for f in fabric.flows(dpid)]
        messages += fabric.port_changed(1, 4, False, 0.0) + fabric.port_changed(1, 4, True, 5.0)
        assert all(wire([m]) for m in messages)


def test_the_fast_path_actions_as_openflow():
    pytest.importorskip("os_ken")
    from os_ken.ofproto import nicira_ext

    dp = Datapath(1)
    track = action(dp, ("ct", 40001, T_TOWARD))
    assert (track.flags, track.zone_ofs_nbits, track.recirc_table, track.actions) == (0, 40001, T_TOWARD, [])
    commit = action(dp, ("ct_commit", 7233, 2))
    assert (commit.flags, commit.zone_ofs_nbits, commit.recirc_table) == (
        nicira_ext.NX_CT_F_COMMIT,
        7233,
        nicira_ext.NX_CT_RECIRC_NONE,
    )
    assert [(a.key, a.value) for a in commit.actions] == [("ct_mark", 2)]
    assert action(dp, ("group", GROUP_CHOOSE)).group_id == GROUP_CHOOSE
    g = Group(1, GROUP_CHOOSE, ((("set_field", "reg0", 1), ("resubmit", T_COMMIT)),), "modify")
    mod = message(dp, g)
    assert (mod.command, mod.type, mod.group_id) == (dp.ofproto.OFPGC_MODIFY, dp.ofproto.OFPGT_SELECT, 1)
    assert [b.weight for b in mod.buckets] == [1]  # weight 0 would never be chosen
    assert action(dp, ("normal",)).port == dp.ofproto.OFPP_NORMAL
    with pytest.raises(ValueError, match="unknown action"):
        action(dp, ("teleport", 1))
