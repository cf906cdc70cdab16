"""How the lab runs this app on the S2 fabric: its configuration, computed from the lab
and the topology's address plan (`lab.topology.plan`: the virtual gateway MACs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controllers.fwlb.logic import MODES

if TYPE_CHECKING:
    from lab.controller import ControllerApp
    from lab.net import Lab


def config(lab: Lab, mode: str) -> dict[str, Any]:
    from lab import topology

    switches = lab.port_map()
    firewalls = []
    for n in (1, 2):
        node = lab.node(f"fw{n}")
        firewalls.append(
            {"number": n, "out_mac": node.intf(f"fw{n}-out").MAC(), "in_mac": node.intf(f"fw{n}-in").MAC()}
        )
    # The virtual gateway MACs: the hosts' static neighbour for their gateway, in the plan.
    macs = topology.plan("s2").macs
    return {
        "mode": mode,
        "vgw_out_mac": macs["vgw-out"],
        "vgw_in_mac": macs["vgw-in"],
        "firewalls": firewalls,
        "switches": switches,
        "session_file": str(lab.paths.root / "controller-sessions.json"),
        # read on request only (ControllerTable asks while it waits: see the app)
        "poll_request_file": str(lab.paths.root / "controller-sessions.request"),
        "poll_interval": 0.5,
    }


def app(mode: str = "symmetric") -> ControllerApp:
    from lab.controller import ControllerApp
    from lab.errors import ConfigError

    if mode not in MODES:
        raise ConfigError(f"unknown fabric mode {mode!r} (known: {', '.join(MODES)})")

    return ControllerApp(module="controllers.fwlb.app", config=lambda lab: config(lab, mode))
