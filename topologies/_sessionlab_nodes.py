"""Node classes the topology files share: a router and hosts with static neighbours.

Plain Mininet (no sessionlab import), so `mn --custom` loads the topology files; the lab
runs a node with a `role` as that role's session device on top of these classes.
"""

from mininet.node import Node


def static_neighbors(node, table, intf=None):
    """Permanent neighbour entries: `table` maps address to MAC (on `intf` or the default)."""
    for address, mac in table.items():
        node.cmd(f"ip neigh replace {address} lladdr {mac} dev {intf or node.defaultIntf()} nud permanent")


class StaticHost(Node):
    """A host whose neighbours are static: `neighbors` maps address to MAC."""

    def config(self, neighbors=None, **params):
        result = super().config(**params)
        static_neighbors(self, neighbors or {})
        return result


class Router(Node):
    """A Linux host that forwards IPv4; `neighbors` maps each interface to its static
    neighbours (address to MAC); `routes` are `ip route` arguments ("10.0.3.0/24 via ...")."""

    def config(self, neighbors=None, routes=(), **params):
        result = super().config(**params)
        self.cmd("sysctl -qw net.ipv4.ip_forward=1")
        for intf, table in (neighbors or {}).items():
            static_neighbors(self, table, intf)
        for route in routes:
            self.cmd(f"ip route replace {route}")
        return result
