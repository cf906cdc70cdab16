"""S2, asymmetric paths through redundant firewalls (SCENARIOS.md): the failure and its
fixes, per fabric mode.

    h1 h2 h3  outside hosts
        \\ | /
         so ............ outside fabric switch
        /    \\
   fw1-out  fw2-out
    [fw1]    [fw2]       both own the gateway addresses
   fw1-in   fw2-in
      |        |
      a1 ---- a2 ....... inside access switches; a1-a2 is the dedicated FW1-FW2 link
      \\       /
         si ............ inside fabric switch
        /  \\
    srv1   srv2  servers

- Failure: inbound packets of a session cross FW1, outbound packets cross FW2 (each
  fabric switch picks a firewall on its own). FW2 has no session: the SYN-ACK is dropped
  and the connection never opens.
- Fix a, design: session-aware symmetric forwarding: the controller pins both directions
  of each session to the same firewall, while still spreading sessions over both.
- Fix b, path correction: a packet reaching the firewall that does not hold its session
  is sent to the one that does over the inter-firewall link, by MAC rewriting or by
  tunnelling (Ethernet in VXLAN), decided by the fabric (the controller's variant) or by
  the firewalls themselves.
- Fix c, session sync: conntrackd copies each firewall's entries to its peer.

The os-ken controller (controllers/fwlb) runs the fabric; each case restarts it in the
mode under test. 200 short TCP sessions per mode from three outside hosts; a client
waits 3 s for its connection: long enough for one SYN-ACK retransmission (1 s).

Every figure is read from evidence: the clients' results, each firewall's conntrack (with
per-direction packet counts), captures (SYN-ACKs into and out of each firewall, the FW1-FW2
link), and the controller's table, which is cross-checked against the firewalls, never
taken alone.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack
from typing import Any

import pytest

from lab import conntrack
from lab.capture import Capture
from lab.controller import ControllerTable
from lab.plot import mode_figure
from lab.results import Case, safe_name
from lab.traffic import run_sessions_from
from testcases.common import rerun_missing
from testcases.s2_common import (
    CLIENTS,
    ECHO_PORTS,
    FIREWALLS,
    MODES,
    SYN_ACK,
    Mode,
    prepare,
    servers_of,
)

LAB_TOPOLOGY = "s2"
ECHO_SERVERS = ECHO_PORTS  # the shared `servers` fixture starts them
SESSIONS = 200
SYN = "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"
MPLS_BASE = 100  # controllers.fwlb.logic.MPLS_LABEL_BASE: label 100 + n = deliver to fwN


def conntrack_paths(
    lab, mine: set[tuple[str, int]], case: Case, folder
) -> dict[tuple[str, int], dict[str, set[str]]]:
    """Per session of this case: the firewalls whose conntrack counted packets in the
    original direction (client to server) and in the reply direction."""
    paths: dict[tuple[str, int], dict[str, set[str]]] = {k: {"in": set(), "out": set()} for k in mine}
    for name in FIREWALLS:
        text = lab.run(name, ["conntrack", "-L"], merge=False)
        path = folder / f"conntrack-{name}.txt"
        path.write_text(text)
        case.keep(path, f"{name}'s session table after the run (conntrack -L)")
        table = conntrack.parse_table(text)
        for s in table:
            key = (s.src, s.sport or 0)
            if key not in paths:
                continue
            if s.packets:
                paths[key]["in"].add(name)
            if s.reply_packets:
                paths[key]["out"].add(name)
    return paths


def link_capture(lab, mode: Mode, folder) -> Capture:
    """A capture on the FW1-FW2 link where the mode's corrected packets cross it."""
    if mode.handoff != "off":
        return Capture(lab, "fw1", "fw1-sync", folder, "fw1-fw2-link", bpf="tcp or udp port 4789")
    node, intf = lab.link_intf("a1", "a2")
    return Capture(lab, node, intf, folder, "fw1-fw2-link", bpf="tcp or mpls")


def sessions_case(lab, case: Case, mode: Mode, folder) -> dict[str, Any]:
    """Run SESSIONS sessions through the fabric in `mode`; every figure from evidence."""
    prepare(lab, mode)
    first = case.take_ports(SESSIONS).start
    caps = [Capture(lab, fw, f"{fw}-in", folder, f"{fw}-in-synack", bpf=SYN_ACK) for fw in FIREWALLS]
    caps.append(link_capture(lab, mode, folder))
    caps += [Capture(lab, fw, f"{fw}-out", folder, f"{fw}-out-syn", bpf=SYN) for fw in FIREWALLS]
    with ExitStack() as running:
        for c in caps:
            running.enter_context(c)
        results = case.note_load(
            run_sessions_from(
                lab,
                CLIENTS,
                servers_of(lab),
                SESSIONS,
                concurrency=8,
                timeout=mode.client_timeout,
                first_port=first,
            )
        )
    mine = {(r["client"], int(r["sport"])) for r in results}
    table = ControllerTable(lab.paths.root / "controller-sessions.json").wait_for(mine)
    kernel = conntrack_paths(lab, mine, case, folder)
    for c in caps:
        case.keep(c.path, f"capture {c.name}")
    synacks = {c.node: Counter((s.dst, s.dport) for s in c.segments()) for c in caps[:2]}
    link = caps[2].segments()
    # The firewall each SYN entered (captured on its outside interface).
    syn_fw = {(s.src, s.sport): c.node for c in caps[3:] for s in c.segments()}

    opened = {(r["client"], int(r["sport"])) for r in results if r["data_ok"]}
    split = {k for k, s in table.items() if s.via != s.reply_via}
    # Cross-checks of the controller's table against the firewalls' own tables.
    disagree = []
    # With sync, the peer's update replaces a firewall's own entry, counters and all
    # (conntrackd), so the counters can name no firewall for some sessions: those are
    # counted, and the SYN capture alone names their firewall.
    replaced = 0
    for key, s in table.items():
        if syn_fw.get(key) != s.via:
            disagree.append(f"{key}: SYN via {s.via} (controller), captured entering {syn_fw.get(key)}")
        if mode.sync and not kernel[key]["in"]:
            replaced += 1
        elif kernel[key]["in"] != {s.via}:
            disagree.append(
                f"{key}: SYN via {s.via} (controller), conntrack counted it on {kernel[key]['in']}"
            )
        if key not in opened or mode.sync:
            continue
        wanted = {s.via} if mode.corrects else {s.reply_via}
        if kernel[key]["out"] != wanted:
            disagree.append(
                f"{key}: replies expected on {wanted}, conntrack counted them on {kernel[key]['out']}"
            )
    reasons: Counter[str] = Counter()
    for key in sorted(mine - opened):
        s = table[key]
        seen = synacks[s.reply_via][key] if s.reply_via else 0
        if s.via != s.reply_via:
            where = " (captured there, no session: dropped)" if seen and not kernel[key]["out"] else ""
            reasons[f"split path: SYN via {s.via}, SYN-ACK to {s.reply_via}{where}"] += 1
        else:
            reasons[f"same firewall {s.via}, failed"] += 1
    corrected: dict[str, int] = {}
    marked_for_owner = "split sessions whose replies crossed the link marked for the owner"
    if mode.corrects:
        corrected[marked_for_owner] = 0
        for key in split & opened:
            owner = int(table[key].via[-1])
            on_link = [x for x in link if (x.dst, x.dport) == key]
            if mode.name == "correction-mac":
                marked = [
                    x for x in on_link if x.eth_dst == lab.node(f"fw{owner}").intf(f"fw{owner}-in").MAC()
                ]
            elif mode.name == "correction-mpls":
                marked = [x for x in on_link if x.mpls[:1] == (MPLS_BASE + owner,)]
            elif mode.handoff == "route":
                peer = lab.node(f"fw{owner}").intf(f"fw{owner}-sync").MAC()
                marked = [x for x in on_link if x.eth_dst == peer]
            else:
                marked = [x for x in on_link if x.vxlan is not None]
            corrected[marked_for_owner] += bool(marked)
    per_fw = Counter(s.via for s in table.values())
    per_fw_kernel = Counter(name for k in mine for name in kernel[k]["in"])
    per_fw_captured = Counter(syn_fw.get(k) for k in mine)
    figures: dict[str, Any] = {
        "sessions": len(results),
        "opened and carried data": len(opened),
        "success rate": len(opened) / len(results),
        "sessions per firewall (conntrack, SYN direction)": dict(sorted(per_fw_kernel.items())),
        "sessions per firewall (SYN captured entering it)": dict(sorted(per_fw_captured.items())),
        "sessions per firewall (controller)": dict(sorted(per_fw.items())),
        "sessions whose directions the fabric split (controller)": len(split),
        "controller and conntrack or captures disagree": len(disagree),
        "failure reasons": dict(reasons),
        **corrected,
    }
    for key, value in figures.items():
        case.figure(key, value)

    ev = f"(evidence in {folder})"
    assert len(results) == SESSIONS, f"the clients reported {len(results)} of {SESSIONS} sessions"
    assert not disagree, f"the controller's table and the firewalls' conntrack disagree: {disagree[:5]} {ev}"
    if mode.sync:
        figures["entries whose counters the peer's sync replaced"] = replaced
        case.figure("entries whose counters the peer's sync replaced", replaced)
    assert min(per_fw_captured.get("fw1", 0), per_fw_captured.get("fw2", 0)) >= SESSIONS // 5, (
        f"not spread: {per_fw_captured}"
    )
    if mode.name == "independent":
        assert 0.2 * SESSIONS <= len(mine - opened) <= 0.8 * SESSIONS, (
            f"expected about half to fail: {figures}"
        )
        assert mine - opened == split, f"the failed sessions should be exactly the split ones: {figures} {ev}"
        assert all("dropped" in k for k in reasons), (
            f"every failed session's SYN-ACK should be captured and dropped: {reasons}"
        )
    else:
        assert opened == mine, f"{mode.name}: {len(mine - opened)} sessions failed: {dict(reasons)} {ev}"
        if mode.name == "symmetric":
            assert not split, f"symmetric mode split {len(split)} sessions"
        else:
            assert len(split) >= SESSIONS // 5, (
                f"{mode.name}: the fabric should still split paths: {len(split)}"
            )
    if mode.corrects:
        n = corrected[marked_for_owner]
        assert n == len(split), (
            f"{mode.name}: {len(split) - n} corrected sessions not seen on the FW1-FW2 link {ev}"
        )
        if mode.handoff != "off":
            handed = {name: lab.node(name).counters()["handed_to_peer"] for name in FIREWALLS}
            case.figure("packets each firewall handed to its peer (nft counter)", handed)
            assert sum(handed.values()) >= len(split), (
                f"handoff counters {handed} below {len(split)} split sessions"
            )
    return figures


@pytest.mark.parametrize("mode", list(MODES))
def test_sessions_per_mode(lab, servers, case: Case, collected, mode):
    """Many short sessions per fabric mode: which open, over which firewalls, why others fail"""
    collected[mode] = sessions_case(lab, case, MODES[mode], case.path)


@pytest.mark.ports(len(MODES) * SESSIONS)  # it may have to run every mode itself
def test_mode_figure(lab, servers, case: Case, collected):
    """Success rate and sessions per firewall for every mode"""

    def run(name: str) -> None:  # a mode this selection did not run: run it now
        folder = case.path / safe_name(name)
        folder.mkdir(exist_ok=True)
        collected[name] = sessions_case(lab, case, MODES[name], folder)

    ran_here = rerun_missing(collected, MODES, run)
    case.figure("modes run by this case (not selected on their own)", ran_here)
    rates = {m: round(collected[m]["success rate"], 3) for m in MODES}
    case.figure("success rate", rates)
    assert set(rates) == set(MODES)
    assert rates["independent"] < 0.8 and all(r == 1.0 for m, r in rates.items() if m != "independent"), rates
    mode_figure(
        {m: collected[m] for m in MODES},
        case.plot_path("modes", "success rate per mode, and sessions per firewall"),
    )
