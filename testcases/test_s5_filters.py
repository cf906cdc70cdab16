"""S5 (SCENARIOS.md): what a stateful firewall is.

   inside: srv 10.0.1.10 (echo servers on 80, published, and 5001, not), c1 10.0.1.11
   outside: ext 10.0.2.10 (echo server on 8080), legit .20, attacker .66 (spoofing .166), scanner .77

The same intent (inside -> outside allowed, new outside -> inside denied but for srv:80)
as a stateful policy and as a stateless filter (a router's ACL pair): real sessions both
ways get the same answers from each; crafted packets from hping3 and nmap do not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.attacks import CRAFTED, hping3_argv, nmap_argv, parse_nmap_xml, run_hping3
from lab.capture import Capture, stop_captures
from lab.packets import TcpSegment, read_fragments
from lab.plot import verdict_matrix_figure
from lab.render.nftables import rule_count
from lab.results import Case
from lab.traffic import run_sessions
from lab.wait import at_once
from testcases.s5_common import (
    ECHOES,
    INTENT,
    OUTBOUND,
    PUBLISHED,
    UNPUBLISHED,
    accepted_from,
    assert_crafted_verdicts,
    load_filter,
)

# This module's lab, every S5 module's: the plugin builds it, the shared `fw` and `servers`
# fixtures set the firewall and the echo servers up.
LAB_TOPOLOGY, FIREWALL_POLICY, ECHO_SERVERS = "s5", INTENT, ECHOES
FILTERS = ("stateful", "stateless")


def test_same_intent_stateful_and_stateless(lab, fw, servers, case):
    """The same intent as a stateful policy and as a stateless filter: real sessions get the same answers"""
    srv, ext, legit = (lab.ip(n) for n in ("srv", "ext", "legit"))
    flows = {
        f"outbound c1 -> ext:{OUTBOUND}": ("c1", f"{ext}:{OUTBOUND}", 3, True),
        f"inbound legit -> srv:{PUBLISHED} (published)": ("legit", f"{srv}:{PUBLISHED}", 3, True),
        f"inbound legit -> srv:{UNPUBLISHED} (not published)": ("legit", f"{srv}:{UNPUBLISHED}", 2, False),
    }
    worked: dict[str, dict[str, str]] = {label: {} for label in flows}
    rules = {}
    for kind in FILTERS:
        rules[kind] = rule_count(load_filter(fw, case, kind).read_text())
        folder = case.path / kind
        with (
            Capture(lab, "fw", "fw-in", folder, "inside-fw-in") as inside,
            Capture(lab, "fw", "fw-out", folder, "outside-fw-out") as outside,
        ):
            results = {}
            for label, (client, server, count, _) in flows.items():
                first = case.take_ports(count).start
                results[label] = case.note_load(
                    run_sessions(lab, client, [server], count, timeout=1.0, first_port=first)
                )
            stop_captures([inside, outside])
        case.keep(inside.path, f"capture, inside (fw-in), {kind}")
        case.keep(outside.path, f"capture, outside (fw-out), {kind}")
        for label, (_, _, count, allowed) in flows.items():
            records = results[label]
            ok = sum(r["data_ok"] for r in records)
            worked[label][kind] = f"{ok}/{count}"
            assert ok == (count if allowed else 0), f"{kind}: {label}: {ok} of {count} worked: {records}"
        # The refused sessions: their SYNs reached the firewall and never left it inside.
        refused = {r["sport"] for r in results[f"inbound legit -> srv:{UNPUBLISHED} (not published)"]}
        arrived = [s for s in outside.segments() if s.sport in refused and s.flags == "S"]
        passed = [s for s in inside.segments() if s.sport in refused]
        assert len(arrived) >= len(refused) and not passed, (
            f"{kind}: SYNs to srv:{UNPUBLISHED}: {len(arrived)} reached fw-out, {len(passed)} segments "
            f"crossed to fw-in (captures {folder})"
        )
        assert not accepted_from(servers, "srv", legit, UNPUBLISHED), (
            f"{kind}: srv accepted a refused session"
        )
        # The allowed ones: the servers' own logs name each session.
        for label, (client, server, _, allowed) in flows.items():
            if allowed:
                name = "ext" if server.startswith(ext) else "srv"
                ports = {r["sport"] for r in results[label]}
                seen = accepted_from(servers, name, lab.ip(client), int(server.rsplit(":", 1)[1]))
                assert ports <= seen, f"{kind}: {label}: {name}'s log lacks sessions {sorted(ports - seen)}"
    case.figure("sessions that worked (real clients)", worked)
    case.figure("rules in the forward chain", rules)


def crafted_verdicts(
    lab, case: Case, kind: str, scanner: str, srv: str, folder: Path
) -> tuple[dict[str, str], dict[str, str], dict[int, str]]:
    """Every crafted packet of CRAFTED sent twice from the scanner to srv:UNPUBLISHED, then
    nmap's ACK scan of srv's two ports: what passed (captures on both sides), what the
    scanner got back, and what nmap concluded."""
    ports = {c.name: case.take_port() for c in CRAFTED}
    nmap_port = case.take_port()
    with (
        Capture(lab, "fw", "fw-in", folder, "inside-fw-in") as inside,
        Capture(lab, "fw", "fw-out", folder, "outside-fw-out") as outside,
    ):
        # The crafted packets one after another (seven hping3 at once: one of them once sent
        # 1 of its 2, clean-clone run at b08709a), the scan at the same time from its own port.
        scan_argv = nmap_argv("ACK scan", srv, f"{PUBLISHED},{UNPUBLISHED}", nmap_port)

        def crafted() -> dict[str, int]:
            argv = {c.name: hping3_argv(srv, UNPUBLISHED, c.hping3, 2, 20_000, ports[c.name])
                    for c in CRAFTED}  # fmt: skip
            return {name: run_hping3(lab, "scanner", command)["sent"] for name, command in argv.items()}

        def scan() -> str:
            return lab.run("scanner", scan_argv, timeout=60, merge=False)

        jobs: list[Callable[[], Any]] = [crafted, scan]
        sent, nmap_out = at_once(jobs)
        stop_captures([inside, outside])
    case.keep(inside.path, f"capture, inside (fw-in), {kind}")
    case.keep(outside.path, f"capture, outside (fw-out), {kind}")
    (folder / "nmap.xml").write_text(nmap_out)
    case.keep(folder / "nmap.xml", f"nmap ACK scan report, {kind}")
    outside_segs, inside_segs = outside.segments(), inside.segments()
    verdicts, answers = {}, {}
    for c in CRAFTED:
        evidence = f"({kind}: captures {folder})"
        if "-f" in c.hping3:
            arrived = [f for f in read_fragments(outside.path) if f.src == scanner]
            crossed = [f for f in read_fragments(inside.path) if f.src == scanner]
        else:

            def mine(s: TcpSegment, c=c) -> bool:
                return (s.src, s.sport, s.flags) == (scanner, ports[c.name], c.flags)

            arrived = [s for s in outside_segs if mine(s)]
            crossed = [s for s in inside_segs if mine(s)]
        assert sent[c.name] == 2 and len(arrived) >= 2, (
            f"{c.name}: hping3 sent {sent[c.name]}, {len(arrived)} reached the firewall {evidence}"
        )
        verdicts[c.name] = "passed" if crossed else "dropped"
        back = sorted({s.flags for s in outside_segs if (s.src, s.dport) == (srv, ports[c.name])})
        answers[c.name] = ", ".join(back) or "nothing"
    nmap = parse_nmap_xml(nmap_out)
    for port, state in nmap.items():
        # nmap says "unfiltered" only when a RST from the port came back: the capture shows it.
        rst_back = any(
            (s.src, s.sport, s.dport) == (srv, port, nmap_port) and "R" in s.flags for s in outside_segs
        )
        assert (state == "unfiltered") == rst_back, (
            f"{kind}: nmap says port {port} is {state}, the capture shows RST back: {rst_back} ({folder})"
        )
    return verdicts, answers, nmap


def test_crafted_packets_stateful_vs_stateless(lab, fw, servers, case):
    """Crafted packets from outside (hping3, nmap): a stateless filter passes what looks like a reply"""
    scanner, srv = lab.ip("scanner"), lab.ip("srv")
    table: dict[str, dict[str, str]] = {c.name: {} for c in CRAFTED}
    answers: dict[str, dict[str, str]] = {c.name: {} for c in CRAFTED}
    nmap_rows: dict[str, dict[str, str]] = {}
    for kind in FILTERS:
        load_filter(fw, case, kind)
        verdicts, back, nmap = crafted_verdicts(lab, case, kind, scanner, srv, case.path / kind)
        for name, verdict in verdicts.items():
            table[name][kind] = verdict
            answers[name][kind] = back[name]
        for port, state in nmap.items():
            nmap_rows.setdefault(f"nmap ACK scan, port {port}", {})[kind] = state
    assert_crafted_verdicts(table, CRAFTED, nmap_rows)
    case.figure("crafted packet -> passed or dropped (captures on both sides)", table)
    case.figure("what came back to the scanner (TCP flags)", answers)
    case.figure("nmap's verdict", nmap_rows)
    plot = case.plot_path("crafted", "crafted packets from outside against each filter, from the captures")
    title = f"crafted packets to srv:{UNPUBLISHED} (not published): passed or dropped"
    verdict_matrix_figure(table, FILTERS, plot, title)
