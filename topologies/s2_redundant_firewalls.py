"""S2: two stateful firewalls in parallel between an outside and an inside OpenFlow fabric.

    h1 h2 h3  (10.0.0.11-13, gateway 10.0.0.1; fd00:2::11-13, gateway fd00:2::1)
        \\ | /
         so ............ outside fabric switch (dpid 1)
        /    \\
   fw1-out  fw2-out      both 10.0.0.1 and fd00:2::1, each its own MAC
    [fw1]    [fw2]
   fw1-in   fw2-in       both 10.0.1.1 and fd00:2:1::1, each its own MAC
      |        |
      a1 ---- a2 ....... each firewall's inside access switch (dpids 11, 12); a1-a2 is
      | \\    / |         the dedicated FW1-FW2 link: conntrackd sync (fw1-sync 10.0.3.1,
      |  sync  |         fw2-sync 10.0.3.2) and path correction
      \\       /
         si ............ inside fabric switch (dpid 2)
        /  \\
    srv1   srv2  (10.0.1.11-12, gateway 10.0.1.1; fd00:2:1::11-12, gateway fd00:2:1::1)

Both firewalls own the gateway addresses; the hosts reach them through a virtual gateway
MAC that no box owns (static neighbour entries), so only the fabric decides which
firewall a packet crosses: the switch rewrites the virtual MAC to the chosen firewall's.
Dual-stack: the hosts and both firewalls' outside and inside interfaces also have IPv6
addresses (`PLAN6`, ULA fd00:2:<net>::<host>, the IPv4 plan's numbers in the same places;
the sync and tunnel links stay IPv4), added without duplicate address detection (two
firewalls own each gateway address), and every neighbour of both families is static as
in IPv4: a host's gateway is the virtual MAC, a firewall's hosts their own MACs, so no
neighbour discovery is needed to cross the fabric. `PLAN` and `PLAN6` are the address
plans above as data (`_sessionlab_nodes.Plan`; `lab.topology.plan("s2")`,
`plan("s2", 6)`). Stock Mininet loads it with a remote controller (the shared node
classes' file first):

    mn --custom topologies/_sessionlab_nodes.py,topologies/s2_redundant_firewalls.py --topo s2 \\
       --switch ovs,datapath=user,protocols=OpenFlow13 --controller remote --link tc
"""

from dataclasses import replace

from _sessionlab_nodes import DualStack, DualStackRouter, Plan, StaticHost, plan6
from mininet.topo import Topo

PLAN = Plan(
    hosts={
        "outside": {"h1": "10.0.0.11", "h2": "10.0.0.12", "h3": "10.0.0.13"},
        "inside": {"srv1": "10.0.1.11", "srv2": "10.0.1.12"},
    },
    roles={"fw1": "firewall", "fw2": "firewall"},
    networks={
        name: f"10.0.{n}.0/24" for name, n in (("outside", 0), ("inside", 1), ("sync", 3), ("tunnel", 4))
    },
    # both firewalls own the gateway addresses; the hosts reach them through the virtual MACs
    addresses={
        "gateway-out": "10.0.0.1",
        "gateway-in": "10.0.1.1",
        **{f"fw{n}-sync": f"10.0.3.{n}" for n in (1, 2)},
        **{f"fw{n}-tunnel": f"10.0.4.{n}" for n in (1, 2)},
    },
    macs={"vgw-out": "02:00:00:00:00:01", "vgw-in": "02:00:00:00:00:02"},
)
VGW_OUT_MAC, VGW_IN_MAC = PLAN.macs["vgw-out"], PLAN.macs["vgw-in"]
OUTSIDE_HOSTS, INSIDE_HOSTS = PLAN.hosts["outside"], PLAN.hosts["inside"]
GATEWAY_OUT, GATEWAY_IN = PLAN.addresses["gateway-out"], PLAN.addresses["gateway-in"]
# The same plan in IPv6, fd00:2:<third octet>::<fourth>, for the hosts and the gateways
# (the sync and tunnel links stay IPv4). Tools print fd00:2:0::11 as fd00:2::11.
PLAN6 = replace(
    _six := plan6(PLAN, "fd00:2"),
    networks={k: _six.networks[k] for k in ("outside", "inside")},
    addresses={k: _six.addresses[k] for k in ("gateway-out", "gateway-in")},
)


class DualStackHost(DualStack, StaticHost):
    """A host with static neighbours (`neighbors`, either family) and an IPv6 address."""


def host_mac(address: str) -> str:
    """A fixed MAC per lab address (02:00:0a:00:XX:YY), so neighbours can be static."""
    a, b, c, d = (int(x) for x in address.split("."))
    return f"02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


def fw_mac(fw: int, side: str) -> str:
    """Firewall `fw`'s own MAC on its outside, inside or sync interface."""
    return f"02:00:00:00:{fw:02x}:{ {'out': 1, 'in': 2, 'sync': 3}[side]:02x}"


class RedundantFirewallTopo(Topo):
    """Outside hosts - so - fw1|fw2 - a1|a2 - si - servers, with the a1-a2 FW1-FW2 link."""

    def build(self):
        so = self.addSwitch("so", dpid=f"{1:016x}")
        si = self.addSwitch("si", dpid=f"{2:016x}")
        # Each host's MAC for its addresses of both families (the firewalls' static neighbours).
        neigh = {
            side: {
                address: host_mac(ip)
                for name, ip in PLAN.hosts[side].items()
                for address in (ip, PLAN6.address(name))
            }
            for side in ("outside", "inside")
        }
        sides = (("outside", so, "gateway-out", VGW_OUT_MAC), ("inside", si, "gateway-in", VGW_IN_MAC))
        for side, switch, gateway, vgw_mac in sides:
            gateway4, gateway6 = PLAN.address(gateway), PLAN6.address(gateway)
            for name, ip in PLAN.hosts[side].items():
                host = self.addHost(
                    name,
                    cls=DualStackHost,
                    ip=f"{ip}/24",
                    mac=host_mac(ip),
                    defaultRoute=f"via {gateway4}",
                    neighbors={gateway4: vgw_mac, gateway6: vgw_mac},
                    ip6=f"{PLAN6.address(name)}/64",
                    gw6=gateway6,
                )
                self.addLink(host, switch)
        access = []
        for n in (1, 2):
            fw = self.addHost(
                f"fw{n}",
                cls=DualStackRouter,
                ip=f"{GATEWAY_OUT}/24",
                role=PLAN.roles[f"fw{n}"],
                inside=f"fw{n}-in",
                outside=f"fw{n}-out",
                sync=f"fw{n}-sync",
                peer=PLAN.addresses[f"fw{3 - n}-sync"],
                tunnel=f"{PLAN.addresses[f'fw{n}-tunnel']}/24",
                addresses6={
                    f"fw{n}-{side}": f"{PLAN6.address(f'gateway-{side}')}/64" for side in ("out", "in")
                },
                neighbors={
                    f"fw{n}-out": neigh["outside"],
                    f"fw{n}-in": neigh["inside"],
                    f"fw{n}-sync": {PLAN.addresses[f"fw{3 - n}-sync"]: fw_mac(3 - n, "sync")},
                },
            )
            a = self.addSwitch(f"a{n}", dpid=f"{10 + n:016x}")
            access.append(a)
            self.addLink(
                fw, so, intfName1=f"fw{n}-out", addr1=fw_mac(n, "out"), params1={"ip": f"{GATEWAY_OUT}/24"}
            )
            self.addLink(
                fw, a, intfName1=f"fw{n}-in", addr1=fw_mac(n, "in"), params1={"ip": f"{GATEWAY_IN}/24"}
            )
            sync = PLAN.addresses[f"fw{n}-sync"]
            self.addLink(
                fw, a, intfName1=f"fw{n}-sync", addr1=fw_mac(n, "sync"), params1={"ip": f"{sync}/24"}
            )
            self.addLink(a, si)
        # The FW1-FW2 link can be slowed down (delay 0 here): cases sweep it.
        self.addLink(access[0], access[1], delay="0ms")


topos = {"s2": RedundantFirewallTopo}
# The controller app the harness runs for this topology (stock Mininet: --controller remote).
controllers = {"s2": "controllers.fwlb.harness"}
