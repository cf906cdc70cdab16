"""S3: FTP through a client-side and a server-side firewall.

    client -- s1 -- [fwc-in  fwc  fwc-out] -- s2 -- [fws-out  fws  fws-in] -- s3 -- server
  10.0.1.10       10.0.1.1          10.0.2.1   |   10.0.2.2          10.0.3.1       10.0.3.10
   inside 10.0.1.0/24                          |  transit 10.0.2.0/24         10.0.3.0/24
                                             other 10.0.2.66 (a third host)

Both firewalls are Linux routers; the harness gives them their stateful nftables policies
(node role "firewall"): fwc protects the client (and may source-NAT it to 10.0.2.1), fws
protects the FTP server. `other` is a host on the transit network that tries to use data
ports announced to someone else. `server_bw` (Mbit/s) makes the server's link a slow one.
Stock Mininet loads this file too, with plain routers:

    mn --custom topologies/s3_ftp.py --topo s3 \
       --switch ovs,datapath=user,failMode=standalone --controller none
"""

import inspect
import os
import sys

from mininet.topo import Topo

# The shared node classes live beside this file; stock `mn --custom` runs it without
# __file__, so its own path comes from the code object.
sys.path.insert(0, os.path.dirname(os.path.abspath(inspect.currentframe().f_code.co_filename)))
from _sessionlab_nodes import Router  # noqa: E402


class FtpTopo(Topo):
    """client - fwc - transit - fws - server, and a third host on the transit network;
    `server_bw` (Mbit/s) rate-limits the server's link (TCLink's HTB)."""

    def build(self, server_bw=None):
        fwc = self.addHost(
            "fwc",
            cls=Router,
            ip="10.0.1.1/24",
            role="firewall",
            inside="fwc-in",
            outside="fwc-out",
            routes=("10.0.3.0/24 via 10.0.2.2",),
        )
        fws = self.addHost(
            "fws",
            cls=Router,
            ip="10.0.2.2/24",  # its first interface (Mininet sets `ip` on it) is fws-out
            role="firewall",
            inside="fws-in",
            outside="fws-out",
            routes=("10.0.1.0/24 via 10.0.2.1",),
        )
        client = self.addHost("client", ip="10.0.1.10/24", defaultRoute="via 10.0.1.1")
        server = self.addHost("server", ip="10.0.3.10/24", defaultRoute="via 10.0.3.1")
        other = self.addHost("other", ip="10.0.2.66/24", defaultRoute="via 10.0.2.2")
        s1, s2, s3 = self.addSwitch("s1"), self.addSwitch("s2"), self.addSwitch("s3")
        self.addLink(client, s1)
        self.addLink(fwc, s1, intfName1="fwc-in", params1={"ip": "10.0.1.1/24"})
        self.addLink(fwc, s2, intfName1="fwc-out", params1={"ip": "10.0.2.1/24"})
        self.addLink(fws, s2, intfName1="fws-out", params1={"ip": "10.0.2.2/24"})
        self.addLink(fws, s3, intfName1="fws-in", params1={"ip": "10.0.3.1/24"})
        self.addLink(server, s3, **({} if server_bw is None else {"bw": server_bw}))
        self.addLink(other, s2)


topos = {"s3": FtpTopo}
