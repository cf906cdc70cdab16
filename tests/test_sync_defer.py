"""S2 sync-defer without a network: the agent's decisions (hold, acknowledgement, bounded
wait, too many held, silent peer), its messages and packet parsing, the rules it needs
(checked by nft itself where nft is here), its settings and its log."""

import json
import shutil
import socket
import struct
import subprocess

import pytest

from lab.agents.sync_defer import (
    ENTRY,
    HELLO,
    REPLIED,
    Deferrals,
    ack_message,
    entry_events,
    packet_key,
    parse_message,
    query_message,
    session_name,
)
from lab.devices.sync_defer import DeferSettings, released
from lab.render.sync_defer import PRIORITY, base_chain, hold_rule, hold_target, no_hold_rule

A = ("10.0.0.11", 10001, "10.0.1.11", 8080)
B = ("10.0.0.12", 10002, "10.0.1.12", 8080)


def logic(**options) -> Deferrals:
    return Deferrals(timeout=options.pop("timeout", 0.25), heard=0.0, **options)


def test_a_syn_waits_for_the_peers_entry():
    d = logic()
    assert d.hold(A, "p", now=0.0) == []
    assert d.waiting() == 1
    assert d.ack(B, ENTRY, now=0.001) == []  # another session's: nothing goes
    [r] = d.ack(A, ENTRY, now=0.004)
    assert (r.held.packet, r.held.kind, r.why, round(r.held_s, 3)) == ("p", "SYN", "ack", 0.004)
    assert d.waiting() == 0 and d.counts["ack"] == 1


def test_a_syn_ack_whose_syn_crossed_the_peer_waits_for_the_reply_there():
    d = logic()
    assert d.hold(A, "sa", now=0.0, need=REPLIED) == []
    assert d.ack(A, ENTRY, now=0.001) == []  # the entry alone is not enough
    [r] = d.ack(A, REPLIED, now=0.003)
    assert (r.held.kind, r.why) == ("SYN-ACK", "ack")


def test_a_syn_ack_whose_syn_crossed_this_firewall_goes_at_once():
    d = logic()
    d.hold(A, "syn", now=0.0)
    d.ack(A, ENTRY, now=0.002)
    [r] = d.hold(A, "sa", now=0.003, need=REPLIED)
    assert r.why == "own" and r.held_s == 0.0


def test_an_acknowledgement_before_its_packet_lets_it_go_at_once():
    d = logic()
    assert d.ack(A, REPLIED, now=0.0) == []
    [r] = d.hold(A, "sa", now=0.001, need=REPLIED)
    assert r.why == "ack" and r.held_s == 0.0


def test_the_wait_is_bounded():
    d = logic(timeout=0.25, retry=1.0)
    d.hold(A, "p", now=0.0)
    d.hold(B, "q", now=0.1)
    assert d.next_deadline() == 0.25
    assert d.expire(now=0.2) == []
    [r] = d.expire(now=0.25)
    assert (r.held.packet, r.why) == ("p", "timeout")
    assert d.next_deadline() == pytest.approx(0.35)
    assert d.counts == {"queued": 2, "timeout": 1}


def test_a_late_acknowledgement_is_asked_for_again():
    d = logic(timeout=0.25, retry=0.1)
    d.hold(A, "p", now=0.0, need=REPLIED)
    assert d.next_deadline() == 0.1
    assert d.queries(now=0.05) == []
    assert d.queries(now=0.1) == [(A, REPLIED)]
    assert d.queries(now=0.15) == []  # asked once per retry period
    assert d.next_deadline() == pytest.approx(0.2)
    assert d.queries(now=0.2) == [(A, REPLIED)]


def test_an_agent_tells_each_new_stage_once_and_answers_queries():
    peer = logic()
    assert peer.answers(A, ENTRY, now=0.0) is False
    assert peer.local(A, ENTRY, now=0.01) is True  # the copy conntrackd wrote: news
    assert peer.local(A, ENTRY, now=0.011) is False
    assert peer.answers(A, ENTRY, now=0.02) and not peer.answers(A, REPLIED, now=0.02)
    assert peer.local(A, REPLIED, now=0.03) is True
    assert peer.local(A, ENTRY, now=0.04) is False  # a later update: no news
    assert peer.answers(A, REPLIED, now=0.05)


def test_beyond_the_limit_the_oldest_goes():
    d = logic(limit=2)
    d.hold(A, "p", now=0.0)
    d.hold(B, "q", now=0.01)
    [r] = d.hold(("10.0.0.13", 1, "10.0.1.11", 8080), "r", now=0.02)
    assert (r.held.packet, r.why) == ("p", "overflow")
    assert d.waiting() == 2


def test_a_silent_peer_holds_nothing():
    d = logic(dead=1.0)
    [r] = d.hold(A, "p", now=1.5)  # last heard at 0
    assert r.why == "peer down"
    d.hello(now=1.6)
    assert d.hold(B, "q", now=1.7) == []


def test_this_kernels_own_event_marks_a_held_packet_confirmed():
    d = logic()
    d.hold(A, "p", now=0.0)
    d.local(A, ENTRY, now=0.001)
    [r] = d.ack(A, ENTRY, now=0.002)
    assert r.held.confirmed
    d.local(B, ENTRY, now=0.003)  # the event read before its packet
    d.hold(B, "q", now=0.004)
    [r] = d.ack(B, ENTRY, now=0.005)
    assert r.held.confirmed


def test_old_memories_are_forgotten():
    d = logic()
    d.ack(A, ENTRY, now=0.0)
    d.local(B, ENTRY, now=0.0)
    d.hold(B, "q", now=0.0)
    d.ack(B, ENTRY, now=0.0)
    d.expire(now=5.0)
    assert d.acked == {} and d.seen == {} and d.own == {}


def ipv4_tcp(src: str, dst: str, sport: int, dport: int, ihl: int = 5, flags: int = 0x02) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, 40, 0, 0, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst)
    )
    options = b"\x01" * 4 * (ihl - 5)
    return header + options + struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 0, 0, 0)


def test_packet_key_reads_the_session_and_what_the_packet_waits_for():
    assert packet_key(ipv4_tcp("10.0.0.11", "10.0.1.11", 10001, 8080)) == (A, ENTRY)
    assert packet_key(ipv4_tcp("10.0.0.11", "10.0.1.11", 10001, 8080, ihl=6)) == (A, ENTRY)  # options
    syn_ack = ipv4_tcp("10.0.1.11", "10.0.0.11", 8080, 10001, flags=0x12)
    assert packet_key(syn_ack) == (A, REPLIED)  # the session's original direction
    assert packet_key(ipv4_tcp("10.0.0.11", "10.0.1.11", 10001, 8080, flags=0x10)) is None
    assert packet_key(b"\x60" + b"\x00" * 39) is None  # IPv6
    assert packet_key(b"\x45\x00") is None


def test_messages_round_trip():
    assert parse_message(ack_message(A, REPLIED)) == ("A", REPLIED, A)
    assert parse_message(query_message(A, ENTRY)) == ("Q", ENTRY, A)
    assert parse_message(HELLO) == ("H", 0, None)
    assert parse_message(b"A 1 10.0.0.11 x 10.0.1.11 8080") == ("H", 0, None)
    assert parse_message(b"A 3 10.0.0.11 1 10.0.1.11 8080") == ("H", 0, None)
    assert session_name(A) == "10.0.0.11:10001->10.0.1.11:8080"


def test_settings_problems_are_named():
    assert DeferSettings("10.0.3.1", "10.0.3.2", ("fw1-in", "fw1-out")).problems() == []
    found = DeferSettings("10.0.3.1", "10.0.3.2", (), timeout=2.0, limit=0).problems()
    assert len(found) == 3 and "timeout 2.0" in found[0]


def test_the_rules():
    assert f"priority {PRIORITY};" in base_chain() and PRIORITY == 2**31 - 1
    rule = hold_rule(("fw1-in", "fw1-out"))
    syn, syn_ack = rule.splitlines()
    assert 'iifname { "fw1-in", "fw1-out" }' in syn and "== syn ct state new ct direction original" in syn
    assert "== syn | ack ct direction reply" in syn_ack and syn_ack.endswith("jump SESSIONLAB_HOLD")
    assert hold_target(5)[1][-3:] == ["--queue-num", "5", "--queue-bypass"]


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed")
def test_nft_accepts_the_rules(tmp_path):
    """nft's own check (-c), offline: the chains, then the rule into them."""
    path = tmp_path / "defer.nft"
    hold = "table ip mangle {\n\tchain SESSIONLAB_HOLD {\n\t}\n}\n"
    path.write_text(hold + base_chain() + no_hold_rule() + hold_rule(("fw1-in", "fw1-out")))
    done = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        pytest.skip("nft -c needs root here")
    assert done.returncode == 0, done.stderr


def test_the_log_gives_one_record_per_packet():
    lines = [
        json.dumps({"event": "ready", "t": 1.0}),
        json.dumps({"event": "released", "session": session_name(A), "why": "ack", "held_ms": 1.5}),
        "a line of something else",
        json.dumps({"event": "counters", "ack": 1}),
    ]
    [record] = released("\n".join(lines))
    assert record["why"] == "ack" and record["held_ms"] == 1.5


# A ctnetlink NEW event as this kernel sent it (`conntrack -I` of a TCP entry
# 10.9.0.1:1234 -> 10.9.0.2:80 in a scratch namespace, read from the agent's socket).
CT_NEW_EVENT = bytes.fromhex(
    "e800000000010006000000007f270000020000003400018014000180080001000a090001080002000a0900021c000280"
    "05000100060000000600020004d2000006000300005000003400028014000180080001000a090002080002000a090001"
    "1c000280050001000600000006000200005000000600030004d2000008000c00d7de5654080003000000000808000700"
    "0000001e300004802c000180050001000100000005000200000000000500030000000000060004000a00000006000500"
    "0a0000001c0018800800010000000000080002000000000008000300000000000800080000000000"
)


def test_entry_events_reads_the_kernels_event():
    entry = (("10.9.0.1", 1234, "10.9.0.2", 80), ENTRY)  # SYN_SENT: no reply seen
    assert entry_events(CT_NEW_EVENT) == [entry]
    assert entry_events(CT_NEW_EVENT * 2) == [entry] * 2
    assert entry_events(CT_NEW_EVENT[:10]) == []
    udp = CT_NEW_EVENT.replace(bytes.fromhex("0500010006"), bytes.fromhex("0500010011"), 1)
    assert entry_events(udp) == []  # conntrackd syncs TCP only: nothing else is acknowledged
    # The same entry once it has seen the reply (IPS_SEEN_REPLY in CTA_STATUS, big-endian).
    status = bytes.fromhex("0800030000000008")
    replied = CT_NEW_EVENT.replace(status, bytes.fromhex("080003000000000a"), 1)
    assert entry_events(replied) == [(entry[0], REPLIED)]
