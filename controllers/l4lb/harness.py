"""How the lab runs the L4 balancer app on the S4 network: its configuration, computed
from the lab and the topology's address plan (`lab.topology.plan`: the VIP, its MAC and
port, the real servers). The switch s1 balances; the backends are the real servers behind gw, so a
session's packets go to gw's MAC with the server's address. The sessions are s1's
conntrack connections in the balancer's zone (`sessions`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controllers.l4lb.logic import ALGORITHMS as MODES

if TYPE_CHECKING:
    from lab.controller import ControllerApp
    from lab.net import Lab


def service_file(lab: Lab) -> str:
    """Where the health-check agent writes the backends in service (the app follows it)."""
    return str(lab.runtime_dir() / "l4lb-in-service.json")


def zone(lab: Lab) -> int:
    """The balancer's conntrack zone. Every lab's switches share one datapath, so it must
    differ between labs running at once: this lab's controller port (unique among them,
    ephemeral: 32768-60999; the S2 fabric's second zone has the top bit flipped)."""
    assert lab.controller is not None
    return int(lab.controller.port)


def sessions(lab: Lab) -> tuple[str, list[dict[str, Any]]]:
    """The balancer's sessions now: its zone's connections (the dump's text, and parsed),
    each with the server it was given (`mark`: the backend's place in the list, from 1;
    `reply_src`: the server's address)."""
    from controllers.conntrack import DATAPATH, parse_conntrack
    from lab.procs import host_run

    # The lab's runner, not the app's appctl: evidence that cannot be read fails the case
    # (CommandError) instead of reading as an empty zone.
    text = host_run(["ovs-appctl", "--timeout=5", "dpctl/dump-conntrack", DATAPATH, f"zone={zone(lab)}"])
    return text, parse_conntrack(text)


def config(lab: Lab, algorithm: str, weights: dict[str, int] | None = None) -> dict[str, Any]:
    from lab import topology

    plan = topology.plan("s4-sdn")  # the VIP, its MAC and port, the servers: the topology's
    switches = lab.port_map()
    gw_mac = lab.node("gw").intf("gw-c").MAC()
    port = switches["s1"]["ports"]["gw-c"]
    backends = [
        {"name": name, "ip": ip, "mac": gw_mac, "port": port, "weight": (weights or {}).get(name, 1)}
        for name, ip in plan.hosts["servers"].items()
    ]
    return {
        "dpid": switches["s1"]["dpid"],
        "vip": plan.vips["web"],
        "vmac": plan.macs["web"],
        "vport": plan.ports["web"],
        "algorithm": algorithm,
        "backends": backends,
        "zone": zone(lab),
        "idle_timeout": 10,
        "poll_interval": 2.0,
        "service_file": service_file(lab),
    }


def app(algorithm: str = "round-robin") -> ControllerApp:
    from lab.controller import ControllerApp
    from lab.errors import ConfigError

    if algorithm not in MODES:
        raise ConfigError(f"unknown balancing algorithm {algorithm!r} (known: {', '.join(MODES)})")

    return ControllerApp(module="controllers.l4lb.app", config=lambda lab: config(lab, algorithm))
