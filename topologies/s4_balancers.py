"""S4: load balancers between clients and real servers, and a router that bypasses them.

      c1 10.0.1.11 --+                                        +-- r1 10.0.2.11
      c2 10.0.1.12 --+-- s1 --[lb1-c  lb1  lb1-s]-- s2 -------+-- r2 10.0.2.12
      c3 10.0.1.13 --+    |   10.0.1.2     10.0.2.2   |       +-- r3 10.0.2.13
                          +---[gw-c   gw   gw-s ]-----+       +-- r4 10.0.2.14
                          |   10.0.1.1     10.0.2.1   |
                          +---[lb2-c  lb2  lb2-s]-----+
                              10.0.1.3     10.0.2.3
   clients 10.0.1.0/24, VIP 10.0.1.100          servers 10.0.2.0/24
           fd00:4:1::/64, VIP fd00:4:1::100             fd00:4:2::/64

Clients reach the VIP on their own network; everything else goes through `gw`, a plain
router, and so do the servers' replies unless a case routes them back through a balancer:
the NAT-mode return path problem. lb1 and lb2 are Linux hosts that the harness turns into
balancers (node role "balancer": nftables DNAT, health checks, or an ADC daemon). With
topology `s4-sdn` (the same network) the controller on s1 balances instead (the `l4lb`
app): it answers ARP for the VIP and rewrites sessions to a server behind gw. `server_bw`
(Mbit/s) limits each server's link. `PLAN` is the address plan above as data
(`_sessionlab_nodes.Plan`; `lab.topology.plan("s4")`), with the VIP, its MAC for the SDN
app, the HTTP port, and the servers' gateway a redundant pair shares (VRRP, configured by
the cases). Dual-stack: every node also has an IPv6 address (`PLAN6`, ULA fd00:4:<net>::<host>,
the IPv4 plan's numbers in the same places, e.g. c1 fd00:4:1::11, lb1-s fd00:4:2::2), added
without duplicate address detection so it is usable at once; the hosts' IPv6 default route
is gw, and gw, lb1 and lb2 forward IPv6 too. `PLAN6` has the IPv6 VIP fd00:4:1::100 (and the
pair's gateway fd00:4:2::100) beside the IPv4 ones (`lab.topology.plan("s4", family=6)`); the SDN app
balances IPv4 only (IPv6 crosses its switches as plain traffic). Stock Mininet loads it with
plain routers (the shared node classes' file first):

    mn --custom topologies/_sessionlab_nodes.py,topologies/s4_balancers.py --topo s4 \
       --switch ovs,datapath=user,failMode=standalone --controller none
"""

from dataclasses import replace

from _sessionlab_nodes import DualStack, DualStackRouter, Plan, plan6
from mininet.topo import Topo

PLAN = Plan(
    hosts={
        "clients": {"c1": "10.0.1.11", "c2": "10.0.1.12", "c3": "10.0.1.13"},
        "servers": {"r1": "10.0.2.11", "r2": "10.0.2.12", "r3": "10.0.2.13", "r4": "10.0.2.14"},
    },
    roles={"lb1": "balancer", "lb2": "balancer"},
    networks={"clients": "10.0.1.0/24", "servers": "10.0.2.0/24"},
    addresses={
        "gw-c": "10.0.1.1",
        "gw-s": "10.0.2.1",
        "lb1-c": "10.0.1.2",
        "lb1-s": "10.0.2.2",
        "lb2-c": "10.0.1.3",
        "lb2-s": "10.0.2.3",
    },
    vips={"web": "10.0.1.100", "pair gateway": "10.0.2.100"},
    ports={"web": 80},
    macs={"web": "02:00:0a:00:01:64"},  # the SDN app's answer to ARP for the VIP
)
CLIENTS, SERVERS = PLAN.hosts["clients"], PLAN.hosts["servers"]
BALANCERS = {name: (PLAN.addresses[f"{name}-c"], PLAN.addresses[f"{name}-s"]) for name in PLAN.roles}
GATEWAY = (PLAN.addresses["gw-c"], PLAN.addresses["gw-s"])
VIP = PLAN.vips["web"]
# The same plan in IPv6 (fd00:4:<the IPv4 third octet>::<its fourth>), VIPs and port too.
PLAN6 = replace(
    plan6(PLAN, "fd00:4"),
    vips={"web": "fd00:4:1::100", "pair gateway": "fd00:4:2::100"},
    ports=PLAN.ports,
)


def _v6(name):
    return f"{PLAN6.address(name)}/64"


class BalancerTopo(Topo):
    """Clients - s1 - {lb1, gw, lb2} - s2 - real servers, dual-stack; `server_bw` (Mbit/s)
    on each server's link."""

    def build(self, server_bw=None):
        s1, s2 = self.addSwitch("s1"), self.addSwitch("s2")
        gw = self.addHost(
            "gw",
            cls=DualStackRouter,
            ip=f"{GATEWAY[0]}/24",
            addresses6={intf: _v6(intf) for intf in ("gw-c", "gw-s")},
        )
        self.addLink(gw, s1, intfName1="gw-c", params1={"ip": f"{GATEWAY[0]}/24"})
        self.addLink(gw, s2, intfName1="gw-s", params1={"ip": f"{GATEWAY[1]}/24"})
        for name, (client_side, server_side) in BALANCERS.items():
            lb = self.addHost(
                name,
                cls=DualStackRouter,
                ip=f"{client_side}/24",
                role=PLAN.roles[name],
                client_side=f"{name}-c",
                server_side=f"{name}-s",
                addresses6={intf: _v6(intf) for intf in (f"{name}-c", f"{name}-s")},
            )
            self.addLink(lb, s1, intfName1=f"{name}-c", params1={"ip": f"{client_side}/24"})
            self.addLink(lb, s2, intfName1=f"{name}-s", params1={"ip": f"{server_side}/24"})
        gateway6 = {"clients": PLAN6.address("gw-c"), "servers": PLAN6.address("gw-s")}
        rate = {} if server_bw is None else {"bw": server_bw}
        for group, switch, extra in (("clients", s1, {}), ("servers", s2, rate)):
            for name, address in PLAN.hosts[group].items():
                host = self.addHost(
                    name,
                    cls=DualStack,
                    ip=f"{address}/24",
                    defaultRoute=f"via {PLAN.addresses['gw-c' if group == 'clients' else 'gw-s']}",
                    ip6=_v6(name),
                    gw6=gateway6[group],
                )
                self.addLink(host, switch, **extra)


# s4-sdn: the same network; the lab runs the balancing controller for it.
topos = {"s4": BalancerTopo, "s4-sdn": BalancerTopo}
controllers = {"s4-sdn": "controllers.l4lb.harness"}
