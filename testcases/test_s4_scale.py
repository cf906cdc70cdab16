"""S4, scale (SCENARIOS.md): what a balancer adds as servers are added, against one bigger
server.

Every real server's link is limited to 10 Mbit/s (TCLink's HTB), so a server answers at
most ~36 responses of 32 KiB per second and the balancer's scaling shows in requests/s.
wrk (from Debian) drives the load from c1 over 16 kept-open connections for 3 s; the
kernel balancer on lb1 spreads those connections round robin. Scale up: one server whose
link is raised to 20 Mbit/s for the run. Evidence: wrk's summary, cross-checked with the
servers' own logs (requests each answered during the run).
"""

from __future__ import annotations

import pytest

from lab.config import L4Balancer, RealServer
from lab.plot import scaling_figure
from lab.traffic import http_log, run_wrk
from testcases.s4_common import SERVERS, VIP, set_return_path, start_servers

LAB_TOPOLOGY = "s4"
SERVER_BW = 10  # Mbit/s on each real server's link
LAB_TOPOLOGY_PARAMS = {"server_bw": SERVER_BW}
SECONDS, CONNECTIONS, PATH = 3, 16, "/text/32"


def measure(lab, case, names: tuple[str, ...]) -> dict:
    """wrk through lb1 to `names` (round robin); its figures and the servers' counts."""
    servers = start_servers(lab, names)
    lab.node("lb1").apply(L4Balancer(VIP, 80, tuple(RealServer(SERVERS[n], 80) for n in names)))
    got = run_wrk(lab, "c1", f"http://{VIP}{PATH}", SECONDS, CONNECTIONS, case.take_ports(CONNECTIONS * 4))
    logged = {n: len(http_log(p)) for n, p in servers.items()}
    for proc in servers.values():
        lab.stop(proc)
    lab.node("lb1").reset()
    return {**got, "servers' logs": logged}


@pytest.mark.ports(1000)
def test_scale_out_and_up(lab, case):
    """Scale: requests/s through the kernel balancer, 1-4 rate-limited servers, and one server twice as big"""
    set_return_path(lab, "route back")
    out = {n: measure(lab, case, tuple(SERVERS)[:n]) for n in (1, 2, 3, 4)}
    lab.set_rate("r1", "s2", 2 * SERVER_BW)
    try:
        up = measure(lab, case, ("r1",))
    finally:
        lab.set_rate("r1", "s2", SERVER_BW)
    rates = {n: round(r["requests_per_s"], 1) for n, r in out.items()}
    case.figure("requests/s with n servers (wrk)", rates)
    case.figure(
        f"requests/s with one server at {2 * SERVER_BW} Mbit/s (scale up)", round(up["requests_per_s"], 1)
    )
    case.figure("socket errors (wrk), scale out", {n: r["socket_errors"] for n, r in out.items()})
    case.figure("requests each server logged", {n: r["servers' logs"] for n, r in out.items()})
    scaling_figure(
        rates,
        {"one server, 2x capacity": up["requests_per_s"]},
        case.plot_path("scaling", "requests/s against real servers, and scaling up"),
        f"kernel balancer, servers at {SERVER_BW} Mbit/s each, {CONNECTIONS} connections, {PATH}",
    )
    for n, r in {**out, "up": up}.items():
        logged = sum(r["servers' logs"].values())
        # wrk counts answers it read in its window; the servers also log the last ones in flight.
        assert r["requests"] <= logged <= r["requests"] + CONNECTIONS, (
            f"{n}: wrk {r['requests']}, logged {logged}"
        )
        assert not any(r["socket_errors"].values()) and r["non_2xx"] == 0, f"{n}: {r}"
    for n in (2, 3, 4):
        assert 0.8 * n <= rates[n] / rates[1] <= 1.2 * n, (
            f"{n} servers: {rates[n]} req/s against {rates[1]} with one"
        )
        used = [s for s, k in out[n]["servers' logs"].items() if k]
        assert len(used) == n, f"{n} servers configured, {len(used)} answered: {out[n]}"
    assert 0.75 <= up["requests_per_s"] / rates[2] <= 1.25, (
        f"one server of twice the capacity ({up['requests_per_s']:.1f}) should match two ({rates[2]})"
    )
