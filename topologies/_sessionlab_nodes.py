"""What the topology files share: a router, hosts with static neighbours, and `Plan`, the
address plan each file exports as data.

Plain Mininet (no sessionlab import), so stock `mn --custom` loads the topology files. A
topology file imports this module by its plain name (`from _sessionlab_nodes import ...`):
sessionlab's loader (`lab.topology`) puts this folder on the import path while it runs a
topology file; stock Mininet runs each `--custom` file in a bare namespace, so name this
file first and the topology after it:

    mn --custom topologies/_sessionlab_nodes.py,topologies/s1_idle_timeout.py --topo s1 ...

Run so, this file registers itself as the module `_sessionlab_nodes` (see the end).
The lab runs a node with a `role` as that role's session device on top of these classes.
"""

import ipaddress
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

from mininet.node import Node


@dataclass(frozen=True)
class Plan:
    """A topology's address plan as data: the file builds its network from it, and cases,
    controller harnesses and benchmarks read it (`lab.topology.plan(name)`) instead of
    writing the addresses again.

    hosts: group (a network's hosts: "clients", "servers", "inside") -> node -> address,
        in the order the file adds them; `roles`: node -> the session device the lab makes
        of it; `networks`: name -> prefix; `addresses`: other named addresses (router and
        firewall interfaces by interface name, gateways); `vips`: virtual addresses no
        single node owns (a balancer's VIP, a VRRP gateway); `ports`: service -> TCP port;
        `macs`: MACs the plan fixes (virtual gateways, a VIP's MAC)."""

    hosts: Mapping[str, Mapping[str, str]]
    roles: Mapping[str, str] = field(default_factory=dict)
    networks: Mapping[str, str] = field(default_factory=dict)
    addresses: Mapping[str, str] = field(default_factory=dict)
    vips: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)
    macs: Mapping[str, str] = field(default_factory=dict)

    def address(self, name):
        """The address of a host (any group), a named interface or gateway, or a VIP."""
        for group in self.hosts.values():
            if name in group:
                return group[name]
        if name in self.addresses:
            return self.addresses[name]
        if name in self.vips:
            return self.vips[name]
        raise KeyError(f"the plan has no address named {name!r}")


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


class MultiHomed(Node):
    """A host with more addresses on its interface: `extra` ("10.0.2.21/24", comma-separated)."""

    def config(self, extra="", **params):
        result = super().config(**params)
        for address in filter(None, extra.split(",")):
            self.cmd(f"ip addr add {address} dev {self.defaultIntf()}")
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


def plan6(plan, prefix):
    """`plan` in IPv6 beside it: each address a.b.c.d becomes <prefix>:c::d and each network
    a.b.c.0/24 <prefix>:c::/64 (e.g. prefix fd00:5: 10.0.1.10 -> fd00:5:1::10), written as
    the tools print them (10.0.0.11 -> fd00:2::11, not fd00:2:0::11)."""

    def six(address):
        return str(ipaddress.IPv6Address("{}:{}::{}".format(prefix, *address.split(".")[2:])))

    return Plan(
        hosts={
            group: {name: six(address) for name, address in hosts.items()}
            for group, hosts in plan.hosts.items()
        },
        roles=plan.roles,
        networks={
            name: str(ipaddress.IPv6Network("{}:{}::/64".format(prefix, net.split(".")[2])))
            for name, net in plan.networks.items()
        },
        addresses={name: six(address) for name, address in plan.addresses.items()},
    )


class DualStack(Node):
    """A host with an IPv6 address beside its IPv4 one: `ip6` (with its prefix length) and
    `gw6`, its IPv6 default gateway."""

    def config(self, ip6=None, gw6=None, **params):
        result = super().config(**params)
        if ip6:
            self.cmd(f"ip -6 addr add {ip6} dev {self.defaultIntf()} nodad")
        if gw6:
            self.cmd(f"ip -6 route replace default via {gw6}")
        return result


class DualStackRouter(Router):
    """A router that forwards IPv6 too: `addresses6` maps an interface to its IPv6 address
    (with prefix length), `routes6` are `ip -6 route` arguments, `mtus` maps an interface to
    its MTU."""

    def config(self, addresses6=None, routes6=(), mtus=None, **params):
        result = super().config(**params)
        self.cmd("sysctl -qw net.ipv6.conf.all.forwarding=1")
        for intf, mtu in (mtus or {}).items():
            self.cmd(f"ip link set dev {intf} mtu {mtu}")
        for intf, address in (addresses6 or {}).items():
            self.cmd(f"ip -6 addr add {address} dev {intf} nodad")
        for route in routes6:
            self.cmd(f"ip -6 route replace {route}")
        return result


if "_sessionlab_nodes" not in sys.modules:
    # Imported, this module is already in sys.modules; stock `mn --custom` instead runs
    # this file in a bare namespace: registering that namespace as the module lets the
    # topology file that follows it on the --custom list import it.
    _module = types.ModuleType("_sessionlab_nodes", __doc__)
    _module.__dict__.update({k: v for k, v in globals().items() if not k.startswith("__")})
    sys.modules["_sessionlab_nodes"] = _module
