"""S1: a client behind a stateful firewall, a server outside it.

    client --- s1 --- [fw-in  fw  fw-out] --- s2 --- server
  10.0.1.10        10.0.1.1        10.0.2.1          10.0.2.10
        inside 10.0.1.0/24            outside 10.0.2.0/24

`wan_delay` ("25ms" each way; "0ms" makes the link changeable while the lab runs) puts
the server behind a WAN link (s2 - server), delayed as stock Mininet's TCLink does.

The firewall is a Linux router; the harness gives it its stateful nftables policy (node
role "firewall"). `PLAN` is the address plan above as data (`_sessionlab_nodes.Plan`;
`lab.topology.plan("s1")`). Stock Mininet loads this file too, with the firewall as a plain
router (the shared node classes' file first: see `_sessionlab_nodes.py`):

    mn --custom topologies/_sessionlab_nodes.py,topologies/s1_idle_timeout.py --topo s1 \
       --switch ovs,datapath=user,failMode=standalone --controller none

(with a WAN: `--topo s1,wan_delay=25ms --link tc`, which needs netem in stock Mininet).
"""

from _sessionlab_nodes import Plan, Router
from mininet.topo import Topo

PLAN = Plan(
    hosts={"inside": {"client": "10.0.1.10"}, "outside": {"server": "10.0.2.10"}},
    roles={"fw": "firewall"},
    networks={"inside": "10.0.1.0/24", "outside": "10.0.2.0/24"},
    addresses={"fw-in": "10.0.1.1", "fw-out": "10.0.2.1"},
)


class FirewallTopo(Topo):
    """client - s1 - fw - s2 - server, two /24s; the s2-server link optionally a WAN link."""

    def build(self, wan_delay=None):
        inside, outside = PLAN.addresses["fw-in"], PLAN.addresses["fw-out"]
        fw = self.addHost(
            "fw", cls=Router, ip=f"{inside}/24", role=PLAN.roles["fw"], inside="fw-in", outside="fw-out"
        )
        client = self.addHost("client", ip=f"{PLAN.address('client')}/24", defaultRoute=f"via {inside}")
        server = self.addHost("server", ip=f"{PLAN.address('server')}/24", defaultRoute=f"via {outside}")
        s1 = self.addSwitch("s1")
        s2 = self.addSwitch("s2")
        self.addLink(client, s1)
        self.addLink(fw, s1, intfName1="fw-in", params1={"ip": f"{inside}/24"})
        self.addLink(fw, s2, intfName1="fw-out", params1={"ip": f"{outside}/24"})
        self.addLink(server, s2, **({} if wan_delay is None else {"delay": wan_delay}))


topos = {"s1": FirewallTopo}
