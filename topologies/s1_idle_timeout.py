"""S1: a client behind a stateful firewall, a server outside it.

    client --- s1 --- [fw-in  fw  fw-out] --- s2 --- server
  10.0.1.10        10.0.1.1        10.0.2.1          10.0.2.10
        inside 10.0.1.0/24            outside 10.0.2.0/24

`wan_delay` ("25ms" each way; "0ms" makes the link changeable while the lab runs) puts
the server behind a WAN link (s2 - server), delayed as stock Mininet's TCLink does.

The firewall is a Linux router; the harness gives it its stateful nftables policy (node
role "firewall"). Stock Mininet loads this file too, with the firewall as a plain router:

    mn --custom topologies/s1_idle_timeout.py --topo s1 \
       --switch ovs,datapath=user,failMode=standalone --controller none

(with a WAN: `--topo s1,wan_delay=25ms --link tc`, which needs netem in stock Mininet).
"""

import inspect
import os
import sys

from mininet.topo import Topo

# The shared node classes live beside this file; stock `mn --custom` runs it without
# __file__, so its own path comes from the code object.
sys.path.insert(0, os.path.dirname(os.path.abspath(inspect.currentframe().f_code.co_filename)))
from _sessionlab_nodes import Router  # noqa: E402


class FirewallTopo(Topo):
    """client - s1 - fw - s2 - server, two /24s; the s2-server link optionally a WAN link."""

    def build(self, wan_delay=None):
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
        self.addLink(server, s2, **({} if wan_delay is None else {"delay": wan_delay}))


topos = {"s1": FirewallTopo}
