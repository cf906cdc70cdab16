"""S5 over IPv6 (issue 25): the stateful policy, neighbour discovery, crafted packets and
nmap's scans through fw's IPv6 (the topology's PLAN6, fd00:5:<net>::<host>).

   inside fd00:5:1::/64: srv ::10 (echo servers on 80, published, and 5001, not), c1 ::11 (5001)
   outside fd00:5:2::/64: ext ::10 (echo server on 8080), legit ::20, scanner ::77
   fw: fw-in fd00:5:1::1, fw-out fd00:5:2::1 (the hosts' IPv6 gateways)

The same policy objects as the IPv4 filters case (s5_common.INTENT: srv:80 published,
outbound allowed). The ruleset is one `table inet` and none of INTENT's rules names a
family, so each applies to IPv6 as to IPv4: (a) c1's outbound sessions work, a new inbound
session to c1 or to srv:5001 is dropped, srv:80 is reachable; (c) segments that belong to
no session are dropped by the stateful policy (drop_invalid), while the stateless filter
passes those that look like a reply; (d) nmap's scans over IPv6 conclude what they
conclude over IPv4, what the policy says. hping3 speaks IPv4 only: over IPv6 nmap sends
the crafted segments (`--scanflags`, one each); the fragmented SYN is not sent over IPv6.
Also: per_source_limit holds an IPv6 source at its limit (its own set of ipv6_addr), and
pings of both families cross each filter; the stateless filter's echo-reply rule is IPv4's
(`icmp type`): its IPv6 case is an expected failure until render_stateless has one.

(b) Neighbour discovery needs no rule. NS and NA (RFC 4861) are link-local: hop limit 255,
to a neighbour's address or its solicited-node group, never routed. fw's own NS and NA
go through the input and output hooks, which the ruleset has no chain on (accepted); the
forward chain (policy drop) never sees one; the stateless filter's notrack chain only
leaves them untracked. An input chain of policy drop would need `icmpv6 type
{ nd-neighbor-solicit, nd-neighbor-advert } accept`. The case shows NS and NA on both
links (hop limit 255), fw's neighbours resolved to the peers' MACs, no counter moved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lab import conntrack, topology
from lab.attacks import CRAFTED, NO_SESSION, crafted_nmap_argv, nmap_argv, parse_nmap_xml
from lab.capture import stop_captures
from lab.packets import TcpSegment
from lab.plot import verdict_matrix_figure
from lab.results import Case
from lab.traffic import IdleProbe, run_probes
from lab.wait import at_once
from testcases.s5_common import (
    ECHOES,
    INTENT,
    OUTBOUND,
    PUBLISHED,
    RESOLVED,
    UNPUBLISHED,
    NdPacket,
    accepted_from,
    assert_crafted_verdicts,
    attempt,
    fw_captures,
    ipv6_table,
    keep_captures,
    load_filter,
    nmap_expected,
    parse_neighbours,
    read_echo_replies,
    read_neighbour_discovery,
)

# c1 listens on 5001 too: an inbound session that got through would be accepted (its log).
LAB_TOPOLOGY, FIREWALL_POLICY, ECHO_SERVERS = "s5", INTENT, {**ECHOES, "c1": (UNPUBLISHED,)}
PLAN6, PLAN4 = topology.plan("s5", family=6), topology.plan("s5")
PLANS = {"IPv4": PLAN4, "IPv6": PLAN6}
FILTERS = ("stateful", "stateless")
# Over IPv6 nmap sends every crafted kind but the fragmented SYN (hping3's -f), and two more.
CRAFTED6 = tuple(c for c in CRAFTED if "-f" not in c.hping3) + NO_SESSION
SCANS = ("SYN scan", "ACK scan", "FIN scan", "XMAS scan", "NULL scan")
TARGETS, SCAN_PORTS = ("srv", "c1"), (PUBLISHED, UNPUBLISHED)


six = PLAN6.address  # a node's IPv6 address


def test_ipv6_sessions_through_the_stateful_policy(lab, fw, servers, case):
    """IPv6: c1's outbound sessions and srv:80 work; new inbound sessions to c1 and srv:5001 are dropped"""
    allowed = {
        f"outbound c1 -> ext:{OUTBOUND}": ("c1", "ext", OUTBOUND),
        f"inbound legit -> srv:{PUBLISHED} (published)": ("legit", "srv", PUBLISHED),
    }
    refused = {
        f"inbound ext -> c1:{UNPUBLISHED} (new, from outside)": ("ext", "c1", UNPUBLISHED),
        f"inbound legit -> srv:{UNPUBLISHED} (not published)": ("legit", "srv", UNPUBLISHED),
    }
    count, timeout = 3, 1.0
    inside, outside = fw_captures(lab, case.path)
    with inside, outside:

        def probes(item: tuple[str, str, int]) -> Callable[[], Any]:
            client, server, port = item
            wanted = [IdleProbe(port, 0.0, app_timeout=timeout, sport=p) for p in case.take_ports(count)]
            return lambda: run_probes(lab, client, six(server), wanted)

        def attempts(item: tuple[str, str, int]) -> Callable[[], Any]:
            client, server, port = item
            first = case.take_ports(count).start
            url = f"http://[{six(server)}]:{port}/"
            return lambda: at_once(
                [lambda p=p: attempt(lab, client, url, p, timeout) for p in range(first, first + count)]
            )

        jobs = [probes(i) for i in allowed.values()] + [attempts(i) for i in refused.values()]
        results = dict(zip([*allowed, *refused], at_once(jobs), strict=True))
        counters = fw.counters()
        stop_captures([inside, outside])
    keep_captures(case, inside, outside)
    table = ipv6_table(lab, case)
    worked: dict[str, str] = {}
    for label, (client, server, port) in allowed.items():
        delivered = [r for r in results[label] if r.outcome == "delivered"]
        worked[label] = f"{len(delivered)}/{count}"
        assert len(delivered) == count, f"{label}: {[r.to_dict() for r in results[label]]}"
        sports = {r.sport for r in results[label]}
        seen = accepted_from(servers, server, six(client), port)
        assert sports <= seen, f"{label}: {server}'s log lacks sessions {sorted(sports - seen)}"
        tracked = {s.sport for s in table if (s.src, s.dst, s.dport) == (six(client), six(server), port)}
        assert sports <= tracked, f"{label}: fw's IPv6 table lacks {sorted(sports - tracked)} ({case.path})"
    syns_dropped = 0
    for label, (client, server, port) in refused.items():
        reports = results[label]
        worked[label] = f"{sum(r['exitcode'] == 0 for r in reports)}/{count}"
        assert all((r["exitcode"], r["time_connect"]) == (28, 0) for r in reports), f"{label}: {reports}"
        sports = {r["sport"] for r in reports}
        arrived = [
            s for s in outside.segments() if s.sport in sports and s.flags == "S" and s.src == six(client)
        ]
        crossed = [s for s in inside.segments() if s.sport in sports or s.dport in sports]
        assert {s.sport for s in arrived} == sports and not crossed, (
            f"{label}: SYNs of {len(sports)} attempts: {len(arrived)} reached fw-out, "
            f"{len(crossed)} segments crossed to fw-in ({case.path})"
        )
        assert not accepted_from(servers, server, six(client), port), f"{label}: {server} accepted one"
        assert not [s for s in table if s.sport in sports], f"{label}: fw tracks a refused session"
        syns_dropped += len(arrived)
    assert counters.get("drop_denied") == syns_dropped and counters["drop_invalid"] == 0, (
        f"fw's counters {counters}; the refused attempts' SYNs at fw-out: {syns_dropped}"
    )
    case.figure("IPv6 sessions that worked (stateful policy)", worked)
    case.figure("refused IPv6 SYNs: seen at fw-out / crossed to fw-in / drop_denied",
                f"{syns_dropped} / 0 / {counters['drop_denied']}")  # fmt: skip


def test_ipv6_neighbour_discovery_across_the_firewall(lab, fw, servers, case):
    """IPv6: neighbour discovery works on both of fw's links with no rule for it; nothing counted"""
    # On each link the host that opens a session, and the one that answers a session.
    links = {"fw-in": ("c1", "srv"), "fw-out": ("legit", "ext")}
    hosts = [h for pair in links.values() for h in pair]
    # Forget every neighbour first, so the sessions below must discover them again.
    for intf in links:
        lab.run("fw", ["ip", "-6", "neigh", "flush", "dev", intf])
    for host in hosts:
        lab.run(host, ["ip", "-6", "neigh", "flush", "all"])
    inside, outside = fw_captures(lab, case.path, bpf="icmp6 or tcp")
    with inside, outside:
        sessions = {("c1", "ext", OUTBOUND): case.take_port(), ("legit", "srv", PUBLISHED): case.take_port()}
        results = at_once([
            lambda c=c, s=s, p=p, o=o: run_probes(lab, c, six(s), [IdleProbe(p, 0.0, 1.0, sport=o)])
            for (c, s, p), o in sessions.items()
        ])  # fmt: skip
        stop_captures([inside, outside])
    counters = fw.counters()
    assert [r[0].outcome for r in results] == ["delivered", "delivered"], [r[0].to_dict() for r in results]
    macs = {
        **{h: lab.run(h, ["cat", f"/sys/class/net/{h}-eth0/address"]).strip() for h in hosts},
        **{i: lab.run("fw", ["cat", f"/sys/class/net/{i}/address"]).strip() for i in links},
    }
    tables = {}
    for node in ["fw", *hosts]:
        text = lab.run(node, ["ip", "-j", "-6", "neigh", "show"], merge=False)
        (case.path / f"neigh-{node}.json").write_text(text)
        case.keep(case.path / f"neigh-{node}.json", f"{node}'s IPv6 neighbour table after the sessions")
        tables[node] = {n.address: n for n in parse_neighbours(text)}
    states: dict[str, str] = {}
    for intf, (opener, answerer) in links.items():
        capture = inside if intf == "fw-in" else outside
        case.keep(capture.path, f"capture at {intf} (ND and TCP)")
        nd = read_neighbour_discovery(capture.path)
        gateway = six(intf)

        def seen(kind: str, target: str, sender: str, nd: list[NdPacket] = nd) -> list[NdPacket]:
            return [p for p in nd if (p.kind, p.target, p.eth_src) == (kind, target, macs[sender])]

        evidence = f"{intf}: ND {[(p.kind, p.src, p.target) for p in nd]} ({capture.path})"
        # The opener asked for its gateway and fw answered as a router; fw asked for the
        # answerer (a session to forward to it) and it answered.
        assert seen("NS", gateway, opener) and seen("NA", gateway, intf), evidence
        assert all(p.router for p in seen("NA", gateway, intf)), evidence
        assert seen("NS", six(answerer), intf) and seen("NA", six(answerer), answerer), evidence
        # Link-local only: every packet sent on this link, none about the other link's addresses.
        assert all(p.hop_limit == 255 for p in nd), f"hop limit < 255: {evidence}"
        link = {six(opener), six(answerer), gateway}
        assert all(p.target in link or p.target.startswith("fe80:") for p in nd), f"forwarded? {evidence}"
        for host in (opener, answerer):
            entry = tables["fw"].get(six(host))
            assert entry is not None and (entry.dev, entry.mac) == (intf, macs[host]), f"fw: {host}: {entry}"
            assert entry.state in RESOLVED, f"fw's entry for {host}: {entry}"
            states[f"fw: {host} ({six(host)}) on {intf}"] = entry.state
            gw = tables[host].get(gateway)
            assert gw is not None and gw.mac == macs[intf] and gw.state in RESOLVED, (
                f"{host}: {gateway}: {gw}"
            )
            states[f"{host}: gateway {gateway}"] = gw.state + (", router" if gw.router else "")
        assert tables[opener][gateway].router, f"{opener}'s gateway entry lacks the router flag"
        case.figure(
            f"ND packets at {intf} (NS / NA)",
            f"{sum(p.kind == 'NS' for p in nd)} / {sum(p.kind == 'NA' for p in nd)}",
        )
    assert not any(counters.values()), f"fw counted drops: {counters}"
    case.figure("IPv6 neighbour states after the sessions (ip -6 neigh)", states)
    case.figure("fw's counters during discovery", counters)


def crafted_run(lab, fw, case: Case, kind: str) -> dict[str, Any]:
    """Each kind of CRAFTED6 sent once from the scanner to srv:UNPUBLISHED (an nmap of its
    own), and nmap's ACK scan of srv's two ports, all at once, captured on both sides."""
    folder = case.path / kind
    srv = six("srv")
    ports = {c.name: case.take_port() for c in CRAFTED6}
    ack_port = case.take_port()
    argv = {c.name: crafted_nmap_argv(c, srv, UNPUBLISHED, ports[c.name]) for c in CRAFTED6}
    argv["nmap ACK scan"] = nmap_argv("ACK scan", srv, f"{PUBLISHED},{UNPUBLISHED}", ack_port)
    inside, outside = fw_captures(lab, folder)
    with inside, outside:
        outs = at_once([lambda a=a: lab.run("scanner", a, timeout=60, merge=False) for a in argv.values()])
        counters = fw.counters()
        stop_captures([inside, outside])
    keep_captures(case, inside, outside, f", {kind}")
    reports = dict(zip(argv, outs, strict=True))
    (folder / "nmap-ack.xml").write_text(reports["nmap ACK scan"])
    case.keep(folder / "nmap-ack.xml", f"nmap ACK scan report, {kind}")
    nmap = parse_nmap_xml(reports["nmap ACK scan"])
    return dict(ports=ports, ack_port=ack_port, inside=inside.segments(), outside=outside.segments(),
                counters=counters, nmap=nmap, folder=folder)  # fmt: skip


def test_ipv6_crafted_packets_stateful_vs_stateless(lab, fw, servers, case):
    """IPv6: segments of no session dropped by the stateful policy; a stateless filter passes reply-like"""
    scanner, srv = six("scanner"), six("srv")
    table: dict[str, dict[str, str]] = {c.name: {} for c in CRAFTED6}
    nmap_rows: dict[str, dict[str, str]] = {}
    counted: dict[str, dict[str, int]] = {}
    for kind in FILTERS:
        load_filter(fw, case, kind)
        run = crafted_run(lab, fw, case, kind)
        evidence = f"({kind}: captures {run['folder']})"
        probes = 0
        by_verdict = {"passed": 0, "dropped": 0}  # crafted segments that reached fw-out, by verdict
        for c in CRAFTED6:

            def mine(s: TcpSegment, c=c, port=run["ports"][c.name]) -> bool:
                return (s.src, s.sport, s.flags) == (scanner, port, c.flags)

            arrived = [s for s in run["outside"] if mine(s)]
            crossed = [s for s in run["inside"] if mine(s)]
            assert arrived and all(s.payload_len == c.data for s in arrived), (
                f"{c.name}: {len(arrived)} reached fw-out {evidence}"
            )
            probes += len(arrived)
            table[c.name][kind] = "passed" if crossed else "dropped"
            by_verdict[table[c.name][kind]] += len(arrived)
        ack_probes = [
            s for s in run["outside"] if (s.src, s.sport, s.flags) == (scanner, run["ack_port"], "A")
        ]
        probes += len(ack_probes)
        for port, state in run["nmap"].items():
            rst_back = any(
                (s.src, s.sport, s.dport) == (srv, port, run["ack_port"]) and "R" in s.flags
                for s in run["outside"]
            )
            assert (state == "unfiltered") == rst_back, (
                f"{kind}: nmap says {port} is {state}, RST back: {rst_back}"
            )
            nmap_rows.setdefault(f"nmap -6 ACK scan, port {port}", {})[kind] = state
        counters = run["counters"]
        if kind == "stateful":
            # No session: conntrack (tcp_loose off) picks none up as new, so every one is
            # invalid before the new-but-not-SYN rule could see it.
            split = (counters["drop_invalid"], counters["drop_new_not_syn"], counters["drop_denied"])
            assert split == (probes, 0, 0), (
                f"{kind}: {probes} probes reached fw-out, counters {counters} {evidence}"
            )
            counted[kind] = {k: counters[k] for k in ("drop_invalid", "drop_new_not_syn", "drop_denied")}
        else:
            # The ACK scan's probe to 5001 is reply-like too; its probe to 80 passes as a new
            # session to the published port.
            passed = by_verdict["passed"] + sum(s.dport >= 1024 for s in ack_probes)
            assert (counters["passed_as_reply"], counters["drop_denied"]) == (
                passed,
                by_verdict["dropped"],
            ), f"{kind}: counters {counters} {evidence}"
            assert counters["passed_as_reply"] == passed, f"{kind}: counters {counters} {evidence}"
            counted[kind] = {k: counters[k] for k in ("passed_as_reply", "drop_denied")}
    assert_crafted_verdicts(table, CRAFTED6, nmap_rows)
    case.figure("IPv6 crafted segment -> passed or dropped (captures on both sides)", table)
    case.figure("fw's counters (the crafted segments and the ACK scan)", counted)
    case.figure("nmap -6's verdict", nmap_rows)
    plot = case.plot_path(
        "crafted-ipv6", "crafted IPv6 segments from outside against each filter, from the captures"
    )
    verdict_matrix_figure(
        table, FILTERS, plot, f"crafted IPv6 segments to srv:{UNPUBLISHED}: passed or dropped"
    )


def test_ipv6_nmap_scans_match_the_policy(lab, fw, servers, case):
    """nmap's SYN, ACK, FIN, XMAS and NULL scans of srv and c1: the same states over IPv6 as over IPv4"""
    scans = {(family, scan, node): case.take_port() for family in PLANS for scan in SCANS for node in TARGETS}
    ports = ",".join(map(str, SCAN_PORTS))
    inside, outside = fw_captures(lab, case.path)
    with inside, outside:
        argvs = [nmap_argv(s, PLANS[f].address(n), ports, p) for (f, s, n), p in scans.items()]
        outs = at_once([lambda a=a: lab.run("scanner", a, timeout=60, merge=False) for a in argvs])
        counters = fw.counters()
        stop_captures([inside, outside])
    keep_captures(case, inside, outside)
    (case.path / "nmap").mkdir(exist_ok=True)
    states: dict[str, dict[str, str]] = {}
    denied = invalid = 0
    for ((family, scan, node), port_from), out in zip(scans.items(), outs, strict=True):
        path = case.path / "nmap" / f"{family}-{scan.split()[0]}-{node}.xml"
        path.write_text(out)
        case.keep(path, f"nmap {scan} of {node} over {family}")
        found = parse_nmap_xml(out)
        target = PLANS[family].address(node)
        for port in SCAN_PORTS:
            want = nmap_expected(scan, node, port, echoes=ECHO_SERVERS)
            states.setdefault(f"{scan}, {node}:{port}", {})[family] = found.get(port, "missing")
            sent = [s for s in outside.segments() if (s.sport, s.dst, s.dport) == (port_from, target, port)]
            crossed = [s for s in inside.segments() if (s.sport, s.dst, s.dport) == (port_from, target, port)]
            back = {
                s.flags for s in outside.segments() if (s.src, s.sport, s.dport) == (target, port, port_from)
            }
            evidence = f"{family} {scan} {node}:{port}: sent {len(sent)}, crossed {len(crossed)}, back {back}"
            assert sent and found.get(port) == want, f"{evidence}; nmap says {found.get(port)}, policy {want}"
            # The captures agree: an answer came back exactly when nmap says open or closed.
            assert back == {"open": {"SA"}, "closed": {"RA"}}.get(want, set()), evidence
            assert bool(crossed) == (want in ("open", "closed")), evidence
            if scan == "SYN scan" and not crossed:
                denied += len(sent)
            elif scan != "SYN scan":
                invalid += len(sent)
    split = (counters["drop_denied"], counters["drop_invalid"], counters["drop_new_not_syn"])
    assert split == (denied, invalid, 0), (
        f"fw's counters {counters}; probes dropped by the captures: SYNs {denied}, others {invalid}"
    )
    same = all(v["IPv4"] == v["IPv6"] for v in states.values())
    assert same, f"nmap's states differ between the families: {states}"
    case.figure("nmap's port states, IPv4 and IPv6 (each as the policy says)", states)
    case.figure("fw's drops of the probes (both families): drop_denied / drop_invalid",
                f"{denied} / {invalid}")  # fmt: skip


@pytest.mark.parametrize("kind", ["stateful", "stateless"])
def test_ping_both_families_through_each_filter(lab, fw, case, kind):
    """c1 pings ext over IPv4 and IPv6 at once: the echo replies cross the filter in both families"""
    load_filter(fw, case, kind)
    count, lost = 3, 0
    inside, outside = fw_captures(lab, case.path, bpf="icmp or icmp6")
    with inside, outside:
        argv = {f: ["ping", f"-{f[-1]}", "-n", "-c", str(count), "-i", "0.2", "-W", "1", p.address("ext")]
                for f, p in PLANS.items()}  # fmt: skip
        outs = at_once([lambda a=a: lab.run("c1", a, check=False) for a in argv.values()])
        counters = fw.counters()
        stop_captures([inside, outside])
    keep_captures(case, inside, outside)
    got, replies = {}, {}
    for (family, plan), out in zip(PLANS.items(), outs, strict=True):
        pair = (plan.address("ext"), plan.address("c1"))
        at_out = sum(r == pair for r in read_echo_replies(outside.path))
        at_in = sum(r == pair for r in read_echo_replies(inside.path))
        received = out.count(f"from {plan.address('ext')}")
        got[family] = received
        replies[family] = f"{at_out} at fw-out, {at_in} at fw-in, {received} reached ping"
        assert (at_out, at_in) == (count, received), f"{kind}, {family}: {replies[family]} ({case.path})"
        lost += at_out - at_in
    case.figure(f"echo replies, {kind}", replies)
    case.figure(f"fw's counters, {kind}", counters)
    assert counters["drop_denied"] == lost, f"{kind}: {lost} replies lost, counters {counters}"
    assert got == {"IPv4": count, "IPv6": count}, f"{kind}: replies per family {replies}; counters {counters}"


LIMIT = 3  # sessions one source may hold open (per_source_limit)


def test_ipv6_source_limited_at_its_per_source_limit(lab, fw, servers, case):
    """IPv6: legit holds per_source_limit sessions to srv:80; its next are dropped, another source's is not"""
    case.keep(fw.apply_policy(INTENT.with_changes(per_source_limit=LIMIT)), "ruleset, per-source limit")
    srv, legit = six("srv"), six("legit")
    # Held idle 4 s: the extra attempts (found open in about 0.3 s, 1 s each) end well inside.
    held = [IdleProbe(PUBLISHED, 4.0, 1.0, sport=p) for p in case.take_ports(LIMIT)]
    extra, other = case.take_ports(2), case.take_port()

    def open_from(source: str, table: list[conntrack.Session]) -> int:
        return sum(s.src == source and s.state == "ESTABLISHED" for s in table)

    def beyond() -> list[dict[str, Any]]:
        # Once legit's sessions are all open: two more from legit, one from the scanner.
        lab.wait(lambda: open_from(legit, ipv6_table(lab)) == LIMIT, 5, f"{LIMIT} IPv6 sessions from legit")
        assert open_from(legit, ipv6_table(lab, case, "when legit tried more")) == LIMIT
        url = f"http://[{srv}]:{PUBLISHED}/"
        attempts = [("legit", p) for p in extra] + [("scanner", other)]
        return at_once([
            lambda n=n, p=p: {**attempt(lab, n, url, p, 1.0), "node": n}
            for n, p in attempts
        ])  # fmt: skip

    inside, outside = fw_captures(lab, case.path)
    with inside, outside:
        kept, tried = at_once([lambda: run_probes(lab, "legit", srv, held), beyond])
        counters = fw.counters()
        stop_captures([inside, outside])
    keep_captures(case, inside, outside)
    assert [r.outcome for r in kept] == ["delivered"] * LIMIT, [r.to_dict() for r in kept]
    # curl talks HTTP to an echo server: connected, then its reply is not HTTP (exit 8).
    outcome = {f"{r['node']}:{r['sport']}": "connected" if r["time_connect"] > 0 else f"exit {r['exitcode']}"
               for r in tried}  # fmt: skip
    expected = {f"legit:{p}": "exit 28" for p in extra} | {f"scanner:{other}": "connected"}
    assert outcome == expected, f"beyond the limit: {outcome} ({tried})"
    syns = [s for s in outside.segments() if s.sport in extra and s.flags == "S"]
    crossed = [s for s in inside.segments() if s.sport in extra]
    assert syns and not crossed and counters["drop_per_source"] == len(syns), (
        f"legit's extra SYNs: {len(syns)} at fw-out, {len(crossed)} segments at fw-in; counters {counters}"
    )
    case.figure("IPv6 sessions beyond legit's limit", outcome)
    case.figure(f"legit's open IPv6 sessions in fw's table when it tried more (limit {LIMIT})", LIMIT)
    case.figure(
        "drop_per_source / legit's extra SYNs at fw-out", f"{counters['drop_per_source']} / {len(syns)}"
    )
