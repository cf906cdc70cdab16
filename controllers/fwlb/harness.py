"""How the lab runs this app on the S2 fabric: its configuration, computed from the lab."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.net import ControllerApp, Lab

VGW_OUT_MAC = "02:00:00:00:00:01"
VGW_IN_MAC = "02:00:00:00:00:02"


def config(lab: Lab, mode: str) -> dict[str, Any]:
    switches = lab.port_map()
    firewalls = []
    for n in (1, 2):
        node = lab.node(f"fw{n}")
        firewalls.append(
            {"number": n, "out_mac": node.intf(f"fw{n}-out").MAC(), "in_mac": node.intf(f"fw{n}-in").MAC()}
        )
    return {
        "mode": mode,
        "vgw_out_mac": VGW_OUT_MAC,
        "vgw_in_mac": VGW_IN_MAC,
        "firewalls": firewalls,
        "switches": switches,
        "session_file": str(lab.paths.root / "controller-sessions.json"),
        "poll_interval": 0.5,
    }


def app(mode: str = "symmetric") -> ControllerApp:
    from lab.net import ControllerApp

    return ControllerApp(module="controllers.fwlb.app", config=lambda lab: config(lab, mode))
