"""What the S4 suites share: the address plan, the real servers, the return path a case
gives them, and the evidence each case reads (servers' logs, the clients' records)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from lab.traffic import http_log, start_http_server

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc

VIP = "10.0.1.100"
SERVERS = {"r1": "10.0.2.11", "r2": "10.0.2.12", "r3": "10.0.2.13", "r4": "10.0.2.14"}
BY_ADDRESS = {address: name for name, address in SERVERS.items()}
CLIENTS = {"c1": "10.0.1.11", "c2": "10.0.1.12", "c3": "10.0.1.13"}
LB1_SERVER_SIDE = "10.0.2.2"
RETURN_PATHS = ("bypass", "route back", "source NAT", "direct server return")


def start_servers(lab: Lab, names: tuple[str, ...] = tuple(SERVERS)) -> dict[str, Proc]:
    """A real HTTP server on each of `names`, answering as its name; ended with the case."""
    return {name: start_http_server(lab, name, name) for name in names}


def set_return_path(lab: Lab, mode: str) -> None:
    """How the real servers answer the clients: "bypass" (their default route, via gw),
    "route back" (the clients' network via lb1), or direct server return (the VIP on
    their loopback, never answering ARP for it; replies via gw). Source NAT needs no
    change on the servers: the balancer is the peer they answer."""
    for name in SERVERS:
        lab.run(name, ["ip", "route", "del", "10.0.1.0/24"], check=False)
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
            lab.run(name, ["ip", "route", "replace", "10.0.1.0/24", "via", LB1_SERVER_SIDE])
        elif dsr:
            lab.run(name, ["ip", "addr", "add", f"{VIP}/32", "dev", "lo"])


def answered(servers: dict[str, Proc]) -> dict[tuple[str, int], str]:
    """(peer address, peer port) -> the server whose log holds that request."""
    out = {}
    for name, proc in servers.items():
        for request in http_log(proc):
            if request["path"] != "/health":
                out[(request["peer"], request["peer_port"])] = name
    return out


def per_server(
    records: dict[str, list[dict[str, Any]]], seen: dict[tuple[str, int], str]
) -> dict[str, dict[str, int]]:
    """client -> server -> requests, by the servers' logs (each client's request found by
    its address and source port)."""
    counts: dict[str, dict[str, int]] = {}
    for client, rows in records.items():
        found = Counter(
            seen[(CLIENTS[client], r["sport"])] for r in rows if (CLIENTS[client], r["sport"]) in seen
        )
        counts[client] = {name: found.get(name, 0) for name in SERVERS}
    return counts


def mismatches(records: dict[str, list[dict[str, Any]]], seen: dict[tuple[str, int], str]) -> list[str]:
    """Requests whose answer names another server than the log that holds them, or that
    no server logged although the client got an answer."""
    problems = []
    for client, rows in records.items():
        for r in rows:
            logged = seen.get((CLIENTS[client], r["sport"]))
            if r.get("ok") and logged != r.get("served_by"):
                problems.append(f"{client}:{r['sport']} answered by {r.get('served_by')}, logged by {logged}")
    return problems
