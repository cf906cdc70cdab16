"""S4, the L4 balancer in the switch (SCENARIOS.md): the same network as the kernel suite,
balanced by an os-ken app on s1 instead of lb1.

The switch answers ARP for the VIP 10.0.1.100 and rewrites each session to a real
server behind gw (gw's MAC, the server's address); every reply from a server's port 80
is rewritten back to the VIP. Each session is a connection in the balancer's conntrack
zone on s1 (a destination NAT to its server, the server's number as its mark), so no flow
is added per session. Weighted and source-hash are decided in the switch (OVS `multipath`
over slots: no packet-in); round-robin and least-connections by the controller (a
packet-in per new session, and for least-connections a copy of each session's FIN or
RST). Evidence: the servers' logs, the answers the clients got, the switch's conntrack
zone (`dpctl/dump-conntrack`: a connection per session, naming its server) and its flow
table (the counters of the flows that send to the controller).
"""

from __future__ import annotations

import math
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from controllers.l4lb.harness import service_file
from controllers.l4lb.harness import sessions as balancer_sessions
from lab.config import HealthCheck, L4Balancer, RealServer
from lab.ovs import OvsFlow, dump_flows
from lab.plot import distribution_figure
from lab.traffic import HttpLoad, finish_http, http_log, run_http, start_http
from testcases import s4_common as s4
from testcases.s4_common import CLIENTS, SERVERS, VIP

LAB_TOPOLOGY = "s4-sdn"
PER_CLIENT = 100  # new sessions from each of the three clients, 4 at a time
WEIGHTS = {"r1": 3, "r2": 2, "r3": 1, "r4": 1}
ORDER = list(SERVERS)  # a session's connection mark - 1 = its server's place here


@pytest.fixture
def sdn(lab):
    """Restart the balancing controller with an algorithm (and weights) for this case;
    no health file of an earlier case is left for it to read."""

    def start(algorithm: str, weights: dict[str, int] | None = None) -> None:
        Path(service_file(lab)).unlink(missing_ok=True)
        backends = [
            {**b, "weight": (weights or {}).get(b["name"], 1)}
            for b in lab.controller.app.config(lab)["backends"]
        ]
        lab.restart_controller(algorithm=algorithm, backends=backends)

    return start


def switch_table(lab: Any, case: Any) -> list[OvsFlow]:
    """s1's flow table now, kept as evidence."""
    text, flows = dump_flows(lab, "s1")
    path = case.path / "s1-flows.txt"
    path.write_text(text)
    case.keep(path, "s1's flow table after the requests (ovs-ofctl dump-flows)")
    return flows


def connections(lab: Any, case: Any) -> list[dict[str, Any]]:
    """The balancer's sessions in s1 now (its conntrack zone), kept as evidence; each
    checked: its reply comes from the server its mark names."""
    text, found = balancer_sessions(lab)
    path = case.path / "s1-conntrack.txt"
    path.write_text(text)
    case.keep(path, "the balancer's conntrack zone on s1 after the requests (dpctl/dump-conntrack)")
    ours = [c for c in found if c["dst"] == VIP and c["dport"] == 80]
    wrong = [c for c in ours if not c["mark"] or SERVERS[ORDER[c["mark"] - 1]] != c["reply_src"]]
    assert not wrong, f"connections whose mark and server disagree: {wrong[:3]}"
    return ours


def pinned(found: list[dict[str, Any]]) -> dict[str, int]:
    """Sessions per server pinned in the switch (a connection each, its mark the server)."""
    counts = Counter(ORDER[c["mark"] - 1] for c in found)
    return {n: counts.get(n, 0) for n in SERVERS}


def endpoint(text: str) -> tuple[str, int]:
    """("10.0.1.11", 12000) from "10.0.1.11:12000"."""
    address, port = text.rsplit(":", 1)
    return address, int(port)


def to_controller(flows: list[OvsFlow]) -> int:
    """Packets of sessions to the VIP the switch sent to the controller (ARP excluded)."""
    return sum(f.n_packets for f in flows if "CONTROLLER" in f.actions and "arp" not in f.match)


@pytest.mark.parametrize("algorithm", ["round-robin", "weighted", "least-connections", "source-hash"])
def test_distribution(lab, case, sdn, algorithm):
    """SDN L4 balancer: how an algorithm spreads 300 new sessions from 3 clients over 4 servers"""
    weights = WEIGHTS if algorithm == "weighted" else None
    sdn(algorithm, weights)
    servers = s4.start_servers(lab, return_path="bypass")  # the switch is on both paths: nothing to fix
    loads = s4.spread_loads(case, PER_CLIENT)
    started = time.time()
    records = run_http(lab, loads)
    case.note_load(*records.values())
    flows = switch_table(lab, case)
    found = connections(lab, case)
    counts, totals = s4.spread(records, servers)
    total = sum(totals.values())
    assert total == PER_CLIENT * len(CLIENTS), f"the servers logged {totals}"
    in_switch = pinned(found)
    assert in_switch == totals, f"s1 pins {in_switch} sessions per server, the servers logged {totals}"
    per_client = [f for f in flows if f.match.get("nw_src") in CLIENTS.values()]
    assert not per_client, f"flows added for sessions: {per_client[:3]}"
    punted = to_controller(flows)
    decisions = [e for e in lab.controller.events("session") if e["t"] >= started]
    case.figure("requests per server (servers' logs)", totals)
    case.figure("requests per server and client", counts)
    case.figure("sessions pinned in s1 per server (its conntrack zone)", in_switch)
    case.figure("flows in s1 (none names a client)", len(flows))
    case.figure("packets counted on s1's flows to the controller", punted)
    case.figure("decisions the controller logged", len(decisions))
    if algorithm in ("weighted", "source-hash"):
        assert punted == 0 and not decisions, (
            f"decided in the switch, yet {punted} packets went to the controller ({len(decisions)} decisions)"
        )
    else:
        # The controller's log names every decision; each is checked against the server
        # that answered. s1's counter only shows that the switch sent packets up (OVS
        # updates rule counters lazily: it may lag the sessions).
        assert punted > 0 and len(decisions) == total, (
            f"{punted} packets counted to the controller and {len(decisions)} decisions for {total} sessions"
        )
        by_client = {(CLIENTS[c], r["sport"]): r["served_by"] for c, rows in records.items() for r in rows}
        wrong = [d for d in decisions if by_client.get(endpoint(d["client"])) != d["backend"]]
        assert not wrong, f"the controller's decisions disagree with the servers that answered: {wrong[:3]}"
    if algorithm == "round-robin":
        assert max(totals.values()) - min(totals.values()) <= 1, totals
    elif algorithm == "weighted":
        # A hash, not a counter: each server's count is binomial around its weight share.
        weight_sum = sum(WEIGHTS.values())
        for name, count in totals.items():
            p = WEIGHTS[name] / weight_sum
            sd = math.sqrt(total * p * (1 - p))
            assert abs(count - total * p) <= 4 * sd, (
                f"{name}: {count} sessions, share {total * p:.1f} +/- {sd:.1f}"
            )
        case.figure("weights", WEIGHTS)
    elif algorithm == "least-connections":
        for d in decisions:
            fewest = min(d["open_before"].values())
            assert d["open_before"][d["backend"]] == fewest, f"not the least loaded server: {d}"
    else:
        for client, per in counts.items():
            assert len([n for n, k in per.items() if k]) == 1, f"{client}'s requests went to {per}"
        case.figure(
            "server per client", {c: next(n for n, k in per.items() if k) for c, per in counts.items()}
        )
    distribution_figure(
        counts,
        ORDER,
        case.plot_path("distribution", f"{algorithm}: requests per server"),
        f"SDN balancer (s1), {algorithm}: {total} new sessions",
    )


@pytest.mark.parametrize("algorithm", ["round-robin", "least-connections"])
def test_long_sessions_and_least_connections(lab, case, sdn, algorithm):
    """SDN L4: three long sessions hold r1-r3; where 8 new short sessions go, by algorithm"""
    sdn(algorithm)
    servers = s4.start_servers(lab, return_path="bypass")
    held = []
    for i in range(3):  # one at a time, each pinned before the next
        load = HttpLoad(VIP, 40, case.take_port(), rate=4, keepalive=True, timeout=1.0)
        proc = start_http(lab, "c2", load, f"http-c2-held{i}")
        held.append(lab.wait(lambda p=proc: s4.partial_records(p)[:1], 3, f"long session {i} answered")[0])
    holders = [h["served_by"] for h in held]
    started = time.time()
    # One after another, 50 ms apart: the controller hears a session's end from a copy of
    # its FIN (a packet-in, through OVS's upcall threads), which reached it 2 ms after the
    # next session's SYN once when the next began at once (least connections then counted
    # the ended session and sent the next to r1).
    short = case.note_load(
        run_http(lab, {"c1": HttpLoad(VIP, 8, case.take_ports(8).start, concurrency=1, rate=20)})["c1"]
    )
    flows = switch_table(lab, case)
    seen = s4.answered(servers)
    got = Counter(seen[(CLIENTS["c1"], r["sport"])] for r in short if (CLIENTS["c1"], r["sport"]) in seen)
    ends = [e for e in lab.controller.events("session_end") if e["t"] >= started]
    case.figure("servers holding a long session", holders)
    case.figure("short sessions per server (servers' logs)", {n: got.get(n, 0) for n in SERVERS})
    case.figure("session ends the controller heard (FIN/RST copies)", len(ends))
    case.figure("packets s1 sent to the controller", to_controller(flows))
    assert all(r["ok"] for r in short), [r for r in short if not r["ok"]]
    assert sorted(holders) == ["r1", "r2", "r3"], f"the long sessions should hold r1-r3, held {holders}"
    if algorithm == "least-connections":
        assert dict(got) == {"r4": 8}, f"every short session should go to r4 (no long session): {dict(got)}"
        assert len(ends) >= 8, f"the controller heard {len(ends)} ends of 8 short sessions"
    else:
        assert dict(got) == {n: 2 for n in SERVERS}, f"round robin ignores the long sessions: {dict(got)}"
    distribution_figure(
        {"c1 (short)": {n: got.get(n, 0) for n in SERVERS}},
        ORDER,
        case.plot_path("short", f"{algorithm}: where the short sessions went"),
        f"{algorithm}: 8 short sessions while r1-r3 hold a long one each",
    )


def health_checked(lab: Any, case: Any, sdn: Any, kind: str) -> tuple[dict[str, Any], HealthCheck]:
    """Round robin in the switch, the real servers (replies via gw: the switch is on both
    paths), and lb1's `kind` checks (every 200 ms, fall 2, rise 2) steering the app."""
    sdn("round-robin")
    servers = s4.start_servers(lab, return_path="bypass")
    check = HealthCheck(kind, interval_ms=200, rise=2, fall=2)
    targets = L4Balancer(VIP, 80, tuple(RealServer(a, 80) for a in SERVERS.values()))
    lab.node("lb1").start_health(check, case.ports[-100:], servers=targets, service_file=service_file(lab))
    return servers, check


def test_health_check_takes_a_dead_server_out_and_back(lab, case, sdn):
    """SDN L4: lb1's health checks (tcp, fall 2, rise 2, every 200 ms) steer the switch round a dead server"""
    servers, check = health_checked(lab, case, sdn, "tcp")

    def effective(name: str, after: float) -> dict[str, Any] | None:
        """The controller's change of the backends in service after `after`."""
        for event in lab.controller.events("in_service"):
            if event["t"] >= after and ("r2" in event["backends"]) == (name == "up"):
                return event
        return None

    s4.dead_server_case(
        lab,
        case,
        check,
        servers,
        "SDN balancer (s1), lb1's tcp check every 200 ms, fall 2 / rise 2",
        effective,
    )


def test_health_check_drains_a_server_in_maintenance(lab, case, sdn):
    """SDN L4: an HTTP check drains a server in maintenance: its session stays, new ones go elsewhere"""
    servers, _ = health_checked(lab, case, sdn, "http")
    held = HttpLoad(VIP, 30, case.take_port(), rate=5, keepalive=True, timeout=1.0)
    holder = start_http(lab, "c2", held, "http-c2-held")
    target = lab.wait(lambda: s4.partial_records(holder)[:1], 3, "the held session's first answer")[0][
        "served_by"
    ]
    started = time.time()
    servers[target].popen.send_signal(signal.SIGUSR1)  # maintenance: /health answers 503

    def taken_out() -> dict[str, Any] | None:
        return next(
            (
                e
                for e in lab.controller.events("in_service")
                if e["t"] > started and target not in e["backends"]
            ),
            None,
        )

    out = lab.wait(taken_out, 3, f"the controller to take {target} out")
    during = case.note_load(
        run_http(lab, {"c1": HttpLoad(VIP, 12, case.take_ports(12).start, concurrency=4)})["c1"]
    )
    found = connections(lab, case)
    servers[target].popen.send_signal(signal.SIGUSR1)  # back in service
    lab.wait(
        lambda: any(
            e["t"] > out["t"] and target in e["backends"] for e in lab.controller.events("in_service")
        ),
        3,
        f"the controller to put {target} back",
    )
    answers = case.note_load(finish_http(lab, holder, held.budget()))
    held_key = f"{CLIENTS['c2']}:{held.first_port}"
    still_pinned = [ORDER[c["mark"] - 1] for c in found if c["sport"] == held.first_port]
    during_servers = Counter(r["served_by"] for r in during if r["ok"])
    case.figure("server in maintenance", target)
    case.figure("sessions kept on it (the controller's table)", out["sessions_kept"])
    case.figure("the held session's connection in s1 while it was out", still_pinned)
    case.figure("new sessions while it was out, per server", dict(during_servers))
    case.figure("answers on the held session", dict(Counter(r["served_by"] for r in answers)))
    assert out["sessions_kept"] == {target: [held_key]}, f"the held session should be reported: {out}"
    assert still_pinned == [target], still_pinned
    assert all(r["ok"] for r in during) and target not in during_servers, dict(during_servers)
    assert all(r["ok"] and r["served_by"] == target for r in answers), answers[-3:]


def test_an_idle_session_is_ended(lab, case, sdn):
    """SDN L4: a session idle 10 s leaves s1's conntrack zone; its next request is dropped"""
    sdn("round-robin")
    servers = s4.start_servers(lab, return_path="bypass")
    # Two kept-open sessions from c2, a request at 0 s and one after 4 s or 16 s of idle:
    # the app reads the zone every 2 s, so the idle one is gone 10-12 s after its last
    # packet, 4 s before its second request (and the other 6 s before its timeout).
    loads = {
        idle: HttpLoad(VIP, 2, case.take_port(), rate=1 / idle, keepalive=True, timeout=2.0)
        for idle in (4, 16)
    }
    procs = {idle: start_http(lab, "c2", load, f"http-c2-idle{idle}") for idle, load in loads.items()}
    answers = {
        idle: case.note_load(finish_http(lab, procs[idle], load.budget())) for idle, load in loads.items()
    }
    found = connections(lab, case)
    requests = Counter(
        r["peer_port"] for proc in servers.values() for r in http_log(proc) if r["peer"] == CLIENTS["c2"]
    )
    key = {idle: f"{CLIENTS['c2']}:{load.first_port}" for idle, load in loads.items()}
    removed = [e for e in lab.controller.events("idle_removed") if key[16] in e["sessions"]]
    ends = {e["client"]: e["why"] for e in lab.controller.events("session_end")}
    first = answers[16][0]
    idle_for = removed[0]["t"] - (first["wall_start"] + first["elapsed"]) if removed else None
    case.figure(
        "requests answered per session (clients)",
        {f"idle {i} s": [r["ok"] for r in a] for i, a in answers.items()},
    )
    case.figure(
        "requests the servers logged per session",
        {f"idle {i} s": requests[loads[i].first_port] for i in loads},
    )
    case.figure("idle when the app removed it (s)", round(idle_for, 2) if idle_for is not None else None)
    case.figure("the controller's ends", {k: ends.get(v) for k, v in key.items()})
    assert [r["ok"] for r in answers[4]] == [True, True], answers[4]
    assert [r["ok"] for r in answers[16]] == [True, False], answers[16]
    assert requests[loads[4].first_port] == 2 and requests[loads[16].first_port] == 1, dict(requests)
    assert removed and idle_for is not None and 9.9 <= idle_for < 16, f"removed {removed}, idle {idle_for}"
    assert ends.get(key[16]) == "idle", ends
    assert not [c for c in found if c["sport"] == loads[16].first_port], (
        "the idle session is still in s1's zone"
    )
