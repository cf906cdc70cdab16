"""S1: a client behind a stateful firewall, a server outside it.

    client --- s1 --- [fw-in  fw  fw-out] --- s2 --- server
  10.0.1.10        10.0.1.1        10.0.2.1          10.0.2.10
        inside 10.0.1.0/24            outside 10.0.2.0/24

The firewall is a Linux router; the harness gives it its stateful nftables policy (node
role "firewall"). Stock Mininet loads this file too, with the firewall as a plain router:

    mn --custom topologies/s1_idle_timeout.py --topo s1 \
       --switch ovs,datapath=user,failMode=standalone --controller none
"""

from mininet.node import Node
from mininet.topo import Topo


class Router(Node):
    """A Linux host that forwards IPv4 (what the firewall is before its policy)."""

    def config(self, **params):
        result = super().config(**params)
        self.cmd("sysctl -qw net.ipv4.ip_forward=1")
        return result


class FirewallTopo(Topo):
    """client - s1 - fw - s2 - server, two /24s."""

    def build(self):
        fw = self.addHost(
            "fw", cls=Router, ip="10.0.1.1/24", role="firewall", inside="fw-in", outside="fw-out"
        )
        client = self.addHost("client", ip="10.0.1.10/24", defaultRoute="via 10.0.1.1")
        server = self.addHost("server", ip="10.0.2.10/24", defaultRoute="via 10.0.2.1")
        s1 = self.addSwitch("s1")
        s2 = self.addSwitch("s2")
        self.addLink(client, s1)
        self.addLink(fw, s1, intfName1="fw-in", params1={"ip": "10.0.1.1/24"})
        self.addLink(fw, s2, intfName1="fw-out", params1={"ip": "10.0.2.1/24"})
        self.addLink(server, s2)


topos = {"s1": FirewallTopo}
