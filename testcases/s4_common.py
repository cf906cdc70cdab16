"""What the S4 suites share: the address plan (the topology's, IPv4 and IPv6), the real servers, the
return path a case gives them, and the evidence each case reads (servers' logs, the clients' records)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lab import topology
from lab.config import HealthCheck
from lab.plot import requests_timeline
from lab.traffic import HttpLoad, finish_http, http_log, start_http, start_http_server

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc
    from lab.results import Case

PLAN = topology.plan("s4")  # the address plan, as topologies/s4_balancers.py defines it
VIP = PLAN.vips["web"]
SERVERS: dict[str, str] = dict(PLAN.hosts["servers"])
BY_ADDRESS = {address: name for name, address in SERVERS.items()}
CLIENTS: dict[str, str] = dict(PLAN.hosts["clients"])
CLIENT_NETWORK = PLAN.networks["clients"]
LB1_SERVER_SIDE = PLAN.addresses["lb1-s"]
RETURN_PATHS = ("bypass", "route back", "source NAT", "direct server return")
PAIR_GATEWAY = PLAN.vips["pair gateway"]  # the servers' gateway to the clients on a redundant pair (VRRP)

# The same network in IPv6 (topologies/s4_balancers.py's PLAN6: fd00:4:<net>::<host>).
PLAN6 = topology.plan("s4", family=6)
VIP6 = PLAN6.vips["web"]
SERVERS6: dict[str, str] = dict(PLAN6.hosts["servers"])
BY_ADDRESS6 = {address: name for name, address in SERVERS6.items()}
CLIENTS6: dict[str, str] = dict(PLAN6.hosts["clients"])
CLIENT_NETWORK6 = PLAN6.networks["clients"]
LB1_SERVER_SIDE6 = PLAN6.addresses["lb1-s"]


def start_servers(
    lab: Lab, names: tuple[str, ...] = tuple(SERVERS), return_path: str | None = None
) -> dict[str, Proc]:
    """A real HTTP server on each of `names`, answering as its name; ended with the case.
    With `return_path`, then the servers' way back to the clients (`set_return_path`)."""
    servers = {name: start_http_server(lab, name, name) for name in names}
    if return_path is not None:
        set_return_path(lab, return_path)
    return servers


def set_return_path(lab: Lab, mode: str) -> None:
    """How the real servers answer the clients: "bypass" (their default route, via gw),
    "route back" (the clients' network via lb1; "via the pair": via the redundant
    balancers' virtual address on the server side), or direct server return (the VIP on
    their loopback, never answering ARP for it; replies via gw). Source NAT needs no
    change on the servers: the balancer is the peer they answer."""
    for name in SERVERS:
        lab.run(name, ["ip", "route", "del", CLIENT_NETWORK], check=False)
        lab.run(name, ["ip", "addr", "del", f"{VIP}/32", "dev", "lo"], check=False)
        dsr = mode == "direct server return"
        # arp_ignore 1: answer ARP only for addresses of the asking interface (not lo's
        # VIP); arp_announce 2: never name the VIP as the source of an ARP request.
        lab.run(
            name,
            [
                "sysctl",
                "-qw",
                f"net.ipv4.conf.all.arp_ignore={1 if dsr else 0}",
                f"net.ipv4.conf.all.arp_announce={2 if dsr else 0}",
            ],
        )
        if mode == "route back":
            lab.run(name, ["ip", "route", "replace", CLIENT_NETWORK, "via", LB1_SERVER_SIDE])
        elif mode == "route back via the pair":
            lab.run(name, ["ip", "route", "replace", CLIENT_NETWORK, "via", PAIR_GATEWAY])
        elif dsr:
            lab.run(name, ["ip", "addr", "add", f"{VIP}/32", "dev", "lo"])


def set_return_path6(lab: Lab, mode: str) -> None:
    """`set_return_path` for IPv6: "bypass" (the servers' IPv6 default route, via gw),
    "route back" (the clients' /64 via lb1), or direct server return (the IPv6 VIP on
    their loopback: Linux answers neighbour solicitations only for the asking interface's
    addresses, so no sysctl is needed). Source NAT needs no change on the servers."""
    for name in SERVERS6:
        lab.run(name, ["ip", "-6", "route", "del", CLIENT_NETWORK6], check=False)
        lab.run(name, ["ip", "-6", "addr", "del", f"{VIP6}/128", "dev", "lo"], check=False)
        if mode == "route back":
            lab.run(name, ["ip", "-6", "route", "replace", CLIENT_NETWORK6, "via", LB1_SERVER_SIDE6])
        elif mode == "direct server return":
            lab.run(name, ["ip", "-6", "addr", "add", f"{VIP6}/128", "dev", "lo", "nodad"])


def answered(servers: dict[str, Proc]) -> dict[tuple[str, int], str]:
    """(peer address, peer port) -> the server whose log holds that request."""
    out = {}
    for name, proc in servers.items():
        for request in http_log(proc):
            if request["path"] != "/health":
                out[(request["peer"], request["peer_port"])] = name
    return out


def per_server(
    records: dict[str, list[dict[str, Any]]],
    seen: dict[tuple[str, int], str],
    clients: dict[str, str] = CLIENTS,
) -> dict[str, dict[str, int]]:
    """client -> server -> requests, by the servers' logs (each client's request found by
    its address, in `clients`' family, and source port)."""
    counts: dict[str, dict[str, int]] = {}
    for client, rows in records.items():
        found = Counter(
            seen[(clients[client], r["sport"])] for r in rows if (clients[client], r["sport"]) in seen
        )
        counts[client] = {name: found.get(name, 0) for name in SERVERS}
    return counts


def mismatches(
    records: dict[str, list[dict[str, Any]]],
    seen: dict[tuple[str, int], str],
    clients: dict[str, str] = CLIENTS,
) -> list[str]:
    """Requests whose answer names another server than the log that holds them, or that
    no server logged although the client got an answer."""
    problems = []
    for client, rows in records.items():
        for r in rows:
            logged = seen.get((clients[client], r["sport"]))
            if r.get("ok") and logged != r.get("served_by"):
                problems.append(f"{client}:{r['sport']} answered by {r.get('served_by')}, logged by {logged}")
    return problems


def spread_loads(case: Case, per_client: int, vip: str = VIP) -> dict[str, HttpLoad]:
    """`per_client` new sessions to the VIP (`vip`: the IPv6 one for IPv6) from each client,
    4 at a time, from the case's port block."""
    ports = case.take_ports(per_client * len(CLIENTS))
    return {c: HttpLoad(vip, per_client, ports[i * per_client], concurrency=4) for i, c in enumerate(CLIENTS)}


def spread(
    records: dict[str, list[dict[str, Any]]], servers: dict[str, Proc]
) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """client -> server -> requests, and server -> requests, by the servers' logs; asserts
    that every request was answered, by the server whose log holds it."""
    seen = answered(servers)
    counts = per_server(records, seen)
    totals = {n: sum(counts[c][n] for c in CLIENTS) for n in SERVERS}
    failed = [
        f"{c}:{r['sport']} {r.get('error')}" for c, rows in records.items() for r in rows if not r["ok"]
    ]
    assert not failed, f"requests failed: {failed}"
    assert not mismatches(records, seen), mismatches(records, seen)
    return counts, totals


def partial_records(proc: Proc) -> list[dict[str, Any]]:
    """The records an http_client has written so far (it is still running)."""
    return [json.loads(line) for line in proc.output().splitlines() if line.startswith('{"i"')]


def timeline_of(procs: list[tuple[str, Proc]], t0: float) -> dict[str, list[float]]:
    """Server -> the times (s after t0) it answered a request, from every process that
    served as it (a restarted server has two logs)."""
    out: dict[str, list[float]] = {}
    for name, proc in procs:
        out.setdefault(name, []).extend(r["t"] - t0 for r in http_log(proc) if r["path"] != "/health")
    return {name: sorted(times) for name, times in out.items()}


def dead_server_case(
    lab: Lab,
    case: Case,
    check: HealthCheck,
    servers: dict[str, Proc],
    title: str,
    effective: Callable[[str, float], dict[str, Any] | None] | None = None,
) -> None:
    """Load at 40 requests/s from c1 for 6 s; r2's server is stopped at 1.5 s and started
    again at 3.5 s. The health checks (lb1's agent, already running) take it out and put
    it back; `effective(event, after)` gives the event when each change took effect on
    the balancer (default: the agent's own, which reloads the kernel's ruleset itself)."""
    agent_events = lab.node("lb1").health_events
    effective = effective or (
        lambda name, after: next((e for e in agent_events() if e["event"] == name), None)
    )
    rate, seconds = 40, 6.0
    count = int(rate * seconds)
    load = HttpLoad(VIP, count, case.take_ports(count).start, rate=rate, concurrency=8, timeout=1.0)
    t0 = time.time()
    client = start_http(lab, "c1", load, "http-c1")
    lab.wait(lambda: time.time() - t0 > 1.5, 3, "1.5 s of load")
    first_r2 = servers["r2"]
    stopping = time.time() - t0  # SIGTERM: r2 refuses what it has not accepted yet
    lab.stop(first_r2)
    killed = time.time() - t0  # r2 is gone: every check fails from here
    down = lab.wait(lambda: effective("down", t0 + stopping), 3, "r2 taken out")
    lab.wait(lambda: time.time() - t0 > 3.5, 3, "r2 out for a while")
    servers["r2"] = start_http_server(lab, "r2", "r2")
    restarted = time.time() - t0
    up = lab.wait(lambda: effective("up", t0 + restarted), 3, "r2 put back")
    records = case.note_load(finish_http(lab, client, load.budget()))
    checks = [e for e in agent_events() if e["event"] in ("down", "up")]
    down_at, up_at = down["t"] - t0, up["t"] - t0
    failures = [r["wall_start"] - t0 for r in records if not r["ok"]]
    times = timeline_of([*servers.items(), ("r2", first_r2)], t0)
    case.figure("r2 told to stop at (s)", round(stopping, 2))
    case.figure("r2 gone at (s)", round(killed, 2))
    case.figure("taken out after (s)", round(down_at - killed, 2))
    case.figure("restarted at (s)", round(restarted, 2))
    case.figure("put back after (s)", round(up_at - restarted, 2))
    case.figure("failed requests", len(failures))
    case.figure("requests r2 answered after it was put back", sum(1 for t in times["r2"] if t > up_at))
    requests_timeline(
        times,
        failures,
        {"r2 stopped": stopping, "taken out": down_at, "r2 restarted": restarted, "put back": up_at},
        case.plot_path("timeline", "requests/s per server (servers' logs) and failed requests"),
        title,
        bin_s=0.5,
    )
    assert [(e["event"], e["server"]) for e in checks] == [
        ("down", f"{SERVERS['r2']}:80"),
        ("up", f"{SERVERS['r2']}:80"),
    ], f"the checks should take r2 out once and put it back once: {checks}"
    interval = check.interval_ms / 1000
    # Detection: `fall` failed checks, the first up to one interval after the stop.
    assert down_at - killed <= (check.fall + 1) * interval + 0.3, f"taken out {down_at - killed:.2f} s after"
    assert up_at - restarted <= (check.rise + 1) * interval + 0.3, f"put back {up_at - restarted:.2f} s after"
    late = [round(t, 2) for t in failures if not stopping - 0.1 <= t <= down_at + 0.1]
    assert not late, f"requests failed outside the detection window {stopping:.2f}-{down_at:.2f} s: {late}"
    # Out until the change that puts it back began to take effect (the agent's `applying`:
    # its event is stamped once the ruleset is loaded, and a request reached r2 10 ms before
    # that stamp in one run of 5 at 4 labs side by side, 20261204-170539)
    back = up.get("applying", up["t"]) - t0
    inside = [round(t, 3) for t in times["r2"] if killed < t < back]
    assert not inside, f"r2 answered while it was out ({killed:.2f}-{back:.3f} s): at {inside}"
    assert any(t > up_at for t in times["r2"]), "r2 got no request after it was put back"
