"""S1: a client behind a stateful firewall, a server outside it.

    client  10.0.1.10, fd00:1:1::10 --+
                                      s1 --- [fw-in  fw  fw-out] --- s2 --- server
    client2 10.0.1.11, fd00:1:1::11 --+      10.0.1.1     10.0.2.1          10.0.2.10
                                             fd00:1:1::1  fd00:1:2::1       fd00:1:2::10
         inside 10.0.1.0/24, fd00:1:1::/64        outside 10.0.2.0/24, fd00:1:2::/64

`client2`, a second inside host, shares the firewall's outside address with `client`
when it masquerades (S1-UDP: a NAT mapping's old port taken by another host).

`wan_delay` ("25ms" each way; "0ms" makes the link changeable while the lab runs) puts
the server behind a WAN link (s2 - server), delayed as stock Mininet's TCLink does.

The firewall is a Linux router; the harness gives it its stateful nftables policy (node
role "firewall"). Dual-stack: every node also has an IPv6 address (`PLAN6`, ULA
fd00:1:<net>::<host>, the IPv4 plan's numbers in the same places), added without duplicate
address detection so it is usable at once; the hosts' IPv6 default route is the firewall,
which forwards IPv6 too. `PLAN` and `PLAN6` are the address plans above as data
(`_sessionlab_nodes.Plan`; `lab.topology.plan("s1")`, `plan("s1", 6)`). Stock Mininet loads
this file too, with the firewall as a plain router (the shared node classes' file first:
see `_sessionlab_nodes.py`):

    mn --custom topologies/_sessionlab_nodes.py,topologies/s1_idle_timeout.py --topo s1 \\
       --switch ovs,datapath=user,failMode=standalone --controller none

(with a WAN: `--topo s1,wan_delay=25ms --link tc`, which needs netem in stock Mininet).
"""

from _sessionlab_nodes import DualStack, DualStackRouter, Plan, plan6
from mininet.topo import Topo

PLAN = Plan(
    hosts={"inside": {"client": "10.0.1.10", "client2": "10.0.1.11"}, "outside": {"server": "10.0.2.10"}},
    roles={"fw": "firewall"},
    networks={"inside": "10.0.1.0/24", "outside": "10.0.2.0/24"},
    addresses={"fw-in": "10.0.1.1", "fw-out": "10.0.2.1"},
)


PLAN6 = plan6(PLAN, "fd00:1")  # the same plan in IPv6: fd00:1:<third octet>::<fourth>


class FirewallTopo(Topo):
    """client, client2 - s1 - fw - s2 - server, two /24s and two /64s; the s2-server link
    optionally a WAN link."""

    def build(self, wan_delay=None):
        inside, outside = PLAN.addresses["fw-in"], PLAN.addresses["fw-out"]
        fw = self.addHost(
            "fw",
            cls=DualStackRouter,
            ip=f"{inside}/24",
            role=PLAN.roles["fw"],
            inside="fw-in",
            outside="fw-out",
            addresses6={intf: f"{PLAN6.address(intf)}/64" for intf in ("fw-in", "fw-out")},
        )
        hosts = {}
        for name, gateway in (("client", "fw-in"), ("server", "fw-out"), ("client2", "fw-in")):
            hosts[name] = self.addHost(
                name,
                cls=DualStack,
                ip=f"{PLAN.address(name)}/24",
                defaultRoute=f"via {PLAN.address(gateway)}",
                ip6=f"{PLAN6.address(name)}/64",
                gw6=PLAN6.address(gateway),
            )
        s1 = self.addSwitch("s1")
        s2 = self.addSwitch("s2")
        self.addLink(hosts["client"], s1)
        self.addLink(fw, s1, intfName1="fw-in", params1={"ip": f"{inside}/24"})
        self.addLink(fw, s2, intfName1="fw-out", params1={"ip": f"{outside}/24"})
        self.addLink(hosts["server"], s2, **({} if wan_delay is None else {"delay": wan_delay}))
        self.addLink(hosts["client2"], s1)  # last: the other links keep their switch ports


topos = {"s1": FirewallTopo}
