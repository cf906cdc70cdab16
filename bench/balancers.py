"""The balancers' own ceilings on this machine (issue 9): requests/s over kept-open
connections and new connections/s, through each S4 balancer, against the same servers
reached through a plain router.

    c1 - s1 - {gw | lb1: nftables DNAT, haproxy, nginx | s1 itself: the SDN app} - s2 - r1..r4

The real servers are nginx answering a short text (`return 200`), far faster than the lab's
Python servers, so the balancer and the emulated network are what is measured. wrk (one
thread, 32 connections, 5 s) drives the load; "new connections/s" sends
`Connection: close`, so every request is a new TCP session through the balancer. Each
figure is the median of REPEAT runs (min-max beside it). Everything shares this VM's two
cores: the figures are this machine's, not the balancers' in general.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

SECONDS, CONNECTIONS, REPEAT = 5, 32, 3
EPHEMERAL = range(32768, 61000)


def nginx_server(lab: Any, node: str, address: str) -> None:
    """A fast real server on `node`: nginx answering its own name to every request."""
    work = lab.runtime_dir() / f"bench-{node}"
    work.mkdir(exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(
        "daemon off;\nworker_processes 1;\n"
        f"pid {work}/nginx.pid;\nerror_log stderr warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n    access_log off;\n"
        f"    client_body_temp_path {work}/body;\n    proxy_temp_path {work}/proxy;\n"
        f"    fastcgi_temp_path {work}/fastcgi;\n    uwsgi_temp_path {work}/uwsgi;\n"
        f"    scgi_temp_path {work}/scgi;\n"
        f"    server {{ listen {address}:80; location / {{ return 200 '{node}\\n'; }} }}\n"
        "}\n"
    )
    proc = lab.start(node, ["nginx", "-c", str(conf), "-p", str(work)], f"bench-nginx-{node}")
    lab.wait(
        lambda: (
            bool(lab.run(node, ["ss", "-Hltn", "sport = :80"], check=False).strip()) or not proc.running()
        ),
        5,
        f"nginx on {node}",
    )


def measure(lab: Any, url: str) -> dict[str, Any]:
    """REPEAT runs of each load kind: requests/s kept open, and new connections/s."""
    from lab.traffic import run_wrk

    out: dict[str, Any] = {}
    for kind, headers in (("requests/s", ()), ("new connections/s", ("Connection: close",))):
        runs = [run_wrk(lab, "c1", url, SECONDS, CONNECTIONS, EPHEMERAL, headers) for _ in range(REPEAT)]
        rates = [r["requests_per_s"] for r in runs]
        errors = sum(sum(r["socket_errors"].values()) + r["non_2xx"] for r in runs)
        out[kind] = {
            "median": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
            "errors": errors,
        }
    return out


def run(out: Path) -> dict[str, Any]:
    from lab import topology
    from lab.config import Adc, L4Balancer, Pool, RealServer
    from lab.net import Lab

    plan = topology.plan("s4")  # the addresses, as the topology defines them
    servers_at: dict[str, str] = dict(plan.hosts["servers"])
    vip, clients, lb1 = plan.vips["web"], plan.networks["clients"], plan.addresses["lb1-s"]
    real = tuple(RealServer(a, 80) for a in servers_at.values())
    results: dict[str, Any] = {}

    def servers(lab: Any, routed_back: bool) -> None:
        for node, address in servers_at.items():
            nginx_server(lab, node, address)
            if routed_back:
                lab.run(node, ["ip", "route", "replace", clients, "via", lb1])

    with Lab(topology.load("s4"), out / "lab") as lab:
        servers(lab, routed_back=False)
        results["plain router (gw), one server"] = measure(lab, f"http://{servers_at['r1']}/")
        for node in servers_at:
            lab.run(node, ["ip", "route", "replace", clients, "via", lb1])
        lb = lab.node("lb1")
        lb.apply(L4Balancer(vip, 80, real))
        results["kernel L4 (nftables DNAT, round robin)"] = measure(lab, f"http://{vip}/")
        lb.reset()
        for daemon in ("haproxy", "nginx"):
            adc = lb.start_adc(Adc(vip, 80, (Pool("web", real),), forwarded_for=False), daemon, EPHEMERAL)
            results[f"{daemon} (L7, round robin)"] = measure(lab, f"http://{vip}/")
            adc.stop()
            lb.reset()
    for algorithm, label in (
        ("weighted", "SDN in the switch (multipath, conntrack)"),
        ("round-robin", "SDN by the controller (packet-in, conntrack)"),
    ):
        app = topology.controller_for("s4-sdn", algorithm=algorithm)
        with Lab(topology.load("s4-sdn"), out / f"lab-sdn-{algorithm}", controller=app) as lab:
            servers(lab, routed_back=False)
            results[label] = measure(lab, f"http://{vip}/")
    rows = []
    for name, figures in results.items():
        for kind, stats in figures.items():
            rows.append(
                {
                    "what": f"{kind}: {name}",
                    "configured": f"wrk, {CONNECTIONS} connections, {SECONDS} s, x{REPEAT}",
                    "measured": f"{stats['median']:,.0f} ({stats['min']:,.0f}-{stats['max']:,.0f})"
                    + (f", {stats['errors']} errors" if stats["errors"] else ""),
                    "target": "",
                    "met": None,
                }
            )
    return {"rows": rows, "results": results}


def plot(data: dict[str, Any], path: Path) -> Path:
    """Two bar charts: requests/s kept open, and new connections/s, per path."""
    from lab.plot import plt, save

    names = list(data["results"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ax, kind in zip(axes, ("requests/s", "new connections/s"), strict=True):
        medians = [data["results"][n][kind]["median"] for n in names]
        lows = [m - data["results"][n][kind]["min"] for m, n in zip(medians, names, strict=True)]
        highs = [data["results"][n][kind]["max"] - m for m, n in zip(medians, names, strict=True)]
        ax.barh(names, medians, xerr=[lows, highs], color="tab:blue")
        ax.invert_yaxis()
        ax.set_xlabel(kind)
        ax.set_title(f"{kind} (median of {REPEAT}, min-max)")
    save(fig, path)
    return path
