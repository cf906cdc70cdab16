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
    # The fabric switches' conntrack zones. Every lab's switches share one datapath, so
    # the zones must differ between labs running at once: from this lab's controller port
    # (unique among them, ephemeral: 32768-60999), and the same with the top bit flipped.
    assert lab.controller is not None
    port = lab.controller.port
    zones = {"so": port, "si": (port ^ 0x8000) or 0xFFFF}  # never zone 0: the default zone
    return {
        "mode": mode,
        "vgw_out_mac": macs["vgw-out"],
        "vgw_in_mac": macs["vgw-in"],
        "firewalls": firewalls,
        "switches": switches,
        "zones": zones,
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
