"""S1, fix b's security cost, over either family: a crafted mid-stream ACK from outside,
with no session behind it, to a published and an unpublished inside port.

Strict (nf_conntrack_tcp_loose=0): conntrack refuses to track a first segment without SYN
(invalid), the firewall drops both ACKs. Loose pick-up (fix b): the ACK to the published
port creates a session and reaches the inside host, which answers it (RST); the
unpublished port stays closed. Evidence per mode: captures on both sides of the firewall
(the ACK arriving at fw-out, leaving by fw-in or not), the firewall's session events
(`conntrack -E`: the session's NEW, then its DESTROY: Linux deletes an entry never assured
whose only reply is a RST, so no `conntrack -L` after the ACK can show it), its drop
counters by reason.
"""

from __future__ import annotations

from typing import Any

from lab.capture import Capture, SessionEvents, stop_captures
from lab.results import Case
from lab.traffic import send_segment
from testcases.s1_common import PUBLISHED, STRICT, UNPUBLISHED, address

BPF = "tcp or icmp or icmp6"  # the ACK, its answer, and what the path needed (neighbour discovery)
DROPS = ("drop_invalid", "drop_new_not_syn", "drop_denied")


def send_ack(lab, node: str, src: str, dst: str, sport: int, dport: int) -> None:
    """One hand-made ACK (seq and ack 1000, no data) from `node`, either family."""
    send_segment(lab, node, src, dst, sport, dport, "A")


def unsolicited_ack(lab, fw, case: Case, family: int = 4) -> dict[str, dict[str, Any]]:
    """Send the ACK to each port under the strict policy, then under loose pick-up; assert
    what each let in and made, from the evidence; the counts per mode (the figure)."""
    client, server = address(lab, "client", family), address(lab, "server", family)
    counts: dict[str, dict[str, Any]] = {}
    for mode, policy in (("strict", STRICT), ("loose", STRICT.with_changes(loose_pickup=True))):
        case.keep(fw.apply_policy(policy), f"ruleset, {mode}")
        fw.flush_sessions()
        sports = {port: case.take_port() for port in (PUBLISHED, UNPUBLISHED)}
        with (
            Capture(lab, "fw", "fw-out", case.path, f"{mode}-outside-fw-out", bpf=BPF) as outside,
            Capture(lab, "fw", "fw-in", case.path, f"{mode}-inside-fw-in", bpf=BPF) as inside,
            SessionEvents(lab, "fw", f"{mode}-session-events") as events,
        ):
            for port in (PUBLISHED, UNPUBLISHED):
                dropped, answer = fw.drops(), (client, port, server, sports[port])
                send_ack(lab, "server", server, client, sports[port], port)

                # The firewall's verdict on the segment: a drop counted, or a session created
                # and the inside host's answer back at fw-out (which may wait for neighbour
                # discovery: a new lab's interfaces send none until their link-local address
                # has passed DAD).
                def verdict(
                    port: int = port, dropped: int = dropped, answer: tuple[str, int, str, int] = answer
                ) -> bool:
                    created = [e for e in events.events() if e.event == "NEW" and e.dport == port]
                    return fw.drops() > dropped or (
                        bool(created) and any(x.key == answer for x in outside.segments())
                    )

                lab.wait(verdict, 5, f"the firewall to drop the ACK to port {port}, or to let it in and out")
            stop_captures([outside, inside])
        case.keep(outside.path, f"capture outside, {mode}")
        case.keep(inside.path, f"capture inside, {mode}")
        case.keep(events.path, f"session events, {mode}")
        arrived, seen = outside.segments(), inside.segments()
        mine = [e for e in events.events() if e.src == server]
        new = [e for e in mine if e.event == "NEW"]
        by_reason = fw.counters()
        counts[mode] = {"drops": fw.drops(), **{name: by_reason.get(name, 0) for name in DROPS}}
        for port in (PUBLISHED, UNPUBLISHED):
            ack = (server, sports[port], client, port)
            counts[mode][f"ACKs arriving outside, port {port}"] = len([x for x in arrived if x.key == ack])
            counts[mode][f"sessions created, port {port}"] = len([e for e in new if e.dport == port])
            counts[mode][f"session events, port {port}"] = [
                " ".join(filter(None, (e.event, e.state)))
                for e in mine
                if (e.sport, e.dport) == (sports[port], port)
            ]
            counts[mode][f"ACKs let in, port {port}"] = len([x for x in seen if x.key == ack])
            counts[mode][f"inside host answered, port {port}"] = len(
                [x for x in seen if x.key == (client, port, server, sports[port])]
            )
    assert_cost(counts, f"(captures, session events and tables in {case.path})")
    return counts


def assert_cost(counts: dict[str, dict[str, Any]], ev: str) -> None:
    """Strict drops both ACKs as out of state; loose admits the one to the published port,
    which makes a session the inside host answers; the unpublished port is closed in both."""
    for mode in ("strict", "loose"):
        for port in (PUBLISHED, UNPUBLISHED):
            assert counts[mode][f"ACKs arriving outside, port {port}"] == 1, (
                f"{mode}: the ACK to {port} never arrived {ev}"
            )
        assert counts[mode][f"sessions created, port {UNPUBLISHED}"] == 0, (
            f"{mode}: unpublished port got a session {ev}"
        )
        assert counts[mode][f"ACKs let in, port {UNPUBLISHED}"] == 0, f"{mode}: unpublished port reached {ev}"
    strict, loose = counts["strict"], counts["loose"]
    assert strict[f"sessions created, port {PUBLISHED}"] == 0, f"strict mode created a session {ev}"
    assert strict[f"session events, port {PUBLISHED}"] == [], f"strict mode: {strict} {ev}"
    assert strict[f"ACKs let in, port {PUBLISHED}"] == 0, f"strict mode let the ACK in {ev}"
    assert strict["drops"] == 2 == strict["drop_invalid"] + strict["drop_new_not_syn"], (
        f"strict mode should drop both ACKs as out of state, no more: {strict} {ev}"
    )
    assert loose[f"sessions created, port {PUBLISHED}"] == 1, f"loose mode should create a session {ev}"
    assert loose[f"session events, port {PUBLISHED}"][:1] == ["NEW ESTABLISHED"], (
        f"loose mode: the ACK should make an established session: {loose} {ev}"
    )
    assert loose[f"ACKs let in, port {PUBLISHED}"] == 1, f"loose mode should let the ACK in {ev}"
    assert loose[f"inside host answered, port {PUBLISHED}"] == 1, f"the inside host should answer (RST) {ev}"
    assert loose["drops"] == 1 == loose["drop_denied"], f"loose mode: only the unpublished port's ACK {ev}"
