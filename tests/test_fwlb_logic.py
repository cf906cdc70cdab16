"""The firewall fabric's decisions, offline: flows per mode, failover, the session table;
and their OpenFlow messages (controllers.ofp's translation)."""

import hashlib

import pytest

from controllers.fwlb.logic import (
    INSIDE_BASIS,
    MPLS_LABEL_BASE,
    OUTSIDE_BASIS,
    SESSION_COOKIE,
    T_DELIVER,
    Fabric,
    FabricConfig,
    SessionTable,
)
from controllers.ofp import Flow, Verdict, action, flow_mod


def config(mode: str) -> FabricConfig:
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
        }
    )


def hashes(flows):
    return [a for f in flows for a in f.actions if a[0] == "multipath"]


def delivery(flows):
    """hash slot -> actions, of table 1."""
    return {dict(f.match)["reg0"]: f.actions for f in flows if f.table == T_DELIVER}


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown mode 'sideways'"):
        config("sideways")


@pytest.mark.parametrize(
    ("mode", "inside"),
    [
        ("independent", INSIDE_BASIS),
        ("symmetric", OUTSIDE_BASIS),
        ("sync", INSIDE_BASIS),
        ("correction-mac", INSIDE_BASIS),
    ],
)
def test_which_hash_each_fabric_switch_uses(mode, inside):
    fabric = Fabric(config(mode))
    assert {h[1:3] for h in hashes(fabric.flows(1))} == {("symmetric_l3l4", OUTSIDE_BASIS)}
    assert {h[1:3] for h in hashes(fabric.flows(2))} == {("symmetric_l3l4", inside)}


def test_fabric_switch_rewrites_the_virtual_mac_to_the_chosen_firewall():
    out = delivery(Fabric(config("symmetric")).flows(1))
    assert out[0] == (("set_field", "eth_dst", "02:00:00:00:01:01"), ("output", 4))
    assert out[1] == (("set_field", "eth_dst", "02:00:00:00:02:01"), ("output", 5))


def test_sessions_are_learned_with_their_firewall_in_the_cookie():
    learns = [a for f in Fabric(config("symmetric")).flows(1) for a in f.actions if a[0] == "learn"]
    assert sorted((a[2] - SESSION_COOKIE, a[4]) for a in learns) == [(1, 0), (2, 1)]


def test_no_correction_outside_correction_modes():
    for mode in ("independent", "symmetric", "sync"):
        assert hashes(Fabric(config(mode)).flows(12)) == []


def test_mac_correction_sends_the_other_firewalls_sessions_over_the_link():
    table = delivery(Fabric(config("correction-mac")).flows(12))  # FW2's access switch
    assert table[1] == (("output", 1),)  # FW2's own sessions: to FW2
    assert table[0] == (("set_field", "eth_dst", "02:00:00:00:01:02"), ("output", 4))  # FW1's: to a1


def test_mpls_correction_pushes_a_label_the_owner_side_pops():
    fabric = Fabric(config("correction-mpls"))
    table = delivery(fabric.flows(12))
    assert table[0] == (
        ("push_mpls", 0x8847),
        ("set_field", "mpls_label", MPLS_LABEL_BASE + 1),
        ("output", 4),
    )
    pops = [f for f in fabric.flows(11) if dict(f.match).get("mpls_label") == MPLS_LABEL_BASE + 1]
    assert pops and pops[0].actions[0] == ("pop_mpls", 0x0800) and pops[0].actions[-1] == ("output", 1)


def test_a_failed_firewall_hands_its_slots_to_the_other():
    fabric = Fabric(config("correction-mac"))
    changes = fabric.port_changed(1, 4, up=False)  # so's port to fw1-out
    assert fabric.alive == {1: False, 2: True}
    out = delivery([c for c in changes if c.dpid == 1])
    assert out[0] == (("set_field", "eth_dst", "02:00:00:00:02:01"), ("output", 5))
    assert delivery([c for c in changes if c.dpid == 12])[0] == (
        ("output", 1),
    )  # no correction to a dead FW1
    assert fabric.port_changed(1, 4, up=False) == []  # already down: nothing to change
    assert fabric.port_changed(1, 1, up=False) == []  # a host port: not a firewall
    fabric.port_changed(11, 1, up=True)
    assert fabric.alive == {1: False, 2: True}  # fw1-out is still down


def test_a_flapping_port_is_held_down():
    fabric = Fabric(config("symmetric"))
    assert fabric.port_changed(1, 4, up=False, now=10.0)  # down: the slots move
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


def test_session_table_joins_both_directions():
    table = SessionTable()
    table.update(
        "outside",
        [
            {
                "cookie": SESSION_COOKIE + 1,
                "src": "10.0.0.11",
                "sport": 40000,
                "dst": "10.0.1.11",
                "dport": 8080,
                "packets": 3,
                "duration": 2.0,
            }
        ],
        now=100.0,
    )
    table.update(
        "inside",
        [
            {
                "cookie": SESSION_COOKIE + 2,
                "src": "10.0.1.11",
                "sport": 8080,
                "dst": "10.0.0.11",
                "dport": 40000,
                "packets": 2,
                "duration": 1.5,
            }
        ],
        now=100.5,
    )
    (session,) = table.to_list()
    assert session["client"] == "10.0.0.11:40000" and session["server"] == "10.0.1.11:8080"
    assert (session["inbound_fw"], session["return_fw"]) == (1, 2)
    assert session["first_seen"] == 98.0 and session["last_seen"] == 100.5
    assert (session["packets_in"], session["packets_out"]) == (3, 2)
    table.update(
        "outside",
        [
            {
                "cookie": 7,
                "src": "1.1.1.1",
                "sport": 1,
                "dst": "2.2.2.2",
                "dport": 2,
                "packets": 1,
                "duration": 0,
            }
        ],
        now=101,
    )
    assert len(table.to_list()) == 1  # flows that are not learned sessions are ignored


# Every flow-mod of every mode (below), as the app's own translator serialized them before
# the translation moved to controllers.ofp (checked byte for byte then).
FABRIC_FLOWS, FABRIC_DIGEST = 198, "e8ea08aabb668a9dfbba864b01b51239d82c5b3bccb8f4cb738d79aceea6016c"


class Datapath:
    """What the translation needs of an os-ken datapath: its OpenFlow 1.3 modules."""

    def __init__(self, dpid: int):
        from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

        self.id, self.ofproto, self.ofproto_parser = dpid, ofproto_v1_3, ofproto_v1_3_parser


def wire(flows: list[Flow]) -> list[str]:
    """Each flow's flow-mod as the bytes sent to the switch (hex)."""
    messages = []
    for flow in flows:
        msg = flow_mod(Datapath(flow.dpid), flow)
        msg.serialize()
        messages.append(bytes(msg.buf).hex())
    return messages


def test_the_fabric_flows_reach_the_switch_as_they_did_before_one_translation():
    pytest.importorskip("os_ken")
    flows = []
    for mode in ("independent", "symmetric", "correction-mac", "correction-mpls", "sync"):
        fabric = Fabric(config(mode))
        flows += [f for dpid in (1, 2, 11, 12) for f in fabric.flows(dpid)]
        flows += fabric.port_changed(1, 4, False, 0.0) + fabric.port_changed(1, 4, True, 5.0)
    digest = hashlib.sha256("\n".join(wire(flows)).encode()).hexdigest()
    assert (len(flows), digest) == (FABRIC_FLOWS, FABRIC_DIGEST)
    dp = Datapath(1)
    (multipath,) = {a for f in Fabric(config("symmetric")).flows(2) for a in f.actions if a[0] == "multipath"}
    hashed = action(dp, multipath)
    assert (hashed.fields, hashed.basis, hashed.algorithm, hashed.max_link, hashed.dst) == (
        2,
        OUTSIDE_BASIS,
        2,
        1,
        "reg0",
    )
    learn = action(dp, ("learn", 5, SESSION_COOKIE + 1, 60, 0))
    assert (learn.table_id, learn.priority, learn.cookie, learn.idle_timeout, len(learn.specs)) == (
        5,
        10,
        SESSION_COOKIE + 1,
        60,
        7,
    )
    assert action(dp, ("normal",)).port == dp.ofproto.OFPP_NORMAL
    with pytest.raises(ValueError, match="unknown action"):
        action(dp, ("teleport", 1))
