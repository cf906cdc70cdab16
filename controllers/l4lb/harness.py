"""How the lab runs the L4 balancer app on the S4 network: its configuration, computed
from the lab. The switch s1 balances; the backends are the real servers behind gw, so a
session's packets go to gw's MAC with the server's address."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controllers.l4lb.logic import ALGORITHMS as MODES

if TYPE_CHECKING:
    from lab.controller import ControllerApp
    from lab.net import Lab

VIP, VMAC, VPORT = "10.0.1.100", "02:00:0a:00:01:64", 80
SERVERS = {"r1": "10.0.2.11", "r2": "10.0.2.12", "r3": "10.0.2.13", "r4": "10.0.2.14"}


def service_file(lab: Lab) -> str:
    """Where the health-check agent writes the backends in service (the app follows it)."""
    return str(lab.runtime_dir() / "l4lb-in-service.json")


def config(lab: Lab, algorithm: str, weights: dict[str, int] | None = None) -> dict[str, Any]:
    switches = lab.port_map()
    gw_mac = lab.node("gw").intf("gw-c").MAC()
    port = switches["s1"]["ports"]["gw-c"]
    backends = [
        {"name": name, "ip": ip, "mac": gw_mac, "port": port, "weight": (weights or {}).get(name, 1)}
        for name, ip in SERVERS.items()
    ]
    return {
        "dpid": switches["s1"]["dpid"],
        "vip": VIP,
        "vmac": VMAC,
        "vport": VPORT,
        "algorithm": algorithm,
        "backends": backends,
        "idle_timeout": 10,
        "service_file": service_file(lab),
    }


def app(algorithm: str = "round-robin") -> ControllerApp:
    from lab.controller import ControllerApp
    from lab.errors import ConfigError

    if algorithm not in MODES:
        raise ConfigError(f"unknown balancing algorithm {algorithm!r} (known: {', '.join(MODES)})")

    return ControllerApp(module="controllers.l4lb.app", config=lambda lab: config(lab, algorithm))
