"""S2: two stateful firewalls in parallel between an outside and an inside OpenFlow fabric.

    h1 h2 h3  (10.0.0.11-13, gateway 10.0.0.1)
        \\ | /
         so ............ outside fabric switch (dpid 1)
        /    \\
   fw1-out  fw2-out      both 10.0.0.1, each its own MAC
    [fw1]    [fw2]
   fw1-in   fw2-in       both 10.0.1.1, each its own MAC
      |        |
      a1 ---- a2 ....... each firewall's inside access switch (dpids 11, 12); a1-a2 is
      | \\    / |         the dedicated FW1-FW2 link: conntrackd sync (fw1-sync 10.0.3.1,
      |  sync  |         fw2-sync 10.0.3.2) and path correction
      \\       /
         si ............ inside fabric switch (dpid 2)
        /  \\
    srv1   srv2  (10.0.1.11-12, gateway 10.0.1.1)

Both firewalls own the gateway addresses; the hosts reach them through a virtual gateway
MAC that no box owns (static neighbour entries), so only the fabric decides which
firewall a packet crosses: the switch rewrites the virtual MAC to the chosen firewall's.
Stock Mininet loads it with a remote controller:

    mn --custom topologies/s2_redundant_firewalls.py --topo s2 \
       --switch ovs,datapath=user,protocols=OpenFlow13 --controller remote --link tc
"""

import inspect
import os
import sys

from mininet.topo import Topo

# The shared node classes live beside this file; stock `mn --custom` runs it without
# __file__, so its own path comes from the code object.
sys.path.insert(0, os.path.dirname(os.path.abspath(inspect.currentframe().f_code.co_filename)))
from _sessionlab_nodes import Router, StaticHost  # noqa: E402

VGW_OUT_MAC = "02:00:00:00:00:01"
VGW_IN_MAC = "02:00:00:00:00:02"
OUTSIDE_HOSTS = {"h1": "10.0.0.11", "h2": "10.0.0.12", "h3": "10.0.0.13"}
INSIDE_HOSTS = {"srv1": "10.0.1.11", "srv2": "10.0.1.12"}


def host_mac(address: str) -> str:
    """A fixed MAC per lab address (02:00:0a:00:XX:YY), so neighbours can be static."""
    a, b, c, d = (int(x) for x in address.split("."))
    return f"02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


def fw_mac(fw: int, side: str) -> str:
    return f"02:00:00:00:{fw:02x}:{ {'out': 1, 'in': 2, 'sync': 3}[side]:02x}"


class RedundantFirewallTopo(Topo):
    """Outside hosts - so - fw1|fw2 - a1|a2 - si - servers, with the a1-a2 FW1-FW2 link."""

    def build(self):
        so = self.addSwitch("so", dpid=f"{1:016x}")
        si = self.addSwitch("si", dpid=f"{2:016x}")
        outside_neigh = {ip: host_mac(ip) for ip in OUTSIDE_HOSTS.values()}
        inside_neigh = {ip: host_mac(ip) for ip in INSIDE_HOSTS.values()}
        sides = ((OUTSIDE_HOSTS, so, "10.0.0.1", VGW_OUT_MAC), (INSIDE_HOSTS, si, "10.0.1.1", VGW_IN_MAC))
        for hosts, switch, gateway, vgw_mac in sides:
            for name, ip in hosts.items():
                host = self.addHost(
                    name,
                    cls=StaticHost,
                    ip=f"{ip}/24",
                    mac=host_mac(ip),
                    defaultRoute=f"via {gateway}",
                    neighbors={gateway: vgw_mac},
                )
                self.addLink(host, switch)
        access = []
        for n in (1, 2):
            fw = self.addHost(
                f"fw{n}",
                cls=Router,
                ip="10.0.0.1/24",
                role="firewall",
                inside=f"fw{n}-in",
                outside=f"fw{n}-out",
                sync=f"fw{n}-sync",
                peer=f"10.0.3.{3 - n}",
                tunnel=f"10.0.4.{n}/24",
                neighbors={
                    f"fw{n}-out": outside_neigh,
                    f"fw{n}-in": inside_neigh,
                    f"fw{n}-sync": {f"10.0.3.{3 - n}": fw_mac(3 - n, "sync")},
                },
            )
            a = self.addSwitch(f"a{n}", dpid=f"{10 + n:016x}")
            access.append(a)
            self.addLink(
                fw, so, intfName1=f"fw{n}-out", addr1=fw_mac(n, "out"), params1={"ip": "10.0.0.1/24"}
            )
            self.addLink(fw, a, intfName1=f"fw{n}-in", addr1=fw_mac(n, "in"), params1={"ip": "10.0.1.1/24"})
            self.addLink(
                fw, a, intfName1=f"fw{n}-sync", addr1=fw_mac(n, "sync"), params1={"ip": f"10.0.3.{n}/24"}
            )
            self.addLink(a, si)
        # The FW1-FW2 link can be slowed down (delay 0 here): cases sweep it.
        self.addLink(access[0], access[1], delay="0ms")


topos = {"s2": RedundantFirewallTopo}
# The controller app the harness runs for this topology (stock Mininet: --controller remote).
controllers = {"s2": "controllers.fwlb.harness"}
