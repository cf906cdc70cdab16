"""S2 over IPv6 (issue 25, point 2): the fabric pins and corrects IPv6 sessions as IPv4's.

The same lab as test_s2_modes.py (topologies/s2_redundant_firewalls.py), its IPv6 plan
(`PLAN6`, fd00:2:<net>::<host>): the hosts reach the firewalls' shared IPv6 gateway
addresses through the virtual gateway MACs (static neighbours), and the controller's
pipeline gives every IPv4 flow its IPv6 twin (controllers/fwlb/logic.py): IPv6 sessions are
tracked in the fabric switches' conntrack zones, hashed by the same select groups, marked
with their firewall and pinned to it.

One case per fabric mode, each SESSIONS IPv6 TCP sessions from the three outside hosts to
the two servers at once (idle probes of 0 s: connect, two echoes, close):

- symmetric: every session completes, and its packets cross exactly one firewall both
  ways: that firewall's conntrack (`conntrack -L -f ipv6`, per-direction packet counts)
  counted both directions and the other's nothing; the captures on the firewalls'
  outside and inside interfaces agree; the controller's table (the fabric switches'
  conntrack, `dpctl/dump-conntrack`, read on request) names that firewall both ways.
- correction-mac, correction-mpls: each fabric switch hashes on its own, so the fabric
  splits sessions (the controller's table: the inside switch chose the other firewall);
  each completes, and the firewall that saw its SYN counted its replies too (conntrack)
  and captured them entering from inside, the other firewall neither; each split
  session's replies crossed the FW1-FW2 link marked for the SYN's firewall (its MAC; or
  IPv6's own MPLS label, 200 + n).

In every mode the hosts' and firewalls' IPv6 neighbours are still all static after the
sessions (`ip -6 neigh`): none was learned, so neighbour discovery had no part in the path.
IPv4's behaviour beside these flows is test_s2_modes.py's to assert (run after this module).
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from contextlib import ExitStack

import pytest

from controllers.fwlb.logic import MPLS_LABEL_BASE6
from lab import conntrack
from lab.capture import Capture
from lab.controller import ControllerTable
from lab.results import Case
from lab.traffic.probes import IdleProbe, ProbeResult, run_probes
from lab.wait import at_once
from testcases.s2_common import CLIENTS, ECHO_PORTS, FIREWALLS, MODES, PLAN6, SERVER_HOSTS, SERVICE, prepare

LAB_TOPOLOGY = "s2"
ECHO_SERVERS = ECHO_PORTS  # the shared `servers` fixture starts them (both families)
PER_PAIR = 4  # sessions from each outside host to each server
SESSIONS = PER_PAIR * len(CLIENTS) * len(SERVER_HOSTS)
Key = tuple[str, int]  # a session: its client's address and port
Sides = dict[Key, dict[str, set[str]]]  # per session: the firewalls of each direction


def run_sessions(lab, first: int) -> list[ProbeResult]:
    """SESSIONS IPv6 sessions at once, PER_PAIR from each outside host to each server,
    session i from source port first + i."""
    pairs = [(c, s) for c in CLIENTS for s in SERVER_HOSTS]
    jobs = [
        lambda c=c, s=s, base=first + i * PER_PAIR: run_probes(
            lab, c, PLAN6.address(s), [IdleProbe(SERVICE, idle=0, sport=base + j) for j in range(PER_PAIR)]
        )
        for i, (c, s) in enumerate(pairs)
    ]
    return [r for part in at_once(jobs) for r in part]


def firewall_counts(lab, case: Case, mine: set[Key]) -> Sides:
    """Per session: the firewalls whose conntrack counted packets in its original direction
    ("in": client to server) and in its reply direction ("out")."""
    sides: Sides = {k: {"in": set(), "out": set()} for k in mine}
    for name in FIREWALLS:
        text = lab.run(name, ["conntrack", "-L", "-f", "ipv6"], merge=False)
        path = case.path / f"conntrack6-{name}.txt"
        path.write_text(text)
        case.keep(path, f"{name}'s IPv6 session table after the sessions (conntrack -L -f ipv6)")
        for s in conntrack.parse_table(text):
            key = (s.src, s.sport or 0)
            if key in sides and s.packets:
                sides[key]["in"].add(name)
            if key in sides and s.reply_packets:
                sides[key]["out"].add(name)
    return sides


def captured_entering(caps: list[Capture], mine: set[Key]) -> tuple[Sides, dict[Key, str]]:
    """Per session: the firewalls its client's segments entered (outside interface) and
    its server's segments entered (inside interface); and the firewall its SYN entered."""
    sides: Sides = {k: {"in": set(), "out": set()} for k in mine}
    syn: dict[Key, str] = {}
    for c in caps:
        assert c.node is not None
        for s in c.segments():
            if c.intf.endswith("-out") and (s.src, s.sport) in mine:
                sides[(s.src, s.sport)]["in"].add(c.node)
                if s.flags == "S":
                    syn[(s.src, s.sport)] = c.node
            elif c.intf.endswith("-in") and (s.dst, s.dport) in mine and s.sport == SERVICE:
                sides[(s.dst, s.dport)]["out"].add(c.node)
    return sides, syn


def neighbours(lab) -> tuple[int, list[str]]:
    """The hosts' and firewalls' IPv6 neighbour entries of global addresses: how many are
    static, and those that are not (learned by neighbour discovery)."""
    static, learned = 0, []
    for name in (*CLIENTS, *SERVER_HOSTS, *FIREWALLS):
        for entry in json.loads(lab.run(name, ["ip", "-j", "-6", "neigh", "show"], merge=False) or "[]"):
            if ipaddress.ip_address(entry["dst"]).is_link_local:
                continue
            if "PERMANENT" in entry.get("state", ()):
                static += 1
            else:
                learned.append(f"{name}: {entry}")
    return static, learned


@pytest.mark.parametrize("mode", ["symmetric", "correction-mac", "correction-mpls"])
def test_ipv6_sessions_per_mode(lab, servers, case: Case, mode):
    """IPv6 sessions complete, each on one firewall both ways: pinned, or corrected"""
    m = MODES[mode]
    prepare(lab, m)
    first = case.take_ports(SESSIONS).start
    caps = [
        Capture(lab, fw, f"{fw}-{side}", case.path, f"{fw}-{side}", bpf="ip6 and tcp")
        for fw in FIREWALLS
        for side in ("out", "in")
    ]
    node, intf = lab.link_intf("a1", "a2")
    # `mpls` last: what follows it in a filter would read the MPLS payload.
    link = Capture(lab, node, intf, case.path, "fw1-fw2-link", bpf="(ip6 and tcp) or mpls")
    with ExitStack() as running:
        for c in (*caps, link):
            running.enter_context(c)
        results = run_sessions(lab, first)
    for c in (*caps, link):
        case.keep(c.path, f"capture {c.name}")
    ev = f"(evidence in {case.path})"

    mine = {(r.client.rsplit(":", 1)[0], r.sport) for r in results}
    delivered = {(r.client.rsplit(":", 1)[0], r.sport) for r in results if r.outcome == "delivered"}
    table = ControllerTable(lab.paths.root / "controller-sessions.json").wait_for(mine)
    kernel = firewall_counts(lab, case, mine)
    captured, syn_fw = captured_entering(caps, mine)
    split = {k for k in mine if table[k].via != table[k].reply_via}
    # The firewall each session crossed, were it one: the one its SYN entered.
    one_way = {
        k: f"{sorted(kernel[k]['in'])} / {sorted(kernel[k]['out'])} (conntrack), "
        f"{sorted(captured[k]['in'])} / {sorted(captured[k]['out'])} (captured), SYN into {syn_fw.get(k)}, "
        f"controller {table[k].via} / {table[k].reply_via}"
        for k in mine
        if not (
            kernel[k]["in"] == kernel[k]["out"] == captured[k]["in"] == captured[k]["out"] == {syn_fw.get(k)}
            and table[k].via == syn_fw.get(k)
        )
    }
    on_link = [s for s in link.segments() if (s.dst, s.dport) in mine or (s.src, s.sport) in mine]
    owner_mark = {
        fw: lab.node(fw).intf(f"{fw}-in").MAC()
        if mode == "correction-mac"
        else MPLS_LABEL_BASE6 + int(fw[-1])
        for fw in FIREWALLS
    }
    marked = {
        k
        for k in split
        if any(
            (s.dst, s.dport) == k and owner_mark[table[k].via] in (s.eth_dst, *s.mpls[:1]) for s in on_link
        )
    }
    per_fw = Counter(syn_fw.get(k) for k in mine)
    static, learned = neighbours(lab)
    figures = {
        "IPv6 sessions": len(results),
        "IPv6 sessions in the controller's table (dpctl/dump-conntrack on request)": len(table),
        "completed (both echoes)": len(delivered),
        "sessions per firewall (SYN captured entering it)": dict(sorted(per_fw.items())),
        "sessions whose directions the fabric split (controller's table)": len(split),
        "sessions not on one firewall both ways (conntrack, captures, controller)": len(one_way),
        "split sessions whose replies crossed the FW1-FW2 link marked for their firewall": len(marked),
        "IPv6 neighbour entries after the sessions: static, learned (ip -6 neigh)": (static, len(learned)),
    }
    for name, value in figures.items():
        case.figure(name, value)

    assert len(results) == SESSIONS, f"the probes reported {len(results)} of {SESSIONS} sessions"
    assert len(table) == SESSIONS, f"the controller's table lists {len(table)} of {SESSIONS} sessions {ev}"
    # Each host its gateway, each firewall its five hosts: no neighbour discovery needed.
    assert (static, learned) == ((len(CLIENTS) + len(SERVER_HOSTS)) * (1 + len(FIREWALLS)), []), (
        f"neighbours: {static} static, {learned}"
    )
    assert delivered == mine, f"{mode}: {len(mine - delivered)} IPv6 sessions did not complete {ev}"
    assert not one_way, f"{mode}: sessions not on one firewall both ways: {list(one_way.items())[:4]} {ev}"
    assert min(per_fw.get(fw, 0) for fw in FIREWALLS) >= SESSIONS // 5, f"not spread: {per_fw} {ev}"
    if mode == "symmetric":
        assert not split and not on_link, (
            f"symmetric split {len(split)}, {len(on_link)} segments on the link {ev}"
        )
    else:
        assert len(split) >= SESSIONS // 5, (
            f"{mode}: the fabric should still split sessions: {len(split)} {ev}"
        )
        assert marked == split, (
            f"{mode}: split sessions not corrected over the link: {sorted(split - marked)[:4]} {ev}"
        )
