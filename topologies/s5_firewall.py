"""S5: what a stateful firewall is, and its session table as a resource.

   inside 10.0.1.0/24                               outside 10.0.2.0/24
      srv 10.0.1.10 --+                        +-- ext      10.0.2.10  (a server outside)
                      +- s1 -[fw-in fw fw-out]- s2 -+-- legit    10.0.2.20  (clients of srv)
      c1  10.0.1.11 --+    10.0.1.1   10.0.2.1      +-- attacker 10.0.2.66  (a bounded SYN flood)
                                                    +-- scanner  10.0.2.77  (crafted packets)

fw is a Linux router the harness turns into the stateful firewall (node role "firewall"),
or into the same intent written as a stateless filter. srv is the published inside
service; ext answers c1's outbound sessions. Stock Mininet loads it with a plain router:

    mn --custom topologies/s5_firewall.py --topo s5 \\
       --switch ovs,datapath=user,failMode=standalone --controller none
"""

import inspect
import os
import sys

from mininet.topo import Topo

sys.path.insert(0, os.path.dirname(os.path.abspath(inspect.currentframe().f_code.co_filename)))
from _sessionlab_nodes import Router  # noqa: E402

INSIDE = {"srv": "10.0.1.10", "c1": "10.0.1.11"}
OUTSIDE = {"ext": "10.0.2.10", "legit": "10.0.2.20", "attacker": "10.0.2.66", "scanner": "10.0.2.77"}


class FirewallTopo(Topo):
    """Inside hosts - s1 - fw - s2 - outside hosts."""

    def build(self):
        s1, s2 = self.addSwitch("s1"), self.addSwitch("s2")
        fw = self.addHost(
            "fw", cls=Router, ip="10.0.1.1/24", role="firewall", inside="fw-in", outside="fw-out"
        )
        self.addLink(fw, s1, intfName1="fw-in", params1={"ip": "10.0.1.1/24"})
        self.addLink(fw, s2, intfName1="fw-out", params1={"ip": "10.0.2.1/24"})
        for name, address in INSIDE.items():
            self.addLink(self.addHost(name, ip=f"{address}/24", defaultRoute="via 10.0.1.1"), s1)
        for name, address in OUTSIDE.items():
            self.addLink(self.addHost(name, ip=f"{address}/24", defaultRoute="via 10.0.2.1"), s2)


topos = {"s5": FirewallTopo}
