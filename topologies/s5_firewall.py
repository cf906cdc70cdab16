"""S5: what a stateful firewall is, and its session table as a resource.

   inside 10.0.1.0/24                               outside 10.0.2.0/24
      srv 10.0.1.10 --+                        +-- ext      10.0.2.10  (a server outside)
                      +- s1 -[fw-in fw fw-out]- s2 -+-- legit    10.0.2.20  (clients of srv)
      c1  10.0.1.11 --+    10.0.1.1   10.0.2.1      +-- attacker 10.0.2.66  (a bounded SYN flood)
                                                    +-- scanner  10.0.2.77  (crafted packets)

fw is a Linux router the harness turns into the stateful firewall (node role "firewall"),
or into the same intent written as a stateless filter. srv is the published inside
service; ext answers c1's outbound sessions. `PLAN` is the address plan above as data
(`_sessionlab_nodes.Plan`; `lab.topology.plan("s5")`). Stock Mininet loads it with a plain
router (the shared node classes' file first):

    mn --custom topologies/_sessionlab_nodes.py,topologies/s5_firewall.py --topo s5 \\
       --switch ovs,datapath=user,failMode=standalone --controller none
"""

from _sessionlab_nodes import Plan, Router
from mininet.topo import Topo

PLAN = Plan(
    hosts={
        "inside": {"srv": "10.0.1.10", "c1": "10.0.1.11"},
        "outside": {
            "ext": "10.0.2.10",
            "legit": "10.0.2.20",
            "attacker": "10.0.2.66",
            "scanner": "10.0.2.77",
        },
    },
    roles={"fw": "firewall"},
    networks={"inside": "10.0.1.0/24", "outside": "10.0.2.0/24"},
    addresses={"fw-in": "10.0.1.1", "fw-out": "10.0.2.1"},
)
INSIDE, OUTSIDE = PLAN.hosts["inside"], PLAN.hosts["outside"]


class FirewallTopo(Topo):
    """Inside hosts - s1 - fw - s2 - outside hosts."""

    def build(self):
        inside, outside = PLAN.addresses["fw-in"], PLAN.addresses["fw-out"]
        s1, s2 = self.addSwitch("s1"), self.addSwitch("s2")
        fw = self.addHost(
            "fw", cls=Router, ip=f"{inside}/24", role=PLAN.roles["fw"], inside="fw-in", outside="fw-out"
        )
        self.addLink(fw, s1, intfName1="fw-in", params1={"ip": f"{inside}/24"})
        self.addLink(fw, s2, intfName1="fw-out", params1={"ip": f"{outside}/24"})
        for name, address in INSIDE.items():
            self.addLink(self.addHost(name, ip=f"{address}/24", defaultRoute=f"via {inside}"), s1)
        for name, address in OUTSIDE.items():
            self.addLink(self.addHost(name, ip=f"{address}/24", defaultRoute=f"via {outside}"), s2)


topos = {"s5": FirewallTopo}
