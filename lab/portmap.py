"""The controller's view of a running lab: each switch's dpid and which OpenFlow port leads
to which peer, under the topology's logical names (the controllers' harnesses turn it into
their configuration)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def port_map(net: Any, names: dict[str, str], beyond: Callable[[Any], Any]) -> dict[str, dict[str, Any]]:
    """Each switch of Mininet's `net` (logical name; `names`: logical -> real): its dpid and
    OpenFlow port numbers by peer. A peer is named by its interface for hosts (`fw1-in`) and
    by its logical name for switches; `beyond` sees through impairment elements."""
    logical = {real: name for name, real in names.items()}
    out: dict[str, dict[str, Any]] = {}
    for sw in net.switches:
        ports: dict[str, int] = {}
        for intf, number in sw.ports.items():
            link = getattr(intf, "link", None)
            if link is None:
                continue
            peer = beyond(link.intf2 if link.intf1 is intf else link.intf1)
            key = logical.get(peer.node.name, peer.name) if peer.node in net.switches else peer.name
            ports[key] = int(number)
        out[logical[sw.name]] = {"dpid": int(sw.dpid, 16), "ports": ports}
    return out
