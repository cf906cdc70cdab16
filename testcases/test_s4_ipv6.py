"""S4 over IPv6 (issue 25, point 2): the kernel L4 balancer, haproxy and nginx with the
IPv6 VIP fd00:4:1::100 on lb1, in S4's dual-stack lab (topologies/s4_balancers.py's PLAN6).

Clients c1-c3 (fd00:4:1::11-13) speak HTTP over IPv6 to [VIP]:80; the real servers r1-r4
(fd00:4:2::11-14) answer on both families. Which server answered comes from the servers'
own logs, cross-checked with the client's answer (X-Served-By) and with captures on lb1's
server side (each session's SYN names its server); what the server learned of the client
(its peer, X-Forwarded-For) from the same logs and, for the header, from the bytes on the
wire. The return path cases mirror test_s4_l4.py's over IPv6; the health checks run over
IPv6 (the servers log them); what cannot work (an IPv6 VIP before IPv4 servers in the
kernel's NAT) is refused in one line, and a proxy does that mix for real.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from lab.capture import Capture, stop_captures
from lab.config import Adc, HealthCheck, L4Balancer, Pool, RealServer
from lab.devices.adc import save_config
from lab.errors import ConfigError
from lab.traffic import HttpLoad, http_log, run_http, start_http_server
from testcases import s4_common as s4
from testcases.s4_common import (
    BY_ADDRESS6,
    CLIENTS,
    CLIENTS6,
    LB1_SERVER_SIDE,
    LB1_SERVER_SIDE6,
    SERVERS,
    SERVERS6,
    VIP6,
)

LAB_TOPOLOGY = "s4"
KERNEL = "kernel L4 (nftables)"
BALANCERS = (KERNEL, "haproxy", "nginx")
PER_CLIENT = 20  # new sessions from each of the three clients, 4 at a time
# The header line as a proxy writes it (haproxy lower-cases header names, nginx does not).
XFF = re.compile(rb"\r\n(X-Forwarded-For): ([^\r]*)\r\n", re.IGNORECASE)


def l4(**changes: Any) -> L4Balancer:
    """lb1's kernel balancer on the IPv6 VIP, round robin over r1-r4's IPv6 addresses."""
    servers = tuple(RealServer(a, 80) for a in SERVERS6.values())
    return L4Balancer(VIP6, 80, servers, **changes)


def adc(port: int = 80, **options: Any) -> Adc:
    """An ADC on the IPv6 VIP with one pool, r1-r4 by IPv6 address."""
    return Adc(VIP6, port, (Pool("web", tuple(RealServer(a, 80) for a in SERVERS6.values()), **options),))


def start_adc(lab: Any, case: Any, config: Adc, daemon: str, ports: range) -> Any:
    running = lab.node("lb1").start_adc(config, daemon, ports)
    case.keep(save_config(running, case.path), f"{daemon} configuration")
    return running


def captures(lab: Any, case: Any, points: dict[str, tuple[str, str]], snaplen: int = 256) -> list[Capture]:
    """Captures started at once: name -> (node, interface)."""
    started = [Capture(lab, n, i, case.path, name, snaplen=snaplen) for name, (n, i) in points.items()]
    for c in started:
        c.__enter__()
    return started


def logged(servers: dict[str, Any]) -> list[dict[str, Any]]:
    """Every request the servers logged but health checks, with the server's name."""
    return [{**r, "server": n} for n, p in servers.items() for r in http_log(p) if r["path"] != "/health"]


def syns_to_servers(capture: Capture) -> set[tuple[str, int, str]]:
    """(source, source port, server) of every session's SYN to a server on lb1's server side
    (a proxy may use one source port towards several servers: the server is in the key)."""
    return {
        (s.src, s.sport, BY_ADDRESS6[s.dst])
        for s in capture.segments()
        if s.flags == "S" and s.dst in BY_ADDRESS6 and s.dport == 80
    }


@pytest.mark.parametrize("kind", BALANCERS)
def test_ipv6_clients_spread_over_the_servers(lab, case, kind):
    """S4 over IPv6: 60 new sessions from 3 IPv6 clients to [VIP]:80, spread over 4 servers"""
    servers = s4.start_servers(lab)
    s4.set_return_path6(lab, "route back")  # the kernel's NAT: replies through lb1 (a proxy needs none)
    running = None
    if kind != KERNEL:
        running = start_adc(lab, case, adc(), kind, case.ports[len(case.ports) // 2 :])
    else:
        lab.node("lb1").apply(l4())
    points = {"lb1-c": ("lb1", "lb1-c"), "lb1-s": ("lb1", "lb1-s")}
    taken = captures(lab, case, points, snaplen=512)  # 512: a proxied request's headers whole
    try:
        records = run_http(lab, s4.spread_loads(case, PER_CLIENT, VIP6))
    finally:
        stop_captures(taken)
    case.note_load(*records.values())
    outside, inside = taken
    for c in taken:
        case.keep(c.path, f"capture on {c.name}")
    rows = logged(servers)
    failed = [f"{c}:{r['sport']} {r.get('error')}" for c, got in records.items() for r in got if not r["ok"]]
    assert not failed, f"requests failed: {failed}"
    total = PER_CLIENT * len(CLIENTS6)
    totals = {n: sum(1 for r in rows if r["server"] == n) for n in SERVERS6}
    answers = Counter(r["served_by"] for got in records.values() for r in got)
    peers = sorted({r["peer"] for r in rows})
    syns = syns_to_servers(inside)
    at_client_side = sorted({s.dst for s in outside.segments() if s.flags == "S"})
    case.figure("requests per server (servers' logs)", totals)
    case.figure("client address the servers saw", peers)
    case.figure("sessions opened to each server (SYNs on lb1-s)", dict(Counter(n for _, _, n in syns)))
    assert sum(totals.values()) == total, f"the servers logged {totals}, not {total} requests"
    assert dict(answers) == {n: k for n, k in totals.items() if k}, (
        f"the clients' answers {dict(answers)} disagree with the servers' logs {totals}"
    )
    assert at_client_side == [VIP6], f"the clients should open sessions to [{VIP6}] only: {at_client_side}"
    # Every session a server logged is one whose SYN crossed lb1's server side to it.
    by_log = {(r["peer"], r["peer_port"], r["server"]) for r in rows}
    assert by_log == syns, f"servers' logs and lb1-s's SYNs disagree: {sorted(by_log ^ syns)[:6]}"
    if kind == KERNEL:
        # NAT with the replies routed back: each server sees the client's own address and port.
        mine = {(CLIENTS6[c], r["sport"], r["served_by"]) for c, got in records.items() for r in got}
        assert by_log == mine, "a request logged by another server than the one that answered it"
        assert peers == sorted(CLIENTS6.values()), f"the servers should see the clients, saw {peers}"
        table = Counter(
            BY_ADDRESS6[s.reply_src]
            for s in lab.node("lb1").sessions()
            if s.dst == VIP6 and s.reply_src in BY_ADDRESS6
        )
        case.figure("sessions per server in lb1's table (conntrack)", dict(table))
        assert dict(table) == {n: k for n, k in totals.items() if k}, f"lb1's table {dict(table)} vs {totals}"
    else:
        # A full proxy: the servers see lb1's server side; the client is in X-Forwarded-For,
        # its IPv6 address as written (no brackets, no port).
        xff = Counter(r["xff"] for r in rows)
        lines = [m for seg in inside.segments() if seg.dport == 80 for m in XFF.findall(seg.payload)]
        on_wire = Counter(value.decode() for _, value in lines)
        names = sorted({name.decode() for name, _ in lines})
        case.figure("X-Forwarded-For header name on the wire", names)
        case.figure("X-Forwarded-For the servers logged", dict(xff))
        case.figure("X-Forwarded-For on the wire (lb1-s)", dict(on_wire))
        assert peers == [LB1_SERVER_SIDE6], (
            f"a proxy: the servers should see lb1's {LB1_SERVER_SIDE6}: {peers}"
        )
        assert dict(xff) == {a: PER_CLIENT for a in CLIENTS6.values()}, f"X-Forwarded-For per client: {xff}"
        assert names == [{"haproxy": "x-forwarded-for", "nginx": "X-Forwarded-For"}[kind]], names
        assert on_wire == xff, (
            f"the header on the wire {dict(on_wire)} is not what the servers logged {dict(xff)}"
        )
    if kind == "haproxy":
        assert running is not None
        stats = {key.split("/")[1]: v["sessions"] for key, v in running.servers().items()}
        by_name = {f"web{i}": n for i, n in enumerate(SERVERS6, start=1)}
        case.figure("sessions per server (haproxy's stats)", {by_name[k]: v for k, v in stats.items()})
        assert {by_name[k]: v for k, v in stats.items()} == totals, (
            f"haproxy's stats {stats} vs logs {totals}"
        )
    if kind == "nginx":
        # nginx's round robin with kept-open upstream connections is not strict (as over IPv4).
        assert all(totals.values()), f"every server should get requests: {totals}"
    else:
        assert max(totals.values()) - min(totals.values()) <= 1, f"{kind} is not round robin: {totals}"


@pytest.mark.parametrize("mode", s4.RETURN_PATHS)
def test_ipv6_return_path(lab, case, mode):
    """S4 over IPv6, the kernel balancer's return path: servers that answer around it, and three fixes"""
    servers = s4.start_servers(lab)
    s4.set_return_path6(lab, mode)
    changes = {"source NAT": {"snat": True}, "direct server return": {"mode": "dsr"}}.get(mode, {})
    lab.node("lb1").apply(l4(**changes))
    count = 8
    load = HttpLoad(VIP6, count, case.take_ports(count).start, concurrency=4, timeout=1.0)
    points = {"c1": ("c1", "c1-eth0"), "lb1-s": ("lb1", "lb1-s"), "gw-s": ("gw", "gw-s")}
    taken = captures(lab, case, points)
    try:
        records = case.note_load(run_http(lab, {"c1": load})["c1"])
    finally:
        stop_captures(taken)
    for c in taken:
        case.keep(c.path, f"capture on {c.name}")
    segments = {c.name: c.segments() for c in taken}
    client = CLIENTS6["c1"]
    synacks = sorted({s.src for s in segments["c1"] if s.flags == "SA" and s.dst == client})
    resets = [s for s in segments["c1"] if "R" in s.flags and s.src == client]
    at_lb = [s for s in segments["lb1-s"] if s.src in BY_ADDRESS6 and s.sport == 80]
    at_gw = [s for s in segments["gw-s"] if s.src in (*BY_ADDRESS6, VIP6) and s.sport == 80]
    peers = sorted({r["peer"] for proc in servers.values() for r in http_log(proc)})
    delivered = sum(1 for r in records if r["ok"])
    case.figure("requests delivered", f"{delivered} of {count}")
    case.figure("c1 got SYN-ACKs from", synacks)
    case.figure("client address the servers saw", peers)
    case.figure("server replies crossed", {"lb1 (server side)": len(at_lb), "gw (server side)": len(at_gw)})
    if mode == "bypass":
        assert delivered == 0, f"{delivered} requests worked although replies bypass the balancer"
        assert synacks and set(synacks) <= set(BY_ADDRESS6), (
            f"SYN-ACKs from the servers' addresses: {synacks}"
        )
        # Every session's SYN-ACK came from a server's own address, and c1 reset each one.
        assert {s.sport for s in resets if s.dst in BY_ADDRESS6} == {r["sport"] for r in records}, resets
        assert at_gw and not at_lb, "the replies should go through gw only"
        unreplied = [s for s in lab.node("lb1").sessions() if s.dst == VIP6 and "UNREPLIED" in s.flags]
        assert len(unreplied) == count, f"lb1 should hold all {count} sessions unreplied: {unreplied}"
        case.figure("sessions lb1 holds unreplied", len(unreplied))
        case.figure("RSTs c1 sent to the servers' addresses", len(resets))
        return
    failed = [r for r in records if not r["ok"]]
    assert not failed, f"{len(failed)} of {count} failed: {failed[:3]}"
    assert synacks == [VIP6], f"c1 should hear only the VIP, got {synacks}"
    if mode == "source NAT":
        assert peers == [LB1_SERVER_SIDE6], f"the servers should see only lb1's address, saw {peers}"
    else:
        assert peers == [client], f"the servers should see the client's address, saw {peers}"
    if mode == "direct server return":
        assert not at_lb, f"{len(at_lb)} replies crossed lb1: DSR bypasses it"
        assert at_gw and all(s.src == VIP6 for s in at_gw), (
            "the replies should leave from the VIP, through gw"
        )
        assert not lab.node("lb1").sessions(), "lb1 keeps no session in DSR (it sees one direction)"
    else:
        assert at_lb and not at_gw, "the replies should come back through lb1"


def test_ipv6_health_checks_take_a_dead_server_out_and_back(lab, case):
    """S4 over IPv6: health checks (HTTP, every 200 ms, fall 2, rise 2) by lb1's agent and by haproxy"""
    check = HealthCheck("http", interval_ms=200, rise=2, fall=2)
    servers = s4.start_servers(lab)
    s4.set_return_path6(lab, "route back")
    lb = lab.node("lb1")
    lb.apply(l4())  # the kernel balancer on [VIP]:80, haproxy on [VIP]:8080, side by side
    agent_ports, adc_ports = case.ports[-100:], case.ports[250:-100]
    lb.start_health(check, agent_ports)
    running = start_adc(lab, case, adc(8080, check=check), "haproxy", adc_ports)
    lab.wait(lambda: all(s["status"] == "UP" for s in running.servers().values()), 5, "every server UP")
    r2 = f"[{SERVERS6['r2']}]:80"

    def through_both(count: int) -> dict[str, Counter[str]]:
        loads = {
            KERNEL: HttpLoad(VIP6, count, case.take_ports(count).start, timeout=1.0),
            "haproxy": HttpLoad(VIP6, count, case.take_ports(count).start, port=8080, timeout=1.0),
        }
        got = {kind: case.note_load(run_http(lab, {"c1": load})["c1"]) for kind, load in loads.items()}
        failed = {k: [r for r in rows if not r["ok"]] for k, rows in got.items()}
        assert not any(failed.values()), f"requests failed: {failed}"
        return {k: Counter(r["served_by"] for r in rows) for k, rows in got.items()}

    def event(name: str) -> dict[str, Any] | None:
        return next((e for e in lb.health_events() if e["event"] == name), None)

    lab.stop(servers["r2"])
    down = lab.wait(lambda: event("down"), 3, "the agent to take r2 out")
    lab.wait(lambda: running.servers()["web/web2"]["status"] == "DOWN", 3, "haproxy to mark r2 DOWN")
    state = running.servers()["web/web2"]
    during = through_both(8)
    servers["r2"] = start_http_server(lab, "r2", "r2")
    up = lab.wait(lambda: event("up"), 3, "the agent to put r2 back")
    lab.wait(lambda: running.servers()["web/web2"]["status"] == "UP", 3, "haproxy to mark r2 UP")
    after = through_both(8)
    checks = [r for p in servers.values() for r in http_log(p) if r["path"] == "/health"]
    checkers = sorted({r["peer"] for r in checks})
    case.figure("the agent's events", [(e["event"], e["server"], e["reason"]) for e in (down, up)])
    case.figure("r2 in haproxy's stats while stopped", {k: state[k] for k in ("status", "check", "downs")})
    case.figure("answers while r2 was out", {k: dict(v) for k, v in during.items()})
    case.figure("answers after r2 came back", {k: dict(v) for k, v in after.items()})
    case.figure(
        "health checks the servers logged, from",
        {a: sum(1 for r in checks if r["peer"] == a) for a in checkers},
    )
    assert (down["server"], up["server"]) == (r2, r2), (down, up)
    assert state["status"] == "DOWN" and state["downs"] >= 1 and state["check"].startswith("L4"), state
    assert all("r2" not in v for v in during.values()), f"r2 answered while out: {during}"
    assert all("r2" in v for v in after.values()), f"r2 got no request after it came back: {after}"
    # Both checkers check over IPv6, from lb1's server side: the agent from its ports, haproxy from its own.
    assert checkers == [LB1_SERVER_SIDE6], f"checks came from {checkers}"
    ports = {r["peer_port"] for r in checks}
    assert ports & set(agent_ports) and ports & set(adc_ports), "both the agent's and haproxy's checks logged"


def test_ipv6_vip_before_ipv4_servers_refused_by_the_kernel_and_proxied_by_haproxy(lab, case):
    """S4 over IPv6: an IPv6 VIP before IPv4 servers, refused by the kernel balancer, done by haproxy"""
    servers = s4.start_servers(lab, ("r1", "r2"))
    four = tuple(RealServer(SERVERS[n], 80) for n in ("r1", "r2"))
    lb = lab.node("lb1")
    with pytest.raises(ConfigError) as refused:
        lb.apply(L4Balancer(VIP6, 80, four))
    message = str(refused.value)
    tables = lab.run("lb1", ["nft", "list", "tables"])
    vips = lab.run("lb1", ["ip", "-6", "-o", "addr", "show", "dev", "lb1-c"])
    case.figure("the kernel balancer refused", message)
    assert len(refused.value.problems) == 1 and "no NAT64" in message, message
    assert "sessionlab_lb" not in tables and VIP6 not in vips, "a refused balancer must leave nothing"
    start_adc(lab, case, Adc(VIP6, 80, (Pool("web", four),)), "haproxy", case.ports[len(case.ports) // 2 :])
    load = HttpLoad(VIP6, 8, case.take_ports(8).start, concurrency=2)
    records = case.note_load(run_http(lab, {"c2": load})["c2"])
    rows = logged(servers)
    case.figure(
        "haproxy, [VIP]:80 to IPv4 servers: requests per server", dict(Counter(r["server"] for r in rows))
    )
    case.figure("what the servers saw", sorted({(r["peer"], r["xff"]) for r in rows}))
    assert all(r["ok"] for r in records), [r for r in records if not r["ok"]]
    assert Counter(r["server"] for r in rows) == {"r1": 4, "r2": 4}, rows
    assert {(r["peer"], r["xff"]) for r in rows} == {(LB1_SERVER_SIDE, CLIENTS6["c2"])}, rows
    assert CLIENTS["c2"] not in {r["xff"] for r in rows}
