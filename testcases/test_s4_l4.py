"""S4, L4 balancers in the kernel (SCENARIOS.md): distribution, the NAT-mode return path
and its fixes, health checks.

Clients c1-c3 address the VIP 10.0.1.100 on lb1, a Linux balancer (nftables DNAT, or MAC
forwarding for direct server return) in front of four real HTTP servers r1-r4, whose
default route goes through gw, not through the balancer. Every request is a new TCP
session from the case's port block. Which server answered comes from the servers' own
logs, cross-checked with the answer the client got and with the balancer's session table
(conntrack's reply direction names the real server).
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from lab.capture import Capture
from lab.config import HealthCheck, L4Balancer, RealServer
from lab.plot import distribution_figure
from lab.traffic import HttpLoad, finish_http, http_log, run_http, start_http
from testcases import s4_common as s4
from testcases.s4_common import BY_ADDRESS, CLIENTS, LB1_SERVER_SIDE, RETURN_PATHS, SERVERS, VIP

LAB_TOPOLOGY = "s4"
PER_CLIENT = 100  # new sessions from each of the three clients, 4 at a time
WEIGHTS = {"r1": 3, "r2": 2, "r3": 1, "r4": 1}


def balancer(algorithm: str = "round-robin", **changes: Any) -> L4Balancer:
    weighted = algorithm == "weighted"
    servers = tuple(RealServer(a, 80, WEIGHTS[n] if weighted else 1) for n, a in SERVERS.items())
    return replace(L4Balancer(VIP, 80, servers, algorithm), **changes)


def table_counts(lab: Any) -> Counter[str]:
    """Sessions to the VIP per real server, as the balancer's conntrack table holds them."""
    sessions = lab.node("lb1").sessions()
    return Counter(BY_ADDRESS[s.reply_src] for s in sessions if s.dst == VIP and s.reply_src in BY_ADDRESS)


@pytest.mark.parametrize("algorithm", ["round-robin", "weighted", "source-hash"])
def test_distribution(lab, case, algorithm):
    """Kernel L4 balancer: how an algorithm spreads 300 new sessions from 3 clients over 4 servers"""
    servers = s4.start_servers(lab, return_path="route back")
    lab.node("lb1").apply(balancer(algorithm))
    records = run_http(lab, s4.spread_loads(case, PER_CLIENT))
    case.note_load(*records.values())
    table = lab.node("lb1").sessions()
    (case.path / "lb1-sessions.json").write_text(json.dumps([s.to_dict() for s in table], indent=1))
    case.keep(case.path / "lb1-sessions.json", "lb1's conntrack table after the requests")
    counts, totals = s4.spread(records, servers)
    assert sum(totals.values()) == PER_CLIENT * len(CLIENTS), f"the servers logged {totals}"
    kernel = table_counts(lab)
    assert dict(kernel) == {n: t for n, t in totals.items() if t}, (
        f"lb1's session table {dict(kernel)} disagrees with the servers' logs {totals}"
    )
    case.figure("requests per server (servers' logs)", totals)
    case.figure("requests per server and client", counts)
    case.figure("sessions per server in lb1's table", dict(kernel))
    total = sum(totals.values())
    if algorithm == "round-robin":
        # numgen inc: one counter for every client, so the servers take turns exactly.
        assert max(totals.values()) - min(totals.values()) <= 1, totals
    elif algorithm == "weighted":
        weight_sum = sum(WEIGHTS.values())
        for name, count in totals.items():
            ideal = total * WEIGHTS[name] / weight_sum
            assert abs(count - ideal) <= WEIGHTS[name], f"{name}: {count} requests, weight share {ideal:.1f}"
        case.figure("weights", WEIGHTS)
    else:
        for client, per in counts.items():
            used = [n for n, k in per.items() if k]
            assert len(used) == 1, f"{client}'s requests went to {per}: source hash must keep one server"
        case.figure(
            "server per client", {c: next(n for n, k in per.items() if k) for c, per in counts.items()}
        )
    distribution_figure(
        counts,
        list(SERVERS),
        case.plot_path("distribution", f"{algorithm}: requests per server"),
        f"kernel balancer, {algorithm}: {total} new sessions",
    )


def capture_points(lab: Any, case: Any) -> dict[str, Capture]:
    """Where the return path shows: c1's link, lb1's server side, gw's server side."""
    return {
        "c1": Capture(lab, "c1", "c1-eth0", case.path, "c1"),
        "lb1-s": Capture(lab, "lb1", "lb1-s", case.path, "lb1-s"),
        "gw-s": Capture(lab, "gw", "gw-s", case.path, "gw-s"),
    }


@pytest.mark.parametrize("mode", RETURN_PATHS)
def test_return_path(lab, case, mode):
    """NAT-mode return path: servers that answer around the balancer, and three fixes"""
    servers = s4.start_servers(lab, return_path=mode)
    changes = {"source NAT": {"snat": True}, "direct server return": {"mode": "dsr"}}.get(mode, {})
    lab.node("lb1").apply(balancer(**changes))
    count = 8
    load = HttpLoad(VIP, count, case.take_ports(count).start, concurrency=4, timeout=1.0)
    captures = capture_points(lab, case)
    for c in captures.values():
        c.__enter__()
    try:
        records = case.note_load(run_http(lab, {"c1": load})["c1"])
    finally:
        for c in captures.values():
            c.stop()
    for name, c in captures.items():
        case.keep(c.path, f"capture on {name}")
    segments = {name: c.segments() for name, c in captures.items()}
    client = CLIENTS["c1"]
    synacks = [s for s in segments["c1"] if s.flags == "SA" and s.dst == client]
    answer_sources = sorted({s.src for s in synacks})
    resets = [s for s in segments["c1"] if "R" in s.flags and s.src == client]
    from_servers_at_lb = [s for s in segments["lb1-s"] if s.src in BY_ADDRESS and s.sport == 80]
    from_servers_at_gw = [s for s in segments["gw-s"] if s.src in (*BY_ADDRESS, VIP) and s.sport == 80]
    peers = sorted({r["peer"] for proc in servers.values() for r in http_log(proc)})
    delivered = sum(1 for r in records if r["ok"])
    case.figure("requests delivered", f"{delivered} of {count}")
    case.figure("c1 got SYN-ACKs from", answer_sources)
    case.figure("client address the servers saw", peers)
    case.figure(
        "server replies crossed",
        {"lb1 (server side)": len(from_servers_at_lb), "gw (server side)": len(from_servers_at_gw)},
    )
    if mode == "bypass":
        assert delivered == 0, f"{delivered} requests worked although replies bypass the balancer"
        assert answer_sources and set(answer_sources) <= set(BY_ADDRESS), (
            f"c1 should get SYN-ACKs from the real servers' own addresses, got {answer_sources}"
        )
        assert resets, "c1 should reset the SYN-ACKs it never asked for (from a real server's address)"
        assert from_servers_at_gw and not from_servers_at_lb, "the replies should go through gw only"
        unreplied = [s for s in lab.node("lb1").sessions() if s.dst == VIP and "UNREPLIED" in s.flags]
        assert unreplied, "lb1 should hold the sessions as unreplied: it never saw an answer"
        case.figure("sessions lb1 holds unreplied", len(unreplied))
        case.figure("RSTs c1 sent to the servers' addresses", len(resets))
        return
    failed = [r for r in records if not r["ok"]]
    assert not failed, f"{len(failed)} of {count} failed: {failed[:3]}"
    assert answer_sources == [VIP], f"c1 should hear only the VIP, got {answer_sources}"
    if mode == "source NAT":
        assert peers == [LB1_SERVER_SIDE], f"the servers should see only lb1's address, saw {peers}"
    else:
        assert peers == [client], f"the servers should see the client's address, saw {peers}"
    if mode == "direct server return":
        assert not from_servers_at_lb, f"{len(from_servers_at_lb)} replies crossed lb1: DSR bypasses it"
        assert from_servers_at_gw and all(s.src == VIP for s in from_servers_at_gw), (
            "the servers' replies should leave from the VIP, through gw"
        )
        assert not lab.node("lb1").sessions(), "lb1 keeps no session in DSR (it sees one direction)"
    else:
        assert from_servers_at_lb and not from_servers_at_gw, "the replies should come back through lb1"


@pytest.mark.parametrize("kind", ["tcp", "http"])
def test_health_check_takes_a_dead_server_out_and_back(lab, case, kind):
    """Kernel L4: health checks (fall 2, rise 2, every 200 ms) take a failed server out and put it back"""
    check = HealthCheck(kind, interval_ms=200, rise=2, fall=2)
    servers = s4.start_servers(lab, return_path="route back")
    lb = lab.node("lb1")
    lb.apply(balancer())
    lb.start_health(check, case.ports[-100:])
    s4.dead_server_case(
        lab, case, check, servers, f"kernel balancer, {kind} check every 200 ms, fall 2 / rise 2"
    )


def test_health_check_drains_a_server_in_maintenance(lab, case):
    """Kernel L4: an HTTP check drains a server in maintenance: its session stays, new ones go elsewhere"""
    check = HealthCheck("http", interval_ms=200, rise=2, fall=2)
    servers = s4.start_servers(lab, return_path="route back")
    lb = lab.node("lb1")
    lb.apply(balancer())
    agent = lb.start_health(check, case.ports[-100:])
    # One long session: c2 asks every 0.2 s over one connection for 6 s.
    held = HttpLoad(VIP, 30, case.take_port(), rate=5, keepalive=True, timeout=1.0)
    holder = start_http(lab, "c2", held, "http-c2-held")
    first = lab.wait(lambda: s4.partial_records(holder)[:1], 3, "the held session's first answer")[0]
    target = first["served_by"]
    servers[target].popen.send_signal(signal.SIGUSR1)  # maintenance: /health answers 503
    down = lab.wait(
        lambda: next((e for e in lb.health_events() if e["event"] == "down"), None), 3, "taken out"
    )
    during = case.note_load(
        run_http(lab, {"c1": HttpLoad(VIP, 20, case.take_ports(20).start, concurrency=4)})["c1"]
    )
    servers[target].popen.send_signal(signal.SIGUSR1)  # back in service
    up = lab.wait(lambda: next((e for e in lb.health_events() if e["event"] == "up"), None), 3, "put back")
    after = case.note_load(
        run_http(lab, {"c1": HttpLoad(VIP, 8, case.take_ports(8).start, concurrency=1)})["c1"]
    )
    answers = case.note_load(finish_http(lab, holder, held.budget()))
    lab.stop(agent)
    held_key = f"{CLIENTS['c2']}:{held.first_port} ESTABLISHED"
    during_servers = Counter(r["served_by"] for r in during if r["ok"])
    held_while_out = [r["served_by"] for r in answers if down["t"] < r["wall_start"] < up["t"]]
    case.figure("server in maintenance", target)
    case.figure("sessions kept on it when taken out (lb1's table)", down["sessions_kept"])
    case.figure("check's reason", down["reason"])
    case.figure("new sessions while it was out, per server", dict(during_servers))
    case.figure("answers on the held session while it was out", Counter(held_while_out))
    case.figure(
        "new sessions after it was put back, per server", dict(Counter(r["served_by"] for r in after))
    )
    assert down["server"] == f"{SERVERS[target]}:80" and down["reason"] == "HTTP 503", down
    assert held_key in down["sessions_kept"], f"the held session {held_key} is not reported: {down}"
    assert all(r["ok"] for r in during) and target not in during_servers, (
        f"new sessions while {target} was out: {dict(during_servers)}"
    )
    assert held_while_out and set(held_while_out) == {target}, (
        f"the held session should stay on {target} while it is out: {held_while_out}"
    )
    assert all(r["ok"] for r in answers), [r for r in answers if not r["ok"]]
    assert target in {r["served_by"] for r in after}, f"{target} got no new session after it was put back"
